//! `gpuconv filter`: files in, files out; all filtering is the library's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use gpuconv::pipeline::{self, Destination, Settings, SharedEngine, Source};
use gpuconv::{Combine, Operation, io};

use crate::args::{FilterArgs, OperationArgs};
use crate::inputs::{Inputs, is_standard};
use crate::progress::Progress;
use crate::usage;

/// Where the outputs go: one file (or standard output) when one input gives one image, else a
/// folder, each input's outputs named after it.
enum Plan {
    One(Job),
    Folder {
        folder: PathBuf,
        /// The outputs' format, as an extension.
        extension: String,
    },
}

impl Plan {
    /// The job for `input` in a folder plan.
    fn job(folder: &Path, extension: &str, input: PathBuf, operation: &Operation) -> Job {
        let stem = if is_standard(&input) {
            std::ffi::OsStr::new("stdin")
        } else {
            input
                .file_stem()
                .unwrap_or_else(|| std::ffi::OsStr::new("image"))
        };
        let outputs = gpuconv::pipeline::batch::output_paths(folder, stem, operation, extension);
        Job {
            input,
            outputs,
            refused: None,
        }
    }
}

/// One input and the files its outputs go to, in [`FilterOutput`] order: the combined image
/// first, if any, then the responses.
struct Job {
    input: PathBuf,
    outputs: Vec<PathBuf>,
    /// Why this job may not run, found when a list named it (an output written twice, an input
    /// overwritten): it fails alone, as a bad input does.
    refused: Option<anyhow::Error>,
}

pub fn run(args: &FilterArgs) -> Result<()> {
    let operation = operation(args)?;
    if args.unclipped {
        return unclipped(args, &operation);
    }
    let mut inputs = Inputs::open(args)?;
    let plan = plan(args, &mut inputs, &operation)?;
    let limits = io::ReadLimits {
        max_pixels: args.limits.max_pixels,
        max_memory: args.limits.memory_budget(),
        orient: args.orient,
        ..Default::default()
    };
    // Opened once the first input is decoded, so that a bad input is reported alone, without
    // the CPU-fallback notice before it, and `auto` weighs the job by a real input; then shared
    // by every input, and re-opened after a lost GPU device.
    let choice = args.backend.into();
    let engine = SharedEngine::deferred(move |workload| crate::open_engine(choice, workload));
    let one = |job: &Job| {
        filter_one(&engine, args, &limits, &operation, job, Some(1), true)
            .map(drop)
            .map_err(|(Failure::Input(error) | Failure::Run(error))| error)
            .map(|()| Done {
                failures: 0,
                total: 1,
            })
    };
    // A list that failed part way (a line too long, standard input named twice) ends the
    // inputs there: those before it are filtered, then its error is the run's.
    let list_failed = Arc::new(Mutex::new(None));
    let result = match plan {
        Plan::One(job) => {
            add_jobs(&mut Default::default(), std::slice::from_ref(&job))?;
            // Rust's standard output swallows writes to a closed descriptor: the image would
            // vanish and the run end 0.
            if job.outputs.iter().any(|o| is_standard(o)) && !crate::standard_output_is_open() {
                bail!("standard output is closed: there is nowhere to write the image");
            }
            one(&job)
        }
        Plan::Folder { folder, extension } => {
            // The inputs known now are checked before anything is read; the list's as it is
            // read, each refused alone.
            let known: Vec<Job> = std::mem::take(&mut inputs.known)
                .into_iter()
                .map(|input| Plan::job(&folder, &extension, input, &operation))
                .collect();
            let mut check = gpuconv::pipeline::batch::OutputCheck::default();
            add_jobs(&mut check, &known)?;
            create_output_folder(&folder)?;
            let count = inputs.all_known().then_some(known.len());
            if count == Some(1) {
                one(&known[0])
            } else {
                let operation_ = &operation;
                let listed = inputs.into_iter(list_failed.clone()).map(move |input| {
                    let mut job = Plan::job(&folder, &extension, input, operation_);
                    if let Err(error) = add_jobs(&mut check, std::slice::from_ref(&job)) {
                        job.refused = Some(error);
                    }
                    job
                });
                let progress = Progress::files(count, args.quiet);
                let done = batch(
                    &engine,
                    args,
                    &limits,
                    &operation,
                    known.into_iter().chain(listed),
                    count,
                    &progress,
                );
                progress.finish();
                done
            }
        }
    };
    engine.inspect(|engine| engine.map(crate::save_pipeline_cache));
    remove_unfilled_folders();
    let done = result?;
    if done.failures > 0 {
        eprintln!(
            "gpuconv: {} written, {} failed (of {} inputs)",
            done.total - done.failures,
            done.failures,
            done.total
        );
    }
    if let Some(error) = list_failed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(error);
    }
    if done.failures > 0 {
        return Err(crate::Reported.into());
    }
    if args.timings
        && let Some(peak) = peak_resident_mib()
    {
        eprintln!("peak resident memory: {peak:.0} MiB");
    }
    Ok(())
}

/// `--unclipped`: one input read whole, its unclipped `|V| + |H|` written as one 16-bit file.
fn unclipped(args: &FilterArgs, operation: &Operation) -> Result<()> {
    let [input] = &args.inputs[..] else {
        bail!(
            "--unclipped writes one 16-bit image: give one input, not {}",
            args.inputs.len()
        );
    };
    if is_standard(input) || is_standard(&args.output) || args.output.is_dir() {
        bail!(
            "--unclipped reads one file and writes one file (.png, .pgm or .tif), not standard input or output or a folder"
        );
    }
    // Refused before any work: kernels beyond 16 bits, an output the input's own file.
    pipeline::check_unclipped_edge(operation)?;
    io::output_format(&args.output)?;
    add_jobs(
        &mut Default::default(),
        &[Job {
            input: input.clone(),
            outputs: vec![args.output.clone()],
            refused: None,
        }],
    )?;
    let budget = args.limits.memory_budget();
    let limits = io::ReadLimits {
        max_pixels: args.limits.max_pixels,
        max_memory: budget,
        orient: args.orient,
        ..Default::default()
    };
    let image = io::load_gray_with(input, &limits)?;
    let (width, height) = image.dimensions();
    let needed =
        u64::from(width) * u64::from(height) * (1 + pipeline::UNCLIPPED_EDGE_BYTES_PER_PIXEL);
    if needed > budget {
        bail!(
            "'{}' is {width}×{height}: its unclipped edge image needs {} in memory (the image, two 32-bit sums and the 16-bit result), over the memory budget of {} (--max-memory)",
            gpuconv::text::escape_path(input),
            io::format_bytes(needed),
            io::format_bytes(budget)
        );
    }
    let workload = gpuconv::Workload {
        pixels: u64::from(width) * u64::from(height),
        kernels: 2,
        outputs: 2,
        images: Some(1),
        on_gpu: false,
    };
    let mut engine = crate::open_engine(args.backend.into(), &workload)?;
    let edges = pipeline::unclipped_edge(&mut engine, &gpuconv::view(&image), operation)?;
    io::save_gray16(&edges, &args.output)?;
    Ok(())
}

/// How many inputs a run filtered, and how many of them failed.
struct Done {
    failures: usize,
    total: usize,
}

/// Filters a batch with the library's scheduler ([`gpuconv::pipeline::batch`]): several inputs at once,
/// one per worker thread, so that decoding and encoding (most of the time for small images) use
/// every core while the shared engine filters one image (or band) at a time. Each worker reads
/// within its share of the memory budget, band by band when the formats allow; an input too
/// large for that share, and standard input (which can be read once), is filtered after the
/// others, alone, with the whole budget. Messages come out in input order (deferred inputs' last).
/// `jobs` are taken as they come (`count` of them, when known). A run-wide failure (no GPU)
/// stops the batch.
fn batch(
    engine: &Arc<SharedEngine>,
    args: &FilterArgs,
    limits: &io::ReadLimits,
    operation: &Operation,
    jobs: impl Iterator<Item = Job> + Send,
    count: Option<usize>,
    progress: &Progress,
) -> Result<Done> {
    let plan = gpuconv::pipeline::batch::Batch::new(count.unwrap_or(usize::MAX), limits.max_memory);
    let mut done = Done {
        failures: 0,
        total: 0,
    };
    gpuconv::pipeline::batch::run(
        &plan,
        jobs,
        |job| is_standard(&job.input),
        |job, share| {
            let limits = io::ReadLimits {
                max_memory: share.max_memory,
                ..*limits
            };
            filter_one(
                engine,
                args,
                &limits,
                operation,
                job,
                count.map(|c| c as u64),
                false,
            )
        },
        |_, outcome| {
            done.total += 1;
            match outcome {
                Ok(pixels) => progress.file_done(pixels),
                // A batch goes on: every good input is written, every bad one named. (A
                // run-wide failure is never reported: it ends the batch below.)
                Err(Failure::Input(error) | Failure::Run(error)) => {
                    progress.eprintln(&format!(
                        "gpuconv: error: {}{}",
                        crate::one_line(&error),
                        crate::hint(&error)
                    ));
                    done.failures += 1;
                    progress.file_done(0);
                }
            }
        },
    )
    .map_err(|(Failure::Input(error) | Failure::Run(error))| error)?;
    Ok(done)
}

impl gpuconv::pipeline::batch::BatchError for Failure {
    fn kind(&self) -> gpuconv::ErrorKind {
        match self {
            Failure::Run(_) => gpuconv::ErrorKind::RunWide,
            Failure::Input(_) => gpuconv::ErrorKind::Input,
        }
    }

    /// Only an input's failure for want of a worker's share of the memory budget.
    fn is_over_budget(&self) -> bool {
        let Failure::Input(error) = self else {
            return false;
        };
        error
            .downcast_ref::<gpuconv::Error>()
            .is_some_and(gpuconv::Error::is_over_budget)
    }
}

/// Why an input was not filtered.
enum Failure {
    /// This input is bad (unreadable, corrupt, too small, too large) or its output could not be
    /// written: a batch goes on with the next.
    Input(anyhow::Error),
    /// Nothing can be filtered (no GPU where one was asked for): the run stops.
    Run(anyhow::Error),
}

impl Failure {
    /// A library error from filtering, with what was being done: the run stops for a run-wide
    /// one (a GPU lost mid-batch, say), else this input alone failed.
    fn of(error: gpuconv::Error, doing: String) -> Self {
        let run_wide = error.kind() == gpuconv::ErrorKind::RunWide;
        let error = if error.path().is_some() {
            anyhow::Error::from(error)
        } else {
            anyhow::Error::from(error).context(doing)
        };
        if run_wide {
            Failure::Run(error)
        } else {
            Failure::Input(error)
        }
    }
}

/// The folders this run created for its outputs, outermost first, so that a run that fills
/// none of them (or is stopped) can remove them again.
static CREATED_FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Creates `folder` and any missing parents, remembering which ones this run made.
fn create_output_folder(folder: &Path) -> Result<()> {
    let missing: Vec<PathBuf> = folder
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_err())
        .map(Path::to_path_buf)
        .collect();
    // Listed before they exist, so that a signal during `create_dir_all` removes them too.
    CREATED_FOLDERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(missing.into_iter().rev());
    std::fs::create_dir_all(folder).with_context(|| {
        format!(
            "cannot create output folder '{}'",
            gpuconv::text::escape_path(folder)
        )
    })
}

/// Removes the folders this run created that are still empty, innermost first (a folder
/// holding anything, the user's files included, stays).
pub fn remove_unfilled_folders() {
    let mut created = CREATED_FOLDERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for folder in created.drain(..).rev() {
        let _ = std::fs::remove_dir(folder);
    }
}

/// The process's peak resident memory so far, where the system says (Linux's `VmHWM`).
fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn operation(args: &FilterArgs) -> Result<Operation> {
    build_operation(&args.operation, args.responses)
}

/// The operation that `-k`, `--edge`, `--threshold`, `--border` and `--responses` ask for, in
/// the library's words and the command line's messages.
pub fn build_operation(chosen: &OperationArgs, responses: bool) -> Result<Operation> {
    let combine = match (chosen.edge, chosen.threshold) {
        (_, Some(t)) => Combine::Threshold(t),
        (true, None) => Combine::Edge,
        (false, None) => Combine::None,
    };
    Operation::from_words(&chosen.kernels, combine, responses, chosen.border.0).map_err(
        |error| match error {
            gpuconv::Error::NoKernel => {
                usage("no kernel given: add -k KERNEL (for example -k vertical), or --edge")
            }
            gpuconv::Error::ResponsesWithoutCombine => usage(
                "--responses only makes sense with --edge or --threshold (every kernel's response is written anyway)",
            ),
            other => usage(other),
        },
    )
}

/// Where every output goes: `-o` is the file when one input gives one image, else a folder.
/// Reads the list just far enough to know which (two inputs), unless `-o` names a folder.
fn plan(args: &FilterArgs, inputs: &mut Inputs, operation: &Operation) -> Result<Plan> {
    let names = operation.output_names();
    let output = &args.output;
    // `-o out/` or an existing folder asks for a folder even when one file comes out.
    let names_folder = output.is_dir()
        || output
            .as_os_str()
            .to_string_lossy()
            .ends_with(std::path::MAIN_SEPARATOR);
    if !names_folder {
        inputs.read_ahead(2)?;
    }
    // How many images this run writes, as far as is known.
    let count = || {
        let count = inputs.known.len() * names.len();
        if inputs.all_known() {
            count.to_string()
        } else {
            format!("{count} or more")
        }
    };
    let one_image = inputs.known.len() == 1 && inputs.all_known() && names.len() == 1;
    if is_standard(output) {
        if !one_image {
            bail!(usage(format!(
                "-o - writes one image to standard output, and this run writes {}: name a folder instead",
                count()
            )));
        }
        let extension = args.format.as_deref().unwrap_or("png");
        let example = PathBuf::from(format!("out.{}", extension.trim_start_matches('.')));
        io::output_format(&example).map_err(|e| usage(format!("--format {extension}: {e}")))?;
        refuse_gray_bitmaps(&example, operation)?;
        return Ok(Plan::One(Job {
            input: inputs.known[0].clone(),
            outputs: vec![output.clone()],
            refused: None,
        }));
    }

    if one_image && !names_folder {
        if let Some(format) = &args.format {
            bail!(usage(format!(
                "--format {format} applies to outputs written into a folder; the extension of -o picks this file's format"
            )));
        }
        io::check_output_folder(output)?;
        io::output_format(output).map_err(usage)?;
        refuse_gray_bitmaps(output, operation)?;
        return Ok(Plan::One(Job {
            input: inputs.known[0].clone(),
            outputs: vec![output.clone()],
            refused: None,
        }));
    }

    if output.exists() && !output.is_dir() {
        bail!(usage(format!(
            "'{}' is a file, but {} images are written, so -o must name a folder",
            gpuconv::text::escape_path(output),
            count()
        )));
    }
    if !output.exists() && !names_folder && io::output_format(output).is_ok() {
        bail!(usage(format!(
            "'{}' looks like a file name, but {} images are written, so -o must name a folder (end it with '/' to create one)",
            gpuconv::text::escape_path(output),
            count()
        )));
    }
    let extension = args
        .format
        .as_deref()
        .unwrap_or("png")
        .trim_start_matches('.');
    let example = PathBuf::from(format!("out.{extension}"));
    io::output_format(&example).map_err(|e| usage(format!("--format {extension}: {e}")))?;
    refuse_gray_bitmaps(&example, operation)?;
    Ok(Plan::Folder {
        folder: output.clone(),
        extension: extension.to_owned(),
    })
}

/// Refuses `.pbm` outputs for gray images: a bitmap holds black and white only.
fn refuse_gray_bitmaps(path: &Path, operation: &Operation) -> Result<()> {
    let binary =
        matches!(operation.combine(), Combine::Threshold(_)) && !operation.keeps_responses();
    if io::is_bitmap_path(path) && !binary {
        bail!(usage(
            "a .pbm file holds only black and white: write it with --threshold T (and no --responses), or write .pgm for gray"
        ));
    }
    Ok(())
}

/// Refuses outputs that would overwrite an input or be written twice, before anything is read:
/// `jobs` checked against each other and the jobs `check` has seen (standard input and output
/// aside), and added to them.
fn add_jobs(check: &mut gpuconv::pipeline::batch::OutputCheck, jobs: &[Job]) -> Result<()> {
    let inputs = jobs.iter().map(|j| j.input.as_path());
    let outputs = jobs.iter().flat_map(|j| &j.outputs).map(PathBuf::as_path);
    let not_standard = |path: &&Path| !is_standard(path);
    check
        .add(inputs.filter(not_standard), outputs.filter(not_standard))
        .map_err(|error| match error {
            gpuconv::Error::OutputTwice { .. } => usage(format!(
                "{error} (inputs with the same name, or kernels with the same name: use NAME=... to tell them apart)"
            )),
            other => other.into(),
        })
}

/// Filters one input into its outputs with the library's pipeline (band by band when the
/// formats allow); the input's pixel count. `alone`: the only input, which gets a bar of its
/// rows when it is large (a batch has its bar of files).
fn filter_one(
    engine: &Arc<SharedEngine>,
    args: &FilterArgs,
    limits: &io::ReadLimits,
    operation: &Operation,
    job: &Job,
    images: Option<u64>,
    alone: bool,
) -> std::result::Result<u64, Failure> {
    if let Some(refused) = &job.refused {
        return Err(Failure::Input(anyhow::anyhow!("{refused:#}")));
    }
    let source = if is_standard(&job.input) {
        Source::Bytes {
            bytes: read_standard_input(limits).map_err(Failure::Input)?,
            name: "standard input".to_owned(),
        }
    } else {
        Source::File(job.input.clone())
    };
    let extension = args.format.as_deref().unwrap_or("png");
    let to_standard_output = job.outputs.iter().any(|o| is_standard(o));
    // Band by band, the image goes out as it is encoded, never held whole.
    let pipe = StandardOutput::default();
    let destination = if to_standard_output {
        Destination::Streamed {
            extension: extension.to_owned(),
            to: pipeline::Outlet::new(pipe.clone()),
        }
    } else {
        Destination::Files(job.outputs.clone())
    };
    let bar = RowsBar {
        shown: alone && !args.quiet,
        progress: OnceLock::new(),
    };
    let settings = Settings {
        limits: *limits,
        timed: args.timings,
        images,
        observer: &bar,
        input_format: args.input_format,
        compression: args.compression,
        ..Settings::new(operation)
    };
    let filtered =
        pipeline::filter_image(engine, &source, &destination, &settings).map_err(|error| {
            if pipe.is_broken() {
                // The reader stopped reading (`| head`): nothing to say, as other tools in a
                // pipeline say nothing, but the image was not all written.
                return Failure::Input(crate::Reported.into());
            }
            if let gpuconv::Error::Write { reason, .. } = &error
                && to_standard_output
            {
                return Failure::Input(anyhow::anyhow!(
                    "cannot write to standard output: {reason}"
                ));
            }
            // Reading and writing errors name their file already; the filter's do not.
            let doing = format!("filtering '{}'", source.name());
            Failure::of(error, doing)
        })?;
    if let Some(progress) = bar.progress.get() {
        progress.finish();
    }
    if let Some(bytes) = filtered.encoded.first() {
        write_standard_output(bytes).map_err(Failure::Input)?;
    }
    if args.timings {
        let streamed = if filtered.streamed {
            " (streamed: stages overlap)"
        } else {
            ""
        };
        eprintln!(
            "{}: {}{streamed} [{}]",
            source.name(),
            filtered.timings,
            engine.description().unwrap_or_default()
        );
    }
    Ok(filtered.pixels())
}

/// A bar of the rows written, for one large image streamed alone.
struct RowsBar {
    shown: bool,
    progress: OnceLock<Progress>,
}

impl pipeline::Observer for RowsBar {
    fn started(&self, (width, height): (u32, u32), streamed: bool) {
        if self.shown && streamed {
            self.progress
                .get_or_init(|| Progress::rows(width, height, false));
        }
    }

    fn rows_written(&self, rows: u32) {
        if let Some(progress) = self.progress.get() {
            progress.rows_done(u64::from(rows));
        }
    }
}

/// The file on standard input, read whole (no more bytes than the memory budget): decoded
/// from memory, band by band when its format allows.
fn read_standard_input(limits: &io::ReadLimits) -> Result<gpuconv::pipeline::Bytes> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(limits.max_memory.saturating_add(1))
        .read_to_end(&mut bytes)
        .context("cannot read standard input")?;
    if bytes.len() as u64 > limits.max_memory {
        bail!(
            "standard input holds more than the memory budget of {} (--max-memory sets another)",
            io::format_bytes(limits.max_memory)
        );
    }
    if bytes.is_empty() {
        bail!("standard input is empty: no image to read");
    }
    Ok(bytes.into())
}

/// Writes an encoded image to standard output, and nothing else.
fn write_standard_output(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = StandardOutput::default();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(_) if out.is_broken() => Err(crate::Reported.into()),
        result => result.context("cannot write to standard output"),
    }
}

/// Standard output, remembering whether its reader went away (a broken pipe), which ends the
/// run quietly.
#[derive(Clone, Default)]
struct StandardOutput {
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl StandardOutput {
    fn is_broken(&self) -> bool {
        self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn remember<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(error) = &result
            && error.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.broken
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }
}

impl std::io::Write for StandardOutput {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = std::io::stdout().lock().write(bytes);
        self.remember(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = std::io::stdout().lock().flush();
        self.remember(flushed)
    }
}
