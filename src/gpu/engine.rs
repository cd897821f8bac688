//! The engine: construction on a new or the caller's device, accessors, and [`GpuEngine::prepare`]
//! for the caller's own resources. [`GpuEngine::run`] hands images from the CPU to the strip
//! scheduler in `strips.rs`.

use std::sync::{Arc, Mutex};

use image::GrayImage;

use crate::error::{Error, Result};
use crate::operation::{FilterOutput, GrayView, Operation, Sums, check_outputs, view};
use crate::params::Conv3x3Params;
use crate::timings::Timings;

use super::context::GpuCore;
use super::device;
use super::dispatch::FilterPass;
use super::pipeline::{self, Conv3x3Pipeline};
use super::resources::{self, GpuSource, GpuTarget};
use super::strips::Strips;

/// Output rows each shader invocation computes unless
/// [`set_rows_per_invocation`](GpuEngine::set_rows_per_invocation) says otherwise: chosen by
/// measurement on an NVIDIA H200 (`scripts/gpu-bench.sh`, BENCHMARKS.md): at 8192×8192 the
/// kernel took 2.40, 2.26 and 2.22 ms with 1, 2 and 4 rows (vertical lines; the edge image
/// alike), and at 16384×16384 8 rows were slower than 4.
pub const DEFAULT_ROWS_PER_INVOCATION: u32 = 4;

/// A long-lived GPU engine: device, queue, pipelines and reusable buffers.
///
/// Two ways to use it: [`run`](Self::run) takes an image from the CPU and brings the results
/// back (what the command line does), and [`prepare`](Self::prepare) builds a [`FilterPass`]
/// over buffers or textures that already live on the GPU, which the caller records into its own
/// encoder. Both use the same pipelines: one per shape of pass, compiled when first needed.
#[derive(Debug)]
pub struct GpuEngine {
    core: GpuCore,
    /// [`run`](Self::run)'s strip scheduler: its buffers, made on the first call and reused.
    strips: Strips,
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
        engine.core.uncaptured = Some(uncaptured);
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
    /// (`wgpu::Limits::downlevel_defaults()` is enough): compute shaders, 4 storage buffers and
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
                4,
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
            core: GpuCore {
                device: device.clone(),
                queue: queue.clone(),
                adapter_info: device.adapter_info(),
                pipeline,
                rows_per_invocation: DEFAULT_ROWS_PER_INVOCATION,
                uncaptured: None,
            },
            strips: Strips::default(),
        })
    }

    /// The adapter this engine runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.core.adapter_info
    }

    /// The engine's device.
    pub fn device(&self) -> &wgpu::Device {
        &self.core.device
    }

    /// The engine's queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.core.queue
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
        let limits = self.core.device.limits();
        let (source_layout, source_binding) = source.bind(operation.border(), &limits)?;
        let (out_width, out_height) =
            operation.output_size(source_layout.width, source_layout.height)?;
        let (target_layout, target_binding) =
            target.bind(operation, out_width, out_height, &limits)?;
        let params = Conv3x3Params::new(operation, source_layout, target_layout)
            .with_rows_per_invocation(self.core.rows_per_invocation);
        // What the checks above cannot see (a destroyed buffer, a resource from another device)
        // becomes an error too. On native, popping the scope resolves at once; on the web it
        // cannot be waited for here, and such errors reach the device's own handler.
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self
            .core
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let pass = FilterPass::new(
            &self.core.device,
            &self.core.pipeline,
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
        self.run_view(&view(image), operation)
    }

    /// [`run`](Self::run) on pixels held elsewhere, read where they lie.
    pub fn run_view(
        &mut self,
        image: &GrayView<'_>,
        operation: &Operation,
    ) -> Result<FilterOutput> {
        // Untimed: no timestamp queries, no clock readings, no extra mapping.
        pollster::block_on(self.run_view_async(image, operation))
    }

    /// [`run`](Self::run), writing into the caller's buffers instead of new ones: one per
    /// output image, in [`FilterOutput`] order, each exactly (W−2)×(H−2) bytes, rows packed.
    /// Reusing them call after call saves allocating and faulting in fresh images. Blocks; see
    /// [`run_into_async`](Self::run_into_async).
    pub fn run_into(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        self.run_view_into(&view(image), operation, outputs)
    }

    /// Each kernel's unclipped sums (an [`Operation::sums`]); see `Engine::run_sums`. Blocks.
    pub fn run_sums(&mut self, image: &GrayView<'_>, operation: &Operation) -> Result<Sums> {
        let mut sums = Sums::for_image(operation, image.width(), image.height())?;
        self.run_view_into(image, operation, &mut sums.planes_as_bytes())?;
        Ok(sums)
    }

    /// [`run_into`](Self::run_into) on pixels held elsewhere, read where they lie.
    pub fn run_view_into(
        &mut self,
        image: &GrayView<'_>,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        pollster::block_on(self.run_view_into_async(image, operation, outputs))
    }

    /// [`run_into`](Self::run_into) without blocking.
    pub async fn run_into_async(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        self.run_view_into_async(&view(image), operation, outputs)
            .await
    }

    /// [`run_view_into`](Self::run_view_into) without blocking.
    pub async fn run_view_into_async(
        &mut self,
        image: &GrayView<'_>,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        let (out_width, out_height) = operation.output_size(image.width(), image.height())?;
        check_outputs(operation, out_width, out_height, outputs)?;
        let (padded, operation) = crate::border::for_valid_filter(image, operation)?;
        self.strips
            .run_into(&self.core, &padded.view(), &operation, outputs, false)
            .await
            .map(drop)
    }

    /// [`run`](Self::run), also saying how long upload, compute (and the GPU kernel alone, when
    /// the device has timestamp queries) and readback took, summed over strips. Only timed runs
    /// write timestamps and read the clock.
    pub fn run_timed(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)> {
        let (padded, operation) = crate::border::for_valid_filter(&view(image), operation)?;
        pollster::block_on(
            self.strips
                .run(&self.core, &padded.view(), &operation, true),
        )
    }

    /// [`run`](Self::run) without blocking: the future resolves when the results are back. On
    /// native targets a helper thread waits on the device while the future is pending; on the web
    /// the browser completes the readback.
    pub async fn run_async(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<FilterOutput> {
        self.run_view_async(&view(image), operation).await
    }

    /// [`run_view`](Self::run_view) without blocking.
    pub async fn run_view_async(
        &mut self,
        image: &GrayView<'_>,
        operation: &Operation,
    ) -> Result<FilterOutput> {
        let (padded, operation) = crate::border::for_valid_filter(image, operation)?;
        self.strips
            .run(&self.core, &padded.view(), &operation, false)
            .await
            .map(|(output, _)| output)
    }

    /// Limits the rows of output computed per GPU pass (`None`: the whole image when its input
    /// is at most twice [`STRIP_BYTES`](super::STRIP_BYTES), else about `STRIP_BYTES` of input per strip, and never
    /// more than the device's buffer limits allow). Images taller than that are processed in
    /// horizontal strips, each read with the two extra rows its windows need, so the result is
    /// identical to one pass; smaller strips use less GPU memory.
    pub fn set_max_strip_rows(&mut self, rows: Option<u32>) {
        self.strips.max_rows = rows.map(|r| r.max(1));
    }

    /// Sets how many output rows each shader invocation computes (1 to
    /// [`MAX_ROWS_PER_INVOCATION`](super::MAX_ROWS_PER_INVOCATION); default
    /// [`DEFAULT_ROWS_PER_INVOCATION`]), in the passes prepared and run from now on. More rows
    /// fetch each input row fewer times but give the GPU fewer invocations to spread; the
    /// results are the same. A tuning knob: `scripts/gpu-bench.sh` measures each.
    pub fn set_rows_per_invocation(&mut self, rows: u32) {
        self.core.rows_per_invocation = rows.clamp(1, crate::params::MAX_ROWS_PER_INVOCATION);
    }

    /// Output rows each shader invocation computes.
    pub fn rows_per_invocation(&self) -> u32 {
        self.core.rows_per_invocation
    }

    /// How many specialized pipelines this engine has compiled: one per shape of pass (kernel
    /// count, integer or fractional kernels, combination, border, source and target and their
    /// alignment, rows per invocation) run or prepared so far. None are compiled before the
    /// first pass needs one, so opening an engine costs the same however many shapes exist.
    pub fn compiled_pipelines(&self) -> usize {
        self.core.pipeline.compiled()
    }

    /// What the driver's pipeline cache holds, to save (under
    /// `wgpu::util::pipeline_cache_key` of [`adapter_info`](Self::adapter_info), written whole
    /// and renamed into place) and [load](Self::load_pipeline_cache) in a later process, so that
    /// it compiles its pipelines faster; `None` where the device has no pipeline cache (only
    /// Vulkan has one, and only on devices opened with `Features::PIPELINE_CACHE`, as
    /// [`new`](Self::new) opens them).
    pub fn pipeline_cache_data(&self) -> Option<Vec<u8>> {
        self.core.pipeline.cache_data()
    }

    /// Compiles this engine's pipelines from now on with a pipeline cache made from `data`.
    /// Call it before the first pass; it does nothing where the device has no pipeline cache.
    ///
    /// # Safety
    ///
    /// `data` must have come from [`pipeline_cache_data`](Self::pipeline_cache_data) of an
    /// engine on an adapter with the same `wgpu::util::pipeline_cache_key` (wgpu checks the
    /// key and the data's header, and starts an empty cache when they do not match).
    pub unsafe fn load_pipeline_cache(&self, data: &[u8]) {
        // SAFETY: the caller's promise above.
        unsafe { self.core.pipeline.load_cache(&self.core.device, data) }
    }

    /// The cap [`set_max_strip_rows`](Self::set_max_strip_rows) set, if any.
    pub fn max_strip_rows(&self) -> Option<u32> {
        self.strips.max_rows
    }
}
