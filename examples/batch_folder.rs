//! Every image of a folder to its edge image, several at once, with gpuconv's batch scheduler:
//! a worker per core within its share of a memory budget, one engine shared, a bad file
//! reported and the others written, lines in input order.
//!
//! cargo run --example batch_folder -- img target/batch-folder
//!
//! Each output is checked against the CPU backend: the example fails if any differs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gpuconv::pipeline::batch::{self, Batch};
use gpuconv::{BackendChoice, CpuBackend, Engine, Kernel, Operation, Workload};

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
    // One engine for the batch, chosen for it: many small images rarely pay for a GPU.
    let workload = Workload::new(&operation, 1 << 20, Some(inputs.len() as u64));
    let engine = Mutex::new(Engine::for_workload(BackendChoice::Auto, &workload)?);
    println!("backend: {}", engine.lock().unwrap().describe());

    let plan = Batch::new(inputs.len(), gpuconv::io::default_memory_budget());
    // `{stem}-edge.png`, as the command line names it.
    let output_of = |path: &Path| -> PathBuf {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        batch::output_paths(Path::new(&output), &stem, &operation, "png").remove(0)
    };
    let (mut written, mut failed, mut differing) = (0, 0, 0);
    batch::run(
        &plan,
        &inputs,
        |_| false,
        |path, share| {
            let image = gpuconv::io::load_gray_with(path, &share.read_limits(1))?;
            // The engine is held for the filter only: other inputs decode meanwhile.
            let edges = engine.lock().unwrap().run(&image, &operation)?;
            let edges = edges.combined.expect("an edge operation");
            gpuconv::io::save_gray(&edges, &output_of(path))?;
            // The example's own check; an app would not filter twice.
            let expected = CpuBackend::new().run(&image, &operation)?.combined;
            Ok::<_, gpuconv::Error>(expected.as_ref() == Some(&edges))
        },
        |path, outcome| match outcome {
            Ok(same) => {
                println!("{} -> {}", path.display(), output_of(path).display());
                written += 1;
                differing += usize::from(!same);
            }
            Err(error) => {
                eprintln!("{}: {error}", path.display());
                failed += 1;
            }
        },
    )?;
    anyhow::ensure!(
        differing == 0,
        "{differing} outputs differ from the CPU backend's"
    );
    println!("{written} written, {failed} failed; every output equals the CPU backend's");
    Ok(())
}
