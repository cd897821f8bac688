//! The GPU backend: wgpu compute with the shader in `shaders/conv3x3.wgsl`.
//!
//! Split by concern: [`device`] finds an adapter and opens a device, [`pipeline`] builds the
//! pipeline once, [`dispatch`] owns buffers, uploads and records the pass, [`readback`] maps
//! results back. [`GpuEngine`] ties them together and keeps everything between calls.

pub mod device;
pub mod dispatch;
pub mod pipeline;
pub mod readback;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::GrayImage;

use crate::error::{Error, Result};
use crate::operation::{FilterOutput, Operation, output_size};
use crate::params::Conv3x3Params;
use crate::timings::Timings;

use dispatch::Conv3x3Buffers;
use pipeline::Conv3x3Pipeline;
use readback::PassTimer;

/// A long-lived GPU engine: device, queue, pipeline and reusable buffers. Build it once and run
/// many images through it; buffers grow to the largest image seen and are then reused.
#[derive(Debug)]
pub struct GpuEngine {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter_info: wgpu::AdapterInfo,
    pipeline: Conv3x3Pipeline,
    buffers: Option<Conv3x3Buffers>,
    timer: Option<PassTimer>,
    /// The first error wgpu reported outside any error scope, on devices gpuconv created.
    uncaptured: Option<Arc<Mutex<Option<String>>>>,
}

impl GpuEngine {
    /// Finds an adapter (honouring `WGPU_BACKEND`, `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`) and
    /// opens a device on it. Blocks; see [`new_async`](Self::new_async).
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// [`new`](Self::new) without blocking.
    pub async fn new_async() -> Result<Self> {
        let instance = device::instance_from_env();
        let adapter = device::select_adapter(&instance).await?;
        Self::from_adapter(&adapter).await
    }

    /// Opens a device on `adapter` with its full limits (and timestamp queries when it has them)
    /// and builds the engine on it.
    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        let (device, queue) = device::request_device(adapter).await?;
        let mut engine = Self::from_device(&device, &queue)?;
        // The device is ours: errors nothing else captured become results of the next call
        // instead of wgpu's default panic.
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            slot.get_or_insert_with(|| error.to_string());
        }));
        engine.uncaptured = Some(uncaptured);
        Ok(engine)
    }

    /// An engine on a device and queue the caller already has. gpuconv needs compute shaders
    /// and two storage buffers per stage (every WebGPU device has them); kernel timings need
    /// `Features::TIMESTAMP_QUERY`, which is used only if the device was created with it.
    pub fn from_device(device: &wgpu::Device, queue: &wgpu::Queue) -> Result<Self> {
        let limits = device.limits();
        if limits.max_storage_buffers_per_shader_stage < 2 {
            return Err(Error::DeviceUnsuitable(format!(
                "max_storage_buffers_per_shader_stage is {}, 2 are needed; request \
                 wgpu::Limits::downlevel_defaults() or better when creating the device",
                limits.max_storage_buffers_per_shader_stage
            )));
        }
        if limits.max_compute_workgroup_size_x < pipeline::WORKGROUP_SIZE
            || limits.max_compute_invocations_per_workgroup < pipeline::WORKGROUP_SIZE
        {
            return Err(Error::DeviceUnsuitable(format!(
                "compute workgroups of {} invocations are needed (device allows {}); request \
                 wgpu::Limits::downlevel_defaults() or better when creating the device",
                pipeline::WORKGROUP_SIZE,
                limits.max_compute_invocations_per_workgroup
            )));
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = Conv3x3Pipeline::new(device);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::DeviceUnsuitable(error.to_string()));
        }
        Ok(Self {
            device: device.clone(),
            queue: queue.clone(),
            adapter_info: device.adapter_info(),
            pipeline,
            buffers: None,
            timer: PassTimer::new(device, queue),
            uncaptured: None,
        })
    }

    /// The adapter this engine runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter_info
    }

    /// The engine's device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The engine's queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Applies `operation` to `image`: upload, one compute pass, readback.
    pub fn run(&mut self, image: &GrayImage, operation: &Operation) -> Result<FilterOutput> {
        self.run_timed(image, operation).map(|(output, _)| output)
    }

    /// [`run`](Self::run), also saying how long upload, compute (and the GPU kernel alone, when
    /// the device has timestamp queries) and readback took.
    pub fn run_timed(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)> {
        let (width, height) = image.dimensions();
        let (out_width, out_height) = output_size(width, height)?;
        let params = Conv3x3Params::new(operation, width, height, width, 0);
        let limits = self.device.limits();
        dispatch::check_fits(&params, &limits)?;
        let input_bytes = dispatch::input_bytes(&params);
        let output_bytes = dispatch::output_bytes(&params);
        let mut timings = Timings::default();

        let start = Instant::now();
        self.ensure_buffers(input_bytes, output_bytes)?;
        let buffers = self.buffers.as_ref().expect("buffers were just ensured");
        buffers.upload(&self.queue, &params, image.as_raw());
        timings.upload = Some(start.elapsed());

        let start = Instant::now();
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gpuconv::conv3x3::encoder"),
            });
        self.encode(&mut encoder, buffers, &params);
        let timer = self.timer.as_ref();
        if let Some(timer) = timer {
            timer.encode_resolve(&mut encoder);
        }
        encoder.copy_buffer_to_buffer(&buffers.output, 0, &buffers.staging, 0, output_bytes);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue.submit([encoder.finish()]);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(error.to_string()));
        }
        let planes =
            readback::read_mapped(&self.device, &buffers.staging, output_bytes, |mapped| {
                timings.compute = Some(start.elapsed());
                let start = Instant::now();
                let planes = readback::unpack_planes(mapped, &params);
                timings.readback = Some(start.elapsed());
                planes
            })?;
        self.take_uncaptured_error()?;
        if let Some(timer) = timer {
            timings.kernel = Some(timer.read(&self.device)?);
        }
        Ok((
            FilterOutput::from_planes(operation, out_width, out_height, planes),
            timings,
        ))
    }

    /// The core step: records the convolution pass over `buffers` into `encoder`, without
    /// submitting anything; [`run_timed`](Self::run_timed) wraps it in upload and readback.
    fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        buffers: &Conv3x3Buffers,
        params: &Conv3x3Params,
    ) {
        let max_per_dimension = self.device.limits().max_compute_workgroups_per_dimension;
        let grid = dispatch::workgroup_grid(params.plane_words, max_per_dimension);
        let timestamps = self.timer.as_ref().map(PassTimer::writes);
        dispatch::encode_pass(
            encoder,
            &self.pipeline,
            &buffers.bind_group,
            grid,
            timestamps,
        );
    }

    /// Returns, once, an error wgpu reported outside any error scope since the last call.
    fn take_uncaptured_error(&self) -> Result<()> {
        let Some(uncaptured) = &self.uncaptured else {
            return Ok(());
        };
        let error = uncaptured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        error.map_or(Ok(()), |error| Err(Error::Gpu(error)))
    }

    /// Grows the reusable buffers when this image needs more; allocation failures become errors.
    fn ensure_buffers(&mut self, input_bytes: u64, output_bytes: u64) -> Result<()> {
        let (old_input, old_output) = self
            .buffers
            .as_ref()
            .map_or((0, 0), |b| (b.input.size(), b.output.size()));
        if input_bytes > old_input || output_bytes > old_output {
            // Grow, never shrink: images alternating between sizes settle on one allocation.
            let (input_bytes, output_bytes) =
                (input_bytes.max(old_input), output_bytes.max(old_output));
            // Drop the old buffers first so their memory can be reused.
            self.buffers = None;
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let buffers =
                Conv3x3Buffers::new(&self.device, &self.pipeline, input_bytes, output_bytes);
            if let Some(error) = pollster::block_on(scope.pop()) {
                return Err(Error::Gpu(format!(
                    "allocating {} bytes: {error}",
                    input_bytes + 2 * output_bytes
                )));
            }
            self.buffers = Some(buffers);
        }
        Ok(())
    }
}
