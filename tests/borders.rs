//! Same-size output with borders: every border against its definition, for every named kernel,
//! edge and threshold, on images down to 1×1, on every backend, in strips, and streamed.

mod common;

use common::{
    assert_same_output, on_every_backend, random_image, raw_outputs, reference_outputs, streamed,
};
use gpuconv::kernel::NAMED_KERNELS;
use gpuconv::{Border, Kernel, Operation, reference};
use image::GrayImage;

const BORDERS: [Border; 3] = [Border::Zero, Border::Replicate, Border::Reflect];

/// A kernel that copies the window's top-left pixel: output (x, y) is the padded pixel at
/// (x − 1, y − 1), which shows what each border puts beyond the edge.
fn top_left() -> Kernel {
    Kernel::from_rows("top-left", [[1., 0., 0.], [0., 0., 0.], [0., 0., 0.]]).unwrap()
}

fn bottom_right() -> Kernel {
    Kernel::from_rows("bottom-right", [[0., 0., 0.], [0., 0., 0.], [0., 0., 1.]]).unwrap()
}

#[test]
fn each_border_puts_what_its_definition_says_beyond_the_edges() {
    // 3 columns, 2 rows: [[10, 20, 30], [40, 50, 60]].
    let image = GrayImage::from_raw(3, 2, vec![10, 20, 30, 40, 50, 60]).unwrap();
    let shifted = |border: Border, kernel: Kernel| -> Vec<u8> {
        let operation = Operation::responses(vec![kernel])
            .unwrap()
            .with_border(border);
        let output = reference::run(&image, &operation);
        output.responses[0].as_raw().clone()
    };
    // Top-left neighbour of each pixel: row −1 and column −1 come from the border.
    // Zero (Keras 'same'): zeros.
    assert_eq!(shifted(Border::Zero, top_left()), [0, 0, 0, 0, 10, 20]);
    // Replicate (OpenCV BORDER_REPLICATE): the edge pixel again.
    assert_eq!(
        shifted(Border::Replicate, top_left()),
        [10, 10, 20, 10, 10, 20]
    );
    // Reflect 101 (OpenCV's default, numpy 'reflect'): row −1 is row 1, column −1 is column 1.
    assert_eq!(
        shifted(Border::Reflect, top_left()),
        [50, 40, 50, 20, 10, 20]
    );
    // Bottom-right neighbour: row 2 and column 3 come from the border.
    assert_eq!(shifted(Border::Zero, bottom_right()), [50, 60, 0, 0, 0, 0]);
    assert_eq!(
        shifted(Border::Replicate, bottom_right()),
        [50, 60, 60, 50, 60, 60]
    );
    assert_eq!(
        shifted(Border::Reflect, bottom_right()),
        [50, 60, 50, 20, 30, 20]
    );
    // One pixel wide: reflecting has nothing to mirror but the pixel itself, as OpenCV does.
    let column = GrayImage::from_raw(1, 2, vec![7, 9]).unwrap();
    let operation = Operation::responses(vec![top_left()])
        .unwrap()
        .with_border(Border::Reflect);
    assert_eq!(
        reference::run(&column, &operation).responses[0].as_raw(),
        &[9, 7]
    );
}

fn operations(border: Border) -> Vec<Operation> {
    let mut operations: Vec<Operation> = NAMED_KERNELS
        .iter()
        .map(|(name, _, _)| Operation::responses(vec![Kernel::named(name).unwrap()]).unwrap())
        .collect();
    operations.push(
        Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses(),
    );
    operations.push(
        Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 150).unwrap(),
    );
    operations.push(Operation::responses(vec![top_left(), bottom_right()]).unwrap());
    operations
        .into_iter()
        .map(|o| o.with_border(border))
        .collect()
}

#[test]
fn every_border_kernel_and_combination_equals_the_reference_on_every_backend_down_to_1x1() {
    let sizes = [(1, 1), (1, 5), (6, 1), (2, 2), (3, 3), (7, 4), (37, 23)];
    on_every_backend(|backend, engine| {
        for border in BORDERS {
            for (width, height) in sizes {
                let image = random_image(width, height, 255, u64::from(width * 100 + height));
                for operation in operations(border) {
                    let what = format!("{backend}, {border:?}, {width}×{height}, {operation:?}");
                    let output = engine.run(&image, &operation).unwrap();
                    let expected = reference::run(&image, &operation);
                    // Fractional kernels may differ by one on a GPU that fuses multiply-adds;
                    // the named ones here are exact in f32 except the box blur.
                    if operation.kernels().iter().any(|k| k.name() == "box-blur") {
                        let a = output.responses[0].as_raw();
                        let e = expected.responses[0].as_raw();
                        assert!(a.iter().zip(e).all(|(a, e)| a.abs_diff(*e) <= 1), "{what}");
                    } else {
                        assert_same_output(&output, &expected, &what);
                    }
                    let first = output.combined.as_ref().or(output.responses.first());
                    assert_eq!(first.unwrap().dimensions(), (width, height), "{what}");
                }
            }
        }
    });
}

#[test]
fn borders_hold_in_gpu_strips_and_in_streamed_bands() {
    let image = random_image(53, 41, 255, 5);
    for border in BORDERS {
        let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines())
            .with_responses()
            .with_border(border);
        let expected = reference::run(&image, &operation);
        if let Some(mut gpu) = common::gpu() {
            gpu.set_max_strip_rows(Some(4));
            assert_same_output(
                &gpu.run(&image, &operation).unwrap(),
                &expected,
                &format!("{border:?} in strips"),
            );
        }
        let expected = raw_outputs(expected);
        on_every_backend(|backend, engine| {
            for band_rows in [1, 2, 5, 64] {
                let streamed = streamed(engine, &image, &operation, Some(band_rows));
                assert_eq!(
                    streamed, expected,
                    "{backend}, {border:?}, bands of {band_rows}"
                );
            }
        });
    }
    // Streamed down to one row and one column.
    for (width, height) in [(1, 1), (1, 4), (5, 1), (2, 2)] {
        let image = random_image(width, height, 255, 9);
        for border in BORDERS {
            let operation = Operation::responses(vec![top_left()])
                .unwrap()
                .with_border(border);
            let mut engine = gpuconv::Engine::from(gpuconv::CpuBackend::new());
            assert_eq!(
                streamed(&mut engine, &image, &operation, Some(1)),
                reference_outputs(&image, &operation),
                "{border:?} {width}×{height}"
            );
        }
    }
}

/// The embedded path: passes prepared over an app's own buffer (odd stride and offset) and
/// texture read past their edges as each border says.
#[test]
fn prepared_passes_over_the_apps_buffers_and_textures_take_every_border() {
    let Some(app) = common::app::App::new() else {
        return;
    };
    let engine = gpuconv::GpuEngine::from_device(&app.device, &app.queue).unwrap();
    for (width, height) in [(1, 1), (2, 5), (37, 23)] {
        let image = random_image(width, height, 255, u64::from(width + height));
        let (offset, stride) = (3u64, width + 5);
        let mut bytes = vec![0x5a; (offset + u64::from(stride * height) + 4) as usize];
        for (y, row) in image.as_raw().chunks(width as usize).enumerate() {
            let start = offset as usize + y * stride as usize;
            bytes[start..start + width as usize].copy_from_slice(row);
        }
        let source = app.buffer_with(&bytes, wgpu::BufferUsages::STORAGE);
        let texture = app.texture(
            width,
            height,
            1,
            wgpu::TextureFormat::R8Unorm,
            wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        );
        app.queue.write_texture(
            texture.as_image_copy(),
            image.as_raw(),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(width),
                rows_per_image: None,
            },
            texture.size(),
        );
        for border in BORDERS {
            let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines())
                .with_responses()
                .with_border(border);
            let expected = reference::run(&image, &operation);
            let expected = [
                expected.combined.unwrap(),
                expected.responses[0].clone(),
                expected.responses[1].clone(),
            ];
            let row_bytes = width.next_multiple_of(4);
            let image_bytes = u64::from(row_bytes * height);
            for from_texture in [false, true] {
                let target = app.buffer_with(
                    &vec![0; (image_bytes * 3) as usize],
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                );
                let source = if from_texture {
                    gpuconv::GpuSource::Texture(&texture)
                } else {
                    gpuconv::GpuSource::Buffer {
                        buffer: &source,
                        offset,
                        bytes_per_row: stride,
                        width,
                        height,
                    }
                };
                let pass = engine
                    .prepare(
                        &operation,
                        source,
                        gpuconv::GpuTarget::Buffer {
                            buffer: &target,
                            offset: 0,
                            bytes_per_row: row_bytes,
                            bytes_per_image: image_bytes,
                        },
                    )
                    .unwrap();
                app.submit(&pass);
                let written = app.read_buffer(&target);
                for (i, expected) in expected.iter().enumerate() {
                    let actual = GrayImage::from_fn(width, height, |x, y| {
                        let at = i * image_bytes as usize + (y * row_bytes + x) as usize;
                        image::Luma([written[at]])
                    });
                    common::assert_same(
                        &actual,
                        expected,
                        &format!("{border:?} {width}×{height} image {i}, texture {from_texture}"),
                    );
                }
            }
        }
    }
}
