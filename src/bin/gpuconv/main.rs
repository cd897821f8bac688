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

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match &cli.command {
        args::Command::Filter(args) => filter::run(args),
        args::Command::Demo(args) => demo::run(args),
        args::Command::Info => info::run(),
        args::Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
        eprintln!("gpuconv: no usable GPU ({reason}); using the CPU backend");
    }
    Ok(engine)
}
