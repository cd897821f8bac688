//! One engine for either backend, chosen at start-up.

use image::GrayImage;

use crate::auto::{self, Workload};
use crate::cpu::CpuBackend;
use crate::error::Result;
use crate::gpu::{GpuEngine, device};
use crate::operation::{FilterOutput, GrayView, Operation, Sums};
use crate::timings::Timings;

/// Which backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The GPU when a hardware adapter exists, otherwise the CPU. A software adapter (such as
    /// Mesa's llvmpipe) is slower than the CPU backend on the same cores, so it is used only when
    /// `WGPU_ADAPTER_NAME` names it.
    #[default]
    Auto,
    /// The GPU (any adapter, software ones included), or an error when there is none.
    Gpu,
    /// The CPU.
    Cpu,
}

/// A filtering engine on the GPU or the CPU. Build it once and reuse it for many images: on the
/// GPU it keeps the device, pipeline and buffers between calls.
#[derive(Debug)]
pub struct Engine {
    backend: Backend,
    fallback: Option<(Fallback, String)>,
}

/// Why [`BackendChoice::Auto`] chose the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The estimate in [`auto`](crate::auto) expects the CPU to be faster on this job.
    Estimate,
    /// `GPUCONV_AUTO_MIN_MPX` puts this job's images below its threshold.
    Threshold,
    /// The only GPU found is a software renderer, slower than the CPU backend.
    SoftwareRenderer,
    /// No GPU could be found or opened.
    NoGpu,
}

#[derive(Debug)]
enum Backend {
    Gpu(Box<GpuEngine>),
    Cpu(CpuBackend),
    /// Both, each image going where [`auto`](crate::auto) estimates it runs faster with the
    /// engine kept open: a service's requests.
    Routed {
        gpu: Box<GpuEngine>,
        cpu: CpuBackend,
        min_megapixels: Option<f64>,
    },
}

impl Engine {
    /// An engine on the chosen backend. With [`BackendChoice::Auto`] and no usable GPU it falls
    /// back to the CPU and records why in [`fallback_reason`](Self::fallback_reason).
    pub fn new(choice: BackendChoice) -> Result<Self> {
        let backend = match choice {
            BackendChoice::Cpu => Backend::Cpu(CpuBackend::new()),
            BackendChoice::Gpu => Backend::Gpu(Box::new(GpuEngine::new()?)),
            BackendChoice::Auto => match pollster::block_on(auto_gpu()) {
                Ok(gpu) => Backend::Gpu(Box::new(gpu)),
                Err(fallback) => {
                    return Ok(Self {
                        backend: Backend::Cpu(CpuBackend::new()),
                        fallback: Some(fallback),
                    });
                }
            },
        };
        Ok(Self {
            backend,
            fallback: None,
        })
    }

    /// An engine for `workload` on the chosen backend. With [`BackendChoice::Auto`], the
    /// estimate in [`auto`](crate::auto) decides first, before any GPU is looked for: when the
    /// CPU is expected to win (or `GPUCONV_AUTO_MIN_MPX` says so), the engine is the CPU's and
    /// [`fallback_reason`](Self::fallback_reason) says why; otherwise it is
    /// [`new`](Self::new)`(Auto)`. An unreadable `GPUCONV_AUTO_MIN_MPX` is an error.
    pub fn for_workload(choice: BackendChoice, workload: &Workload) -> Result<Self> {
        if choice != BackendChoice::Auto {
            return Self::new(choice);
        }
        let threads = rayon::current_num_threads();
        let threshold = auto::min_megapixels_from_env()?;
        let decision = workload.decide(threads, threshold);
        if decision.gpu {
            return Self::new(choice);
        }
        let kind = match threshold {
            Some(_) => Fallback::Threshold,
            None => Fallback::Estimate,
        };
        Ok(Self {
            backend: Backend::Cpu(CpuBackend::new()),
            fallback: Some((kind, decision.reason)),
        })
    }

    /// An engine that keeps `gpu` open beside the CPU backend and sends each image to whichever
    /// [`auto`](crate::auto) estimates faster for it, the GPU's start-up already paid: what a
    /// long-lived service wants when both are there. An unreadable `GPUCONV_AUTO_MIN_MPX` is an
    /// error.
    pub fn routed(gpu: GpuEngine) -> Result<Self> {
        Ok(Self {
            backend: Backend::Routed {
                gpu: Box::new(gpu),
                cpu: CpuBackend::new(),
                min_megapixels: auto::min_megapixels_from_env()?,
            },
            fallback: None,
        })
    }

    /// This engine [routed](Self::routed) when it runs on the GPU alone; as it is otherwise.
    pub fn into_routed(self) -> Result<Self> {
        match self.backend {
            Backend::Gpu(gpu) => Self::routed(*gpu),
            backend => Ok(Self { backend, ..self }),
        }
    }

    /// `"gpu"` or `"cpu"`: where [`run`](Self::run) would filter a `width × height` image with
    /// `operation`.
    pub fn backend_for(&self, width: u32, height: u32, operation: &Operation) -> &'static str {
        if self.goes_to_gpu(width, height, operation) {
            "gpu"
        } else {
            "cpu"
        }
    }

    /// Whether [`run`](Self::run) would filter a `width × height` image with `operation` on
    /// the GPU.
    fn goes_to_gpu(&self, width: u32, height: u32, operation: &Operation) -> bool {
        match &self.backend {
            Backend::Gpu(_) => true,
            Backend::Cpu(_) => false,
            Backend::Routed { min_megapixels, .. } => {
                let pixels = u64::from(width) * u64::from(height);
                Workload::new(operation, pixels, None)
                    .prefers_gpu(rayon::current_num_threads(), *min_megapixels)
            }
        }
    }

    /// The backend `image` goes to.
    fn route(&mut self, (width, height): (u32, u32), operation: &Operation) -> Route<'_> {
        let gpu = self.goes_to_gpu(width, height, operation);
        match &mut self.backend {
            Backend::Gpu(engine) => Route::Gpu(engine),
            Backend::Cpu(cpu) => Route::Cpu(cpu),
            Backend::Routed { gpu: engine, .. } if gpu => Route::Gpu(engine),
            Backend::Routed { cpu, .. } => Route::Cpu(cpu),
        }
    }

    /// An engine on a GPU engine built by the caller (for example with
    /// [`GpuEngine::from_device`]).
    pub fn from_gpu(gpu: GpuEngine) -> Self {
        Self {
            backend: Backend::Gpu(Box::new(gpu)),
            fallback: None,
        }
    }

    /// Why [`BackendChoice::Auto`] chose the CPU, in words for a person, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_ref().map(|(_, reason)| reason.as_str())
    }

    /// Why [`BackendChoice::Auto`] chose the CPU, if it did.
    pub fn fallback(&self) -> Option<Fallback> {
        self.fallback.as_ref().map(|(kind, _)| *kind)
    }

    /// A one-line description of the backend, such as `gpu (llvmpipe, Vulkan)` or `cpu (2 threads)`.
    pub fn describe(&self) -> String {
        let cpu = || format!("cpu ({} threads)", rayon::current_num_threads());
        let gpu = |gpu: &GpuEngine| {
            let info = gpu.adapter_info();
            format!("gpu ({}, {:?})", info.name, info.backend)
        };
        match &self.backend {
            Backend::Gpu(engine) => gpu(engine),
            Backend::Cpu(_) => cpu(),
            Backend::Routed { gpu: engine, .. } => {
                format!("{} or {}, by image", gpu(engine), cpu())
            }
        }
    }

    /// Why [`BackendChoice::Auto`] would not use `adapter`, or `None` when it would: a software
    /// renderer (device type `Cpu`, such as Mesa's llvmpipe) runs on the same cores as the CPU
    /// backend, only slower, so it is used only when `WGPU_ADAPTER_NAME` asks for it by name.
    pub fn auto_rejects(adapter: &wgpu::AdapterInfo) -> Option<String> {
        let named = device::adapter_name_from_env().is_some();
        (adapter.device_type == wgpu::DeviceType::Cpu && !named).then(|| {
            format!(
                "the GPU found, '{}', is a software renderer, slower than the CPU",
                adapter.name
            )
        })
    }

    /// The GPU engine, when this engine runs on the GPU: its device, queue and adapter.
    pub fn gpu(&self) -> Option<&GpuEngine> {
        match &self.backend {
            Backend::Gpu(gpu) | Backend::Routed { gpu, .. } => Some(gpu),
            Backend::Cpu(_) => None,
        }
    }

    /// The GPU engine, mutably, when this engine runs on the GPU: to set its
    /// [strip cap](GpuEngine::set_max_strip_rows), say.
    pub fn gpu_mut(&mut self) -> Option<&mut GpuEngine> {
        match &mut self.backend {
            Backend::Gpu(gpu) | Backend::Routed { gpu, .. } => Some(gpu),
            Backend::Cpu(_) => None,
        }
    }

    /// Whether this engine has a GPU open (on its own, or [routed](Self::routed) beside the CPU).
    pub fn is_gpu(&self) -> bool {
        !matches!(self.backend, Backend::Cpu(_))
    }

    /// Whether this engine sends each image to the GPU or the CPU by its size
    /// ([`routed`](Self::routed)).
    pub fn is_routed(&self) -> bool {
        matches!(self.backend, Backend::Routed { .. })
    }

    /// Applies `operation` to `image`.
    pub fn run(&mut self, image: &GrayImage, operation: &Operation) -> Result<FilterOutput> {
        match self.route(image.dimensions(), operation) {
            Route::Gpu(gpu) => gpu.run(image, operation),
            Route::Cpu(cpu) => cpu.run(image, operation),
        }
    }

    /// [`run`](Self::run) on pixels held elsewhere (a [`GrayView`]), read where they lie.
    pub fn run_view(
        &mut self,
        image: &GrayView<'_>,
        operation: &Operation,
    ) -> Result<FilterOutput> {
        match self.route(image.dimensions(), operation) {
            Route::Gpu(gpu) => gpu.run_view(image, operation),
            Route::Cpu(cpu) => cpu.run_view(image, operation),
        }
    }

    /// [`run_into`](Self::run_into) on pixels held elsewhere (a [`GrayView`]), read where they
    /// lie: with [`run_view`](Self::run_view), how a caller's own arrays are filtered without a
    /// copy in or out. For an [`Operation::sums`], each output holds 4 bytes a pixel, the
    /// kernel's `i32` or `f32` sums in native byte order ([`run_sums`](Self::run_sums) gives
    /// them typed).
    pub fn run_view_into(
        &mut self,
        image: &GrayView<'_>,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        match self.route(image.dimensions(), operation) {
            Route::Gpu(gpu) => gpu.run_view_into(image, operation, outputs),
            Route::Cpu(cpu) => cpu.run_view_into(image, operation, outputs),
        }
    }

    /// The unclipped, signed sums of each kernel of `operation` (an [`Operation::sums`]) over
    /// `image`: `i32` for whole-number kernels, `f32` for fractional ones, bit-identical on
    /// both backends for whole-number kernels.
    pub fn run_sums(&mut self, image: &GrayView<'_>, operation: &Operation) -> Result<Sums> {
        match self.route(image.dimensions(), operation) {
            Route::Gpu(gpu) => gpu.run_sums(image, operation),
            Route::Cpu(cpu) => cpu.run_sums(image, operation),
        }
    }

    /// Applies `operation` to `image`, writing into the caller's buffers: one per output image
    /// ([`Operation::output_count`]), in [`FilterOutput`] order (the combined image first, if
    /// any, then the responses), each exactly (W−2)×(H−2) bytes, rows packed. Reusing the same
    /// buffers for many images of one size saves allocating, and faulting in, fresh ones.
    pub fn run_into(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        match self.route(image.dimensions(), operation) {
            Route::Gpu(gpu) => gpu.run_into(image, operation, outputs),
            Route::Cpu(cpu) => cpu.run_into(image, operation, outputs),
        }
    }

    /// Applies `operation` to `image` and says where the time went.
    pub fn run_timed(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)> {
        match self.route(image.dimensions(), operation) {
            Route::Gpu(gpu) => gpu.run_timed(image, operation),
            Route::Cpu(cpu) => cpu.run_timed(image, operation),
        }
    }
}

/// Where one image is filtered.
enum Route<'a> {
    Gpu(&'a mut GpuEngine),
    Cpu(&'a mut CpuBackend),
}

/// The GPU engine [`BackendChoice::Auto`] uses, or why there is none.
async fn auto_gpu() -> Result<GpuEngine, (Fallback, String)> {
    let instance = device::instance_from_env();
    let adapter = device::select_adapter(&instance)
        .await
        .map_err(|e| match e {
            // The short form: the notice goes on to say that the CPU is used.
            crate::Error::NoAdapter { detail } => format!(
                "no GPU found{detail} (to use one, install its Vulkan driver; on Debian: \
                 mesa-vulkan-drivers)"
            ),
            other => other.to_string(),
        })
        .map_err(|reason| (Fallback::NoGpu, reason))?;
    if let Some(reason) = Engine::auto_rejects(&adapter.get_info()) {
        return Err((Fallback::SoftwareRenderer, reason));
    }
    GpuEngine::from_adapter(&adapter)
        .await
        .map_err(|e| (Fallback::NoGpu, e.to_string()))
}

impl From<CpuBackend> for Engine {
    fn from(cpu: CpuBackend) -> Self {
        Self {
            backend: Backend::Cpu(cpu),
            fallback: None,
        }
    }
}
