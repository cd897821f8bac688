//! gpuconv as one pass of a headless rendering app that keeps its images in textures.
//!
//! The app uploads a colour photo into an `Rgba8UnormSrgb` texture, gpuconv writes the lesson's
//! edge image into an `Rgba8Unorm` storage texture, and the app's own compute pass turns that into
//! ink on paper in a third texture, all recorded into one encoder. The app then reads its texture
//! back, writes a PNG and checks it against gpuconv's CPU backend.
//!
//! ```sh
//! cargo run --example texture_pipeline -- img/coffee.png coffee-ink.png
//! ```

use std::path::PathBuf;

use gpuconv::{CpuBackend, GpuEngine, GpuSource, GpuTarget, Kernel, Operation};
use image::GrayImage;

/// The app's own shader: dark ink where gpuconv found edges, on white paper.
const INK_WGSL: &str = r#"
@group(0) @binding(0) var edges: texture_2d<f32>;
@group(0) @binding(1) var ink: texture_storage_2d<rgba8unorm, write>;

@compute @workgroup_size(8, 8)
fn ink_on_paper(@builtin(global_invocation_id) id: vec3<u32>) {
    if any(id.xy >= textureDimensions(edges)) { return; }
    let edge = textureLoad(edges, id.xy, 0).r;
    textureStore(ink, id.xy, vec4(vec3(1.0 - edge), 1.0));
}
"#;

fn texture(
    device: &wgpu::Device,
    label: &str,
    width: u32,
    height: u32,
    format: wgpu::TextureFormat,
    usage: wgpu::TextureUsages,
) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage,
        view_formats: &[],
    })
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: texture_pipeline INPUT OUTPUT.png");
    };
    let photo = image::open(&input)?.into_rgba8();
    let (width, height) = photo.dimensions();
    let (out_width, out_height) = (width - 2, height - 2);

    // The app's device, created the app's way.
    let instance = wgpu::Instance::default();
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("adapter: {}", adapter.get_info().name);

    // The app's textures: the photo as it would be for display, and the two results.
    use wgpu::{TextureFormat as F, TextureUsages as U};
    let photo_texture = texture(
        &device,
        "app photo",
        width,
        height,
        F::Rgba8UnormSrgb,
        U::TEXTURE_BINDING | U::COPY_DST,
    );
    queue.write_texture(
        photo_texture.as_image_copy(),
        photo.as_raw(),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(width * 4),
            rows_per_image: None,
        },
        photo_texture.size(),
    );
    let edge_texture = texture(
        &device,
        "app edges",
        out_width,
        out_height,
        F::Rgba8Unorm,
        U::STORAGE_BINDING | U::TEXTURE_BINDING,
    );
    let ink_texture = texture(
        &device,
        "app ink",
        out_width,
        out_height,
        F::Rgba8Unorm,
        U::STORAGE_BINDING | U::COPY_SRC,
    );

    // gpuconv on the app's device, its pass prepared once for these textures.
    let engine = GpuEngine::from_device(&device, &queue)?;
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let edges = engine.prepare(
        &operation,
        GpuSource::Texture(&photo_texture),
        GpuTarget::Texture(&edge_texture),
    )?;

    // The app's own pass, reading gpuconv's result.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("app ink"),
        source: wgpu::ShaderSource::Wgsl(INK_WGSL.into()),
    });
    let ink = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("app ink"),
        layout: None,
        module: &module,
        entry_point: Some("ink_on_paper"),
        compilation_options: Default::default(),
        cache: None,
    });
    let ink_bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("app ink"),
        layout: &ink.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(
                    &edge_texture.create_view(&Default::default()),
                ),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::TextureView(
                    &ink_texture.create_view(&Default::default()),
                ),
            },
        ],
    });

    // Readback buffer: texture copies need rows padded to 256 bytes.
    let bytes_per_row = (out_width * 4).next_multiple_of(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT);
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app readback"),
        size: u64::from(bytes_per_row * out_height),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    // One encoder: gpuconv's pass, the app's pass on its result, the app's copy.
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("app frame"),
    });
    edges.encode(&mut encoder);
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&ink);
        pass.set_bind_group(0, &ink_bind_group, &[]);
        pass.dispatch_workgroups(out_width.div_ceil(8), out_height.div_ceil(8), 1);
    }
    encoder.copy_texture_to_buffer(
        ink_texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(bytes_per_row),
                rows_per_image: None,
            },
        },
        ink_texture.size(),
    );
    queue.submit([encoder.finish()]);

    readback.slice(..).map_async(wgpu::MapMode::Read, |result| {
        result.expect("mapping the app's readback buffer")
    });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let mapped = readback.slice(..).get_mapped_range()?;
    let inked = GrayImage::from_fn(out_width, out_height, |x, y| {
        image::Luma([mapped[(y * bytes_per_row + x * 4) as usize]])
    });
    drop(mapped);
    readback.unmap();
    inked.save(&output)?;
    println!("wrote {}", output.display());

    // The same picture from the CPU backend: the file's colours made gray, edges, inverted.
    let gray = gpuconv::io::load_gray(&input)?;
    let cpu_edges = CpuBackend::new()
        .run(&gray, &operation)?
        .combined
        .expect("edge image");
    let differing = inked
        .pixels()
        .zip(cpu_edges.pixels())
        .filter(|(a, b)| a[0] != 255 - b[0])
        .count();
    anyhow::ensure!(
        differing == 0,
        "{differing} pixels differ from the CPU backend"
    );
    println!("{out_width}×{out_height} ink-on-paper image matches the CPU backend");
    Ok(())
}
