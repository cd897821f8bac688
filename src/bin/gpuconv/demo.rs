//! `gpuconv demo`: the lesson, reproduced.

use anyhow::{Context, Result};
use gpuconv::{Engine, Kernel, Operation, SumPlane, io};
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
        let (width, keras) = keras_model(&mut engine, &image)?;
        print_values(
            &format!("{name}: the Keras model, |V| + |H| unclipped"),
            width,
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
/// 'valid', no bias, then `|V| + |H|` without clipping. Its width and its values, row by row.
fn keras_model(engine: &mut Engine, image: &GrayImage) -> Result<(u32, Vec<u32>)> {
    let sums = engine.run_sums(
        &gpuconv::view(image),
        &Operation::sums(vec![Kernel::vertical_lines(), Kernel::horizontal_lines()])?,
    )?;
    let [SumPlane::Integer(v), SumPlane::Integer(h)] = &sums.planes[..] else {
        anyhow::bail!("the line kernels' sums are whole numbers");
    };
    let values = v
        .iter()
        .zip(h)
        .map(|(v, h)| v.unsigned_abs() + h.unsigned_abs())
        .collect();
    Ok((sums.width, values))
}

/// `values` shown as matplotlib's `imshow` shows an array by default: its smallest value black,
/// its largest white, linearly between (rounded to nearest).
fn scaled_to_gray(width: u32, values: &[u32]) -> GrayImage {
    let (low, high) = values
        .iter()
        .fold((u32::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = u64::from(high.saturating_sub(low)).max(1);
    let pixels = values
        .iter()
        .map(|&v| ((u64::from(v - low) * 510 + range) / (2 * range)) as u8)
        .collect();
    let height = values.len() as u32 / width.max(1);
    GrayImage::from_raw(width, height, pixels).expect("width × height values")
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
    let (width, keras) = keras_model(engine, image)?;
    let keras = scaled_to_gray(width, &keras);
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

fn print_values(title: &str, width: u32, values: &[u32]) {
    let digits = values.iter().max().map_or(1, |v| v.to_string().len());
    println!("{title} ({width}×{}):", values.len() as u32 / width.max(1));
    for row in values.chunks(width.max(1) as usize) {
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
