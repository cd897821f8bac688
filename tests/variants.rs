//! Every specialized pipeline is correct: the shader is compiled per shape of pass (`Variant`),
//! so each value of each axis, and each pair of values across two axes, runs here at least once
//! on the app's own buffers and textures, against the reference, on random images of odd sizes.
//!
//! The axes: combination (responses, edge, threshold, each combined one with and without its
//! responses, and unclipped sums, 32 bits a pixel, which go to buffers only), border, source (buffers read 16 bytes, 4 bytes or 1 byte at a time; gray, RGBA and
//! sRGB textures), target (buffers written 16 or 4 bytes at a time; RGBA8 and R32Uint textures),
//! kernel count (1 to 8; a combination takes exactly 2), integer, fractional or mixed kernels,
//! and output rows per invocation (1 to 8). The cases are a pairwise covering set built greedily
//! from a fixed seed, so the run is the same every time.

mod common;

use std::collections::HashSet;

use common::app::App;
use common::random_image;
use gpuconv::{Border, Combine, GpuEngine, GpuSource, GpuTarget, Kernel, Operation, reference};
use image::GrayImage;

const MODES: usize = 6;
/// The mode of unclipped sums (`Operation::sums`).
const SUMS: usize = 5;
const BORDERS: [Border; 4] = [
    Border::Valid,
    Border::Zero,
    Border::Replicate,
    Border::Reflect,
];
const SOURCES: usize = 6;
const TARGETS: usize = 4;
const KERNEL_COUNTS: usize = 8;
const NUMBERS: usize = 3;
const ROWS: usize = 8;
/// How many values each axis has, in the order of a case's fields.
const AXES: [usize; 7] = [
    MODES,
    BORDERS.len(),
    SOURCES,
    TARGETS,
    KERNEL_COUNTS,
    NUMBERS,
    ROWS,
];

/// One case: a value index per axis.
type Case = [usize; 7];

/// Whether a case can exist: a combination takes exactly two kernels, a mix of integer and
/// fractional kernels needs at least two, and unclipped sums go to buffers only.
fn feasible(case: &Case) -> bool {
    let kernels = case[4] + 1;
    let combined = case[0] != 0 && case[0] != SUMS;
    (!combined || kernels == 2)
        && (case[5] != 2 || kernels >= 2)
        && (case[0] != SUMS || case[3] < 2)
}

/// Whether some feasible case has value `a` on axis `i` and `b` on axis `j`.
fn pair_feasible(i: usize, a: usize, j: usize, b: usize) -> bool {
    let mut case = [0; 7];
    case[i] = a;
    case[j] = b;
    // Only the mode, kernel count and numbers constrain each other; try their values.
    (0..MODES).any(|mode| {
        (0..KERNEL_COUNTS).any(|kernels| {
            (0..NUMBERS).any(|numbers| {
                let mut c = case;
                for (axis, value) in [(0, mode), (4, kernels), (5, numbers)] {
                    if axis != i && axis != j {
                        c[axis] = value;
                    }
                }
                feasible(&c)
            })
        })
    })
}

fn pairs(case: &Case) -> Vec<(usize, usize, usize, usize)> {
    (0..case.len())
        .flat_map(|i| (i + 1..case.len()).map(move |j| (i, case[i], j, case[j])))
        .collect()
}

/// Every pair of values on two axes that some feasible case has, as `(axis, value, axis, value)`.
fn feasible_pairs() -> HashSet<(usize, usize, usize, usize)> {
    let axes = AXES.iter().enumerate();
    axes.clone()
        .flat_map(|(i, &values_i)| {
            axes.clone().skip(i + 1).flat_map(move |(j, &values_j)| {
                (0..values_i).flat_map(move |a| (0..values_j).map(move |b| (i, a, j, b)))
            })
        })
        .filter(|&(i, a, j, b)| pair_feasible(i, a, j, b))
        .collect()
}

/// A pairwise covering set of feasible cases: each step takes, of a few hundred random
/// feasible candidates, the one covering the most pairs not yet covered.
fn covering_cases() -> Vec<Case> {
    let mut uncovered = feasible_pairs();
    let mut state = 0x5eed_u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut cases = Vec::new();
    while !uncovered.is_empty() {
        // Seed each candidate with an uncovered pair so that every step makes progress.
        let seeds: Vec<_> = uncovered.iter().copied().collect();
        let mut best: Option<(usize, Case)> = None;
        for _ in 0..300 {
            let (i, a, j, b) = seeds[next(seeds.len())];
            let mut case: Case = std::array::from_fn(|axis| next(AXES[axis]));
            case[i] = a;
            case[j] = b;
            if !feasible(&case) {
                // Repair the constrained axes that the seed pair leaves free.
                if i != 4 && j != 4 {
                    case[4] = 1;
                }
                if !feasible(&case) && i != 0 && j != 0 {
                    case[0] = 0;
                }
                if !feasible(&case) && i != 5 && j != 5 {
                    case[5] = 0;
                }
                if !feasible(&case) && i != 3 && j != 3 {
                    case[3] = 0;
                }
                if !feasible(&case) {
                    continue;
                }
            }
            let gain = pairs(&case)
                .iter()
                .filter(|p| uncovered.contains(p))
                .count();
            if best.is_none_or(|(g, _)| gain > g) {
                best = Some((gain, case));
            }
        }
        let (_, case) = best.expect("a feasible candidate");
        for pair in pairs(&case) {
            uncovered.remove(&pair);
        }
        cases.push(case);
    }
    cases
}

/// Kernel `k` of a case: integer weights from -4 to 4, or fractional multiples of 1/8 (exact in
/// `f32`, so every sum is exact and the shader's float path must match the reference bit for
/// bit, rounding ties to even included).
fn kernel(k: usize, fractional: bool, seed: u64) -> Kernel {
    let mut state = seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let weights: [f32; 9] = std::array::from_fn(|_| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let value = ((state >> 33) % 9) as f32 - 4.0;
        if fractional {
            value + 0.5 + ((state >> 40) % 4) as f32 * 0.125
        } else {
            value
        }
    });
    Kernel::new(format!("k{k}"), weights).unwrap()
}

fn operation(case: &Case, seed: u64) -> Operation {
    let [mode, border, _, _, kernel_count, numbers, _] = *case;
    let kernels: Vec<Kernel> = (0..=kernel_count)
        .map(|k| kernel(k, numbers == 1 || (numbers == 2 && k % 2 == 1), seed))
        .collect();
    let operation = match mode {
        0 => Operation::responses(kernels).unwrap(),
        SUMS => Operation::sums(kernels).unwrap(),
        1 | 2 => Operation::new(kernels, Combine::Edge, mode == 2).unwrap(),
        _ => Operation::new(kernels, Combine::Threshold(140), mode == 4).unwrap(),
    };
    operation.with_border(BORDERS[border])
}

/// The app's source for a case: the image in a buffer laid out for the alignment under test,
/// or in a texture (RGBA ones carry the gray value in r, g and b, whose luma is that value).
enum Source {
    Buffer {
        buffer: wgpu::Buffer,
        offset: u64,
        bytes_per_row: u32,
    },
    Texture(wgpu::Texture),
}

fn source(app: &App, kind: usize, image: &GrayImage) -> Source {
    let (width, height) = image.dimensions();
    let buffer = |offset: u64, bytes_per_row: u32, tail: u64| {
        let mut bytes = vec![0xa5; (offset + u64::from(bytes_per_row * height) + tail) as usize];
        for (y, row) in image.as_raw().chunks(width as usize).enumerate() {
            let start = offset as usize + y * bytes_per_row as usize;
            bytes[start..start + width as usize].copy_from_slice(row);
        }
        Source::Buffer {
            buffer: app.buffer_with(&bytes, wgpu::BufferUsages::STORAGE),
            offset,
            bytes_per_row,
        }
    };
    let texture = |format, texel: &dyn Fn(u8) -> Vec<u8>| {
        let texture = app.texture(
            width,
            height,
            1,
            format,
            wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        );
        let bytes: Vec<u8> = image.as_raw().iter().flat_map(|&p| texel(p)).collect();
        let texel_bytes = bytes.len() as u32 / (width * height);
        app.queue.write_texture(
            texture.as_image_copy(),
            &bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(width * texel_bytes),
                rows_per_image: None,
            },
            texture.size(),
        );
        Source::Texture(texture)
    };
    let rgba = |p: u8| vec![p, p, p, p ^ 0x3c];
    match kind {
        // Offset and rows on 16 bytes, the range reaching the last row's last 16-byte group.
        0 => buffer(32, width.next_multiple_of(16) + 16, 16),
        // Words, not 16 bytes: the offset and the stride are 4 more than a multiple of 16.
        1 => buffer(4, width.next_multiple_of(16) + 4, 4),
        // Neither: odd offset and stride.
        2 => buffer(3, width + 5, 4),
        3 => texture(wgpu::TextureFormat::R8Unorm, &|p| vec![p]),
        4 => texture(wgpu::TextureFormat::Rgba8Unorm, &rgba),
        _ => texture(wgpu::TextureFormat::Rgba8UnormSrgb, &rgba),
    }
}

/// The sentinel left in every byte of a target buffer the shader must not write.
const UNTOUCHED: u8 = 0x5a;

/// Runs one case on `image` and compares every output image with the reference; a buffer
/// target's bytes outside the images must keep their sentinel.
fn check(
    app: &App,
    engine: &mut GpuEngine,
    case: &Case,
    image: &GrayImage,
    seed: u64,
) -> gpuconv::gpu::Variant {
    let [_, _, source_kind, target_kind, ..] = *case;
    let operation = operation(case, seed);
    let what = format!("case {case:?} on {}×{}", image.width(), image.height());
    engine.set_rows_per_invocation(case[6] as u32 + 1);
    // Expected bytes per output image: pixels, or 4 bytes a pixel (native order) for sums.
    let expected: Vec<Vec<u8>> = if operation.is_sums() {
        reference::sums(image, &operation)
            .planes
            .into_iter()
            .map(|plane| match plane {
                gpuconv::SumPlane::Integer(sums) => bytemuck::cast_slice(&sums).to_vec(),
                gpuconv::SumPlane::Float(sums) => bytemuck::cast_slice(&sums).to_vec(),
            })
            .collect()
    } else {
        common::raw_outputs(reference::run(image, &operation))
    };
    let (out_width, out_height) = operation
        .output_size(image.width(), image.height())
        .unwrap();
    let images = operation.output_count();
    let source = source(app, source_kind, image);
    let gpu_source = match &source {
        Source::Buffer {
            buffer,
            offset,
            bytes_per_row,
        } => GpuSource::Buffer {
            buffer,
            offset: *offset,
            bytes_per_row: *bytes_per_row,
            width: image.width(),
            height: image.height(),
        },
        Source::Texture(texture) => GpuSource::Texture(texture),
    };
    let (variant, actual): (gpuconv::gpu::Variant, Vec<Vec<u8>>) = if target_kind < 2 {
        let row_bytes = out_width * operation.output_pixel_bytes();
        let (offset, bytes_per_row) = if target_kind == 0 {
            (16, row_bytes.next_multiple_of(16) + 16)
        } else {
            (4, row_bytes.next_multiple_of(16) + 4)
        };
        let bytes_per_image = u64::from(bytes_per_row * out_height) + 16;
        let size = offset + bytes_per_image * u64::from(images) + 16;
        let target = app.buffer_with(
            &vec![UNTOUCHED; size as usize],
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let pass = engine
            .prepare(
                &operation,
                gpu_source,
                GpuTarget::Buffer {
                    buffer: &target,
                    offset,
                    bytes_per_row,
                    bytes_per_image,
                },
            )
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        check_variant(pass.variant(), case, &what);
        app.submit(&pass);
        let mut written = app.read_buffer(&target);
        let outputs = (0..images as usize)
            .map(|i| {
                let mut plane = Vec::new();
                for y in 0..out_height as usize {
                    let start =
                        offset as usize + i * bytes_per_image as usize + y * bytes_per_row as usize;
                    let row = start..start + row_bytes as usize;
                    plane.extend_from_slice(&written[row.clone()]);
                    written[row].fill(UNTOUCHED);
                }
                plane
            })
            .collect();
        assert!(
            written.iter().all(|&b| b == UNTOUCHED),
            "{what}: bytes outside the output images were written"
        );
        (*pass.variant(), outputs)
    } else {
        let format = if target_kind == 2 {
            wgpu::TextureFormat::Rgba8Unorm
        } else {
            wgpu::TextureFormat::R32Uint
        };
        let target = app.texture(
            out_width,
            out_height,
            images,
            format,
            wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_SRC,
        );
        let pass = engine
            .prepare(&operation, gpu_source, GpuTarget::Texture(&target))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        check_variant(pass.variant(), case, &what);
        app.submit(&pass);
        let outputs = (0..images)
            .map(|layer| {
                app.read_texture(&target, layer)
                    .into_iter()
                    .map(|texel| {
                        if target_kind == 2 {
                            assert_eq!(
                                [texel[1], texel[2], texel[3]],
                                [texel[0], texel[0], 255],
                                "{what}: gray in r, g and b, alpha 1"
                            );
                        } else {
                            assert_eq!(&texel[1..], [0, 0, 0], "{what}: values 0 to 255");
                        }
                        texel[0]
                    })
                    .collect()
            })
            .collect();
        (*pass.variant(), outputs)
    };
    assert_eq!(actual.len(), expected.len(), "{what}: number of images");
    if operation.is_sums() {
        // Every sum exact: integer kernels in i32, and the fractional ones' eighths in f32.
        for (i, (actual, expected)) in actual.iter().zip(&expected).enumerate() {
            assert!(actual == expected, "{what}, sums of kernel {i} differ");
        }
        return variant;
    }
    for (i, (actual, expected)) in actual.iter().zip(&expected).enumerate() {
        let actual = GrayImage::from_raw(out_width, out_height, actual.clone()).unwrap();
        let expected = GrayImage::from_raw(out_width, out_height, expected.clone()).unwrap();
        common::assert_same(&actual, &expected, &format!("{what}, image {i}"));
    }
    variant
}

/// The pass was compiled for the case's shape: the alignment the layout allows, the rows asked
/// for, the kernels and combination of the operation.
fn check_variant(variant: &gpuconv::gpu::Variant, case: &Case, what: &str) {
    let [
        mode,
        border,
        source_kind,
        target_kind,
        kernel_count,
        _,
        rows,
    ] = *case;
    let source_align = match source_kind {
        0 if border == 0 => 16,
        1 if border == 0 => 4,
        _ => 1,
    };
    let target_align = if target_kind == 0 { 16 } else { 4 };
    assert_eq!(
        (
            variant.source_align,
            variant.target_align,
            variant.rows,
            variant.kernel_count,
            variant.write_responses,
        ),
        (
            source_align,
            target_align,
            rows as u32 + 1,
            kernel_count as u32 + 1,
            mode == 2 || mode == 4,
        ),
        "{what}: {variant:?}"
    );
}

#[test]
fn every_value_and_every_pair_of_values_across_the_shaders_variants_is_exact() {
    let Some(app) = App::new() else {
        return;
    };
    let mut engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    assert_eq!(
        engine.compiled_pipelines(),
        0,
        "no pipeline is compiled before a pass needs it"
    );
    let cases = covering_cases();
    // Odd sizes, down to 1×1 where the border allows and 3×3 for 'valid': widths that leave a
    // row's last invocation 1 to 16 outputs, and heights that leave the last invocation fewer
    // rows than it computes.
    let widths = [1, 3, 5, 15, 17, 19, 31, 33, 35, 47, 49];
    let heights = [1, 3, 5, 7, 9, 11, 13, 19, 23];
    let mut variants = HashSet::new();
    for (n, case) in cases.iter().enumerate() {
        let smallest = if case[1] == 0 { 3 } else { 1 };
        for k in 0..2 {
            let pick = |values: &[u32], salt: usize| {
                let fit: Vec<u32> = values.iter().copied().filter(|&v| v >= smallest).collect();
                fit[(n * 7 + k * 5 + salt) % fit.len()]
            };
            let (width, height) = (pick(&widths, 0), pick(&heights, 3));
            let seed = (n * 2 + k) as u64;
            let image = random_image(width, height, 255, seed);
            variants.insert(check(&app, &mut engine, case, &image, seed));
        }
    }
    assert_eq!(
        engine.compiled_pipelines(),
        variants.len(),
        "one pipeline per shape, compiled once and reused"
    );
    eprintln!(
        "{} cases, {} pipelines",
        cases.len(),
        engine.compiled_pipelines()
    );
}

#[test]
fn the_covering_set_covers_every_feasible_pair() {
    let cases = covering_cases();
    assert!(cases.iter().all(feasible));
    let covered: HashSet<_> = cases.iter().flat_map(pairs).collect();
    for (i, a, j, b) in feasible_pairs() {
        assert!(covered.contains(&(i, a, j, b)), "pair {i}={a}, {j}={b}");
    }
    // Every value of every axis, and the 8 × 8 pairs of kernel count and rows at least.
    assert!(cases.len() >= KERNEL_COUNTS * ROWS);
}

/// Reads `images` output images of `out_width × out_height` from a target buffer's bytes.
fn planes(written: &[u8], layout: (usize, usize, usize), size: (u32, u32), images: u32) -> Vec<u8> {
    let (offset, bytes_per_row, bytes_per_image) = layout;
    let (width, height) = (size.0 as usize, size.1 as usize);
    (0..images as usize)
        .flat_map(|i| (0..height).map(move |y| offset + i * bytes_per_image + y * bytes_per_row))
        .flat_map(|start| written[start..start + width].to_vec())
        .collect()
}

#[test]
fn ranges_short_of_a_whole_last_group_are_read_and_written_a_word_at_a_time() {
    let Some(app) = App::new() else {
        return;
    };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    // Rows on 16 bytes, but each buffer ends at the word holding its last pixel: a 16-byte read
    // or write of the last group would leave the buffer, so both fall back to words.
    let (width, height) = (21, 9);
    let image = random_image(width, height, 255, 5);
    let stride = width.next_multiple_of(16);
    let mut bytes = vec![0u8; (stride * (height - 1) + width.next_multiple_of(4)) as usize];
    for (y, row) in image.as_raw().chunks(width as usize).enumerate() {
        bytes[y * stride as usize..][..width as usize].copy_from_slice(row);
    }
    let source = app.buffer_with(&bytes, wgpu::BufferUsages::STORAGE);
    let operation =
        Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses();
    let (out_width, out_height) = (width - 2, height - 2);
    let out_stride = out_width.next_multiple_of(16);
    let image_bytes = out_stride * out_height;
    let last_row_end =
        image_bytes * 2 + out_stride * (out_height - 1) + out_width.next_multiple_of(4);
    let target = app.buffer_with(
        &vec![UNTOUCHED; last_row_end as usize],
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let pass = engine
        .prepare(
            &operation,
            GpuSource::Buffer {
                buffer: &source,
                offset: 0,
                bytes_per_row: stride,
                width,
                height,
            },
            GpuTarget::Buffer {
                buffer: &target,
                offset: 0,
                bytes_per_row: out_stride,
                bytes_per_image: u64::from(image_bytes),
            },
        )
        .unwrap();
    assert_eq!(
        (pass.variant().source_align, pass.variant().target_align),
        (4, 4)
    );
    app.submit(&pass);
    let written = app.read_buffer(&target);
    let expected = common::raw_outputs(reference::run(&image, &operation)).concat();
    let layout = (0, out_stride as usize, image_bytes as usize);
    assert_eq!(
        planes(&written, layout, (out_width, out_height), 3),
        expected
    );
}

#[test]
fn fractional_weights_that_round_stay_within_one_of_the_reference_in_every_layout() {
    let Some(app) = App::new() else {
        return;
    };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    // Weights no binary fraction holds exactly: the shader's f32 sums may round differently
    // from the reference's (a fused multiply-add, say), by at most one in the result.
    let kernel = Kernel::new(
        "thirds",
        [0.1, -0.3, 1.0 / 3.0, 0.7, 0.05, -0.45, 0.2, 0.9, -1.1],
    )
    .unwrap();
    assert!(!kernel.is_integer());
    let operation = Operation::responses(vec![kernel]).unwrap();
    let (width, height) = (37, 11);
    let image = random_image(width, height, 255, 77);
    let expected = reference::run(&image, &operation).responses.remove(0);
    for source_kind in 0..3 {
        let Source::Buffer {
            buffer,
            offset,
            bytes_per_row,
        } = source(&app, source_kind, &image)
        else {
            unreachable!("kinds 0 to 2 are buffers")
        };
        for (target_offset, out_stride) in [(0u64, 48u32), (4, 40)] {
            let size = target_offset + u64::from(out_stride * (height - 2)) + 16;
            let target = app.buffer_with(
                &vec![UNTOUCHED; size as usize],
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            );
            let pass = engine
                .prepare(
                    &operation,
                    GpuSource::Buffer {
                        buffer: &buffer,
                        offset,
                        bytes_per_row,
                        width,
                        height,
                    },
                    GpuTarget::Buffer {
                        buffer: &target,
                        offset: target_offset,
                        bytes_per_row: out_stride,
                        bytes_per_image: 0,
                    },
                )
                .unwrap();
            app.submit(&pass);
            let written = app.read_buffer(&target);
            let layout = (target_offset as usize, out_stride as usize, 0);
            let actual = planes(&written, layout, (width - 2, height - 2), 1);
            for (i, (&a, &e)) in actual.iter().zip(expected.as_raw()).enumerate() {
                assert!(
                    a.abs_diff(e) <= 1,
                    "source {source_kind}, target offset {target_offset}: pixel {i} is {a}, the \
                     reference {e}"
                );
            }
        }
    }
}
