//! The smallest complete use of the library: the lesson's edge image of a picture, on the GPU
//! when there is one, else on the CPU.
//!
//! ```sh
//! cargo run --example edges -- img/camera.png edges.png
//! ```

use std::path::PathBuf;

use gpuconv::{BackendChoice, Engine, Kernel, Operation, io, reference};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: edges INPUT OUTPUT");
    };

    let image = io::load_gray(&input)?;
    let mut engine = Engine::new(BackendChoice::Auto)?;
    if let Some(reason) = engine.fallback_reason() {
        eprintln!("{reason}; using the CPU");
    }
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let edges = engine
        .run(&image, &operation)?
        .combined
        .expect("an edge operation gives a combined image");

    // Check against the plain reference loop, as the tests do.
    let expected = reference::run(&image, &operation)
        .combined
        .expect("combined");
    anyhow::ensure!(
        edges == expected,
        "backend {} disagrees with the reference",
        engine.describe()
    );

    io::save_gray(&edges, &output)?;
    println!(
        "{} -> {} ({}×{}) on {}",
        input.display(),
        output.display(),
        edges.width(),
        edges.height(),
        engine.describe()
    );
    Ok(())
}
