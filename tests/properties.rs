//! Property tests: on random images of odd sizes, with random and named kernels (1 to 8 per
//! pass, edge and threshold too), the GPU and CPU backends equal the reference bit for bit
//! (within 1 for fractional kernels on the GPU, where the driver may fuse multiply-adds).
//! `PROPTEST_CASES` sets how many random cases run (64 by default).

mod common;

use common::{assert_same_output, cpu, gpu, random_image};
use gpuconv::kernel::NAMED_KERNELS;
use gpuconv::{Combine, GpuEngine, Kernel, Operation, reference};
use image::GrayImage;
use proptest::prelude::*;

fn integer_kernel() -> impl Strategy<Value = Kernel> {
    prop_oneof![
        prop::array::uniform9(-8i32..=8),
        prop::array::uniform9(-300i32..=300),
        prop::array::uniform9(-65536i32..=65536),
        // Rank 1 (a column times a row), which the CPU sums in two passes: small enough for
        // 16-bit sums, and too large for them.
        rank_one(-3..=3),
        rank_one(-40..=40),
    ]
    .prop_map(|w| Kernel::new("random", w.map(|w| w as f32)).expect("weights in range"))
}

fn rank_one(values: std::ops::RangeInclusive<i32>) -> impl Strategy<Value = [i32; 9]> {
    (
        prop::array::uniform3(values.clone()),
        prop::array::uniform3(values),
    )
        .prop_map(|(column, row)| std::array::from_fn(|t| column[t / 3] * row[t % 3]))
}

fn named_kernel() -> impl Strategy<Value = Kernel> {
    (0..NAMED_KERNELS.len()).prop_map(|i| Kernel::named(NAMED_KERNELS[i].0).expect("named"))
}

fn fractional_kernel() -> impl Strategy<Value = Kernel> {
    prop_oneof![
        prop::array::uniform9(-4.0f32..4.0),
        prop::array::uniform9(-256.0f32..256.0)
    ]
    .prop_map(|w| Kernel::new("fractional", w).expect("weights in range"))
}

fn any_kernel() -> impl Strategy<Value = Kernel> {
    prop_oneof![3 => integer_kernel(), 2 => named_kernel(), 1 => fractional_kernel()]
}

/// Sizes from 3 to about 1000 on each side, small ones more often: they hit the edge cases of
/// packing four pixels per word.
fn side() -> impl Strategy<Value = u32> {
    prop_oneof![3u32..=20, 21u32..=300, 301u32..=1001]
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        prop::collection::vec(any_kernel(), 1..=gpuconv::MAX_KERNELS)
            .prop_map(|k| Operation::responses(k).expect("1 to 8 kernels")),
        (any_kernel(), any_kernel(), any::<bool>()).prop_map(|(v, h, keep)| {
            Operation::new(vec![v, h], Combine::Edge, keep).expect("two kernels")
        }),
        (any_kernel(), any_kernel(), 0u16..=510, any::<bool>()).prop_map(|(v, h, t, keep)| {
            Operation::new(vec![v, h], Combine::Threshold(t), keep).expect("two kernels")
        }),
    ]
}

/// Asserts that two images have the same size and differ by at most `tolerance` per pixel.
fn assert_within(actual: &GrayImage, expected: &GrayImage, tolerance: u8, what: &str) {
    assert_eq!(
        actual.dimensions(),
        expected.dimensions(),
        "{what}: sizes differ"
    );
    let worst = actual
        .as_raw()
        .iter()
        .zip(expected.as_raw())
        .map(|(a, e)| a.abs_diff(*e))
        .max();
    assert!(
        worst.unwrap_or(0) <= tolerance,
        "{what}: differs by {worst:?}, more than {tolerance}"
    );
}

/// Holds the GPU's output of `operation` to the reference: integer kernels exactly, fractional
/// ones within 1 per pixel (the driver may fuse multiply-adds). A combined image from fractional
/// kernels must then be exactly the combination of the GPU's own responses: a response off by 1
/// may rightly flip a threshold pixel.
fn assert_gpu_output(gpu: &mut GpuEngine, image: &GrayImage, operation: &Operation, what: &str) {
    let actual = gpu.run(image, operation).expect("GPU runs");
    let expected = reference::run(image, operation);
    if operation.kernels().iter().all(Kernel::is_integer) {
        return assert_same_output(&actual, &expected, what);
    }
    assert_eq!(
        actual.combined.is_some(),
        expected.combined.is_some(),
        "{what}: combined image presence"
    );
    assert_eq!(
        actual.responses.len(),
        expected.responses.len(),
        "{what}: number of responses"
    );
    let with_responses = gpu
        .run(image, &operation.clone().with_responses())
        .expect("GPU runs");
    for (k, kernel) in operation.kernels().iter().enumerate() {
        let tolerance = if kernel.is_integer() { 0 } else { 1 };
        let reference = reference::convolve(image, kernel);
        assert_within(
            &with_responses.responses[k],
            &reference,
            tolerance,
            &format!("{what}, response {k}"),
        );
        if let Some(response) = actual.responses.get(k) {
            common::assert_same(
                response,
                &with_responses.responses[k],
                &format!("{what}, response {k} again"),
            );
        }
    }
    if let Some(combined) = &actual.combined {
        let (v, h) = (&with_responses.responses[0], &with_responses.responses[1]);
        let own = match operation.combine() {
            Combine::Threshold(t) => reference::threshold(v, h, t),
            _ => reference::edge(v, h),
        };
        common::assert_same(
            combined,
            &own,
            &format!("{what}, combined from the GPU's own responses"),
        );
    }
}

/// How many random cases to run: `PROPTEST_CASES` when set (the README's agreement-at-scale
/// command sets 10000), else 64, which keeps CI quick.
fn cases() -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(cases) => cases
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_CASES={cases:?} is not a whole number")),
        Err(_) => 64,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn gpu_and_cpu_equal_the_reference(
        width in side(),
        height in side(),
        amplitude in prop_oneof![Just(1u8), Just(15), Just(255)],
        seed in any::<u64>(),
        operation in operation(),
    ) {
        let image = random_image(width, height, amplitude, seed);
        let expected = reference::run(&image, &operation);
        let what = format!("{width}×{height}, amplitude {amplitude}, seed {seed}, {operation:?}");
        assert_same_output(&cpu(&image, &operation), &expected, &format!("cpu on {what}"));
        if let Some(mut gpu) = gpu() {
            assert_gpu_output(&mut gpu, &image, &operation, &format!("gpu on {what}"));
        }
    }
}

#[test]
fn every_small_size_with_all_eight_kernels_at_once() {
    let kernels: Vec<Kernel> = NAMED_KERNELS
        .iter()
        .take(8)
        .map(|(n, _, _)| Kernel::named(n).unwrap())
        .collect();
    let operation = Operation::responses(kernels).unwrap();
    let mut gpu = gpu();
    for width in 3..=13 {
        for height in 3..=7 {
            let image = random_image(width, height, 255, u64::from(width * 100 + height));
            let expected = reference::run(&image, &operation);
            assert_same_output(
                &cpu(&image, &operation),
                &expected,
                &format!("cpu {width}×{height}"),
            );
            if let Some(gpu) = gpu.as_mut() {
                assert_gpu_output(gpu, &image, &operation, &format!("gpu {width}×{height}"));
                // Only box-blur (index 4) is inexact in f32: Gaussian weights are k/16, so its
                // sums are exact however the driver orders them, and it must match exactly too.
                let actual = gpu.run(&image, &operation).unwrap();
                for k in (0..8).filter(|&k| k != 4) {
                    common::assert_same(
                        &actual.responses[k],
                        &expected.responses[k],
                        &format!("gpu {width}×{height} kernel {k}"),
                    );
                }
            }
        }
    }
}

#[test]
fn rank_one_kernels_at_the_edge_of_16_bit_sums_are_exact() {
    // Σ|w| = 128 is the largest a 16-bit sum holds (255 · 128 = 32640); 129 needs 32 bits.
    // Both signs, on images that drive every sum to its extreme: all white, and a 0/255
    // checkerboard, which makes the alternating kernel's terms all add up.
    let kernels = [
        [32, 32, 0, 32, 32, 0, 0, 0, 0],
        [32, -32, 0, -32, 32, 0, 0, 0, 0],
        [0, 0, 0, 0, 8, -8, 0, -8, 8].map(|w| w * 4),
        [43, -43, 43, 0, 0, 0, 0, 0, 0],
    ];
    let width = 67;
    let height = 9;
    let white = GrayImage::from_pixel(width, height, image::Luma([255]));
    let checkerboard = GrayImage::from_fn(width, height, |x, y| {
        image::Luma([if (x + y) % 2 == 0 { 255 } else { 0 }])
    });
    let mut gpu = gpu();
    for weights in kernels {
        let kernel = Kernel::new("edge-of-i16", weights.map(|w| w as f32)).unwrap();
        let operation = Operation::responses(vec![kernel]).unwrap();
        for (name, image) in [("white", &white), ("checkerboard", &checkerboard)] {
            let expected = reference::run(image, &operation);
            let what = format!("{weights:?} on {name}");
            assert_same_output(&cpu(image, &operation), &expected, &format!("cpu, {what}"));
            if let Some(gpu) = gpu.as_mut() {
                let actual = gpu.run(image, &operation).unwrap();
                assert_same_output(&actual, &expected, &format!("gpu, {what}"));
            }
        }
        // The extremes were reached: some output is 255 (the clamp) for the summing kernels.
        let response = &reference::run(&checkerboard, &operation).responses[0];
        assert!(response.as_raw().contains(&255), "{weights:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// gpuconv's PNG encoder, every compression, rows handed over in random pieces (bands cut
    /// anywhere, rows wider than a band): the file decodes, in the `image` crate, to exactly
    /// the pixels written. (The fuzz target `png_round_trip` does the same with arbitrary bytes.)
    #[test]
    fn png_written_in_any_pieces_decodes_to_its_pixels(
        width in 1u32..1500,
        height in 1u32..90,
        seed in any::<u64>(),
        compression in 0usize..3,
        rows_per_piece in 1usize..40,
    ) {
        let image = random_image(width, height, 255, seed);
        let encoded = gpuconv::io::EncodedRows::default();
        let compression = gpuconv::io::Compression::ALL[compression].1;
        let mut sink = gpuconv::io::encode_rows("png", width, height, compression, encoded.clone())
            .unwrap()
            .unwrap();
        for rows in image.as_raw().chunks(rows_per_piece * width as usize) {
            sink.write_rows(rows).unwrap();
        }
        sink.finish().unwrap();
        let decoded = image::load_from_memory_with_format(&encoded.take(), image::ImageFormat::Png)
            .unwrap()
            .into_luma8();
        prop_assert_eq!(decoded.dimensions(), (width, height));
        prop_assert!(decoded.as_raw() == image.as_raw());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4 + 1, ..ProptestConfig::default() })]

    /// Pixels read where they lie (a view into a larger buffer, as the Python package reads a
    /// numpy array) and a backend with threads of its own give the reference's bits, on every
    /// border.
    #[test]
    fn views_and_own_threads_equal_the_reference(
        width in side(),
        height in side(),
        seed in any::<u64>(),
        threads in 1usize..4,
        operation in operation(),
        border in prop::sample::select(gpuconv::Border::ALL.to_vec()),
    ) {
        let operation = operation.with_border(border);
        let image = random_image(width, height, 255, seed);
        let expected = reference::run(&image, &operation);
        // The view's pixels lie in the middle of a larger buffer, after random bytes.
        let mut held = random_image(width + 5, height + 3, 255, !seed).into_raw();
        let start = 7;
        held[start..start + image.as_raw().len()].copy_from_slice(image.as_raw());
        let view = gpuconv::GrayView::from_raw(
            width,
            height,
            &held[start..start + image.as_raw().len()],
        )
        .unwrap();
        let what = format!("{width}×{height}, seed {seed}, {threads} threads, {operation:?}");
        let own = gpuconv::CpuBackend::with_threads(threads).unwrap();
        prop_assert_eq!(own.threads(), threads);
        let actual = own.run_view(&view, &operation).unwrap();
        assert_same_output(&actual, &expected, &format!("cpu view on {what}"));
        if let Some(mut gpu) = gpu() {
            let actual = gpu.run_view(&view, &operation).unwrap();
            if operation.kernels().iter().all(Kernel::is_integer) {
                assert_same_output(&actual, &expected, &format!("gpu view on {what}"));
            }
        }
    }
}

/// An image of many tasks, shared between the calling thread and a pool's threads as they
/// wake: every task done once, the reference's bits, sums included.
#[test]
fn own_threads_share_many_tasks_with_the_caller() {
    let image = random_image(301, 4001, 255, 77);
    let operations = [
        gpuconv::Operation::edge(
            gpuconv::Kernel::vertical_lines(),
            gpuconv::Kernel::horizontal_lines(),
        ),
        gpuconv::Operation::sums(vec![
            gpuconv::Kernel::vertical_lines(),
            gpuconv::Kernel::named("box-blur").unwrap(),
        ])
        .unwrap()
        .with_border(gpuconv::Border::Reflect),
    ];
    for threads in [2, 3, 5] {
        let own = gpuconv::CpuBackend::with_threads(threads).unwrap();
        assert_eq!(own.threads(), threads);
        let edge = own.run(&image, &operations[0]).unwrap();
        assert_same_output(
            &edge,
            &reference::run(&image, &operations[0]),
            &format!("edge, {threads} threads"),
        );
        let sums = own
            .run_sums(&gpuconv::view(&image), &operations[1])
            .unwrap();
        assert_eq!(
            sums,
            reference::sums(&image, &operations[1]),
            "sums, {threads} threads"
        );
    }
}

/// One backend of its own threads, called from several threads at once and from inside
/// rayon's global pool: each call's tasks are its own, the reference's bits.
#[test]
fn own_threads_serve_several_callers_at_once() {
    use rayon::prelude::*;
    let images: Vec<_> = (0..4)
        .map(|i| random_image(301 + 2 * i, 2001, 255, 90 + u64::from(i)))
        .collect();
    let edge = gpuconv::Operation::edge(
        gpuconv::Kernel::vertical_lines(),
        gpuconv::Kernel::horizontal_lines(),
    );
    let expected: Vec<_> = images.iter().map(|i| reference::run(i, &edge)).collect();
    let own = gpuconv::CpuBackend::with_threads(3).unwrap();
    std::thread::scope(|scope| {
        for (image, expected) in images.iter().zip(&expected) {
            let own = own.clone();
            let edge = &edge;
            scope.spawn(move || {
                for _ in 0..3 {
                    let actual = own.run(image, edge).unwrap();
                    assert_same_output(&actual, expected, "a thread of four");
                }
            });
        }
    });
    images
        .par_iter()
        .zip(&expected)
        .for_each(|(image, expected)| {
            let actual = own.run(image, &edge).unwrap();
            assert_same_output(&actual, expected, "inside the global pool");
        });
}

#[test]
fn a_backend_of_zero_threads_is_refused_in_one_line() {
    let error = gpuconv::CpuBackend::with_threads(0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "could not start 0 threads for the CPU backend: at least one is needed"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4 + 1, ..ProptestConfig::default() })]

    /// Unclipped sums (`Operation::sums`, the lesson's Keras model before `abs`) equal the
    /// reference's on every backend and border: exactly for integer kernels; for fractional
    /// ones exactly on the CPU, and on a GPU within what a fused multiply-add may change.
    #[test]
    fn unclipped_sums_equal_the_reference(
        width in side(),
        height in side(),
        seed in any::<u64>(),
        kernels in prop::collection::vec(any_kernel(), 1..=4),
        border in prop::sample::select(gpuconv::Border::ALL.to_vec()),
    ) {
        let operation = Operation::sums(kernels).unwrap().with_border(border);
        let image = random_image(width, height, 255, seed);
        let expected = reference::sums(&image, &operation);
        let what = format!("{width}×{height}, seed {seed}, {operation:?}");
        let cpu = gpuconv::Engine::new(gpuconv::BackendChoice::Cpu)
            .unwrap()
            .run_sums(&gpuconv::view(&image), &operation)
            .unwrap();
        prop_assert_eq!(&cpu, &expected, "cpu on {}", what);
        if let Some(mut gpu) = gpu() {
            let actual = gpu.engine().run_sums(&gpuconv::view(&image), &operation).unwrap();
            prop_assert_eq!((actual.width, actual.height), (expected.width, expected.height));
            for (k, (actual, expected)) in actual.planes.iter().zip(&expected.planes).enumerate() {
                match (actual, expected) {
                    (gpuconv::SumPlane::Integer(a), gpuconv::SumPlane::Integer(e)) => {
                        prop_assert!(a == e, "gpu kernel {} on {}", k, what);
                    }
                    (gpuconv::SumPlane::Float(a), gpuconv::SumPlane::Float(e)) => {
                        for (a, e) in a.iter().zip(e) {
                            prop_assert!((a - e).abs() <= 1e-3 * e.abs().max(1.0), "gpu kernel {} on {}: {} vs {}", k, what, a, e);
                        }
                    }
                    _ => prop_assert!(false, "kernel {} on {}: integer and float planes", k, what),
                }
            }
        }
    }
}

#[test]
fn sums_are_no_images_and_images_are_no_sums() {
    let image = random_image(9, 7, 255, 3);
    let sums = Operation::sums(vec![Kernel::vertical_lines()]).unwrap();
    let error = gpuconv::CpuBackend::new().run(&image, &sums).unwrap_err();
    assert!(error.to_string().contains("use run_sums"), "{error}");
    let responses = Operation::responses(vec![Kernel::vertical_lines()]).unwrap();
    let mut engine = gpuconv::Engine::new(gpuconv::BackendChoice::Cpu).unwrap();
    let error = engine
        .run_sums(&gpuconv::view(&image), &responses)
        .unwrap_err();
    assert!(error.to_string().contains("Operation::sums"), "{error}");
    // Outputs of the wrong size for 32-bit sums are refused, naming the size needed.
    let mut small = vec![0u8; 7 * 5];
    let error = engine
        .run_view_into(&gpuconv::view(&image), &sums, &mut [&mut small])
        .unwrap_err();
    assert!(error.to_string().contains("needs 140"), "{error}");
}

#[test]
fn sums_in_strips_equal_the_reference() {
    let Some(mut gpu) = gpu() else {
        return;
    };
    let image = random_image(83, 61, 255, 17);
    let operation = Operation::sums(vec![
        Kernel::vertical_lines(),
        Kernel::named("box-blur").unwrap(),
        Kernel::horizontal_lines(),
    ])
    .unwrap();
    let expected = reference::sums(&image, &operation);
    // Strips of 4 output rows: 15 strips, two in flight, each read back into its rows.
    gpu.set_max_strip_rows(Some(4));
    let actual = gpu
        .engine()
        .run_sums(&gpuconv::view(&image), &operation)
        .unwrap();
    assert_eq!(actual.planes[0], expected.planes[0], "vertical");
    assert_eq!(actual.planes[2], expected.planes[2], "horizontal");
    let (gpuconv::SumPlane::Float(a), gpuconv::SumPlane::Float(e)) =
        (&actual.planes[1], &expected.planes[1])
    else {
        panic!("box-blur's sums are f32");
    };
    assert!(
        a.iter()
            .zip(e)
            .all(|(a, e)| (a - e).abs() <= 1e-3 * e.abs().max(1.0))
    );
}

#[test]
fn sums_of_rows_past_4_gib_are_refused_before_any_work() {
    let operation = Operation::sums(vec![Kernel::vertical_lines()]).unwrap();
    let error = operation.output_size(1 << 30, 3).unwrap_err();
    assert!(
        error.to_string().contains("too wide for unclipped sums"),
        "{error}"
    );
    assert_eq!(
        operation.output_size((1 << 30) - 1, 3).unwrap(),
        ((1 << 30) - 3, 1)
    );
}
