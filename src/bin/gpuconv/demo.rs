//! `gpuconv demo`: the lesson, reproduced.

use anyhow::{Context, Result};
use gpuconv::pipeline::{self, Gray16Image};
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
        let keras = keras_model(&mut engine, &image)?;
        print_values(
            &format!("{name}: the Keras model, |V| + |H| unclipped"),
            &keras,
        );
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

/// The lesson's Keras model on `image`: a `Conv2D` whose two 3×3 filters are the line kernels,
/// 'valid', no bias, then `|V| + |H|` without clipping.
fn keras_model(engine: &mut Engine, image: &GrayImage) -> Result<Gray16Image> {
    let lines = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    Ok(pipeline::unclipped_edge(
        engine,
        &gpuconv::view(image),
        &lines,
    )?)
}

/// `values` shown as matplotlib's `imshow` shows an array by default: its smallest value black,
/// its largest white, linearly between (rounded to nearest).
fn scaled_to_gray(values: &Gray16Image) -> GrayImage {
    let (low, high) = values
        .iter()
        .fold((u16::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = u32::from(high.saturating_sub(low)).max(1);
    let pixels = values
        .iter()
        .map(|&v| ((u32::from(v - low) * 510 + range) / (2 * range)) as u8)
        .collect();
    GrayImage::from_raw(values.width(), values.height(), pixels).expect("width × height values")
}

/// Original, both line responses, the edge image, the lesson's binary edge image (T = 255) and
/// its Keras model's unclipped `|V| + |H|`, scaled to its maximum.
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
    let keras = scaled_to_gray(&keras_model(engine, image)?);
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
        Panel {
            title: "Keras |V|+|H|",
            image: &keras,
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

fn print_values(title: &str, values: &Gray16Image) {
    let digits = values.iter().max().map_or(1, |v| v.to_string().len());
    println!("{title} ({}×{}):", values.width(), values.height());
    for row in values.as_raw().chunks(values.width().max(1) as usize) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:>digits$}")).collect();
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
