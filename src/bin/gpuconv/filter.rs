//! `gpuconv filter`: files in, files out; all filtering is the library's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use gpuconv::{Combine, Engine, FilterOutput, Kernel, Operation, io};

use crate::args::FilterArgs;

/// Where the outputs go.
struct Plan {
    /// The folder to create before writing, when `-o` names one.
    folder: Option<PathBuf>,
    jobs: Vec<Job>,
}

/// One input and the files its outputs go to, in [`FilterOutput`] order: the combined image
/// first, if any, then the responses.
struct Job {
    input: PathBuf,
    outputs: Vec<PathBuf>,
}

pub fn run(args: &FilterArgs) -> Result<()> {
    let operation = operation(args)?;
    let plan = plan(args, &operation)?;
    refuse_overwriting_inputs(&plan.jobs)?;
    for job in &plan.jobs {
        // Fail before the (possibly slow) engine start-up when an input is plainly missing.
        if !job.input.is_file() {
            let problem = if job.input.exists() {
                "not a file"
            } else {
                "no such file"
            };
            bail!("cannot read image '{}': {problem}", job.input.display());
        }
    }
    if let Some(folder) = &plan.folder {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create output folder '{}'", folder.display()))?;
    }
    // Opened once the first input is decoded, so that a bad input is reported alone, without
    // the CPU-fallback notice before it; then shared by every input.
    let mut engine = None;
    for job in &plan.jobs {
        filter_one(&mut engine, args, &operation, job)?;
    }
    if args.timings {
        if let Some(peak) = peak_resident_mib() {
            eprintln!("peak resident memory: {peak:.0} MiB");
        }
    }
    Ok(())
}

/// The process's peak resident memory so far, where the system says (Linux's `VmHWM`).
fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn operation(args: &FilterArgs) -> Result<Operation> {
    let combine = match (args.edge, args.threshold) {
        (_, Some(t)) => Combine::Threshold(t),
        (true, None) => Combine::Edge,
        (false, None) => Combine::None,
    };
    let mut kernels = args
        .kernels
        .iter()
        .enumerate()
        .map(|(i, spec)| Kernel::parse(spec, &format!("kernel{}", i + 1)))
        .collect::<gpuconv::Result<Vec<_>>>()?;
    if kernels.is_empty() {
        if combine == Combine::None {
            bail!("no kernel given: add -k KERNEL (for example -k vertical), or --edge");
        }
        kernels = vec![Kernel::vertical_lines(), Kernel::horizontal_lines()];
    }
    if args.responses && combine == Combine::None {
        bail!(
            "--responses only makes sense with --edge or --threshold (every kernel's response is written anyway)"
        );
    }
    Ok(Operation::new(kernels, combine, args.responses)?)
}

/// Where every output goes: `-o` is the file when one input gives one image, else a folder.
fn plan(args: &FilterArgs, operation: &Operation) -> Result<Plan> {
    let combined_name = match operation.combine() {
        Combine::None => None,
        Combine::Edge => Some("edge".to_owned()),
        Combine::Threshold(t) => Some(format!("threshold{t}")),
    };
    let response_names = operation
        .keeps_responses()
        .then(|| operation.kernels().iter().map(|k| k.name().to_owned()));
    let names: Vec<String> = combined_name
        .into_iter()
        .chain(response_names.into_iter().flatten())
        .collect();
    let output = &args.output;

    // `-o out/` or an existing folder asks for a folder even when one file comes out.
    let names_folder = output.is_dir()
        || output
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR);
    if args.inputs.len() == 1 && names.len() == 1 && !names_folder {
        if let Some(format) = &args.format {
            bail!(
                "--format {format} applies to outputs written into a folder; the extension of -o picks this file's format"
            );
        }
        io::output_format(output)?;
        io::check_output_folder(output)?;
        return Ok(Plan {
            folder: None,
            jobs: vec![Job {
                input: args.inputs[0].clone(),
                outputs: vec![output.clone()],
            }],
        });
    }

    let count = args.inputs.len() * names.len();
    if output.exists() && !output.is_dir() {
        bail!(
            "'{}' is a file, but {count} images are written, so -o must name a folder",
            output.display()
        );
    }
    if !output.exists() && !names_folder && io::output_format(output).is_ok() {
        bail!(
            "'{}' looks like a file name, but {count} images are written, so -o must name a folder (end it with '/' to create one)",
            output.display()
        );
    }
    let extension = args
        .format
        .as_deref()
        .unwrap_or("png")
        .trim_start_matches('.');
    io::output_format(Path::new(&format!("out.{extension}")))
        .with_context(|| format!("--format {extension}"))?;
    let mut seen = HashSet::new();
    let mut jobs = Vec::new();
    for input in &args.inputs {
        let stem = input
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy());
        let outputs: Vec<PathBuf> = names
            .iter()
            .map(|name| output.join(format!("{stem}-{name}.{extension}")))
            .collect();
        for path in &outputs {
            if !seen.insert(path.clone()) {
                bail!(
                    "two outputs would both be written to '{}' (inputs with the same name, or kernels with the same name: use NAME=... to tell them apart)",
                    path.display()
                );
            }
        }
        jobs.push(Job {
            input: input.clone(),
            outputs,
        });
    }
    Ok(Plan {
        folder: Some(output.clone()),
        jobs,
    })
}

/// The path as the file system resolves it, also for a file that does not exist yet.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = path.canonicalize() {
        return Some(path);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(path.file_name()?))
}

fn refuse_overwriting_inputs(jobs: &[Job]) -> Result<()> {
    let inputs: HashSet<PathBuf> = jobs.iter().filter_map(|j| resolved(&j.input)).collect();
    for output in jobs.iter().flat_map(|j| &j.outputs) {
        if resolved(output).is_some_and(|o| inputs.contains(&o)) {
            bail!(
                "refusing to overwrite input '{}' with an output",
                output.display()
            );
        }
    }
    Ok(())
}

fn filter_one(
    engine: &mut Option<Engine>,
    args: &FilterArgs,
    operation: &Operation,
    job: &Job,
) -> Result<()> {
    let start = Instant::now();
    let image = io::load_gray_limited(&job.input, args.max_pixels)?;
    let decode = start.elapsed();
    let engine = match engine {
        Some(engine) => engine,
        None => engine.insert(crate::open_engine(args.backend.into())?),
    };
    let (output, mut timings) = engine
        .run_timed(&image, operation)
        .with_context(|| format!("filtering '{}'", job.input.display()))?;
    timings.decode = Some(decode);

    let start = Instant::now();
    let FilterOutput {
        combined,
        responses,
    } = output;
    for (image, path) in combined.iter().chain(&responses).zip(&job.outputs) {
        io::save_gray(image, path)?;
    }
    timings.encode = Some(start.elapsed());
    if args.timings {
        eprintln!(
            "{}: {} [{}]",
            job.input.display(),
            timings,
            engine.describe()
        );
    }
    Ok(())
}
