//! `gpuconv bench`: both backends over a range of sizes, stage by stage.

use std::io::Cursor;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gpuconv::gpu::yardstick;
use gpuconv::{CpuBackend, Engine, FilterOutput, GpuEngine, Operation, Timings};
use image::{GrayImage, ImageFormat};

use crate::args::BenchArgs;
use crate::usage;

/// One measured configuration, as printed and as written to `--json`.
struct Row {
    width: u32,
    height: u32,
    op: String,
    backend: String,
    /// `host` for an image from host memory and back; `resident SOURCE→TARGET` for a pass over
    /// buffers or textures already on the GPU (kernel time only).
    path: String,
    /// Median stage times in milliseconds (decode and encode: PNG in memory, measured once).
    stages: Vec<(&'static str, Option<f64>)>,
    mpx_per_s: Option<f64>,
    gb_per_s: Option<f64>,
    /// The same backend's copy bandwidth on a buffer the input's size: bytes read plus written
    /// (on the GPU, the WGSL copy kernel's, from timestamps).
    copy_gb_per_s: Option<f64>,
    /// How many times faster than the CPU backend's compute on the same image and operation.
    vs_cpu: Option<f64>,
    /// `ok` when every output equals the CPU backend's bit for bit, else what differs.
    check: String,
    error: Option<String>,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.startup {
        return startup(args);
    }
    let operations = split_ops(&args.ops)
        .iter()
        .map(|op| Ok(operation(op)?.with_border(args.border.0)))
        .collect::<Result<Vec<_>>>()?;
    let most_outputs = operations
        .iter()
        .map(Operation::output_count)
        .max()
        .unwrap_or(1) as u64;
    let budget = args
        .max_memory
        .unwrap_or_else(gpuconv::io::default_memory_budget);
    let given = args
        .input
        .as_deref()
        .map(|path| {
            let limits = gpuconv::io::ReadLimits {
                max_memory: budget,
                // The expected outputs and each backend's own.
                output_images: 2 * most_outputs,
                ..Default::default()
            };
            gpuconv::io::load_gray_with(path, &limits)
        })
        .transpose()?;
    let sizes = match &given {
        Some(image) => vec![(image.width(), image.height())],
        None => parse_sizes(&args.sizes)?,
    };
    for &(width, height) in &sizes {
        // The image, its PNG and the decoded copy, the expected outputs and a backend's, and
        // the two buffers of the copy-bandwidth measurement.
        let pixels = u64::from(width) * u64::from(height);
        let needed = pixels
            .saturating_mul(3 + 2 * most_outputs)
            .saturating_add(pixels.max(16 << 20).saturating_mul(2));
        if needed > budget {
            bail!(
                "size {width}x{height} needs about {} to benchmark, more than the memory budget of {} (raise it with --max-memory)",
                gpuconv::io::format_bytes(needed),
                gpuconv::io::format_bytes(budget)
            );
        }
    }
    let mut backends: Vec<(String, Engine)> = Vec::new();
    if args.backend != "gpu" {
        backends.push((
            format!("cpu ({} threads)", rayon::current_num_threads()),
            Engine::from(CpuBackend::new()),
        ));
    }
    if args.backend != "cpu" {
        match GpuEngine::new() {
            Ok(mut gpu) => {
                gpu.set_max_strip_rows(args.strip_rows);
                if let Some(rows) = args.rows_per_invocation {
                    gpu.set_rows_per_invocation(rows);
                }
                let name = format!(
                    "gpu ({}, {} rows/inv)",
                    gpu.adapter_info().name,
                    gpu.rows_per_invocation()
                );
                backends.push((name, Engine::from_gpu(gpu)));
            }
            Err(error) if args.backend == "gpu" => bail!(error),
            Err(error) => eprintln!("gpuconv bench: no GPU ({error}); CPU only"),
        }
    }

    let mut rows = Vec::new();
    println!(
        "{:>13} {:>5} {:<32} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7} {:>6}  check",
        "size",
        "op",
        "backend",
        "decode",
        "upload",
        "compute",
        "kernel",
        "readback",
        "encode",
        "total",
        "into",
        "Mpx/s",
        "GB/s",
        "copy",
        "%copy"
    );
    for &(width, height) in &sizes {
        let image = match &given {
            Some(image) => image.clone(),
            None => synthetic(width, height),
        };
        let png = encode_png(&image)?;
        let start = Instant::now();
        let decoded = image::load_from_memory_with_format(&png, ImageFormat::Png)?;
        let decode = start.elapsed();
        drop(decoded);
        // The image's own bytes: GPU timestamps time even a small copy. The CPU's wall clock
        // needs at least 16 MiB to rise above its noise.
        let pixels = u64::from(width) * u64::from(height);
        let copies: Vec<Option<f64>> = backends
            .iter()
            .map(|(name, engine)| {
                let bytes = if engine.is_gpu() {
                    pixels
                } else {
                    pixels.max(16 << 20)
                };
                copy_gb_per_s(name, engine, bytes, args.repeat)
            })
            .collect();
        for (op, operation) in split_ops(&args.ops).into_iter().zip(&operations) {
            let outputs = operation.output_count() as u64;
            let expected = CpuBackend::new().run(&image, operation)?;
            let mut encode = None;
            for ((name, engine), &copy_gb_per_s) in backends.iter_mut().zip(&copies) {
                let measured = measure(engine, &image, operation, args.repeat);
                let check = match &measured {
                    Ok((_, _, output)) => compare(output, &expected),
                    Err(_) => String::new(),
                };
                let row = measured.map(|(timings, into, output)| {
                    if encode.is_none() {
                        let first = output
                            .combined
                            .as_ref()
                            .or(output.responses.first())
                            .expect("one image");
                        let start = Instant::now();
                        if encode_png(first).is_ok() {
                            encode = Some(start.elapsed());
                        }
                    }
                    (timings, into)
                });
                let bytes = u64::from(width) * u64::from(height)
                    + outputs * u64::from(width - 2) * u64::from(height - 2);
                let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1e3);
                let row = match row {
                    Ok((t, into)) => {
                        let busy = t.kernel.or(t.compute).expect("compute is always timed");
                        Row {
                            width,
                            height,
                            op: op.to_owned(),
                            backend: name.clone(),
                            stages: vec![
                                ("decode", ms(Some(decode))),
                                ("upload", ms(t.upload)),
                                ("compute", ms(t.compute)),
                                ("kernel", ms(t.kernel)),
                                ("readback", ms(t.readback)),
                                ("encode", ms(encode)),
                                ("total", ms(t.total)),
                                ("into", ms(into)),
                            ],
                            mpx_per_s: Some(
                                f64::from(width) * f64::from(height) / busy.as_secs_f64() / 1e6,
                            ),
                            gb_per_s: Some(bytes as f64 / busy.as_secs_f64() / 1e9),
                            copy_gb_per_s,
                            vs_cpu: None,
                            path: "host".to_owned(),
                            check,
                            error: None,
                        }
                    }
                    Err(error) => Row {
                        width,
                        height,
                        op: op.to_owned(),
                        backend: name.clone(),
                        stages: Vec::new(),
                        mpx_per_s: None,
                        gb_per_s: None,
                        copy_gb_per_s,
                        vs_cpu: None,
                        path: "host".to_owned(),
                        check,
                        error: Some(format!("{error:#}")),
                    },
                };
                print_row(&row);
                rows.push(row);
                if let Some(gpu) = engine.gpu().filter(|_| !args.no_resident) {
                    // The CPU backend's row of this image and operation, timed just before.
                    let cpu_ms = rows
                        .iter()
                        .rev()
                        .find(|r| {
                            r.backend.starts_with("cpu")
                                && (r.op.as_str(), r.width, r.height)
                                    == (op.as_str(), width, height)
                        })
                        .and_then(|r| r.stages.iter().find(|(n, _)| *n == "compute"))
                        .and_then(|(_, ms)| *ms);
                    for row in resident_rows(
                        gpu,
                        name,
                        &image,
                        operation,
                        &op,
                        &expected,
                        args.repeat,
                        copy_gb_per_s,
                        cpu_ms,
                    ) {
                        print_row(&row);
                        rows.push(row);
                    }
                }
            }
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, to_json(&rows))
            .with_context(|| format!("writing {}", gpuconv::text::escape_path(path)))?;
        println!("wrote {}", gpuconv::text::escape_path(path));
    }
    Ok(())
}

/// `--ops` split at its commas, except those inside a kernel's rows: a kernel written as numbers
/// (`1,0,-1;2,0,-2;1,0,-1`, maybe after `NAME=`) runs on until it has its nine weights.
fn split_ops(list: &str) -> Vec<String> {
    let mut ops: Vec<String> = Vec::new();
    let mut open = false;
    for token in list.split(',') {
        let token = token.trim();
        match ops.last_mut() {
            Some(last) if open => {
                last.push(',');
                last.push_str(token);
            }
            _ => ops.push(token.to_owned()),
        }
        let last = ops.last().expect("just pushed");
        let weights = last.rsplit('=').next().unwrap_or(last);
        let numeric = weights.starts_with(|c: char| c.is_ascii_digit() || "-+.".contains(c));
        open = numeric && weights.split([',', ';']).count() < 9;
    }
    ops
}

/// `--startup`: process start to first result, for each backend, as a user meets it; plus, for
/// the GPU, where its time goes inside the process.
fn startup(args: &BenchArgs) -> Result<()> {
    let folder = tempfile::tempdir().context("creating a temporary folder")?;
    let input = folder.path().join("startup.png");
    let output = folder.path().join("startup-edge.png");
    let (width, height) = (512, 512);
    gpuconv::io::save_gray(&synthetic(width, height), &input)?;
    let exe = std::env::current_exe().context("finding the gpuconv executable")?;
    let backends: &[&str] = match args.backend.as_str() {
        "cpu" => &["cpu"],
        "gpu" => &["gpu"],
        _ => &["cpu", "auto", "gpu"],
    };
    let runs = args.repeat;
    println!(
        "start-up: process start to the edge image of a {width}x{height} PNG written, a fresh \
         `gpuconv filter` process per run, median of {runs} after one warm-up"
    );
    let mut records = Vec::new();
    for backend in backends {
        let mut times = Vec::new();
        let mut failure = None;
        for run in 0..=runs {
            let start = Instant::now();
            let result = std::process::Command::new(&exe)
                .arg("filter")
                .arg(&input)
                .args(["--edge", "--backend", backend, "-o"])
                .arg(&output)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
                .context("starting gpuconv")?;
            let elapsed = start.elapsed();
            if !result.status.success() {
                let stderr = String::from_utf8_lossy(&result.stderr);
                failure = Some(
                    stderr
                        .lines()
                        .last()
                        .map_or_else(|| result.status.to_string(), str::to_owned),
                );
                break;
            }
            if run > 0 {
                times.push(elapsed);
            }
        }
        times.sort();
        let median = times.get(times.len() / 2).map(|t| t.as_secs_f64() * 1e3);
        match (&failure, median) {
            (Some(error), _) => println!("  {backend:>4}: failed: {error}"),
            (None, Some(ms)) => println!("  {backend:>4}: {ms:.1} ms"),
            (None, None) => unreachable!("at least one run"),
        }
        records.push(serde_json::json!({
            "op": "startup",
            "backend": backend,
            "width": width,
            "height": height,
            "startup_ms": median,
            "runs": runs,
            "error": failure,
        }));
    }
    if args.backend != "cpu" {
        // Inside the process: what opening the GPU costs, step by step.
        let start = Instant::now();
        let instance = gpuconv::gpu::device::instance_from_env();
        let adapter = pollster::block_on(gpuconv::gpu::device::select_adapter(&instance));
        let adapter_time = start.elapsed();
        if let Ok(adapter) = adapter {
            let start = Instant::now();
            let engine = pollster::block_on(GpuEngine::from_adapter(&adapter))?;
            let engine_time = start.elapsed();
            let image = synthetic(width, height);
            let operation = operation("edge")?;
            let start = Instant::now();
            let mut engine = Engine::from_gpu(engine);
            engine.run(&image, &operation)?;
            let first_run = start.elapsed();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            println!(
                "  gpu, in process ({}): instance and adapter {:.1} ms, device and pipeline \
                 {:.1} ms, first {width}x{height} edge image {:.1} ms",
                adapter.get_info().name,
                ms(adapter_time),
                ms(engine_time),
                ms(first_run)
            );
            records.push(serde_json::json!({
                "op": "startup-in-process",
                "backend": format!("gpu ({})", adapter.get_info().name),
                "adapter_ms": ms(adapter_time),
                "device_and_pipeline_ms": ms(engine_time),
                "first_run_ms": ms(first_run),
            }));
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&records).expect("plain values serialise") + "\n";
        std::fs::write(path, text)
            .with_context(|| format!("writing {}", gpuconv::text::escape_path(path)))?;
        println!("wrote {}", gpuconv::text::escape_path(path));
    }
    Ok(())
}

fn operation(op: &str) -> Result<Operation> {
    let (kernels, combine): (Vec<&str>, _) = match op {
        "edge" => (Vec::new(), gpuconv::Combine::Edge),
        kernels => (kernels.split('+').collect(), gpuconv::Combine::None),
    };
    Operation::from_words(&kernels, combine, false, gpuconv::Border::Valid)
        .with_context(|| format!("--ops: '{op}' is neither 'edge' nor kernels"))
}

/// `WxH,WxH,...`: each at least 3×3, the smallest image a 3×3 kernel has an output for.
fn parse_sizes(text: &str) -> Result<Vec<(u32, u32)>> {
    text.split(',')
        .map(|size| {
            let size = size.trim();
            let parsed = size
                .split_once('x')
                .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
            match parsed {
                Some((w, h)) if w >= 3 && h >= 3 => Ok((w, h)),
                Some(_) => bail!(usage(format!(
                    "size '{size}' is smaller than the 3x3 kernel"
                ))),
                None => bail!(usage(format!(
                    "size '{size}' is not WIDTHxHEIGHT (for example 4096x4096)"
                ))),
            }
        })
        .collect()
}

/// One warm-up run, then `repeat` timed runs; the median of each stage, and the first output.
/// Then `repeat` untimed runs into the same output buffers (`run_into`, which allocates
/// nothing), timed with the wall clock: their median is the second value, `None` if they
/// failed.
fn measure(
    engine: &mut Engine,
    image: &GrayImage,
    operation: &Operation,
    repeat: u32,
) -> Result<(Timings, Option<Duration>, FilterOutput)> {
    let (first, _) = engine.run_timed(image, operation)?;
    let runs = (0..repeat)
        .map(|_| engine.run_timed(image, operation).map(|(_, t)| t))
        .collect::<gpuconv::Result<Vec<_>>>()?;
    let mut planes: Vec<Vec<u8>> = first
        .combined
        .iter()
        .chain(&first.responses)
        .map(|plane| plane.as_raw().clone())
        .collect();
    let mut outputs: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
    let mut into: Vec<Duration> = (0..repeat)
        .map_while(|_| {
            let start = Instant::now();
            engine.run_into(image, operation, &mut outputs).ok()?;
            Some(start.elapsed())
        })
        .collect();
    into.sort();
    let into = (into.len() == repeat as usize).then(|| into[into.len() / 2]);
    let median = |stage: fn(&Timings) -> Option<Duration>| {
        let mut values: Vec<Duration> = runs.iter().filter_map(stage).collect();
        values.sort();
        values.get(values.len() / 2).copied()
    };
    let timings = Timings {
        upload: median(|t| t.upload),
        compute: median(|t| t.compute),
        kernel: median(|t| t.kernel),
        readback: median(|t| t.readback),
        total: median(|t| t.total),
        ..Timings::default()
    };
    Ok((timings, into, first))
}

/// The backend's copy bandwidth in GB/s (bytes read plus bytes written), on a buffer of `bytes`
/// (`None` when it could not be measured): on the GPU the WGSL copy kernel's, from timestamps
/// (the wall clock's when the device has none); on the CPU a copy between two vectors on all
/// threads. On the GPU it also prints the three copy figures beside the card's rated bandwidth.
fn copy_gb_per_s(name: &str, engine: &Engine, bytes: u64, repeat: u32) -> Option<f64> {
    let gb_per_s = |time: Duration, bytes: u64| {
        let gb = 2.0 * bytes as f64 / time.as_secs_f64() / 1e9;
        gb.is_finite().then_some(gb)
    };
    let repeat = repeat.max(3);
    let time = match engine.gpu() {
        Some(gpu) => {
            let kernel = yardstick::copy_kernel(gpu, bytes, repeat);
            let buffer = yardstick::copy_buffer(gpu, bytes, repeat);
            let wall = time_device_copy(gpu, bytes);
            let show =
                |figure: Option<f64>| figure.map_or("-".to_owned(), |g| format!("{g:.0} GB/s"));
            let kernel_gb = kernel
                .as_ref()
                .ok()
                .copied()
                .flatten()
                .and_then(|t| gb_per_s(t, bytes & !15));
            let buffer_gb = buffer
                .as_ref()
                .ok()
                .copied()
                .flatten()
                .and_then(|t| gb_per_s(t, bytes & !3));
            let wall_gb = wall.and_then(|t| gb_per_s(t, bytes & !3));
            let rated = rated_bandwidth(&gpu.adapter_info().name)
                .map_or("not in gpuconv's table".to_owned(), |tb| {
                    format!("{tb} TB/s")
                });
            println!(
                "# {name}: memory rated {rated}; copying {} MiB, read + written: copy kernel {}, \
                 copy_buffer_to_buffer {} (timestamps), {} (wall clock){}",
                bytes >> 20,
                show(kernel_gb),
                show(buffer_gb),
                show(wall_gb),
                match (&kernel, &buffer) {
                    (Err(e), _) | (_, Err(e)) => format!("; failed: {e}"),
                    _ => String::new(),
                }
            );
            return kernel_gb.or(wall_gb);
        }
        None => {
            use rayon::prelude::*;
            let source = vec![1u8; bytes as usize];
            let mut destination = vec![0u8; bytes as usize];
            let chunk = (1 << 20).max(source.len() / rayon::current_num_threads().max(1) / 4);
            let mut times: Vec<Duration> = (0..6)
                .map(|_| {
                    let start = Instant::now();
                    destination
                        .par_chunks_mut(chunk)
                        .zip(source.par_chunks(chunk))
                        .for_each(|(d, s)| d.copy_from_slice(s));
                    start.elapsed()
                })
                .skip(1)
                .collect();
            std::hint::black_box(&destination);
            times.sort();
            times[times.len() / 2]
        }
    };
    gb_per_s(time, bytes)
}

/// The memory bandwidth a card's maker rates it at, in TB/s, for the cards gpuconv has been
/// measured on or is likely to meet; `None` for others.
fn rated_bandwidth(adapter: &str) -> Option<f64> {
    let name = adapter.to_lowercase();
    [
        ("h200", 4.8),
        ("h100 nvl", 3.9),
        ("h100 pcie", 2.0),
        ("h100", 3.35),
        ("a100-sxm4-80gb", 2.04),
        ("a100", 1.56),
        ("l40s", 0.864),
        ("rtx 4090", 1.008),
    ]
    .into_iter()
    .find(|(key, _)| name.contains(key))
    .map(|(_, tb)| tb)
}

/// The stage columns, in order.
const STAGES: [&str; 8] = [
    "decode", "upload", "compute", "kernel", "readback", "encode", "total", "into",
];

/// Where the pixels of a resident pass live.
#[derive(Clone, Copy)]
enum Resident {
    Buffer,
    Texture(wgpu::TextureFormat),
}

impl Resident {
    fn name(self) -> &'static str {
        match self {
            Resident::Buffer => "buffer",
            Resident::Texture(wgpu::TextureFormat::Rgba8Unorm) => "rgba8",
            Resident::Texture(wgpu::TextureFormat::Rgba8UnormSrgb) => "srgb8",
            Resident::Texture(wgpu::TextureFormat::R32Uint) => "r32uint",
            Resident::Texture(_) => "texture",
        }
    }

    /// Bytes one pixel takes there.
    fn pixel_bytes(self) -> u64 {
        match self {
            Resident::Buffer => 1,
            Resident::Texture(_) => 4,
        }
    }
}

/// The GPU-resident paths `bench` times: buffers to buffers, RGBA and sRGB textures to buffers,
/// buffers to storage textures.
const RESIDENT_PATHS: [(Resident, Resident); 5] = [
    (Resident::Buffer, Resident::Buffer),
    (
        Resident::Texture(wgpu::TextureFormat::Rgba8Unorm),
        Resident::Buffer,
    ),
    (
        Resident::Texture(wgpu::TextureFormat::Rgba8UnormSrgb),
        Resident::Buffer,
    ),
    (
        Resident::Buffer,
        Resident::Texture(wgpu::TextureFormat::R32Uint),
    ),
    (
        Resident::Buffer,
        Resident::Texture(wgpu::TextureFormat::Rgba8Unorm),
    ),
];

/// A resident pass's kernel time (when the device has timestamps) and its output images.
type ResidentRun = (Option<Duration>, Vec<Vec<u8>>);

/// The largest resident target `bench` allocates (and reads back); larger ones are skipped.
const RESIDENT_MAX_BYTES: u64 = 2 << 30;

/// One row per resident path: the image put on the GPU once, the pass prepared once
/// (`GpuEngine::prepare`) and timed on the GPU (`yardstick::pass`), its outputs read back and
/// checked against `expected`.
#[allow(
    clippy::too_many_arguments,
    reason = "one measurement's full description"
)]
fn resident_rows(
    gpu: &GpuEngine,
    backend: &str,
    image: &GrayImage,
    operation: &Operation,
    op: &str,
    expected: &FilterOutput,
    repeat: u32,
    copy_gb_per_s: Option<f64>,
    cpu_ms: Option<f64>,
) -> Vec<Row> {
    let (width, height) = image.dimensions();
    RESIDENT_PATHS
        .iter()
        .filter_map(|&(source, target)| {
            let path = format!("resident {}→{}", source.name(), target.name());
            let row = |check: String, kernel: Option<Duration>, error: Option<String>| {
                let (ow, oh) = operation.output_size(width, height).unwrap_or((0, 0));
                let bytes = u64::from(width) * u64::from(height) * source.pixel_bytes()
                    + u64::from(ow)
                        * u64::from(oh)
                        * u64::from(operation.output_count())
                        * target.pixel_bytes();
                // A zero interval (a software renderer's timestamps) gives no rates.
                let kernel = kernel.filter(|k| !k.is_zero());
                let ms = kernel.map(|k| k.as_secs_f64() * 1e3);
                Row {
                    width,
                    height,
                    op: op.to_owned(),
                    backend: format!("{} {path}", backend.split(" (").next().unwrap_or(backend)),
                    path: path.clone(),
                    // The host path's columns, only the kernel's filled.
                    stages: STAGES
                        .iter()
                        .map(|&stage| (stage, if stage == "kernel" { ms } else { None }))
                        .collect(),
                    mpx_per_s: kernel
                        .map(|k| f64::from(width) * f64::from(height) / k.as_secs_f64() / 1e6),
                    gb_per_s: kernel.map(|k| bytes as f64 / k.as_secs_f64() / 1e9),
                    copy_gb_per_s,
                    vs_cpu: cpu_ms.zip(ms).map(|(cpu, gpu)| cpu / gpu),
                    check,
                    error,
                }
            };
            match resident_run(gpu, image, operation, source, target, repeat) {
                Ok(Some((kernel, outputs))) => {
                    let check = compare_planes(&outputs, expected);
                    Some(row(check, kernel, None))
                }
                Ok(None) => {
                    println!(
                        "# {op} {width}x{height} {path}: skipped, its target would be over {} GiB",
                        RESIDENT_MAX_BYTES >> 30
                    );
                    None
                }
                Err(error) => Some(row(String::new(), None, Some(format!("{path}: {error:#}")))),
            }
        })
        .collect()
}

/// Puts `image` on the GPU as `source`, prepares the pass into a `target`, times it and reads
/// the output images back; `None` when the target would be over [`RESIDENT_MAX_BYTES`].
fn resident_run(
    gpu: &GpuEngine,
    image: &GrayImage,
    operation: &Operation,
    source: Resident,
    target: Resident,
    repeat: u32,
) -> Result<Option<ResidentRun>> {
    let device = gpu.device();
    let (width, height) = image.dimensions();
    let (out_width, out_height) = operation.output_size(width, height)?;
    let images = operation.output_count();
    let max_side = device.limits().max_texture_dimension_2d;
    // Four bytes a texel: a 256-Mpx texture target with eight layers would hold 8 GiB, and as
    // much again to read it back.
    let target_bytes =
        u64::from(out_width) * u64::from(out_height) * u64::from(images) * target.pixel_bytes();
    if target_bytes > RESIDENT_MAX_BYTES {
        return Ok(None);
    }
    let texture = |format, w: u32, h: u32, layers, usage| -> Result<wgpu::Texture> {
        if w.max(h) > max_side {
            bail!("{w}x{h} is larger than the device's textures ({max_side})");
        }
        Ok(device.create_texture(&wgpu::TextureDescriptor {
            label: Some("gpuconv::bench::resident"),
            size: wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: layers,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage,
            view_formats: &[],
        }))
    };
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let stride = width.next_multiple_of(gpuconv::gpu::VECTOR_BYTES);
    let source_buffer;
    let source_texture;
    let gpu_source = match source {
        Resident::Buffer => {
            source_buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpuconv::bench::source"),
                size: u64::from(stride) * u64::from(height),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            for (y, row) in image.as_raw().chunks(width as usize).enumerate() {
                let mut padded = row.to_vec();
                padded.resize(stride as usize, 0);
                gpu.queue()
                    .write_buffer(&source_buffer, y as u64 * u64::from(stride), &padded);
            }
            gpuconv::GpuSource::Buffer {
                buffer: &source_buffer,
                offset: 0,
                bytes_per_row: stride,
                width,
                height,
            }
        }
        Resident::Texture(format) => {
            source_texture = texture(
                format,
                width,
                height,
                1,
                wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            )?;
            // Gray in r, g and b: its luma is the gray value itself, so the expected outputs
            // are the gray image's. Written a band of rows at a time.
            for (band, rows) in image.as_raw().chunks(width as usize * 256).enumerate() {
                let texels: Vec<u8> = rows.iter().flat_map(|&p| [p, p, p, 255]).collect();
                let band_rows = (rows.len() / width as usize) as u32;
                gpu.queue().write_texture(
                    wgpu::TexelCopyTextureInfo {
                        texture: &source_texture,
                        mip_level: 0,
                        origin: wgpu::Origin3d {
                            x: 0,
                            y: band as u32 * 256,
                            z: 0,
                        },
                        aspect: wgpu::TextureAspect::All,
                    },
                    &texels,
                    wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(width * 4),
                        rows_per_image: None,
                    },
                    wgpu::Extent3d {
                        width,
                        height: band_rows,
                        depth_or_array_layers: 1,
                    },
                );
            }
            gpuconv::GpuSource::Texture(&source_texture)
        }
    };
    let out_stride = out_width.next_multiple_of(gpuconv::gpu::VECTOR_BYTES);
    let image_bytes = u64::from(out_stride) * u64::from(out_height);
    let target_buffer;
    let target_texture;
    let gpu_target = match target {
        Resident::Buffer => {
            target_buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpuconv::bench::target"),
                size: image_bytes * u64::from(images),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            gpuconv::GpuTarget::Buffer {
                buffer: &target_buffer,
                offset: 0,
                bytes_per_row: out_stride,
                bytes_per_image: image_bytes,
            }
        }
        Resident::Texture(format) => {
            target_texture = texture(
                format,
                out_width,
                out_height,
                images,
                wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_SRC,
            )?;
            gpuconv::GpuTarget::Texture(&target_texture)
        }
    };
    if let Some(error) = pollster::block_on(scope.pop()) {
        bail!("allocating: {error}");
    }
    let pass = gpu.prepare(operation, gpu_source, gpu_target)?;
    let kernel = yardstick::pass(gpu, &pass, repeat.max(3))?;
    // Read back: each output image's rows, byte 0 of each texel for textures (the gray value in
    // r, or the value in r32uint's low byte).
    let texel_bytes = target.pixel_bytes() as u32;
    let row_bytes = (out_width * texel_bytes).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    // Errors here are this measurement's, not the next run's of the engine.
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("gpuconv::bench::readback"),
        size: u64::from(row_bytes) * u64::from(out_height) * u64::from(images),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    match gpu_target {
        gpuconv::GpuTarget::Buffer { buffer, .. } => {
            encoder.copy_buffer_to_buffer(buffer, 0, &readback, 0, image_bytes * u64::from(images));
        }
        gpuconv::GpuTarget::Texture(texture) => {
            for layer in 0..images {
                encoder.copy_texture_to_buffer(
                    wgpu::TexelCopyTextureInfo {
                        texture,
                        mip_level: 0,
                        origin: wgpu::Origin3d {
                            x: 0,
                            y: 0,
                            z: layer,
                        },
                        aspect: wgpu::TextureAspect::All,
                    },
                    wgpu::TexelCopyBufferInfo {
                        buffer: &readback,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: u64::from(layer) * u64::from(row_bytes) * u64::from(out_height),
                            bytes_per_row: Some(row_bytes),
                            rows_per_image: None,
                        },
                    },
                    wgpu::Extent3d {
                        width: out_width,
                        height: out_height,
                        depth_or_array_layers: 1,
                    },
                );
            }
        }
    }
    gpu.queue().submit([encoder.finish()]);
    let out_of_memory = pollster::block_on(scope.pop());
    if let Some(error) = out_of_memory.or(pollster::block_on(validation.pop())) {
        bail!("reading the outputs back: {error}");
    }
    readback.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let stride = match target {
        Resident::Buffer => out_stride,
        Resident::Texture(_) => row_bytes,
    } as usize;
    let outputs = {
        let mapped = readback.slice(..).get_mapped_range()?;
        let plane_bytes = stride * out_height as usize;
        (0..images as usize)
            .map(|i| {
                mapped[i * plane_bytes..(i + 1) * plane_bytes]
                    .chunks(stride)
                    .flat_map(|row| {
                        row[..(out_width * texel_bytes) as usize]
                            .iter()
                            .step_by(texel_bytes as usize)
                            .copied()
                    })
                    .collect()
            })
            .collect()
    };
    readback.unmap();
    Ok(Some((kernel, outputs)))
}

/// [`compare`] for raw output planes, in [`FilterOutput`] order.
fn compare_planes(planes: &[Vec<u8>], expected: &FilterOutput) -> String {
    let expected: Vec<&GrayImage> = expected
        .combined
        .iter()
        .chain(&expected.responses)
        .collect();
    if planes.len() != expected.len() {
        return format!("{} images, expected {}", planes.len(), expected.len());
    }
    let differing: usize = planes
        .iter()
        .zip(&expected)
        .map(|(a, e)| a.iter().zip(e.as_raw()).filter(|(p, q)| p != q).count())
        .sum();
    if differing == 0 {
        "ok".to_owned()
    } else {
        format!("{differing} pixels differ from the CPU")
    }
}

/// `ok` when `output` equals `expected` image for image, bit for bit; else how many pixels differ.
fn compare(output: &FilterOutput, expected: &FilterOutput) -> String {
    let images = |o: &FilterOutput| {
        o.combined
            .iter()
            .chain(&o.responses)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (actual, expected) = (images(output), images(expected));
    if actual.len() != expected.len() {
        return format!("{} images, expected {}", actual.len(), expected.len());
    }
    let differing: usize = actual
        .iter()
        .zip(&expected)
        .map(|(a, e)| {
            a.as_raw()
                .iter()
                .zip(e.as_raw())
                .filter(|(p, q)| p != q)
                .count()
        })
        .sum();
    if differing == 0 {
        "ok".to_owned()
    } else {
        format!("{differing} pixels differ from the CPU")
    }
}

/// A deterministic picture-like test image: shading, hard-edged blocks and noise.
fn synthetic(width: u32, height: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        let mut z = (u64::from(y) << 32 | u64::from(x)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        let noise = (z >> 60) as i32 - 8;
        let shade = 60 + (100 * x / width.max(1)) as i32 + (60 * y / height.max(1)) as i32;
        let block = if (x / 97 + y / 61) % 3 == 0 { 50 } else { 0 };
        image::Luma([(shade + block + noise).clamp(0, 255) as u8])
    })
}

fn encode_png(image: &GrayImage) -> Result<Vec<u8>> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut bytes = Vec::new();
    image.write_with_encoder(PngEncoder::new_with_quality(
        Cursor::new(&mut bytes),
        CompressionType::Fast,
        FilterType::Adaptive,
    ))?;
    Ok(bytes)
}

fn print_row(row: &Row) {
    let size = format!("{}x{}", row.width, row.height);
    if let Some(error) = &row.error {
        println!("{size:>13} {:>5} {:<32} {error}", row.op, row.backend);
        return;
    }
    let cell = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let stages: Vec<String> = row
        .stages
        .iter()
        .map(|(_, v)| format!("{:>9}", cell(*v)))
        .collect();
    let percent = row
        .gb_per_s
        .zip(row.copy_gb_per_s)
        .map_or("-".to_owned(), |(gb, copy)| {
            format!("{:.0}%", 100.0 * gb / copy)
        });
    let vs_cpu = row
        .vs_cpu
        .map_or(String::new(), |x| format!("  {x:.1}× the CPU's compute"));
    println!(
        "{size:>13} {:>5} {:<32} {} {:>8} {:>7} {:>7} {percent:>6}  {}{vs_cpu}",
        row.op,
        row.backend,
        stages.join(" "),
        cell(row.mpx_per_s),
        cell(row.gb_per_s),
        cell(row.copy_gb_per_s),
        row.check
    );
}

fn to_json(rows: &[Row]) -> String {
    let records: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let mut record = serde_json::json!({
                "width": row.width,
                "height": row.height,
                "op": row.op,
                "backend": row.backend,
                "mpx_per_s": row.mpx_per_s,
                "gb_per_s": row.gb_per_s,
                "copy_gb_per_s": row.copy_gb_per_s,
                "vs_cpu": row.vs_cpu,
                "path": row.path,
                "check": row.check,
                "error": row.error,
            });
            for (name, value) in &row.stages {
                record[format!("{name}_ms")] = serde_json::json!(value);
            }
            record
        })
        .collect();
    serde_json::to_string_pretty(&records).expect("plain values serialise") + "\n"
}

/// How long `gpu` takes to copy `bytes` (rounded down to whole words) from one of its buffers to
/// another: the yardstick for the filter's bandwidth, since a pass that reads its input once and
/// writes its outputs once cannot move bytes faster than a copy does. Timed with the wall clock
/// around submissions of one and of nine copies, whose difference leaves out the cost of
/// submitting; the median of three. `None` when the device cannot allocate or copy that much.
fn time_device_copy(gpu: &GpuEngine, bytes: u64) -> Option<Duration> {
    let bytes = bytes & !3;
    if bytes == 0 || bytes > gpu.device().limits().max_buffer_size {
        return None;
    }
    let scope = gpu
        .device()
        .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let buffer = |label, usage| {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage,
            mapped_at_creation: false,
        })
    };
    let source = buffer("gpuconv::copy::source", wgpu::BufferUsages::COPY_SRC);
    let destination = buffer("gpuconv::copy::destination", wgpu::BufferUsages::COPY_DST);
    if pollster::block_on(scope.pop()).is_some() {
        return None;
    }
    // Wall-clock time of one submission of `copies` copies, waited for.
    let submit_and_wait = |copies: u32| -> Option<Duration> {
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        for _ in 0..copies {
            encoder.copy_buffer_to_buffer(&source, 0, &destination, 0, bytes);
        }
        let start = Instant::now();
        let submission = gpu.queue().submit([encoder.finish()]);
        gpu.device()
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: None,
            })
            .ok()?;
        Some(start.elapsed())
    };
    // The first submission warms up (page faults, clocks) and is not counted. The
    // difference between one copy and nine cancels the submission's fixed cost, and leaves
    // no doubt about what timestamps around a copy would measure on a given driver.
    submit_and_wait(1)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let one = submit_and_wait(1)?;
        let nine = submit_and_wait(9)?;
        times.push(nine.saturating_sub(one) / 8);
    }
    times.sort();
    Some(times[1])
}

#[cfg(test)]
mod tests {
    use super::split_ops;

    #[test]
    fn ops_split_at_commas_between_operations_only() {
        assert_eq!(split_ops("vertical, edge"), ["vertical", "edge"]);
        assert_eq!(
            split_ops("edge,1,2,1;2,4,2;1,2,1,blur=1,1,1;1,1,1;1,1,1,x"),
            ["edge", "1,2,1;2,4,2;1,2,1", "blur=1,1,1;1,1,1;1,1,1", "x"]
        );
    }
}
