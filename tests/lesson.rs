//! The lesson's own matrices, on the reference, the CPU backend and the GPU backend.

mod common;

use common::{assert_same_output, gray, rows};
use gpuconv::{Kernel, Operation, reference};

/// The lesson's 5×5 example and its X-shaped filter, whose answer the lesson prints.
const EXAMPLE: [&[u8]; 5] = [
    &[1, 1, 1, 0, 0],
    &[0, 1, 1, 1, 0],
    &[0, 0, 1, 1, 1],
    &[0, 0, 1, 1, 0],
    &[0, 1, 1, 0, 0],
];
const EXAMPLE_ANSWER: [[u8; 3]; 3] = [[4, 3, 4], [2, 4, 3], [2, 3, 4]];

fn x_kernel() -> Kernel {
    Kernel::from_rows("x", [[1., 0., 1.], [0., 1., 0.], [1., 0., 1.]]).unwrap()
}

/// Runs `operation` on every backend, checks they agree, and returns the reference's output.
fn on_every_backend(
    image: &image::GrayImage,
    operation: &Operation,
    what: &str,
) -> gpuconv::FilterOutput {
    let expected = reference::run(image, operation);
    common::on_every_backend(|backend, engine| {
        assert_same_output(
            &engine.run(image, operation).unwrap(),
            &expected,
            &format!("{what} on {backend}"),
        );
    });
    expected
}

#[test]
fn five_by_five_example_gives_the_lessons_answer() {
    let operation = Operation::responses(vec![x_kernel()]).unwrap();
    let output = on_every_backend(&gray(&EXAMPLE), &operation, "5x5 example");
    assert_eq!(
        rows(&output.responses[0]),
        EXAMPLE_ANSWER.map(Vec::from).to_vec()
    );
}

/// The lesson's 7×7 stripe images: a bright vertical stripe, and the same turned on its side.
fn vertical_stripe() -> image::GrayImage {
    image::GrayImage::from_fn(7, 7, |x, _| {
        image::Luma([if (2..=4).contains(&x) { 255 } else { 0 }])
    })
}

fn horizontal_stripe() -> image::GrayImage {
    image::GrayImage::from_fn(7, 7, |_, y| {
        image::Luma([if (2..=4).contains(&y) { 255 } else { 0 }])
    })
}

#[test]
fn line_filters_find_the_stripes_edges_and_nothing_else() {
    let operation =
        Operation::responses(vec![Kernel::vertical_lines(), Kernel::horizontal_lines()]).unwrap();
    // Columns 2..=4 are 255: the vertical filter sees each stripe edge in two output columns
    // (|sum| = 4·255, saturated) and the flat middle as 0; the horizontal filter sees nothing.
    let stripe_edges = vec![vec![255, 255, 0, 255, 255]; 5];
    let stripe_edges_across = vec![
        vec![255; 5],
        vec![255; 5],
        vec![0; 5],
        vec![255; 5],
        vec![255; 5],
    ];
    let nothing = vec![vec![0; 5]; 5];

    let output = on_every_backend(&vertical_stripe(), &operation, "vertical stripe");
    assert_eq!(rows(&output.responses[0]), stripe_edges);
    assert_eq!(rows(&output.responses[1]), nothing);

    let output = on_every_backend(&horizontal_stripe(), &operation, "horizontal stripe");
    assert_eq!(rows(&output.responses[0]), nothing);
    assert_eq!(rows(&output.responses[1]), stripe_edges_across);
}

#[test]
fn edge_and_threshold_combine_the_two_responses() {
    // A dim stripe so responses do not saturate: V = 4·50 = 200 at the stripe's edges.
    let dim = image::GrayImage::from_fn(7, 7, |x, y| {
        image::Luma([if x >= 3 { 50 } else { 0 } + if y >= 3 { 20 } else { 0 }])
    });
    let edge =
        Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses();
    let output = on_every_backend(&dim, &edge, "edge");
    let (v, h, e) = (
        &output.responses[0],
        &output.responses[1],
        output.combined.as_ref().unwrap(),
    );
    for (x, y, p) in e.enumerate_pixels() {
        let sum = u16::from(v.get_pixel(x, y)[0]) + u16::from(h.get_pixel(x, y)[0]);
        assert_eq!(u16::from(p[0]), sum.min(255));
    }
    assert_eq!(rows(v)[0], [0, 200, 200, 0, 0]);
    assert_eq!(rows(h)[0], [0, 0, 0, 0, 0]);
    assert_eq!(rows(h)[1], [80, 80, 80, 80, 80]);
    assert_eq!(rows(e)[1], [80, 255, 255, 80, 80]);

    let threshold =
        Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 255).unwrap();
    let output = on_every_backend(&dim, &threshold, "threshold 255");
    assert_eq!(
        rows(output.combined.as_ref().unwrap())[1],
        [0, 255, 255, 0, 0]
    );
    assert_eq!(rows(output.combined.as_ref().unwrap())[0], [0, 0, 0, 0, 0]);
}

/// The same images through `run_into`, into buffers reused from call to call and filled with
/// a marker first, so a byte the filter forgot to write would show.
#[test]
fn run_into_fills_the_callers_reused_buffers_on_every_backend() {
    let operations = [
        Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses(),
        Operation::responses(vec![x_kernel()]).unwrap(),
        Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 100).unwrap(),
    ];
    common::on_every_backend(|backend, engine| {
        for operation in &operations {
            let count = operation.output_count() as usize;
            let (width, height) = (67, 29);
            let mut planes = vec![vec![0u8; (width as usize - 2) * (height as usize - 2)]; count];
            for seed in 0..3 {
                let image = common::random_image(width, height, 255, seed);
                planes.iter_mut().for_each(|p| p.fill(0xA5));
                let mut outputs: Vec<&mut [u8]> = planes.iter_mut().map(|p| &mut p[..]).collect();
                engine.run_into(&image, operation, &mut outputs).unwrap();
                let expected = reference::run(&image, operation);
                let expected: Vec<Vec<u8>> = expected
                    .combined
                    .into_iter()
                    .chain(expected.responses)
                    .map(image::GrayImage::into_raw)
                    .collect();
                assert_eq!(planes, expected, "{backend}, seed {seed}, {operation:?}");
            }
            // The wrong number of buffers, or a buffer of the wrong size, is an error naming it.
            let image = common::random_image(width, height, 255, 9);
            let mut short = [0u8; 10];
            let error = engine
                .run_into(&image, operation, &mut [&mut short[..]])
                .unwrap_err()
                .to_string();
            let expected = if count == 1 {
                "holds 10 bytes"
            } else {
                "1 output buffers"
            };
            assert!(error.contains(expected), "{backend}: {error}");
        }
    });
}
