//! What the GPU's kernel is measured against, timed on the GPU itself: a WGSL copy kernel
//! (`shaders/copy.wgsl`, 16 bytes a load and a store), `copy_buffer_to_buffer`, and any
//! [`FilterPass`] over resources already on the device, each from timestamp queries rather than
//! the wall clock (which adds the submission's and the wait's own costs to a copy that takes a
//! fraction of a millisecond).
//!
//! Used by `gpuconv bench` and `scripts/gpu-bench.sh`; an app can time its own passes the same
//! way. Every function returns `Ok(None)` when the device has no timestamp queries (the
//! `Features` named on each).

use std::time::Duration;

use crate::error::{Error, Result};

use super::dispatch::{FilterPass, workgroup_grid};
use super::engine::GpuEngine;

/// The WGSL source of the copy kernel.
pub const COPY_WGSL: &str = include_str!("../../shaders/copy.wgsl");

/// Timestamp pairs written, resolved and read back synchronously: `count` intervals.
struct Stopwatch {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    count: u32,
}

impl Stopwatch {
    fn new(device: &wgpu::Device, count: u32) -> Self {
        let bytes = u64::from(count) * 16;
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("gpuconv::yardstick::timestamps"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Self {
            query_set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("gpuconv::yardstick::queries"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * count,
            }),
            resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            read: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            count,
        }
    }

    /// Timestamps at the beginning and end of compute pass `interval`.
    fn pass_writes(&self, interval: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.query_set,
            beginning_of_pass_write_index: Some(2 * interval),
            end_of_pass_write_index: Some(2 * interval + 1),
        }
    }

    /// Submits `encoder` with the resolve appended, waits, and returns the median interval.
    fn finish(self, gpu: &GpuEngine, mut encoder: wgpu::CommandEncoder) -> Result<Duration> {
        let queries = 2 * self.count;
        encoder.resolve_query_set(&self.query_set, 0..queries, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, self.resolve.size());
        let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
        gpu.queue().submit([encoder.finish()]);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(error.to_string()));
        }
        self.read.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        gpu.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let ticks: Vec<u64> = {
            let view = self
                .read
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        self.read.unmap();
        let period = f64::from(gpu.queue().get_timestamp_period());
        let mut intervals: Vec<Duration> = ticks
            .chunks_exact(2)
            .map(|pair| {
                Duration::from_nanos((pair[1].saturating_sub(pair[0]) as f64 * period) as u64)
            })
            .collect();
        intervals.sort();
        Ok(intervals[intervals.len() / 2])
    }
}

fn has(gpu: &GpuEngine, feature: wgpu::Features) -> bool {
    gpu.device().features().contains(feature)
}

/// Two device-local buffers of `bytes` each, the source filled, or an error when the device
/// cannot allocate them.
fn buffer_pair(
    gpu: &GpuEngine,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> Result<[wgpu::Buffer; 2]> {
    let validation = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
    let scope = gpu
        .device()
        .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let make = |label| {
        gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: usage | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let pair = [
        make("gpuconv::yardstick::source"),
        make("gpuconv::yardstick::destination"),
    ];
    let out_of_memory = pollster::block_on(scope.pop());
    if let Some(error) = out_of_memory.or(pollster::block_on(validation.pop())) {
        return Err(Error::Gpu(format!("allocating 2 × {bytes} bytes: {error}")));
    }
    // Written once so that no copy below pays for wgpu's first-use zeroing.
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    for buffer in &pair {
        encoder.clear_buffer(buffer, 0, None);
    }
    gpu.queue().submit([encoder.finish()]);
    Ok(pair)
}

/// The median time, over `repeat` passes after one warm-up, of the WGSL copy kernel copying
/// `bytes` (rounded down to 16) between two buffers: the bytes read plus written divided by
/// this is the bandwidth a memory-bound kernel can reach. Needs `Features::TIMESTAMP_QUERY`.
pub fn copy_kernel(gpu: &GpuEngine, bytes: u64, repeat: u32) -> Result<Option<Duration>> {
    let bytes = bytes & !15;
    if !has(gpu, wgpu::Features::TIMESTAMP_QUERY) || bytes == 0 {
        return Ok(None);
    }
    let device = gpu.device();
    let limit = device.limits().max_storage_buffer_binding_size;
    if bytes > limit {
        return Err(Error::Gpu(format!(
            "copying {bytes} bytes in one binding: the device binds at most {limit}"
        )));
    }
    let [source, destination] = buffer_pair(gpu, bytes, wgpu::BufferUsages::STORAGE)?;
    // Whatever goes wrong below is this measurement's error, not the engine's next run's.
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("gpuconv::yardstick::copy"),
        source: wgpu::ShaderSource::Wgsl(COPY_WGSL.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("gpuconv::yardstick::copy"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("gpuconv::yardstick::copy"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: source.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: destination.as_entire_binding(),
            },
        ],
    });
    let limits = device.limits();
    let invocations = u32::try_from(bytes / 16)
        .map_err(|_| Error::Gpu(format!("{bytes} bytes are too many to copy in one pass")))?;
    let grid = workgroup_grid(invocations, limits.max_compute_workgroups_per_dimension);
    let stopwatch = Stopwatch::new(device, repeat.max(1));
    if let Some(error) = pollster::block_on(scope.pop()) {
        return Err(Error::Gpu(error.to_string()));
    }
    let mut encoder = device.create_command_encoder(&Default::default());
    for run in 0..=stopwatch.count {
        // The first pass warms up and is not timed.
        let writes = (run > 0).then(|| stopwatch.pass_writes(run - 1));
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("gpuconv::yardstick::copy"),
            timestamp_writes: writes,
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(grid.0, grid.1, 1);
    }
    stopwatch.finish(gpu, encoder).map(Some)
}

/// The median time, over `repeat` copies after one warm-up, of `copy_buffer_to_buffer` of
/// `bytes` (rounded down to 4), between timestamps written in the encoder around each copy.
/// Needs `Features::TIMESTAMP_QUERY_INSIDE_ENCODERS`.
pub fn copy_buffer(gpu: &GpuEngine, bytes: u64, repeat: u32) -> Result<Option<Duration>> {
    let bytes = bytes & !3;
    let needed = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
    if !has(gpu, needed) || bytes == 0 {
        return Ok(None);
    }
    if bytes > gpu.device().limits().max_buffer_size {
        return Err(Error::Gpu(format!(
            "copying {bytes} bytes: the device's buffers hold at most {}",
            gpu.device().limits().max_buffer_size
        )));
    }
    let [source, destination] = buffer_pair(gpu, bytes, wgpu::BufferUsages::empty())?;
    let stopwatch = Stopwatch::new(gpu.device(), repeat.max(1));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&source, 0, &destination, 0, bytes);
    for run in 0..stopwatch.count {
        encoder.write_timestamp(&stopwatch.query_set, 2 * run);
        encoder.copy_buffer_to_buffer(&source, 0, &destination, 0, bytes);
        encoder.write_timestamp(&stopwatch.query_set, 2 * run + 1);
    }
    stopwatch.finish(gpu, encoder).map(Some)
}

/// The median time, over `repeat` runs after one warm-up, of `pass` (over resources already on
/// the device), each run a compute pass of its own with timestamps at its beginning and end.
/// Needs `Features::TIMESTAMP_QUERY`.
pub fn pass(gpu: &GpuEngine, pass: &FilterPass, repeat: u32) -> Result<Option<Duration>> {
    if !has(gpu, wgpu::Features::TIMESTAMP_QUERY) {
        return Ok(None);
    }
    let stopwatch = Stopwatch::new(gpu.device(), repeat.max(1));
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    for run in 0..=stopwatch.count {
        let writes = (run > 0).then(|| stopwatch.pass_writes(run - 1));
        let mut compute = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("gpuconv::yardstick::filter"),
            timestamp_writes: writes,
        });
        pass.encode_in_pass(&mut compute);
    }
    stopwatch.finish(gpu, encoder).map(Some)
}
