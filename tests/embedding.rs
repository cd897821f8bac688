//! The embedded path: an app's own device, buffers, textures and encoder. Every result is checked
//! bit for bit against the CPU reference, on random images of odd sizes with buffer strides and
//! offsets that are not multiples of 4 or 256.

mod common;

use common::app::App;
use common::random_image;
use gpuconv::{
    Error, FilterOutput, GpuEngine, GpuSource, GpuTarget, Kernel, Operation, io, reference,
};
use image::GrayImage;

fn images(output: &FilterOutput) -> Vec<GrayImage> {
    output
        .combined
        .iter()
        .chain(&output.responses)
        .cloned()
        .collect()
}

fn edge_with_responses() -> Operation {
    Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()).with_responses()
}

/// A tiny deterministic generator for sizes and strides.
fn pick(seed: &mut u64, range: std::ops::Range<u32>) -> u32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    range.start + ((*seed >> 33) as u32) % (range.end - range.start)
}

#[test]
fn buffer_to_buffer_with_odd_offsets_and_strides_matches_the_reference() {
    let Some(app) = App::new() else { return };
    let mut engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let mut seed = 1;
    for case in 0..12 {
        // Every rows-per-invocation choice, on every kind of layout, with bytes around the
        // images that must stay untouched.
        engine.set_rows_per_invocation([1, 2, 3, 4, 8][case as usize % 5]);
        let (width, height) = (pick(&mut seed, 3..400), pick(&mut seed, 3..300));
        let operation = match case % 3 {
            0 => edge_with_responses(),
            1 => Operation::responses(vec![
                Kernel::named("x").unwrap(),
                Kernel::named("laplacian").unwrap(),
                Kernel::named("sharpen").unwrap(),
            ])
            .unwrap(),
            _ => Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 200)
                .unwrap(),
        };
        let image = random_image(width, height, 255, case);
        let expected = images(&reference::run(&image, &operation));

        // Source: rows padded by an odd number of bytes, after an odd offset; every fourth
        // case word-aligned instead (offset and stride multiples of 4), which the shader
        // fetches by whole words.
        let (source_offset, source_stride) = if case % 4 == 3 {
            let offset = u64::from(pick(&mut seed, 0..80) * 4);
            (
                offset,
                width.next_multiple_of(4) + pick(&mut seed, 0..3) * 4,
            )
        } else {
            let offset = u64::from(pick(&mut seed, 0..40) * 2 + 1);
            (offset, width + pick(&mut seed, 0..9) * 2 + 1)
        };
        let mut source_bytes =
            vec![0x5a; (source_offset + u64::from(source_stride * height) + 3) as usize];
        for (y, row) in image.as_raw().chunks(width as usize).enumerate() {
            let start = source_offset as usize + y * source_stride as usize;
            source_bytes[start..start + width as usize].copy_from_slice(row);
        }
        let source = app.buffer_with(&source_bytes, wgpu::BufferUsages::STORAGE);

        // Target: word-aligned but not 256-aligned, with gaps between rows and images.
        let (out_width, out_height) = (width - 2, height - 2);
        let target_offset = u64::from(pick(&mut seed, 1..30) * 4);
        let target_stride = out_width.next_multiple_of(4) + pick(&mut seed, 0..4) * 4;
        let bytes_per_image =
            u64::from(target_stride * out_height) + u64::from(pick(&mut seed, 0..5) * 4);
        let target_size = target_offset + bytes_per_image * expected.len() as u64 + 8;
        let target = app.buffer_with(
            &vec![0xab; target_size as usize],
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );

        let pass = engine
            .prepare(
                &operation,
                GpuSource::Buffer {
                    buffer: &source,
                    offset: source_offset,
                    bytes_per_row: source_stride,
                    width,
                    height,
                },
                GpuTarget::Buffer {
                    buffer: &target,
                    offset: target_offset,
                    bytes_per_row: target_stride,
                    bytes_per_image,
                },
            )
            .unwrap();
        app.submit(&pass);
        let bytes = app.read_buffer(&target);

        let mut untouched = vec![true; bytes.len()];
        for (i, expected) in expected.iter().enumerate() {
            for y in 0..out_height as usize {
                let start = (target_offset + bytes_per_image * i as u64) as usize
                    + y * target_stride as usize;
                untouched[start..start + out_width as usize].fill(false);
            }
            let actual = GrayImage::from_fn(out_width, out_height, |x, y| {
                let at = (target_offset + bytes_per_image * i as u64) as usize
                    + (y * target_stride + x) as usize;
                image::Luma([bytes[at]])
            });
            common::assert_same(
                &actual,
                expected,
                &format!("case {case}: {width}×{height}, image {i}"),
            );
        }
        let clobbered = bytes
            .iter()
            .zip(&untouched)
            .filter(|&(&b, &u)| u && b != 0xab)
            .count();
        assert_eq!(
            clobbered, 0,
            "case {case}: bytes outside the images changed"
        );
    }
}

#[test]
fn texture_sources_become_gray_by_the_luma_rule() {
    let Some(app) = App::new() else { return };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let (width, height) = (37, 23);
    let rgba: Vec<u8> = random_image(width * 4, height, 255, 9).into_raw();
    let gray = random_image(width, height, 255, 10);
    let operation = Operation::responses(vec![
        Kernel::named("identity").unwrap(),
        Kernel::vertical_lines(),
    ])
    .unwrap();
    let usage = wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST;
    let luma = GrayImage::from_fn(width, height, |x, y| {
        let i = ((y * width + x) * 4) as usize;
        image::Luma([io::luma([rgba[i], rgba[i + 1], rgba[i + 2]])])
    });
    for (format, bytes, expected_gray) in [
        (wgpu::TextureFormat::R8Unorm, gray.as_raw(), &gray),
        (wgpu::TextureFormat::Rgba8Unorm, &rgba, &luma),
        (wgpu::TextureFormat::Rgba8UnormSrgb, &rgba, &luma),
    ] {
        let texture = app.texture(width, height, 1, format, usage);
        let texel_bytes = format.block_copy_size(None).unwrap();
        app.queue.write_texture(
            texture.as_image_copy(),
            bytes,
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(width * texel_bytes),
                rows_per_image: None,
            },
            texture.size(),
        );
        let target = app.buffer_with(
            &vec![0; 2 * 36 * 21],
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let pass = engine
            .prepare(
                &operation,
                GpuSource::Texture(&texture),
                GpuTarget::Buffer {
                    buffer: &target,
                    offset: 0,
                    bytes_per_row: 36,
                    bytes_per_image: 36 * 21,
                },
            )
            .unwrap();
        app.submit(&pass);
        let bytes = app.read_buffer(&target);
        let expected = reference::run(expected_gray, &operation);
        for (i, expected) in expected.responses.iter().enumerate() {
            let actual = GrayImage::from_fn(35, 21, |x, y| {
                image::Luma([bytes[i * 36 * 21 + (y * 36 + x) as usize]])
            });
            common::assert_same(&actual, expected, &format!("{format:?} source, image {i}"));
        }
    }
}

#[test]
fn every_srgb_byte_comes_back_exactly() {
    let Some(app) = App::new() else { return };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    // 256 gray levels (r = g = b, so luma is the level itself), as a 16×16 sRGB texture framed
    // so that the identity kernel's output covers them all.
    let (width, height) = (18, 18);
    let texels: Vec<u8> = (0..width * height)
        .flat_map(|i| {
            let (x, y) = (i % width, i / width);
            let level = if (1..17).contains(&x) && (1..17).contains(&y) {
                ((y - 1) * 16 + x - 1) as u8
            } else {
                0
            };
            [level, level, level, 255]
        })
        .collect();
    let texture = app.texture(
        width,
        height,
        1,
        wgpu::TextureFormat::Rgba8UnormSrgb,
        wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
    );
    app.queue.write_texture(
        texture.as_image_copy(),
        &texels,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(width * 4),
            rows_per_image: None,
        },
        texture.size(),
    );
    let target = app.buffer_with(
        &[0; 256],
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let operation = Operation::responses(vec![Kernel::named("identity").unwrap()]).unwrap();
    let pass = engine
        .prepare(
            &operation,
            GpuSource::Texture(&texture),
            GpuTarget::Buffer {
                buffer: &target,
                offset: 0,
                bytes_per_row: 16,
                bytes_per_image: 0,
            },
        )
        .unwrap();
    app.submit(&pass);
    assert_eq!(app.read_buffer(&target), (0..=255).collect::<Vec<u8>>());
}

#[test]
fn texture_targets_hold_one_image_per_layer() {
    let Some(app) = App::new() else { return };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let image = random_image(45, 31, 255, 11);
    let operation = edge_with_responses();
    let expected = images(&reference::run(&image, &operation));
    let source = app.buffer_with(image.as_raw(), wgpu::BufferUsages::STORAGE);
    let source = GpuSource::Buffer {
        buffer: &source,
        offset: 0,
        bytes_per_row: 45,
        width: 45,
        height: 31,
    };
    let usage = wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_SRC;
    for format in [
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureFormat::R32Uint,
    ] {
        let texture = app.texture(43, 29, 3, format, usage);
        app.submit(
            &engine
                .prepare(&operation, source, GpuTarget::Texture(&texture))
                .unwrap(),
        );
        for (layer, expected) in expected.iter().enumerate() {
            let texels = app.read_texture(&texture, layer as u32);
            let actual = GrayImage::from_fn(43, 29, |x, y| {
                let texel = texels[(y * 43 + x) as usize];
                if format == wgpu::TextureFormat::Rgba8Unorm {
                    assert_eq!(
                        (texel[1], texel[2], texel[3]),
                        (texel[0], texel[0], 255),
                        "gray in r, g, b; alpha 1"
                    );
                    image::Luma([texel[0]])
                } else {
                    let value = u32::from_le_bytes(texel);
                    assert!(value <= 255);
                    image::Luma([value as u8])
                }
            });
            common::assert_same(&actual, expected, &format!("{format:?} layer {layer}"));
        }
    }
}

#[test]
fn a_prepared_pass_follows_new_contents_of_its_source() {
    let Some(app) = App::new() else { return };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let source = app.buffer_with(
        &[0; 64 * 48],
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
    );
    let target = app.buffer_with(
        &[0; 64 * 46],
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let pass = engine
        .prepare(
            &operation,
            GpuSource::Buffer {
                buffer: &source,
                offset: 0,
                bytes_per_row: 64,
                width: 64,
                height: 48,
            },
            GpuTarget::Buffer {
                buffer: &target,
                offset: 0,
                bytes_per_row: 64,
                bytes_per_image: 0,
            },
        )
        .unwrap();
    // Frames of a video: new pixels each time, the same pass.
    for frame in 0..3 {
        let image = random_image(64, 48, 255, 100 + frame);
        app.queue.write_buffer(&source, 0, image.as_raw());
        app.submit(&pass);
        let bytes = app.read_buffer(&target);
        let actual = GrayImage::from_fn(62, 46, |x, y| image::Luma([bytes[(y * 64 + x) as usize]]));
        common::assert_same(
            &actual,
            reference::run(&image, &operation)
                .combined
                .as_ref()
                .unwrap(),
            &format!("frame {frame}"),
        );
    }
}

#[test]
fn run_async_gives_the_same_images() {
    let Some(mut engine) = common::gpu() else {
        return;
    };
    let image = random_image(301, 77, 255, 12);
    let operation = edge_with_responses();
    let output = pollster::block_on(engine.run_async(&image, &operation)).unwrap();
    common::assert_same_output(&output, &reference::run(&image, &operation), "run_async");
}

#[test]
fn mistakes_are_errors_that_say_what_to_fix() {
    let Some(app) = App::new() else { return };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let operation = Operation::responses(vec![Kernel::vertical_lines()]).unwrap();
    let storage = wgpu::BufferUsages::STORAGE;
    let good_source = app.buffer_with(&[1; 100], storage);
    let source = GpuSource::Buffer {
        buffer: &good_source,
        offset: 0,
        bytes_per_row: 10,
        width: 10,
        height: 10,
    };
    let good_target = app.buffer_with(&[0; 64], storage);
    let target = GpuTarget::Buffer {
        buffer: &good_target,
        offset: 0,
        bytes_per_row: 8,
        bytes_per_image: 0,
    };
    assert!(engine.prepare(&operation, source, target).is_ok());

    let uniform_only = app.buffer_with(&[1; 100], wgpu::BufferUsages::UNIFORM);
    let small = app.buffer_with(&[1; 96], storage);
    let rgba16 = app.texture(
        10,
        10,
        1,
        wgpu::TextureFormat::Rgba16Float,
        wgpu::TextureUsages::TEXTURE_BINDING,
    );
    let unbound = app.texture(
        10,
        10,
        1,
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureUsages::COPY_DST,
    );
    let full_size = app.texture(
        10,
        10,
        1,
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureUsages::STORAGE_BINDING,
    );
    let cases: Vec<(GpuSource, GpuTarget, &str)> = vec![
        (
            GpuSource::Buffer {
                buffer: &uniform_only,
                offset: 0,
                bytes_per_row: 10,
                width: 10,
                height: 10,
            },
            target,
            "needs BufferUsages::STORAGE",
        ),
        (
            GpuSource::Buffer {
                buffer: &small,
                offset: 0,
                bytes_per_row: 10,
                width: 10,
                height: 10,
            },
            target,
            "needs at least 100 bytes",
        ),
        (
            GpuSource::Buffer {
                buffer: &good_source,
                offset: 0,
                bytes_per_row: 9,
                width: 10,
                height: 10,
            },
            target,
            "bytes_per_row 9 is less than the width 10",
        ),
        (
            GpuSource::Texture(&rgba16),
            target,
            "Rgba16Float is not one of",
        ),
        (
            GpuSource::Texture(&unbound),
            target,
            "needs TextureUsages::TEXTURE_BINDING",
        ),
        (
            source,
            GpuTarget::Buffer {
                buffer: &good_target,
                offset: 2,
                bytes_per_row: 8,
                bytes_per_image: 0,
            },
            "must be multiples of 4",
        ),
        (
            source,
            GpuTarget::Buffer {
                buffer: &good_target,
                offset: 0,
                bytes_per_row: 4,
                bytes_per_image: 0,
            },
            "less than an output row's 8 bytes",
        ),
        (
            source,
            GpuTarget::Buffer {
                buffer: &good_target,
                offset: 8,
                bytes_per_row: 8,
                bytes_per_image: 0,
            },
            "needs at least 72 bytes",
        ),
        (
            source,
            GpuTarget::Texture(&full_size),
            "is 10×10, but the output is 8×8",
        ),
        (
            source,
            GpuTarget::Buffer {
                buffer: &good_source,
                offset: 0,
                bytes_per_row: 8,
                bytes_per_image: 0,
            },
            "is the source",
        ),
    ];
    for (source, target, expected) in cases {
        match engine.prepare(&operation, source, target) {
            Err(error @ Error::InvalidResource { .. }) => {
                assert!(
                    error.to_string().contains(expected),
                    "expected '{expected}' in '{error}'"
                );
            }
            other => panic!("expected an error containing '{expected}', got {other:?}"),
        }
    }
    let tiny = GpuSource::Buffer {
        buffer: &good_source,
        offset: 0,
        bytes_per_row: 2,
        width: 2,
        height: 40,
    };
    assert!(matches!(
        engine.prepare(&operation, tiny, target),
        Err(Error::ImageTooSmall {
            width: 2,
            height: 40
        })
    ));
}

#[test]
fn a_device_without_storage_textures_is_refused_with_a_way_to_fix_it() {
    let limits = wgpu::Limits {
        max_storage_textures_per_shader_stage: 0,
        ..wgpu::Limits::downlevel_defaults()
    };
    let Some(app) = App::with_limits(limits) else {
        return;
    };
    match GpuEngine::from_device(&app.device, &app.queue) {
        Err(Error::DeviceUnsuitable(message)) => {
            assert!(
                message.contains("max_storage_textures_per_shader_stage is 0"),
                "{message}"
            );
            assert!(message.contains("downlevel_defaults"), "{message}");
        }
        other => panic!("expected DeviceUnsuitable, got {other:?}"),
    }
}

/// A buffer the app fills itself, of any size (not padded to 4 bytes like `create_buffer_init`).
fn raw_buffer(app: &App, size: u64, contents: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
    let buffer = app.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size,
        usage: usage | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    app.queue.write_buffer(&buffer, 0, contents);
    buffer
}

/// Reads `out_width × out_height` pixels at `offset` with row stride `stride` from `bytes`.
fn image_at(
    bytes: &[u8],
    offset: usize,
    stride: u32,
    out_width: u32,
    out_height: u32,
) -> GrayImage {
    GrayImage::from_fn(out_width, out_height, |x, y| {
        image::Luma([bytes[offset + (y * stride + x) as usize]])
    })
}

#[test]
fn buffers_of_any_size_and_images_packed_word_to_word() {
    let Some(app) = App::new() else { return };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let image = random_image(10, 10, 255, 20);
    let operation = edge_with_responses();
    let expected = images(&reference::run(&image, &operation));
    // 102 and 202 bytes: sizes that are not whole words.
    let source = raw_buffer(&app, 102, image.as_raw(), wgpu::BufferUsages::STORAGE);
    // The tightest legal layout: each image starts on the word right after the previous one's
    // last pixel (8 rows of stride 8, the last row 8 wide: 64 bytes), so neighbouring images
    // share no word but touch.
    let target = raw_buffer(
        &app,
        202,
        &[0xcd; 200],
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let pass = engine
        .prepare(
            &operation,
            GpuSource::Buffer {
                buffer: &source,
                offset: 0,
                bytes_per_row: 10,
                width: 10,
                height: 10,
            },
            GpuTarget::Buffer {
                buffer: &target,
                offset: 4,
                bytes_per_row: 8,
                bytes_per_image: 64,
            },
        )
        .unwrap();
    app.submit(&pass);
    let bytes = app.read_buffer(&target);
    for (i, expected) in expected.iter().enumerate() {
        common::assert_same(
            &image_at(&bytes, 4 + 64 * i, 8, 8, 8),
            expected,
            &format!("image {i}"),
        );
    }
    assert_eq!(&bytes[..4], &[0xcd; 4], "bytes before the first image");
    assert_eq!(&bytes[196..], &[0xcd; 4], "bytes after the last image");
}

#[test]
fn buffers_larger_than_one_binding_are_bound_in_part() {
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 1 << 16,
        ..wgpu::Limits::default()
    };
    let Some(app) = App::with_limits(limits) else {
        return;
    };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let (width, height, stride) = (61, 50, 67);
    let image = random_image(width, height, 255, 21);
    let operation =
        Operation::responses(vec![Kernel::vertical_lines(), Kernel::named("x").unwrap()]).unwrap();
    let expected = images(&reference::run(&image, &operation));
    let (source_offset, target_offset) = (100_003usize, 150_004usize);
    let mut source_bytes = vec![7u8; 256 * 1024];
    for (y, row) in image.as_raw().chunks(width as usize).enumerate() {
        let start = source_offset + y * stride as usize;
        source_bytes[start..start + width as usize].copy_from_slice(row);
    }
    let source = app.buffer_with(&source_bytes, wgpu::BufferUsages::STORAGE);
    let target = app.buffer_with(
        &vec![0; 256 * 1024],
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    );
    let pass = engine
        .prepare(
            &operation,
            GpuSource::Buffer {
                buffer: &source,
                offset: source_offset as u64,
                bytes_per_row: stride,
                width,
                height,
            },
            GpuTarget::Buffer {
                buffer: &target,
                offset: target_offset as u64,
                bytes_per_row: 60,
                bytes_per_image: 4000,
            },
        )
        .unwrap();
    app.submit(&pass);
    let bytes = app.read_buffer(&target);
    for (i, expected) in expected.iter().enumerate() {
        common::assert_same(
            &image_at(&bytes, target_offset + 4000 * i, 60, 59, 48),
            expected,
            &format!("image {i}"),
        );
    }
    // An image spanning more than one binding may is refused, not split.
    let wide = GpuSource::Buffer {
        buffer: &source,
        offset: 0,
        bytes_per_row: 2000,
        width: 2000,
        height: 40,
    };
    let target = GpuTarget::Buffer {
        buffer: &target,
        offset: 0,
        bytes_per_row: 2000,
        bytes_per_image: 0,
    };
    match engine.prepare(
        &Operation::responses(vec![Kernel::vertical_lines()]).unwrap(),
        wide,
        target,
    ) {
        Err(error @ Error::InvalidResource { .. }) => assert!(
            error
                .to_string()
                .contains("max_storage_buffer_binding_size"),
            "{error}"
        ),
        other => panic!("expected a binding-size error, got {other:?}"),
    }
}

#[test]
fn a_single_layer_texture_target_and_a_pass_inside_the_apps_own_compute_pass() {
    let Some(app) = App::new() else { return };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let image = random_image(23, 19, 255, 22);
    let operation =
        Operation::threshold(Kernel::vertical_lines(), Kernel::horizontal_lines(), 300).unwrap();
    let source = app.buffer_with(image.as_raw(), wgpu::BufferUsages::STORAGE);
    let source = GpuSource::Buffer {
        buffer: &source,
        offset: 0,
        bytes_per_row: 23,
        width: 23,
        height: 19,
    };
    let texture = app.texture(
        21,
        17,
        1,
        wgpu::TextureFormat::R32Uint,
        wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_SRC,
    );
    let pass = engine
        .prepare(&operation, source, GpuTarget::Texture(&texture))
        .unwrap();
    let mut encoder = app.device.create_command_encoder(&Default::default());
    {
        let mut compute = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("the app's pass"),
            timestamp_writes: None,
        });
        pass.encode_in_pass(&mut compute);
    }
    app.queue.submit([encoder.finish()]);
    let texels = app.read_texture(&texture, 0);
    let actual = GrayImage::from_fn(21, 17, |x, y| {
        image::Luma([u32::from_le_bytes(texels[(y * 21 + x) as usize]) as u8])
    });
    common::assert_same(
        &actual,
        reference::run(&image, &operation)
            .combined
            .as_ref()
            .unwrap(),
        "threshold into R32Uint",
    );
}

#[test]
fn a_cancelled_run_async_leaves_the_engine_usable() {
    use std::future::Future;
    let Some(mut engine) = common::gpu() else {
        return;
    };
    // Large enough (a 1 Mpx pass; 100 strips of 10 rows) that four polls 20 ms apart cannot
    // finish it, however fast the GPU.
    let image = random_image(1001, 1002, 255, 23);
    let operation = edge_with_responses();
    // One pass, and strips of 10 rows (two in flight when the future is dropped), dropped after
    // the first poll and after a few more once the GPU has had time to finish some strips.
    for (strip_rows, polls) in [(None, 1), (Some(10), 1), (Some(10), 4)] {
        engine.set_max_strip_rows(strip_rows);
        {
            let future = engine.run_async(&image, &operation);
            let mut future = std::pin::pin!(future);
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            // Start it (upload, submit, map requested), then drop it before it finishes.
            for _ in 0..polls {
                assert!(future.as_mut().poll(&mut context).is_pending());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let output = engine.run(&image, &operation).unwrap();
        common::assert_same_output(
            &output,
            &reference::run(&image, &operation),
            &format!("after a cancelled run_async, strips of {strip_rows:?} rows, {polls} polls"),
        );
    }
    engine.set_max_strip_rows(None);
}

#[test]
fn more_mistakes_are_errors() {
    let Some(app) = App::new() else { return };
    let engine = GpuEngine::from_device(&app.device, &app.queue).unwrap();
    let two_images = edge_with_responses().with_responses();
    let storage = wgpu::BufferUsages::STORAGE;
    let shared = app.buffer_with(&[1; 400], storage);
    let source = GpuSource::Buffer {
        buffer: &shared,
        offset: 0,
        bytes_per_row: 10,
        width: 10,
        height: 10,
    };
    let other = app.buffer_with(&[0; 400], storage);
    let one_layer = app.texture(
        8,
        8,
        1,
        wgpu::TextureFormat::Rgba8Unorm,
        wgpu::TextureUsages::STORAGE_BINDING,
    );
    let float_target = app.texture(
        8,
        8,
        3,
        wgpu::TextureFormat::Rgba16Float,
        wgpu::TextureUsages::STORAGE_BINDING,
    );
    let multisampled = app.device.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: 10,
            height: 10,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 4,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::RENDER_ATTACHMENT,
        view_formats: &[],
    });
    let buffer_target = GpuTarget::Buffer {
        buffer: &other,
        offset: 0,
        bytes_per_row: 8,
        bytes_per_image: 64,
    };
    let cases: Vec<(GpuSource, GpuTarget, &str)> = vec![
        (
            source,
            GpuTarget::Texture(&one_layer),
            "has 1 array layers, 3 are needed",
        ),
        (
            source,
            GpuTarget::Texture(&float_target),
            "Rgba16Float is not one of Rgba8Unorm, R32Uint",
        ),
        (
            GpuSource::Texture(&multisampled),
            buffer_target,
            "one sample per pixel",
        ),
        (
            source,
            GpuTarget::Buffer {
                buffer: &other,
                offset: 0,
                bytes_per_row: 8,
                bytes_per_image: 60,
            },
            "bytes_per_image 60 is less than one image's 64 bytes",
        ),
        (
            source,
            GpuTarget::Buffer {
                buffer: &shared,
                offset: 200,
                bytes_per_row: 8,
                bytes_per_image: 64,
            },
            "even in separate ranges",
        ),
        (
            GpuSource::Buffer {
                buffer: &shared,
                offset: u64::MAX - 5,
                bytes_per_row: 10,
                width: 10,
                height: 10,
            },
            buffer_target,
            "past 2^64",
        ),
    ];
    for (source, target, expected) in cases {
        match engine.prepare(&two_images, source, target) {
            Err(error @ Error::InvalidResource { .. }) => assert!(
                error.to_string().contains(expected),
                "expected '{expected}' in '{error}'"
            ),
            other => panic!("expected an error containing '{expected}', got {other:?}"),
        }
    }
}
