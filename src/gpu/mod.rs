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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
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
    /// Buffers (and timers) for [`run`](Self::run)'s strips, made on its first call and reused.
    slots: Vec<StripSlot>,
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
            slots: Vec::new(),
            max_strip_rows: None,
            uncaptured: None,
        })
    }

    /// How long this GPU takes to copy `bytes` (rounded down to whole words) from one of its
    /// buffers to another: the yardstick for the filter's bandwidth, since a pass that reads its
    /// input once and writes its outputs once cannot move bytes faster than a copy does. Timed
    /// with the wall clock around submissions of one and of nine copies, whose difference
    /// leaves out the cost of submitting; the median of three. Allocates two buffers of `bytes`
    /// for the call. Not available on the web, whose clock `Instant` cannot read.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_device_copy(&self, bytes: u64) -> Result<Duration> {
        let bytes = bytes & !3;
        let limit = self.device.limits().max_buffer_size;
        if bytes == 0 || bytes > limit {
            return Err(Error::InvalidOperation(format!(
                "a copy of {bytes} bytes; this device copies 4 to {limit} bytes per buffer"
            )));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = |label, usage| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        let source = buffer("gpuconv::copy::source", wgpu::BufferUsages::COPY_SRC);
        let destination = buffer("gpuconv::copy::destination", wgpu::BufferUsages::COPY_DST);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("allocating 2 × {bytes} bytes: {error}")));
        }
        // Wall-clock time of one submission of `copies` copies, waited for.
        let submit_and_wait = |copies: u32| -> Result<Duration> {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            for _ in 0..copies {
                encoder.copy_buffer_to_buffer(&source, 0, &destination, 0, bytes);
            }
            let start = Instant::now();
            let submission = self.queue.submit([encoder.finish()]);
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(submission),
                    timeout: None,
                })
                .map_err(|e| Error::Gpu(e.to_string()))?;
            Ok(start.elapsed())
        };
        // The first submission warms up (page faults, clocks) and is not counted. The
        // difference between one copy and nine cancels the submission's fixed cost, and leaves
        // no doubt about what timestamps around a copy would measure on a given driver.
        submit_and_wait(1)?;
        let mut times = Vec::new();
        for _ in 0..3 {
            let one = submit_and_wait(1)?;
            let nine = submit_and_wait(9)?;
            times.push(nine.saturating_sub(one) / 8);
        }
        self.take_uncaptured_error()?;
        times.sort();
        Ok(times[1])
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

    /// Applies `operation` to `image`: upload, compute pass, readback; large images in strips,
    /// two in flight at once. Blocks until the GPU is done; see [`run_async`](Self::run_async).
    pub fn run(&mut self, image: &GrayImage, operation: &Operation) -> Result<FilterOutput> {
        // Untimed: no timestamp queries, no clock readings, no extra mapping.
        pollster::block_on(self.run_async(image, operation))
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

    /// Limits the rows of output computed per GPU pass (`None`: the whole image when its input
    /// is at most twice [`STRIP_BYTES`], else about `STRIP_BYTES` of input per strip, and never
    /// more than the device's buffer limits allow). Images taller than that are processed in
    /// horizontal strips, each read with the two extra rows its windows need, so the result is
    /// identical to one pass; smaller strips use less GPU memory.
    pub fn set_max_strip_rows(&mut self, rows: Option<u32>) {
        self.max_strip_rows = rows.map(|r| r.max(1));
    }

    /// Output rows per strip: about [`STRIP_BYTES`] of input when the image is larger than two
    /// of those (so consecutive strips can overlap), never more than the device's buffer limits
    /// allow, and never more than the caller's cap.
    fn rows_per_strip(&self, width: u32, out_height: u32, images: u32) -> Result<u32> {
        let limits = self.device.limits();
        let limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(u64::from(u32::MAX))
            & !3;
        let rows =
            strip_rows(width, out_height, images, limit).ok_or(Error::TooLargeForDevice {
                width,
                height: out_height + 2,
                what: "strip of one row",
                needed: {
                    let (input_row, output_row) = row_bytes(width);
                    (3 * input_row).max(output_row * u64::from(images))
                },
                unit: "bytes",
                limit_name: "max_storage_buffer_binding_size",
                limit,
            })?;
        Ok(self.max_strip_rows.map_or(rows, |cap| rows.min(cap)))
    }

    /// Uploads, filters and reads back the image strip by strip (one strip when it fits), with
    /// up to [`STRIPS_IN_FLIGHT`] strips submitted at once in the engine's reused slots: while the
    /// GPU works on one strip, the CPU copies the next one in and the previous one out. Times
    /// the stages when `timed` (never on the web, which has no clock `Instant` can read).
    async fn run_strips(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        timed: bool,
    ) -> Result<(FilterOutput, Timings)> {
        let run_start = timed.then(Instant::now);
        let (width, height) = image.dimensions();
        let (out_width, out_height) = output_size(width, height)?;
        let images = operation.output_count();
        let rows = self.rows_per_strip(width, out_height, images)?;
        let strips = out_height.div_ceil(rows) as usize;
        let slots = strips.min(STRIPS_IN_FLIGHT);
        let largest = Conv3x3Params::new(
            operation,
            SourceLayout::word_aligned_rows(width, rows + 2),
            TargetLayout::word_aligned_rows(out_width, rows),
        );
        self.ensure_slots(slots, largest.input_bytes(), largest.output_bytes(), timed)
            .await?;

        // Planes are filled strip by strip, each row written once, so there is no need to zero
        // them first: each asks the allocator for zeroed pages, which cost nothing until the
        // readback touches them.
        let plane_pixels = out_width as usize * out_height as usize;
        let mut planes: Vec<Vec<u8>> = (0..images)
            .map(|_| crate::memory::zeroed_bytes(plane_pixels, "an output image"))
            .collect::<Result<_>>()?;
        let mut timings = Timings::default();
        let mut in_flight = VecDeque::with_capacity(slots);
        for (index, first_row) in (0..out_height).step_by(rows as usize).enumerate() {
            if in_flight.len() == slots {
                let done = in_flight.pop_front().expect("a strip is in flight");
                self.finish(done, &mut planes, &mut timings).await?;
            }
            let strip_rows = rows.min(out_height - first_row);
            // In `usize`: the end of the last strip of a 65536 × 65536 image is 2³².
            let row_start = |row: u32| row as usize * width as usize;
            let strip =
                &image.as_raw()[row_start(first_row)..row_start(first_row + strip_rows + 2)];
            let slot = index % slots;
            let start = timed.then(Instant::now);
            let strip = self
                .submit_strip(slot, strip, width, operation, first_row, timed)
                .await?;
            add(&mut timings.upload, start.map(|s| s.elapsed()));
            in_flight.push_back(strip);
        }
        while let Some(done) = in_flight.pop_front() {
            self.finish(done, &mut planes, &mut timings).await?;
        }
        timings.total = run_start.map(|s| s.elapsed());
        Ok((
            FilterOutput::from_planes(operation, out_width, out_height, planes),
            timings,
        ))
    }

    /// Writes `pixels` (tightly packed rows of `width`, the strip's two halo rows included) into
    /// slot `slot`'s upload buffer, records the copy to the input buffer, the pass, the copy to
    /// the staging buffer and the timestamps, and submits them.
    async fn submit_strip(
        &mut self,
        slot: usize,
        pixels: &[u8],
        width: u32,
        operation: &Operation,
        first_row: u32,
        timed: bool,
    ) -> Result<InFlight> {
        let height = (pixels.len() / width as usize) as u32;
        let (out_width, out_height) = output_size(width, height)?;
        let target = TargetLayout::word_aligned_rows(out_width, out_height);
        let source = SourceLayout::word_aligned_rows(width, height);
        let params = Conv3x3Params::new(operation, source, target);
        let input_bytes = params.input_bytes();
        let fill = |view: &mut wgpu::BufferViewMut| {
            dispatch::write_rows(view, pixels, width, source.bytes_per_row);
        };
        let upload = &self.slots[slot].buffers.upload;
        match &self.slots[slot].last_submission {
            // Fresh buffers come mapped.
            None => {
                let mut view = upload
                    .get_mapped_range_mut(..input_bytes)
                    .map_err(|e| Error::Gpu(e.to_string()))?;
                fill(&mut view);
                drop(view);
                upload.unmap();
            }
            // The slot's previous strip was read back before the slot was reused, so its
            // submission is done and the mapping resolves at once.
            Some(previous) => {
                readback::write_mapped(&self.device, upload, input_bytes, previous, fill).await?;
            }
        }
        let StripSlot { buffers, timer, .. } = &self.slots[slot];
        let source = GpuSource::Buffer {
            buffer: &buffers.input,
            offset: 0,
            bytes_per_row: source.bytes_per_row,
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
        let timer = timer.as_ref().filter(|_| timed);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gpuconv::conv3x3::encoder"),
            });
        encoder.copy_buffer_to_buffer(&buffers.upload, 0, &buffers.input, 0, input_bytes);
        pass.encode_with_timestamps(&mut encoder, timer.map(PassTimer::writes));
        if let Some(timer) = timer {
            timer.encode_resolve(&mut encoder);
        }
        let output_bytes = params.output_bytes();
        encoder.copy_buffer_to_buffer(&buffers.output, 0, &buffers.staging, 0, output_bytes);
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let submission = self.queue.submit([encoder.finish()]);
        let timestamps = timer.is_some();
        // Recorded before anything else can fail or be cancelled: the upload buffer is unmapped
        // now, and must be mapped again after this submission before its next use.
        self.slots[slot].last_submission = Some(submission.clone());
        if let Some(error) = scope.pop().await {
            return Err(Error::Gpu(error.to_string()));
        }
        Ok(InFlight {
            slot,
            params,
            first_row,
            submission,
            timestamps,
            timed,
        })
    }

    /// Waits for a submitted strip and copies its results into `planes`.
    async fn finish(
        &self,
        strip: InFlight,
        planes: &mut [Vec<u8>],
        timings: &mut Timings,
    ) -> Result<()> {
        let StripSlot { buffers, timer, .. } = &self.slots[strip.slot];
        let wait_start = strip.timed.then(Instant::now);
        let unpack = |mapped: &[u8]| {
            let waited = wait_start.map(|s| s.elapsed());
            let start = wait_start.map(|_| Instant::now());
            readback::unpack_rows_into(mapped, &strip.params, planes, strip.first_row);
            (waited, start.map(|s| s.elapsed()))
        };
        let (waited, unpacked) = readback::read_mapped(
            &self.device,
            &buffers.staging,
            strip.params.output_bytes(),
            &strip.submission,
            unpack,
        )
        .await?;
        add(&mut timings.compute, waited);
        add(&mut timings.readback, unpacked);
        self.take_uncaptured_error()?;
        if let Some(timer) = timer.as_ref().filter(|_| strip.timestamps) {
            let kernel = timer.read(&self.device, &strip.submission).await?;
            add(&mut timings.kernel, Some(kernel));
        }
        Ok(())
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

    /// Makes sure there are `count` slots whose buffers hold `input_bytes` in and `output_bytes`
    /// out, growing them when needed, and with timers when `timed` (so that an app's device
    /// gets no query set it never uses); allocation failures become errors.
    async fn ensure_slots(
        &mut self,
        count: usize,
        input_bytes: u64,
        output_bytes: u64,
        timed: bool,
    ) -> Result<()> {
        for slot in 0..count {
            let (old_input, old_output) = self.slots.get(slot).map_or((0, 0), |s| {
                (s.buffers.input.size(), s.buffers.output.size())
            });
            if input_bytes > old_input || output_bytes > old_output {
                // Grow, never shrink: images alternating between sizes settle on one allocation.
                let (input_bytes, output_bytes) =
                    (input_bytes.max(old_input), output_bytes.max(old_output));
                if let Some(old) = self.slots.get(slot) {
                    // Free the old buffers first so their memory can be reused.
                    old.buffers.destroy();
                }
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let buffers = Conv3x3Buffers::new(&self.device, input_bytes, output_bytes);
                if let Some(error) = scope.pop().await {
                    // Never leave a slot with destroyed buffers behind.
                    self.slots.truncate(slot);
                    return Err(Error::Gpu(format!(
                        "allocating {} bytes: {error}",
                        input_bytes + 2 * output_bytes
                    )));
                }
                match self.slots.get_mut(slot) {
                    Some(existing) => {
                        existing.buffers = buffers;
                        existing.last_submission = None;
                    }
                    None => self.slots.push(StripSlot {
                        buffers,
                        timer: None,
                        last_submission: None,
                    }),
                }
            }
            let slot = &mut self.slots[slot];
            if timed && slot.timer.is_none() {
                slot.timer = PassTimer::new(&self.device, &self.queue);
            }
        }
        Ok(())
    }
}

/// Input bytes per strip for images too large to be worth one pass: small enough that copying
/// one strip in or out overlaps the GPU's work on another, large enough that each submission's
/// fixed cost is noise.
pub const STRIP_BYTES: u64 = 32 << 20;

/// How many strips are submitted before the first of them is read back.
pub const STRIPS_IN_FLIGHT: usize = 2;

/// One set of buffers a strip goes through, and a timer for its pass.
#[derive(Debug)]
struct StripSlot {
    buffers: Conv3x3Buffers,
    /// Made on the first timed run; `None` before, and when the device has no timestamp queries.
    timer: Option<PassTimer>,
    /// The last submission that copied from `buffers.upload`, which is unmapped since; `None`
    /// while the upload buffer is still mapped from its creation.
    last_submission: Option<wgpu::SubmissionIndex>,
}

/// A strip submitted to the GPU and not yet read back.
struct InFlight {
    slot: usize,
    params: Conv3x3Params,
    first_row: u32,
    submission: wgpu::SubmissionIndex,
    /// Whether the pass wrote timestamps.
    timestamps: bool,
    /// Whether the stages are timed.
    timed: bool,
}

/// Bytes of one input row and one output row in the engine's own buffers, from the layouts
/// `submit_strip` uploads and reads back with.
fn row_bytes(width: u32) -> (u64, u64) {
    let input = SourceLayout::word_aligned_rows(width, 1).bytes_per_row;
    let output = TargetLayout::word_aligned_rows(width - 2, 1).bytes_per_row;
    (u64::from(input), u64::from(output))
}

/// Output rows per strip for an image `width` wide with `out_height` output rows and `images`
/// output images, when no binding may exceed `limit` bytes: about [`STRIP_BYTES`] of input once
/// the input exceeds twice that, else all of them, and never more than the limit allows. `None`
/// when not even one row fits.
fn strip_rows(width: u32, out_height: u32, images: u32, limit: u64) -> Option<u32> {
    let (input_row, output_row) = row_bytes(width);
    let by_input = (limit / input_row).saturating_sub(2);
    let by_output = limit / (output_row * u64::from(images));
    let rows = by_input.min(by_output);
    if rows == 0 {
        return None;
    }
    let input_bytes = u64::from(width) * u64::from(out_height + 2);
    let rows = if input_bytes > 2 * STRIP_BYTES {
        rows.min((STRIP_BYTES / u64::from(width)).max(1))
    } else {
        rows
    };
    Some(rows.min(u64::from(out_height)) as u32)
}

/// Adds `part` to a stage's total, when it was measured.
fn add(total: &mut Option<Duration>, part: Option<Duration>) {
    if let Some(part) = part {
        *total = Some(total.unwrap_or_default() + part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn images_up_to_twice_the_strip_size_run_in_one_pass() {
        assert_eq!(strip_rows(4096, 4094, 3, 2 * GIB), Some(4094));
        // 8192 × 8192 is exactly twice STRIP_BYTES: still one pass.
        assert_eq!(strip_rows(8192, 8190, 1, 2 * GIB), Some(8190));
    }

    #[test]
    fn larger_images_run_in_strips_of_about_strip_bytes() {
        assert_eq!(strip_rows(8192, 8191, 1, 2 * GIB), Some(4096));
        assert_eq!(strip_rows(16384, 16382, 2, 4 * GIB), Some(2048));
        // A row wider than a strip: one row per strip.
        assert_eq!(strip_rows(40 << 20, 10, 1, 4 * GIB), Some(1));
    }

    #[test]
    fn the_device_limit_caps_strips_and_one_row_must_fit() {
        // 128 MiB bindings (lavapipe) and an edge image with both responses: three output
        // images per row bound the strip before the input does.
        let rows = strip_rows(3000, 100, 3, 128 << 20);
        assert_eq!(rows, Some(100));
        assert_eq!(
            strip_rows(3000, 100_000, 3, 1 << 20),
            Some((1 << 20) / (3000 * 3))
        );
        assert_eq!(
            strip_rows(3000, 100_000, 1, 1 << 20),
            Some((1 << 20) / 3000 - 2)
        );
        assert_eq!(strip_rows(30_000, 1, 1, 1 << 16), None);
    }
}
