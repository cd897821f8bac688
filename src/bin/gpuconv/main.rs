//! The `gpuconv` command: a thin shell over the library.

mod args;
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever the libraries below put in their messages.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("gpuconv: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the engine, saying on one line when `auto` fell back to the CPU.
fn open_engine(choice: BackendChoice) -> anyhow::Result<Engine> {
    let engine = Engine::new(choice)?;
    if let Some(reason) = engine.fallback_reason() {
        eprintln!("gpuconv: no usable GPU ({reason}); using the CPU backend");
    }
    Ok(engine)
}
