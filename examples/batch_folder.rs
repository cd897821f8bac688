//! Every image of a folder to its edge image, several at once, with gpuconv's batch pipeline:
//! a worker per core within its share of a memory budget, each image read and written band by
//! band when its format allows, one engine shared, a bad file reported and the others written,
//! lines in input order.
//!
//! cargo run --example batch_folder -- img target/batch-folder
//!
//! Each output is read back and checked against the CPU backend: the example fails if any
//! differs.

use std::path::{Path, PathBuf};

use gpuconv::pipeline::batch::{self, Batch};
use gpuconv::pipeline::{Destination, Settings, SharedEngine, Source};
use gpuconv::{BackendChoice, CpuBackend, Engine, Kernel, Operation};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: batch_folder INPUT_FOLDER OUTPUT_FOLDER");
    };
    std::fs::create_dir_all(&output)?;
    // The folder's images, by what their names say; anything else is left alone.
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&input)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    inputs.retain(|path| image::ImageFormat::from_path(path).is_ok());
    inputs.sort();

    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    // One engine for the batch, opened by its first image and chosen for the whole batch: many
    // small images rarely pay for a GPU.
    let engine =
        SharedEngine::deferred(|workload| Engine::for_workload(BackendChoice::Auto, workload));
    // `{stem}-edge.png`, as the command line names it.
    let jobs: Vec<(Source, Destination)> = inputs
        .iter()
        .map(|path| {
            let stem = path.file_stem().unwrap_or_default();
            let outputs = batch::output_paths(Path::new(&output), stem, &operation, "png");
            (Source::File(path.clone()), Destination::Files(outputs))
        })
        .collect();

    let plan = Batch::new(jobs.len(), gpuconv::io::default_memory_budget());
    let (mut written, mut failed, mut differing) = (0, 0, 0);
    let cpu = CpuBackend::new();
    batch::filter_all(
        &engine,
        &plan,
        &jobs,
        &Settings::new(&operation),
        |source, outcome| {
            let Source::File(path) = source else {
                unreachable!("files only")
            };
            match outcome {
                Ok(filtered) => {
                    let stem = path.file_stem().unwrap_or_default();
                    let out = batch::output_paths(Path::new(&output), stem, &operation, "png");
                    println!(
                        "{} -> {} ({})",
                        path.display(),
                        out[0].display(),
                        filtered.backend
                    );
                    written += 1;
                    // The example's own check; an app would not filter twice.
                    let same = gpuconv::io::load_gray(path)
                        .and_then(|image| cpu.run(&image, &operation))
                        .ok()
                        .and_then(|expected| expected.combined)
                        .zip(gpuconv::io::load_gray(&out[0]).ok())
                        .is_some_and(|(expected, got)| expected == got);
                    differing += usize::from(!same);
                }
                Err(error) => {
                    eprintln!("{}: {error}", path.display());
                    failed += 1;
                }
            }
        },
    )?;
    println!(
        "backend: {}",
        engine.description().unwrap_or_else(|| "none opened".into())
    );
    anyhow::ensure!(
        differing == 0,
        "{differing} outputs differ from the CPU backend's"
    );
    println!("{written} written, {failed} failed; every output equals the CPU backend's");
    Ok(())
}
