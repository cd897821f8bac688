//! Property tests: on random images of odd sizes, with random and named kernels, the GPU and CPU
//! backends equal the reference bit for bit (within 1 for fractional kernels on the GPU, where
//! the driver may fuse multiply-adds).

mod common;

use common::{assert_same_output, cpu, gpu, random_image};
use gpuconv::kernel::NAMED_KERNELS;
use gpuconv::{Combine, FilterOutput, Kernel, Operation, reference};
use proptest::prelude::*;

fn integer_kernel() -> impl Strategy<Value = Kernel> {
    prop_oneof![
        prop::array::uniform9(-8i32..=8),
        prop::array::uniform9(-300i32..=300),
        prop::array::uniform9(-65536i32..=65536),
    ]
    .prop_map(|w| Kernel::new("random", w.map(|w| w as f32)).expect("weights in range"))
}

fn named_kernel() -> impl Strategy<Value = Kernel> {
    (0..NAMED_KERNELS.len()).prop_map(|i| Kernel::named(NAMED_KERNELS[i].0).expect("named"))
}

fn fractional_kernel() -> impl Strategy<Value = Kernel> {
    prop::array::uniform9(-4.0f32..4.0)
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
        prop::collection::vec(any_kernel(), 1..=4)
            .prop_map(|k| Operation::responses(k).expect("1 to 4 kernels")),
        (any_kernel(), any_kernel(), any::<bool>()).prop_map(|(v, h, keep)| {
            Operation::new(vec![v, h], Combine::Edge, keep).expect("two kernels")
        }),
        (any_kernel(), any_kernel(), 0u16..=510, any::<bool>()).prop_map(|(v, h, t, keep)| {
            Operation::new(vec![v, h], Combine::Threshold(t), keep).expect("two kernels")
        }),
    ]
}

/// Largest per-pixel difference between two outputs of the same operation.
fn largest_difference(a: &FilterOutput, b: &FilterOutput) -> u8 {
    let images = |o: &FilterOutput| {
        o.combined
            .iter()
            .chain(&o.responses)
            .cloned()
            .collect::<Vec<_>>()
    };
    images(a)
        .iter()
        .zip(images(b).iter())
        .flat_map(|(x, y)| {
            x.as_raw()
                .iter()
                .zip(y.as_raw())
                .map(|(p, q)| p.abs_diff(*q))
        })
        .max()
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

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
            let actual = gpu.run(&image, &operation).expect("GPU runs");
            if operation.kernels().iter().all(Kernel::is_integer) {
                assert_same_output(&actual, &expected, &format!("gpu on {what}"));
            } else {
                let difference = largest_difference(&actual, &expected);
                prop_assert!(difference <= 1, "gpu differs by {} on {}", difference, what);
            }
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
                let actual = gpu.run(&image, &operation).unwrap();
                assert!(
                    largest_difference(&actual, &expected) <= 1,
                    "gpu {width}×{height}"
                );
                // Only box-blur (index 4) is inexact in f32; the rest must match exactly.
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
