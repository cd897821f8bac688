//! Criterion benches of the library's hot paths: `cargo bench`.
//!
//! The CPU backend on one kernel and on the fused edge image, and colour-to-gray conversion; the
//! GPU engine too when a hardware adapter exists (lavapipe timings say nothing about GPUs, so a
//! software adapter is skipped).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gpuconv::{CpuBackend, Engine, GpuEngine, Kernel, Operation};
use image::{DynamicImage, GrayImage, RgbImage};

fn picture(width: u32, height: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        image::Luma([((x * 7 + y * 13) ^ (x * y)) as u8])
    })
}

fn operations() -> [(&'static str, Operation); 2] {
    [
        (
            "vertical",
            Operation::responses(vec![Kernel::vertical_lines()]).expect("one kernel"),
        ),
        (
            "edge",
            Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()),
        ),
    ]
}

fn cpu(c: &mut Criterion) {
    let cpu = CpuBackend::new();
    for size in [1024, 4096] {
        let image = picture(size, size);
        let mut group = c.benchmark_group(format!("cpu/{size}x{size}"));
        group.throughput(Throughput::Elements(u64::from(size) * u64::from(size)));
        for (name, operation) in operations() {
            group.bench_function(name, |b| {
                b.iter(|| cpu.run(&image, &operation).expect("runs"))
            });
        }
        group.finish();
    }
}

fn gpu(c: &mut Criterion) {
    let Ok(gpu) = GpuEngine::new() else { return };
    if Engine::auto_rejects(gpu.adapter_info()).is_some() {
        eprintln!("skipping GPU benches on a software adapter");
        return;
    }
    let mut engine = Engine::from_gpu(gpu);
    let image = picture(4096, 4096);
    let mut group = c.benchmark_group("gpu/4096x4096 with transfers");
    group.throughput(Throughput::Elements(4096 * 4096));
    for (name, operation) in operations() {
        group.bench_function(name, |b| {
            b.iter(|| engine.run(&image, &operation).expect("runs"))
        });
    }
    group.finish();
}

fn luma(c: &mut Criterion) {
    let colour = RgbImage::from_fn(2048, 2048, |x, y| {
        image::Rgb([x as u8, y as u8, (x ^ y) as u8])
    });
    let mut group = c.benchmark_group("io");
    group.throughput(Throughput::Elements(2048 * 2048));
    group.bench_function("to_gray rgb8 2048x2048", |b| {
        b.iter(|| gpuconv::io::to_gray(DynamicImage::ImageRgb8(colour.clone())))
    });
    group.finish();
}

criterion_group!(benches, cpu, gpu, luma);
criterion_main!(benches);
