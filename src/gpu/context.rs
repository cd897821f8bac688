//! What every pass needs, shared by the engine and its strip scheduler: the device, its queue,
//! the pipelines built on it, and the errors wgpu reported outside any scope.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::pipeline::Conv3x3Pipeline;

/// What every pass needs: the device, its queue and the pipelines built on it.
#[derive(Debug)]
pub(crate) struct GpuCore {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    pub pipeline: Conv3x3Pipeline,
    /// Output rows each invocation computes, in every pass this engine prepares or runs.
    pub rows_per_invocation: u32,
    /// The first error wgpu reported outside any error scope, on devices gpuconv created.
    pub uncaptured: Option<Arc<Mutex<Option<String>>>>,
}

impl GpuCore {
    /// Returns, once, an error wgpu reported outside any error scope since the last call.
    pub fn take_uncaptured_error(&self) -> Result<()> {
        let Some(uncaptured) = &self.uncaptured else {
            return Ok(());
        };
        let error = uncaptured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        error.map_or(Ok(()), |error| Err(Error::Gpu(error)))
    }
}
