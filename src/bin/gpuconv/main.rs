//! The `gpuconv` command: a thin shell over the library.

mod args;
mod bench;
mod demo;
mod figure;
mod filter;
mod info;

use std::process::ExitCode;

use clap::Parser;
use gpuconv::{BackendChoice, Engine};

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
    let cli = args::Cli::parse();
    remove_partial_files_on_signals();
    gpuconv::io::quiet_decoder_panics();
    let result = match &cli.command {
        args::Command::Filter(args) => filter::run(args),
        args::Command::Demo(args) => demo::run(args),
        args::Command::Info => info::run(),
        args::Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<Reported>() => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("gpuconv: error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes whose text the message already holds
/// (several errors, the `image` crate's among them, repeat their source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if !message.contains(text.trim_end_matches('.')) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

/// Opens the engine, saying on one line when `auto` fell back to the CPU.
fn open_engine(choice: BackendChoice) -> anyhow::Result<Engine> {
    let engine = Engine::new(choice)?;
    if let Some(reason) = engine.fallback_reason() {
        eprintln!("gpuconv: {reason}; using the CPU backend");
    }
    Ok(engine)
}

/// On Ctrl-C, SIGTERM or SIGHUP: deletes the output files being written and the output folders
/// this run created and left empty, then ends the process the way the signal would have, so
/// the caller sees the usual status (130 for Ctrl-C in a shell).
#[cfg(unix)]
fn remove_partial_files_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            gpuconv::io::remove_partial_outputs();
            filter::remove_unfilled_folders();
            let _ = signal_hook::low_level::emulate_default_handler(signal);
            std::process::exit(128 + signal);
        }
    });
}

#[cfg(not(unix))]
fn remove_partial_files_on_signals() {}
