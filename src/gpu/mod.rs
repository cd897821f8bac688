//! The GPU backend: wgpu compute with the shader in `shaders/conv3x3.wgsl`.
//!
//! Split by concern: [`device`] finds an adapter and opens a device, `pipeline.rs` builds the
//! pipeline once, `resources.rs` checks the caller's buffers and textures, `dispatch.rs` prepares
//! and records passes and owns the engine's buffers, `readback.rs` maps results back.
//! [`GpuEngine`] ties them together and keeps everything between calls.
//!
//! Embedding in an app that already has a device:
//!
//! ```no_run
//! # async fn frame(device: &wgpu::Device, queue: &wgpu::Queue, camera: &wgpu::Texture, edges: &wgpu::Texture) -> gpuconv::Result<()> {
//! use gpuconv::{GpuEngine, GpuSource, GpuTarget, Kernel, Operation};
//!
//! let engine = GpuEngine::from_device_async(device, queue).await?;
//! let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
//! // Once per set of resources: checks them and builds the bind group.
//! let pass = engine.prepare(&operation, GpuSource::Texture(camera), GpuTarget::Texture(edges))?;
//! // Every frame: one dispatch, recorded into the app's own encoder.
//! let mut encoder = device.create_command_encoder(&Default::default());
//! pass.encode(&mut encoder);
//! queue.submit([encoder.finish()]);
//! # Ok(()) }
//! ```

pub mod device;
mod dispatch;
mod pipeline;
mod readback;
mod resources;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use image::GrayImage;

use crate::error::{Error, Result};
use crate::operation::{FilterOutput, Operation, output_size};
use crate::params::{Conv3x3Params, SourceLayout, TargetLayout};
use crate::timings::Timings;

pub use dispatch::FilterPass;
pub use resources::{GpuSource, GpuTarget};

use dispatch::Conv3x3Buffers;
use pipeline::Conv3x3Pipeline;
use readback::PassTimer;

/// A long-lived GPU engine: device, queue, pipeline and reusable buffers.
///
/// Two ways to use it: [`run`](Self::run) takes an image from the CPU and brings the results
/// back (what the command line does), and [`prepare`](Self::prepare) builds a [`FilterPass`]
/// over buffers or textures that already live on the GPU, which the caller records into its own
/// encoder. Both use the same pipeline, built once.
#[derive(Debug)]
pub struct GpuEngine {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter_info: wgpu::AdapterInfo,
    pipeline: Conv3x3Pipeline,
    buffers: Option<Conv3x3Buffers>,
    /// Created on the first timed run, so an app's device gets no query set it never uses.
    timer: OnceLock<Option<PassTimer>>,
    /// The caller's cap on output rows per pass ([`set_max_strip_rows`](Self::set_max_strip_rows)).
    max_strip_rows: Option<u32>,
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
        let mut engine = Self::from_device_async(&device, &queue).await?;
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

    /// An engine on a device and queue the caller already has, created with whatever features
    /// and limits the app chose. Blocks only on native, where it returns at once; see
    /// [`from_device_async`](Self::from_device_async).
    pub fn from_device(device: &wgpu::Device, queue: &wgpu::Queue) -> Result<Self> {
        pollster::block_on(Self::from_device_async(device, queue))
    }

    /// An engine on the caller's device and queue, without blocking.
    ///
    /// gpuconv needs what every WebGPU device has by default
    /// (`wgpu::Limits::downlevel_defaults()` is enough): compute shaders, 2 storage buffers and
    /// 2 storage textures per shader stage, workgroups of 64 invocations. It uses
    /// `Features::TIMESTAMP_QUERY` for [`run_timed`](Self::run_timed)'s kernel time only when the
    /// device was created with it. Larger `max_storage_buffer_binding_size` and `max_buffer_size`
    /// limits allow larger images.
    pub async fn from_device_async(device: &wgpu::Device, queue: &wgpu::Queue) -> Result<Self> {
        let limits = device.limits();
        let needs = [
            (
                "max_storage_buffers_per_shader_stage",
                limits.max_storage_buffers_per_shader_stage,
                2,
            ),
            (
                "max_storage_textures_per_shader_stage",
                limits.max_storage_textures_per_shader_stage,
                2,
            ),
            (
                "max_sampled_textures_per_shader_stage",
                limits.max_sampled_textures_per_shader_stage,
                1,
            ),
            (
                "max_compute_workgroup_size_x",
                limits.max_compute_workgroup_size_x,
                pipeline::WORKGROUP_SIZE,
            ),
            (
                "max_compute_invocations_per_workgroup",
                limits.max_compute_invocations_per_workgroup,
                pipeline::WORKGROUP_SIZE,
            ),
        ];
        for (name, has, needed) in needs {
            if has < needed {
                return Err(Error::DeviceUnsuitable(format!(
                    "{name} is {has}, {needed} needed; request wgpu::Limits::downlevel_defaults() \
                     or better in the DeviceDescriptor's required_limits"
                )));
            }
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = Conv3x3Pipeline::new(device);
        if let Some(error) = scope.pop().await {
            return Err(Error::DeviceUnsuitable(error.to_string()));
        }
        Ok(Self {
            device: device.clone(),
            queue: queue.clone(),
            adapter_info: device.adapter_info(),
            pipeline,
            buffers: None,
            timer: OnceLock::new(),
            max_strip_rows: None,
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

    /// A pass applying `operation` to `source`, writing into `target`, over resources that
    /// already live on the GPU. Everything is checked here, so a wrong usage flag, format, size
    /// or alignment is an [`Error`], never a wgpu validation panic. Keep the pass and call
    /// [`FilterPass::encode`] each time the source changes (every frame of a video, say): that
    /// records one dispatch and nothing else.
    pub fn prepare(
        &self,
        operation: &Operation,
        source: GpuSource<'_>,
        target: GpuTarget<'_>,
    ) -> Result<FilterPass> {
        resources::check_distinct(&source, &target)?;
        let limits = self.device.limits();
        let (source_layout, source_binding) = source.bind(&limits)?;
        let (out_width, out_height) = output_size(source_layout.width, source_layout.height)?;
        let (target_layout, target_binding) =
            target.bind(out_width, out_height, operation.output_count(), &limits)?;
        let params = Conv3x3Params::new(operation, source_layout, target_layout);
        // What the checks above cannot see (a destroyed buffer, a resource from another device)
        // becomes an error too. On native, popping the scope resolves at once; on the web it
        // cannot be waited for here, and such errors reach the device's own handler.
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pass = FilterPass::new(
            &self.device,
            &self.pipeline,
            &params,
            &source_binding,
            &target_binding,
        );
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(error.to_string()));
        }
        pass
    }

    /// Applies `operation` to `image`: upload, one compute pass, readback. Blocks until the GPU
    /// is done; see [`run_async`](Self::run_async).
    pub fn run(&mut self, image: &GrayImage, operation: &Operation) -> Result<FilterOutput> {
        self.run_timed(image, operation).map(|(output, _)| output)
    }

    /// [`run`](Self::run), also saying how long upload, compute (and the GPU kernel alone, when
    /// the device has timestamp queries) and readback took, summed over strips.
    pub fn run_timed(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)> {
        pollster::block_on(self.run_strips(image, operation, true))
    }

    /// [`run`](Self::run) without blocking: the future resolves when the results are back. On
    /// native targets a helper thread waits on the device while the future is pending; on the web
    /// the browser completes the readback.
    pub async fn run_async(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<FilterOutput> {
        self.run_strips(image, operation, false)
            .await
            .map(|(output, _)| output)
    }

    /// Limits the rows of output computed per GPU pass (`None`: as many as the device's buffer
    /// limits allow, usually the whole image). Images taller than that are processed in
    /// horizontal strips, each read with the two extra rows its windows need, so the result is
    /// identical to one pass; smaller strips use less GPU memory.
    pub fn set_max_strip_rows(&mut self, rows: Option<u32>) {
        self.max_strip_rows = rows.map(|r| r.max(1));
    }

    /// Output rows per strip: as many as fit the device's buffer limits (and the caller's cap).
    fn rows_per_strip(&self, width: u32, out_height: u32, images: u32) -> Result<u32> {
        let limits = self.device.limits();
        let limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(u64::from(u32::MAX))
            & !3;
        let out_stride = u64::from((width - 2).next_multiple_of(4));
        let by_input = (limit / u64::from(width)).saturating_sub(2);
        let by_output = limit / (out_stride * u64::from(images));
        let rows = by_input.min(by_output);
        if rows == 0 {
            return Err(Error::TooLargeForDevice {
                width,
                height: out_height + 2,
                what: "strip of one row",
                needed: (3 * u64::from(width)).max(out_stride * u64::from(images)),
                unit: "bytes",
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        let rows = rows.min(u64::from(out_height)) as u32;
        Ok(self.max_strip_rows.map_or(rows, |cap| rows.min(cap)))
    }

    /// Uploads, filters and reads back the image strip by strip (one strip when it fits),
    /// reusing the engine's buffers; times the stages when `timed` (never on the web, which has
    /// no clock `Instant` can read).
    async fn run_strips(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        timed: bool,
    ) -> Result<(FilterOutput, Timings)> {
        let (width, height) = image.dimensions();
        let (out_width, out_height) = output_size(width, height)?;
        let images = operation.output_count();
        let rows = self.rows_per_strip(width, out_height, images)?;
        let now = || timed.then(Instant::now);
        let elapsed = |start: Option<Instant>| start.map(|s| s.elapsed());
        let add = |total: &mut Option<Duration>, part: Option<Duration>| {
            if let Some(part) = part {
                *total = Some(total.unwrap_or_default() + part);
            }
        };
        if timed {
            self.timer
                .get_or_init(|| PassTimer::new(&self.device, &self.queue));
        }
        let mut planes = vec![vec![0u8; out_width as usize * out_height as usize]; images as usize];
        let mut timings = Timings::default();
        for first_row in (0..out_height).step_by(rows as usize) {
            let strip_rows = rows.min(out_height - first_row);
            let strip = &image.as_raw()
                [(first_row * width) as usize..((first_row + strip_rows + 2) * width) as usize];

            let start = now();
            let (params, pass) = self.upload(strip, width, strip_rows + 2, operation).await?;
            add(&mut timings.upload, elapsed(start));

            let timer = if timed {
                self.timer.get().and_then(Option::as_ref)
            } else {
                None
            };
            let start = now();
            let output_bytes = self.submit(&params, &pass, timer).await?;
            let buffers = self.buffers.as_ref().expect("buffers were made by upload");
            let unpack = |mapped: &[u8]| {
                let compute = elapsed(start);
                let start = now();
                readback::unpack_rows_into(mapped, &params, &mut planes, first_row);
                (compute, elapsed(start))
            };
            let (compute, unpack_time) =
                readback::read_mapped(&self.device, &buffers.staging, output_bytes, unpack).await?;
            add(&mut timings.compute, compute);
            add(&mut timings.readback, unpack_time);
            self.take_uncaptured_error()?;
            if let Some(timer) = timer {
                add(&mut timings.kernel, Some(timer.read(&self.device).await?));
            }
        }
        Ok((
            FilterOutput::from_planes(operation, out_width, out_height, planes),
            timings,
        ))
    }

    /// Grows the engine's buffers if needed, queues the upload of `pixels` (`height` tightly
    /// packed rows of `width`) and prepares the pass over the engine's own buffers.
    async fn upload(
        &mut self,
        pixels: &[u8],
        width: u32,
        height: u32,
        operation: &Operation,
    ) -> Result<(Conv3x3Params, FilterPass)> {
        let (out_width, out_height) = output_size(width, height)?;
        let target = TargetLayout::word_aligned_rows(out_width, out_height);
        let params = Conv3x3Params::new(operation, SourceLayout::packed(width, height), target);
        self.ensure_buffers(params.input_bytes(), params.output_bytes())
            .await?;
        let buffers = self.buffers.as_ref().expect("buffers were just ensured");
        buffers.upload(&self.queue, pixels);
        let source = GpuSource::Buffer {
            buffer: &buffers.input,
            offset: 0,
            bytes_per_row: width,
            width,
            height,
        };
        let target = GpuTarget::Buffer {
            buffer: &buffers.output,
            offset: 0,
            bytes_per_row: target.bytes_per_row,
            bytes_per_image: u64::from(target.bytes_per_image),
        };
        let pass = self.prepare(operation, source, target)?;
        Ok((params, pass))
    }

    /// Records the pass, the copy to the staging buffer and the timestamp resolve, and submits.
    /// Returns how many staging bytes hold results.
    async fn submit(
        &self,
        params: &Conv3x3Params,
        pass: &FilterPass,
        timer: Option<&PassTimer>,
    ) -> Result<u64> {
        let buffers = self.buffers.as_ref().expect("buffers were made by upload");
        let output_bytes = params.output_bytes();
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gpuconv::conv3x3::encoder"),
            });
        pass.encode_with_timestamps(&mut encoder, timer.map(PassTimer::writes));
        if let Some(timer) = timer {
            timer.encode_resolve(&mut encoder);
        }
        encoder.copy_buffer_to_buffer(&buffers.output, 0, &buffers.staging, 0, output_bytes);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue.submit([encoder.finish()]);
        if let Some(error) = scope.pop().await {
            return Err(Error::Gpu(error.to_string()));
        }
        Ok(output_bytes)
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
    async fn ensure_buffers(&mut self, input_bytes: u64, output_bytes: u64) -> Result<()> {
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
            let buffers = Conv3x3Buffers::new(&self.device, input_bytes, output_bytes);
            if let Some(error) = scope.pop().await {
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
