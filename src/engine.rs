//! One engine for either backend, chosen at start-up.

use image::GrayImage;

use crate::cpu::CpuBackend;
use crate::error::Result;
use crate::gpu::GpuEngine;
use crate::operation::{FilterOutput, Operation};
use crate::timings::Timings;

/// Which backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The GPU when an adapter exists, otherwise the CPU.
    #[default]
    Auto,
    /// The GPU, or an error when there is no adapter.
    Gpu,
    /// The CPU.
    Cpu,
}

/// A filtering engine on the GPU or the CPU. Build it once and reuse it for many images: on the
/// GPU it keeps the device, pipeline and buffers between calls.
#[derive(Debug)]
pub struct Engine {
    backend: Backend,
    fallback_reason: Option<String>,
}

#[derive(Debug)]
enum Backend {
    Gpu(Box<GpuEngine>),
    Cpu(CpuBackend),
}

impl Engine {
    /// An engine on the chosen backend. With [`BackendChoice::Auto`] and no usable GPU it falls
    /// back to the CPU and records why in [`fallback_reason`](Self::fallback_reason).
    pub fn new(choice: BackendChoice) -> Result<Self> {
        let backend = match choice {
            BackendChoice::Cpu => Backend::Cpu(CpuBackend::new()),
            BackendChoice::Gpu => Backend::Gpu(Box::new(GpuEngine::new()?)),
            BackendChoice::Auto => match GpuEngine::new() {
                Ok(gpu) => Backend::Gpu(Box::new(gpu)),
                Err(error) => {
                    return Ok(Self {
                        backend: Backend::Cpu(CpuBackend::new()),
                        fallback_reason: Some(error.to_string()),
                    });
                }
            },
        };
        Ok(Self {
            backend,
            fallback_reason: None,
        })
    }

    /// An engine on a GPU engine built by the caller (for example with
    /// [`GpuEngine::from_device`]).
    pub fn from_gpu(gpu: GpuEngine) -> Self {
        Self {
            backend: Backend::Gpu(Box::new(gpu)),
            fallback_reason: None,
        }
    }

    /// Why [`BackendChoice::Auto`] fell back to the CPU, if it did.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// A one-line description of the backend, such as `gpu (llvmpipe, Vulkan)` or `cpu (2 threads)`.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Gpu(gpu) => {
                let info = gpu.adapter_info();
                format!("gpu ({}, {:?})", info.name, info.backend)
            }
            Backend::Cpu(_) => format!("cpu ({} threads)", rayon::current_num_threads()),
        }
    }

    /// Whether this engine runs on the GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self.backend, Backend::Gpu(_))
    }

    /// Applies `operation` to `image`.
    pub fn run(&mut self, image: &GrayImage, operation: &Operation) -> Result<FilterOutput> {
        self.run_timed(image, operation).map(|(output, _)| output)
    }

    /// Applies `operation` to `image` and says where the time went.
    pub fn run_timed(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)> {
        match &mut self.backend {
            Backend::Gpu(gpu) => gpu.run_timed(image, operation),
            Backend::Cpu(cpu) => cpu.run_timed(image, operation),
        }
    }
}

impl From<CpuBackend> for Engine {
    fn from(cpu: CpuBackend) -> Self {
        Self {
            backend: Backend::Cpu(cpu),
            fallback_reason: None,
        }
    }
}
