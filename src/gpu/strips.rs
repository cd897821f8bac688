//! The strip scheduler behind [`GpuEngine::run`](super::GpuEngine::run): an image from the CPU
//! goes through the engine's own buffers in horizontal strips (one when it fits), each read with
//! the two extra rows its windows need, two in flight at once.
//!
//! The plan (rows per strip, layouts, parameters) is worked out once per image. Each slot's
//! buffers, uniform and bind group are made once and reused by every strip and every image
//! that fits them: a strip costs one `write_buffer` of its parameters, one upload, one
//! submission and one readback, and allocates nothing on the GPU.

use std::collections::VecDeque;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::operation::{FilterOutput, GrayView, Operation, output_planes, output_size};
use crate::params::{Conv3x3Params, SourceLayout, TargetLayout, VECTOR_BYTES};
use crate::timings::{Timings, add};

use super::context::GpuCore;
use super::dispatch::{bind_group, dispatch_grid, record};
use super::pipeline::Variant;
use super::resources::Binding;
use super::timer::PassTimer;
use super::transfers::{Waiter, read_mapped, unpack_rows_into, write_mapped, write_rows};

/// Input bytes per strip for images too large to be worth one pass: small enough that copying
/// one strip in or out overlaps the GPU's work on another, large enough that each submission's
/// fixed cost is noise.
pub const STRIP_BYTES: u64 = 32 << 20;

/// How many strips are submitted before the first of them is read back.
pub const STRIPS_IN_FLIGHT: usize = 2;

/// The scheduler's state, kept by the engine between calls.
#[derive(Debug, Default)]
pub(crate) struct Strips {
    /// Made on the first run and grown (never shrunk) to the largest strip seen.
    slots: Vec<StripSlot>,
    /// The caller's cap on output rows per strip.
    pub max_rows: Option<u32>,
    /// Started on the first run.
    waiter: Option<Waiter>,
}

/// How one image is cut into strips, worked out once per image.
struct StripPlan {
    width: u32,
    out_height: u32,
    /// Output rows of every strip but the last, which may have fewer.
    rows: u32,
    /// A full strip's parameters; the last strip's differ only in their heights.
    params: Conv3x3Params,
}

impl StripPlan {
    fn new(
        operation: &Operation,
        width: u32,
        height: u32,
        rows: u32,
        rows_per_invocation: u32,
    ) -> Result<Self> {
        let (out_width, out_height) = output_size(width, height)?;
        let params = Conv3x3Params::new(
            operation,
            SourceLayout::vector_aligned_rows(width, rows + 2),
            TargetLayout::vector_aligned_rows(out_width * operation.output_pixel_bytes(), rows),
        )
        .with_rows_per_invocation(rows_per_invocation);
        Ok(Self {
            width,
            out_height,
            rows,
            params,
        })
    }

    fn count(&self) -> usize {
        self.out_height.div_ceil(self.rows) as usize
    }

    /// Strip `index`'s first output row and parameters.
    fn strip(&self, index: usize) -> (u32, Conv3x3Params) {
        let first_row = index as u32 * self.rows;
        let rows = self.rows.min(self.out_height - first_row);
        let params = Conv3x3Params {
            in_height: rows + 2,
            out_height: rows,
            ..self.params
        };
        (first_row, params)
    }
}

/// One set of buffers a strip goes through, with its pass bound to them.
#[derive(Debug)]
struct StripSlot {
    buffers: StripBuffers,
    /// The pass's [`Conv3x3Params`], rewritten with `Queue::write_buffer` for each strip.
    uniform: wgpu::Buffer,
    /// Binds `uniform` and the whole of `buffers.input` and `buffers.output`.
    bind_group: wgpu::BindGroup,
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
}

impl Strips {
    /// Uploads, filters and reads back `image` strip by strip, with up to [`STRIPS_IN_FLIGHT`]
    /// strips submitted at once: while the GPU works on one strip, the CPU copies the next one
    /// in and the previous one out. Times the stages when `timed` (never on the web, which has
    /// no clock `Instant` can read).
    pub async fn run(
        &mut self,
        gpu: &GpuCore,
        image: &GrayView<'_>,
        operation: &Operation,
        timed: bool,
    ) -> Result<(FilterOutput, Timings)> {
        let (out_width, out_height) = output_size(image.width(), image.height())?;
        // Planes are filled strip by strip, each row written once, so there is no need to zero
        // them first: fresh zeroed pages cost nothing until the readback touches them.
        let mut planes = output_planes(operation, out_width, out_height)?;
        let mut outputs: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
        let timings = self
            .run_into(gpu, image, operation, &mut outputs, timed)
            .await?;
        Ok((
            FilterOutput::from_planes(operation, out_width, out_height, planes),
            timings,
        ))
    }

    /// [`run`](Self::run) into the caller's planes, already checked.
    pub async fn run_into(
        &mut self,
        gpu: &GpuCore,
        image: &GrayView<'_>,
        operation: &Operation,
        planes: &mut [&mut [u8]],
        timed: bool,
    ) -> Result<Timings> {
        let run_start = timed.then(Instant::now);
        let (width, height) = image.dimensions();
        let (_, out_height) = output_size(width, height)?;
        let rows = self.rows_per_strip(gpu, width, out_height, operation)?;
        let plan = StripPlan::new(operation, width, height, rows, gpu.rows_per_invocation)?;
        dispatch_grid(&gpu.device.limits(), &plan.params)?;
        let slots = plan.count().min(STRIPS_IN_FLIGHT);
        self.ensure_slots(gpu, slots, &plan.params, timed).await?;
        if self.waiter.is_none() {
            self.waiter = Some(Waiter::new(&gpu.device)?);
        }

        // Every slot's buffers hold at least the plan's input and output in whole 16-byte
        // groups, so its rows are read and written 16 pixels at a time, as the slots' bind
        // groups assume.
        let whole_groups = |bytes: u64| bytes.next_multiple_of(u64::from(VECTOR_BYTES));
        let variant = Variant::of(
            &plan.params,
            whole_groups(plan.params.input_bytes()),
            whole_groups(plan.params.output_bytes()),
        );
        if variant.source_align != VECTOR_BYTES || variant.target_align != VECTOR_BYTES {
            return Err(Error::Gpu(format!(
                "internal: a strip's layout is not 16-byte aligned ({variant:?})"
            )));
        }
        let pipeline = gpu.pipeline.get(&gpu.device, &variant)?;

        let mut timings = Timings::default();
        let mut in_flight = VecDeque::with_capacity(slots);
        for index in 0..plan.count() {
            if in_flight.len() == slots {
                let done = in_flight.pop_front().expect("a strip is in flight");
                self.finish(gpu, done, planes, &mut timings, timed).await?;
            }
            let (first_row, params) = plan.strip(index);
            // In `usize`: the end of the last strip of a 65536 × 65536 image is 2³².
            let row_start = |row: u32| row as usize * width as usize;
            let pixels =
                &image.as_raw()[row_start(first_row)..row_start(first_row + params.out_height + 2)];
            let start = timed.then(Instant::now);
            let strip = self
                .submit(
                    gpu,
                    &pipeline,
                    index % slots,
                    pixels,
                    &plan,
                    params,
                    first_row,
                    timed,
                )
                .await?;
            add(&mut timings.upload, start.map(|s| s.elapsed()));
            in_flight.push_back(strip);
        }
        while let Some(done) = in_flight.pop_front() {
            self.finish(gpu, done, planes, &mut timings, timed).await?;
        }
        timings.total = run_start.map(|s| s.elapsed());
        Ok(timings)
    }

    /// Output rows per strip: about [`STRIP_BYTES`] of input when the image is larger than two
    /// of those (so consecutive strips can overlap), never more than the device's buffer limits
    /// allow, and never more than the caller's cap.
    fn rows_per_strip(
        &self,
        gpu: &GpuCore,
        width: u32,
        out_height: u32,
        operation: &Operation,
    ) -> Result<u32> {
        // Output rows of 8-bit pixels each strip row writes: one per image, four per image of
        // 32-bit sums (a bound: their rows are padded to 16 bytes once, not four times).
        let images = operation.output_count() * operation.output_pixel_bytes();
        let limits = gpu.device.limits();
        let limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(u64::from(u32::MAX))
            & !3;
        let rows = strip_rows(width, out_height, images, limit).ok_or_else(|| {
            let (input_row, output_row) = row_bytes(width);
            Error::TooLargeForDevice {
                width,
                height: out_height + 2,
                what: "strip of one row",
                needed: (3 * input_row).max(output_row * u64::from(images)),
                unit: "bytes",
                limit_name: "max_storage_buffer_binding_size",
                limit,
            }
        })?;
        Ok(self.max_rows.map_or(rows, |cap| rows.min(cap)))
    }

    /// Writes `pixels` (tightly packed rows, the strip's two halo rows included) into slot
    /// `slot`'s upload buffer, writes the strip's parameters into the slot's uniform, records
    /// the copy to the input buffer, the pass and the copy to the staging buffer, and submits
    /// them.
    #[allow(clippy::too_many_arguments, reason = "one strip's full description")]
    async fn submit(
        &mut self,
        gpu: &GpuCore,
        pipeline: &wgpu::ComputePipeline,
        slot: usize,
        pixels: &[u8],
        plan: &StripPlan,
        params: Conv3x3Params,
        first_row: u32,
        timed: bool,
    ) -> Result<InFlight> {
        // Before the upload buffer is touched: an error after it is unmapped would leave the
        // slot waiting for a submission that never comes.
        let grid = dispatch_grid(&gpu.device.limits(), &params)?;
        let input_bytes = params.input_bytes();
        let fill = |view: &mut wgpu::BufferViewMut| {
            write_rows(view, pixels, plan.width, params.in_bytes_per_row);
        };
        let waiter = self
            .waiter
            .as_ref()
            .expect("started before the first strip");
        let StripSlot {
            buffers,
            uniform,
            bind_group,
            timer,
            last_submission,
        } = &mut self.slots[slot];
        match last_submission {
            // Fresh buffers come mapped.
            None => {
                let mut view = buffers
                    .upload
                    .get_mapped_range_mut(..input_bytes)
                    .map_err(|e| Error::Gpu(e.to_string()))?;
                fill(&mut view);
                drop(view);
                buffers.upload.unmap();
            }
            // The slot's previous strip was read back before the slot was reused, so its
            // submission is done and the mapping resolves at once.
            Some(previous) => {
                write_mapped(waiter, &buffers.upload, input_bytes, previous, fill).await?;
            }
        }
        // Ordered before the submission below, after every earlier one: the slot's previous
        // strip has already read its parameters.
        gpu.queue
            .write_buffer(uniform, 0, bytemuck::bytes_of(&params));
        let timer = timer.as_ref().filter(|_| timed);
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gpuconv::strip::encoder"),
            });
        encoder.copy_buffer_to_buffer(&buffers.upload, 0, &buffers.input, 0, input_bytes);
        record(
            &mut encoder,
            pipeline,
            bind_group,
            grid,
            timer.map(PassTimer::writes),
        );
        if let Some(timer) = timer {
            timer.encode_resolve(&mut encoder);
        }
        encoder.copy_buffer_to_buffer(
            &buffers.output,
            0,
            &buffers.staging,
            0,
            params.output_bytes(),
        );
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let submission = gpu.queue.submit([encoder.finish()]);
        // Recorded before anything else can fail or be cancelled: the upload buffer is unmapped
        // now, and must be mapped again after this submission before its next use.
        *last_submission = Some(submission.clone());
        if let Some(error) = scope.pop().await {
            return Err(Error::Gpu(error.to_string()));
        }
        Ok(InFlight {
            slot,
            params,
            first_row,
            submission,
            timestamps: timer.is_some(),
        })
    }

    /// Waits for a submitted strip and copies its results into `planes`.
    async fn finish(
        &self,
        gpu: &GpuCore,
        strip: InFlight,
        planes: &mut [&mut [u8]],
        timings: &mut Timings,
        timed: bool,
    ) -> Result<()> {
        let waiter = self
            .waiter
            .as_ref()
            .expect("started before the first strip");
        let StripSlot { buffers, timer, .. } = &self.slots[strip.slot];
        let wait_start = timed.then(Instant::now);
        let unpack = |mapped: &[u8]| {
            let waited = wait_start.map(|s| s.elapsed());
            let start = wait_start.map(|_| Instant::now());
            unpack_rows_into(mapped, &strip.params, planes, strip.first_row);
            (waited, start.map(|s| s.elapsed()))
        };
        let (waited, unpacked) = read_mapped(
            waiter,
            &buffers.staging,
            strip.params.output_bytes(),
            &strip.submission,
            unpack,
        )
        .await?;
        add(&mut timings.compute, waited);
        add(&mut timings.readback, unpacked);
        gpu.take_uncaptured_error()?;
        if let Some(timer) = timer.as_ref().filter(|_| strip.timestamps) {
            let kernel = timer.read(waiter, &strip.submission).await?;
            add(&mut timings.kernel, Some(kernel));
        }
        Ok(())
    }

    /// Makes sure there are `count` slots whose buffers hold a strip with `params` (a full
    /// strip's), growing them when needed, and with timers when `timed` (so that an app's device
    /// gets no query set it never uses); allocation failures become errors.
    async fn ensure_slots(
        &mut self,
        gpu: &GpuCore,
        count: usize,
        params: &Conv3x3Params,
        timed: bool,
    ) -> Result<()> {
        let (input_bytes, output_bytes) = (params.input_bytes(), params.output_bytes());
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
                let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let fresh = StripSlot::new(gpu, input_bytes, output_bytes);
                if let Some(error) = scope.pop().await {
                    // Never leave a slot with destroyed buffers behind.
                    self.slots.truncate(slot);
                    return Err(Error::Gpu(format!(
                        "allocating {} bytes: {error}",
                        input_bytes + 2 * output_bytes
                    )));
                }
                match self.slots.get_mut(slot) {
                    // The timer is kept: it does not depend on the buffers.
                    Some(existing) => {
                        existing.buffers = fresh.buffers;
                        existing.bind_group = fresh.bind_group;
                        existing.uniform = fresh.uniform;
                        existing.last_submission = None;
                    }
                    None => self.slots.push(fresh),
                }
            }
            let slot = &mut self.slots[slot];
            if timed && slot.timer.is_none() {
                slot.timer = PassTimer::new(&gpu.device, &gpu.queue);
            }
        }
        Ok(())
    }
}

impl StripSlot {
    /// A slot whose buffers hold `input_bytes` in and `output_bytes` out, its pass bound to them.
    fn new(gpu: &GpuCore, input_bytes: u64, output_bytes: u64) -> Self {
        let buffers = StripBuffers::new(&gpu.device, input_bytes, output_bytes);
        let uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gpuconv::strip::params"),
            size: std::mem::size_of::<Conv3x3Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let whole = |buffer: &wgpu::Buffer| Binding::Buffer {
            buffer: buffer.clone(),
            offset: 0,
            size: buffer.size(),
        };
        let bind_group = bind_group(
            &gpu.device,
            &gpu.pipeline,
            &uniform,
            &whole(&buffers.input),
            &whole(&buffers.output),
            true,
        );
        Self {
            buffers,
            uniform,
            bind_group,
            timer: None,
            last_submission: None,
        }
    }
}

/// The engine's own buffers for one strip (the whole image when it fits), kept and reused.
#[derive(Debug)]
struct StripBuffers {
    /// Where the CPU writes input pixels, mapped for writing between uses (and at creation),
    /// and copied into `input` at the start of each submission. Reused, so its pages are
    /// already the process's when the next strip is written.
    upload: wgpu::Buffer,
    /// Input pixels, rows starting on 16-byte boundaries.
    input: wgpu::Buffer,
    /// Output images, rows starting on 16-byte boundaries.
    output: wgpu::Buffer,
    /// Where output images are copied to be mapped and read.
    staging: wgpu::Buffer,
}

impl StripBuffers {
    /// Buffers for images needing at most `input_bytes` in and `output_bytes` out (both
    /// multiples of 4); `upload` comes mapped. Both are rounded up to whole 16-byte groups so
    /// that the shader reads and writes every row, the last included, 16 pixels at a time.
    fn new(device: &wgpu::Device, input_bytes: u64, output_bytes: u64) -> Self {
        let input_bytes = input_bytes.next_multiple_of(u64::from(VECTOR_BYTES));
        let output_bytes = output_bytes.next_multiple_of(u64::from(VECTOR_BYTES));
        let buffer = |label, size, usage, mapped_at_creation| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation,
            })
        };
        use wgpu::BufferUsages as U;
        Self {
            upload: buffer(
                "gpuconv::conv3x3::upload",
                input_bytes,
                U::MAP_WRITE | U::COPY_SRC,
                true,
            ),
            input: buffer(
                "gpuconv::conv3x3::input",
                input_bytes,
                U::STORAGE | U::COPY_DST,
                false,
            ),
            output: buffer(
                "gpuconv::conv3x3::output",
                output_bytes,
                U::STORAGE | U::COPY_SRC,
                false,
            ),
            staging: buffer(
                "gpuconv::conv3x3::staging",
                output_bytes,
                U::MAP_READ | U::COPY_DST,
                false,
            ),
        }
    }

    /// Frees the buffers' memory now, before they are dropped.
    fn destroy(&self) {
        self.upload.destroy();
        self.input.destroy();
        self.output.destroy();
        self.staging.destroy();
    }
}

/// Bytes of one input row and one output row in the engine's own buffers, from the layouts
/// strips are uploaded and read back with.
fn row_bytes(width: u32) -> (u64, u64) {
    let input = SourceLayout::vector_aligned_rows(width, 1).bytes_per_row;
    let output = TargetLayout::vector_aligned_rows(width - 2, 1).bytes_per_row;
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
    fn a_plan_cuts_the_image_into_full_strips_and_a_shorter_last_one() {
        let operation = Operation::edge(
            crate::Kernel::vertical_lines(),
            crate::Kernel::horizontal_lines(),
        );
        let plan = StripPlan::new(&operation, 10, 25, 10, 1).unwrap();
        assert_eq!(plan.count(), 3);
        let strips: Vec<(u32, u32, u32)> = (0..plan.count())
            .map(|i| plan.strip(i))
            .map(|(first, p)| (first, p.in_height, p.out_height))
            .collect();
        assert_eq!(strips, [(0, 12, 10), (10, 12, 10), (20, 5, 3)]);
        // Everything but the heights is the full strip's, so the slot's buffers hold every strip.
        let (_, last) = plan.strip(2);
        assert_eq!(last.bytes_per_image, plan.params.bytes_per_image);
        assert!(last.output_bytes() <= plan.params.output_bytes());
        assert!(last.input_bytes() <= plan.params.input_bytes());
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
            // Input rows are padded to 16 bytes: 3008.
            Some((1 << 20) / 3008 - 2)
        );
        assert_eq!(strip_rows(30_000, 1, 1, 1 << 16), None);
    }
}
