//! The `gpuconv` command: a thin shell over the library.

mod args;
mod bench;
mod demo;
mod figure;
mod filter;
mod info;
mod inputs;
mod progress;
mod serve;
mod stream;

use std::process::ExitCode;

use clap::Parser;
use gpuconv::{BackendChoice, Engine};

/// A mistake in the arguments that clap cannot see (options that do not fit together, a kernel
/// that does not parse): reported the way clap reports its own, with the usage, exit status 2.
#[derive(Debug)]
pub struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `error` as a usage error.
pub fn usage(error: impl std::fmt::Display) -> anyhow::Error {
    Usage(error.to_string()).into()
}

/// An error already reported on stderr: the run fails without another line.
#[derive(Debug)]
struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("already reported")
    }
}

impl std::error::Error for Reported {}

fn main() -> ExitCode {
    let cli = args::Cli::try_parse().unwrap_or_else(|error| {
        // clap quotes the arguments it refuses as they are: escaped here, line by line, so that
        // a hostile file name cannot reach the terminal raw through a usage message.
        let text: String = error
            .render()
            .to_string()
            .split_inclusive('\n')
            .map(|line| {
                let (body, newline) = line
                    .strip_suffix('\n')
                    .map_or((line, ""), |body| (body, "\n"));
                format!("{}{newline}", gpuconv::text::escape(body))
            })
            .collect();
        if error.use_stderr() {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
        std::process::exit(error.exit_code());
    });
    // The service writes no files, and stops on signals in its own way.
    if !matches!(cli.command, args::Command::Serve(_)) {
        remove_partial_files_on_signals();
    }
    gpuconv::io::quiet_decoder_panics();
    let subcommand = match &cli.command {
        args::Command::Filter(_) => "filter",
        args::Command::Demo(_) => "demo",
        args::Command::Info => "info",
        args::Command::Bench(_) => "bench",
        args::Command::Stream(_) => "stream",
        args::Command::Serve(_) => "serve",
    };
    let result = match &cli.command {
        args::Command::Filter(args) => filter::run(args),
        args::Command::Demo(args) => demo::run(args),
        args::Command::Info => info::run(),
        args::Command::Bench(args) => bench::run(args),
        args::Command::Stream(args) => stream::run(args),
        args::Command::Serve(args) => serve::run(args),
    };
    end_as_signalled_if_a_signal_came();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<Reported>() => ExitCode::FAILURE,
        Err(error) if error.is::<Usage>() => {
            use clap::CommandFactory;
            let mut command = args::Cli::command();
            command.build();
            let command = command
                .find_subcommand_mut(subcommand)
                .expect("the subcommand that ran");
            command
                .error(clap::error::ErrorKind::ValueValidation, error)
                .exit()
        }
        Err(error) => {
            eprintln!("gpuconv: error: {}{}", one_line(&error), hint(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes whose text the message already holds
/// (several errors, the `image` crate's among them, repeat their source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        // Escaped again here, whatever the cause: nothing from an input reaches the terminal raw.
        let text = gpuconv::text::escape(&cause.to_string().replace('\n', " ")).into_owned();
        if !message.contains(text.trim_end_matches('.')) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

/// What the command line offers for a library error: the flag that changes a limit, or the
/// backend that needs no GPU. The library's own messages name no flags.
pub fn hint(error: &anyhow::Error) -> &'static str {
    use gpuconv::Error;
    match error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Error>())
    {
        Some(Error::TooManyPixels { .. }) => {
            " (raise it with --max-pixels if the image is genuine)"
        }
        Some(
            Error::OverBudget { .. }
            | Error::FileOverBudget { .. }
            | Error::DecoderOverBudget { .. },
        ) => " (raise it with --max-memory if the image is genuine)",
        Some(Error::FramesOverBudget { .. }) => {
            " (raise it with --max-memory if the frames are genuine)"
        }
        Some(Error::OutOfMemory { .. }) => {
            " (lower --max-memory so that such inputs are refused before anything is allocated)"
        }
        Some(Error::NoAdapter { .. }) => " (or use --backend cpu)",
        _ => "",
    }
}

/// Opens the engine for `workload`, saying on one line when `auto` chose or fell back to the
/// CPU, and why. A GPU engine starts from the pipeline cache an earlier run saved.
fn open_engine(choice: BackendChoice, workload: &gpuconv::Workload) -> gpuconv::Result<Engine> {
    let engine = Engine::for_workload(choice, workload)?;
    if let Some(gpu) = engine.gpu()
        && let Some(data) = pipeline_cache_path(gpu).and_then(|path| std::fs::read(path).ok())
    {
        // SAFETY: the file is only ever written by `save_pipeline_cache`, whole (renamed
        // into place), from `pipeline_cache_data`, under the adapter's own cache key; wgpu
        // checks that key and the data's header before using it.
        unsafe { gpu.load_pipeline_cache(&data) };
    }
    if let Some(reason) = engine.fallback_reason() {
        // The library's reason names no flag; the ones that override it are ours.
        let hint = match engine.fallback() {
            Some(gpuconv::Fallback::SoftwareRenderer) => " (--backend gpu uses it anyway)",
            Some(gpuconv::Fallback::Estimate | gpuconv::Fallback::Threshold) => {
                " (--backend gpu for a GPU)"
            }
            _ => "",
        };
        eprintln!("gpuconv: {reason}{hint}; using the CPU backend");
    }
    Ok(engine)
}

/// Where the pipeline cache of `gpu`'s adapter is kept between runs:
/// `$XDG_CACHE_HOME/gpuconv/` (or `~/.cache/gpuconv/`), named by wgpu's key for the adapter;
/// `None` where its backend has no pipeline cache.
fn pipeline_cache_path(gpu: &gpuconv::GpuEngine) -> Option<std::path::PathBuf> {
    let key = wgpu::util::pipeline_cache_key(gpu.adapter_info())?;
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cache"))
        })?;
    Some(base.join("gpuconv").join(key))
}

/// Saves what the GPU engine's pipeline cache holds, for the next run to start from: best
/// effort, silently, written whole and renamed into place so a reader never sees half of it.
fn save_pipeline_cache(engine: &Engine) {
    let Some(gpu) = engine.gpu() else { return };
    let (Some(path), Some(data)) = (pipeline_cache_path(gpu), gpu.pipeline_cache_data()) else {
        return;
    };
    let Some(folder) = path.parent() else { return };
    let _ = std::fs::create_dir_all(folder).and_then(|()| {
        let mut file = tempfile::NamedTempFile::new_in(folder)?;
        std::io::Write::write_all(&mut file, &data)?;
        file.persist(&path).map(drop).map_err(|e| e.error)
    });
}

/// On Ctrl-C, SIGTERM or SIGHUP: deletes the output files being written and the output folders
/// this run created and left empty, then ends the process the way the signal would have, so
/// the caller sees the usual status (130 for Ctrl-C in a shell).
#[cfg(unix)]
fn remove_partial_files_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // A signal ignored at start-up (SIGHUP under nohup, SIGINT for a shell's background job)
    // stays ignored, as it would without a handler.
    let handled = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|&s| !ignored(s));
    let handled: Vec<i32> = handled.collect();
    // Set inside the signal handler itself, so that a run finishing before the thread below
    // is scheduled still ends as the signal would (see `end_as_signalled_if_a_signal_came`).
    for &signal in &handled {
        let _ =
            signal_hook::flag::register_usize(signal, pending_signal().clone(), signal as usize);
    }
    let Ok(mut signals) = signal_hook::iterator::Signals::new(handled) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            end_as_signalled(signal);
        }
    });
}

/// The signal received, or 0.
#[cfg(unix)]
fn pending_signal() -> &'static std::sync::Arc<std::sync::atomic::AtomicUsize> {
    static PENDING: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicUsize>> =
        std::sync::OnceLock::new();
    PENDING.get_or_init(Default::default)
}

/// Deletes partial outputs and unfilled folders, then ends the process by `signal`'s default
/// action.
#[cfg(unix)]
fn end_as_signalled(signal: i32) -> ! {
    gpuconv::io::remove_partial_outputs();
    filter::remove_unfilled_folders();
    // Raises the signal again with its default action, which ends the process.
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    std::process::exit(128 + signal);
}

/// A signal that arrived while the run was ending, before the thread that handles signals got
/// to it, still ends the process as the signal would: the caller asked to stop.
#[cfg(unix)]
fn end_as_signalled_if_a_signal_came() {
    let signal = pending_signal().load(std::sync::atomic::Ordering::SeqCst);
    if signal != 0 {
        end_as_signalled(signal as i32);
    }
}

#[cfg(not(unix))]
fn end_as_signalled_if_a_signal_came() {}

/// Whether `signal`'s disposition is "ignore".
#[cfg(unix)]
fn ignored(signal: i32) -> bool {
    // SAFETY: with a null new action, sigaction only writes the current one into `current`,
    // a plain C struct for which all zeroes is a valid value.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(not(unix))]
fn remove_partial_files_on_signals() {}

/// Whether descriptor 1 was open when the process started, as recorded by
/// [`RECORD_STANDARD_OUTPUT`] before Rust's runtime put `/dev/null` on it: a closed standard
/// output (`>&-`) then looks like `/dev/null` opened for reading and writing, which is also how
/// `subprocess.DEVNULL` and `daemon(3)` leave it on purpose.
#[cfg(target_os = "linux")]
static STANDARD_OUTPUT_OPEN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(true);

/// Runs before `main` and before Rust's runtime starts (an ELF constructor), while a closed
/// descriptor 1 is still closed.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_STANDARD_OUTPUT: extern "C" fn() = {
    extern "C" fn record() {
        // SAFETY: F_GETFD on a descriptor number only reads its flags, or fails with EBADF.
        let open = unsafe { libc::fcntl(1, libc::F_GETFD) } != -1;
        STANDARD_OUTPUT_OPEN.store(open, std::sync::atomic::Ordering::Relaxed);
    }
    record
};

/// Whether standard output was open when the process started (`>&-` closes it).
#[cfg(target_os = "linux")]
fn standard_output_is_open() -> bool {
    STANDARD_OUTPUT_OPEN.load(std::sync::atomic::Ordering::Relaxed)
}

/// Elsewhere, whether descriptor 1 is open now (where the runtime leaves it closed).
#[cfg(all(unix, not(target_os = "linux")))]
fn standard_output_is_open() -> bool {
    // SAFETY: F_GETFD on a descriptor number only reads its flags, or fails with EBADF.
    unsafe { libc::fcntl(1, libc::F_GETFD) != -1 }
}

#[cfg(not(unix))]
fn standard_output_is_open() -> bool {
    true
}
