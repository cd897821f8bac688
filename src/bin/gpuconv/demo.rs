//! `gpuconv demo`: the lesson, reproduced.

use anyhow::{Context, Result};
use gpuconv::{Engine, Kernel, Operation, io};
use image::GrayImage;

use crate::args::DemoArgs;
use crate::figure::{Panel, compose};

/// The lesson's pictures, built into the binary so the demo runs from any folder.
const PICTURES: [(&str, &[u8]); 5] = [
    (
        "stripe-vertical",
        include_bytes!("../../../img/stripe-vertical.pgm"),
    ),
    (
        "stripe-horizontal",
        include_bytes!("../../../img/stripe-horizontal.pgm"),
    ),
    ("arrows", include_bytes!("../../../img/arrows.png")),
    ("camera", include_bytes!("../../../img/camera.png")),
    ("coffee", include_bytes!("../../../img/coffee.png")),
];

/// The lesson's 5×5 example; with the X-shaped filter its answer is [[4,3,4],[2,4,3],[2,3,4]].
const EXAMPLE: [[u8; 5]; 5] = [
    [1, 1, 1, 0, 0],
    [0, 1, 1, 1, 0],
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 0],
    [0, 1, 1, 0, 0],
];

pub fn run(args: &DemoArgs) -> Result<()> {
    // A handful of small pictures, the largest about 0.3 Mpx.
    let workload = gpuconv::Workload {
        pixels: 600 * 500,
        kernels: 2,
        outputs: 2,
        images: Some(6),
        on_gpu: false,
    };
    let mut engine = crate::open_engine(args.backend.into(), &workload)?;
    println!("backend: {}\n", engine.describe());

    let example = GrayImage::from_raw(5, 5, EXAMPLE.concat()).expect("5×5");
    let x = Kernel::named("x").expect("built-in");
    let answer = engine.run(&example, &Operation::responses(vec![x.clone()])?)?;
    print_matrix("the 5×5 example", &example);
    print_kernel(&x);
    print_matrix("its convolution with x", &answer.responses[0]);

    let lines = Operation::responses(vec![Kernel::vertical_lines(), Kernel::horizontal_lines()])?;
    for (name, bytes) in &PICTURES[..2] {
        let image = decode(name, bytes)?;
        let output = engine.run(&image, &lines)?;
        print_matrix(name, &image);
        print_matrix(&format!("{name} * vertical lines"), &output.responses[0]);
        print_matrix(&format!("{name} * horizontal lines"), &output.responses[1]);
    }
    print_kernel(&Kernel::vertical_lines());
    print_kernel(&Kernel::horizontal_lines());

    std::fs::create_dir_all(&args.output).with_context(|| {
        format!(
            "cannot create output folder '{}'",
            gpuconv::text::escape_path(&args.output)
        )
    })?;
    for (name, bytes) in PICTURES {
        let image = decode(name, bytes)?;
        let figure = figure(&mut engine, &image)?;
        let path = args.output.join(format!("{name}-figure.png"));
        io::save_gray(&figure, &path)?;
        println!("wrote {}", gpuconv::text::escape_path(&path));
    }
    Ok(())
}

fn decode(name: &str, bytes: &[u8]) -> Result<GrayImage> {
    let image = image::load_from_memory(bytes)
        .with_context(|| format!("decoding built-in picture {name}"))?;
    Ok(io::to_gray(image))
}

/// Original, both line responses, the edge image and the lesson's binary edge image (T = 255).
fn figure(engine: &mut Engine, image: &GrayImage) -> Result<GrayImage> {
    let edge =
        Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses();
    let edges = engine.run(image, &edge)?;
    let binary = engine.run(
        image,
        &Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 255)?,
    )?;
    let (combined, binary) = (
        edges.combined.expect("edge image"),
        binary.combined.expect("threshold image"),
    );
    Ok(compose(&[
        Panel {
            title: "original",
            image,
        },
        Panel {
            title: "vertical lines",
            image: &edges.responses[0],
        },
        Panel {
            title: "horizontal lines",
            image: &edges.responses[1],
        },
        Panel {
            title: "edges V+H",
            image: &combined,
        },
        Panel {
            title: "V+H >= 255",
            image: &binary,
        },
    ]))
}

fn print_matrix(title: &str, image: &GrayImage) {
    println!("{title} ({}×{}):", image.width(), image.height());
    for row in image.as_raw().chunks(image.width() as usize) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>3}")).collect();
        println!("  [{}]", cells.join(" "));
    }
    println!();
}

fn print_kernel(kernel: &Kernel) {
    println!("kernel '{}':", kernel.name());
    for row in kernel.weights().chunks(3) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>3}")).collect();
        println!("  [{}]", cells.join(" "));
    }
    println!();
}
