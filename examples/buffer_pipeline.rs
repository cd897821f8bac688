//! gpuconv inside a compute app that keeps its data in its own buffers.
//!
//! The app's own compute pass draws a test pattern (integer maths, so the CPU can redraw it exactly) into a buffer whose rows are padded to an
//! odd stride; gpuconv's pass turns it into the lesson's edge image in a second buffer of the
//! app's; the app copies that to a staging buffer. All three go into one encoder and one submit,
//! and the result is checked against gpuconv's CPU backend.
//!
//! ```sh
//! cargo run --example buffer_pipeline -- [OUTPUT.png]
//! ```

use gpuconv::{CpuBackend, GpuEngine, GpuSource, GpuTarget, Kernel, Operation};
use image::GrayImage;
use wgpu::util::DeviceExt;

const WIDTH: u32 = 501;
const HEIGHT: u32 = 333;
/// The app's own row stride: odd on purpose, to show gpuconv takes any.
const STRIDE: u32 = WIDTH + 7;

/// The app's shader: a pattern of rings and bars, one pixel per invocation, four per word.
const PATTERN_WGSL: &str = r#"
struct Size { width: u32, height: u32, stride: u32, words: u32 }
@group(0) @binding(0) var<uniform> size: Size;
@group(0) @binding(1) var<storage, read_write> pixels: array<atomic<u32>>;

@compute @workgroup_size(64)
fn draw(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x % size.stride;
    let y = id.x / size.stride;
    if x >= size.width || y >= size.height { return; }
    let dx = i32(x) - 250;
    let dy = i32(y) - 160;
    var value = select(40u, 220u, (u32(dx * dx + dy * dy) / 4000u) % 2u == 0u);
    if x > 400u && (y / 16u) % 2u == 0u { value = 255u; }
    let byte = y * size.stride + x;
    atomicOr(&pixels[byte / 4u], value << ((byte % 4u) * 8u));
}
"#;

fn main() -> anyhow::Result<()> {
    let output_path = std::env::args().nth(1);

    // The app's device, created the app's way.
    let instance = wgpu::Instance::default();
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("adapter: {}", adapter.get_info().name);

    // The app's buffers: its image, and where it wants the edges.
    let (out_width, out_height) = (WIDTH - 2, HEIGHT - 2);
    let out_bytes_per_row = out_width.next_multiple_of(4);
    let image_buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app image"),
        size: u64::from(STRIDE * HEIGHT).next_multiple_of(4),
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let edges_buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app edges"),
        size: u64::from(out_bytes_per_row * out_height),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app staging"),
        size: edges_buffer.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });

    // The app's own pipeline.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("app pattern"),
        source: wgpu::ShaderSource::Wgsl(PATTERN_WGSL.into()),
    });
    let pattern = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("app pattern"),
        layout: None,
        module: &module,
        entry_point: Some("draw"),
        compilation_options: Default::default(),
        cache: None,
    });
    let size = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("app size"),
        contents: bytemuck::cast_slice(&[WIDTH, HEIGHT, STRIDE, 0]),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let pattern_bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("app pattern"),
        layout: &pattern.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: size.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: image_buffer.as_entire_binding(),
            },
        ],
    });

    // gpuconv on the app's device: built once, the pass prepared once for these buffers.
    let engine = GpuEngine::from_device(&device, &queue)?;
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let edges = engine.prepare(
        &operation,
        GpuSource::Buffer {
            buffer: &image_buffer,
            offset: 0,
            bytes_per_row: STRIDE,
            width: WIDTH,
            height: HEIGHT,
        },
        GpuTarget::Buffer {
            buffer: &edges_buffer,
            offset: 0,
            bytes_per_row: out_bytes_per_row,
            bytes_per_image: 0,
        },
    )?;

    // One encoder: the app's pass, gpuconv's pass, the app's copy.
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("app frame"),
    });
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pattern);
        pass.set_bind_group(0, &pattern_bind_group, &[]);
        pass.dispatch_workgroups((STRIDE * HEIGHT).div_ceil(64), 1, 1);
    }
    edges.encode(&mut encoder);
    encoder.copy_buffer_to_buffer(&edges_buffer, 0, &staging, 0, staging.size());
    queue.submit([encoder.finish()]);

    // The app reads back its own buffer, its own way.
    staging.slice(..).map_async(wgpu::MapMode::Read, |result| {
        result.expect("mapping the app's staging buffer")
    });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let mapped = staging.slice(..).get_mapped_range()?;
    let gpu_edges = GrayImage::from_fn(out_width, out_height, |x, y| {
        image::Luma([mapped[(y * out_bytes_per_row + x) as usize]])
    });
    drop(mapped);
    staging.unmap();

    // The same pattern drawn on the CPU, filtered by the CPU backend: the two must agree.
    let pattern_cpu = GrayImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let (dx, dy) = (x as i32 - 250, y as i32 - 160);
        let mut value = if ((dx * dx + dy * dy) as u32 / 4000).is_multiple_of(2) {
            220
        } else {
            40
        };
        if x > 400 && (y / 16).is_multiple_of(2) {
            value = 255;
        }
        image::Luma([value])
    });
    let cpu_edges = CpuBackend::new()
        .run(&pattern_cpu, &operation)?
        .combined
        .expect("edge image");
    let differing = gpu_edges
        .pixels()
        .zip(cpu_edges.pixels())
        .filter(|(a, b)| a != b)
        .count();
    anyhow::ensure!(
        differing == 0,
        "{differing} pixels differ between the GPU pass and the CPU backend"
    );
    println!("{out_width}×{out_height} edge image from the app's buffer matches the CPU backend");

    if let Some(path) = output_path {
        gpuconv::io::save_gray(&gpu_edges, std::path::Path::new(&path))?;
        println!("wrote {path}");
    }
    Ok(())
}
