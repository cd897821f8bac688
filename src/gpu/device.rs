//! Finding an adapter and opening a device on it.

use crate::error::{Error, Result};

/// A wgpu instance for the backends `WGPU_BACKEND` names, or when it is unset, the primary ones:
/// Vulkan, Metal, DX12 (WebGPU in a browser).
///
/// OpenGL is left out unless asked for (`WGPU_BACKEND=gl`): starting it costs every run tens
/// of milliseconds (measured with `gpuconv bench --startup`) and at best adds a downlevel
/// adapter for a GPU that Vulkan already offers.
pub fn instance_from_env() -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = wgpu::Backends::PRIMARY;
    let mut descriptor = descriptor.with_env();
    // An empty WGPU_BACKEND counts as unset, not as "no backend at all".
    if std::env::var("WGPU_BACKEND").is_ok_and(|b| b.trim().is_empty()) {
        descriptor.backends = wgpu::Backends::PRIMARY;
    }
    wgpu::Instance::new(descriptor)
}

/// Every adapter the instance sees, in wgpu's order.
pub async fn enumerate_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    instance.enumerate_adapters(wgpu::Backends::all()).await
}

/// The adapter gpuconv uses, chosen the way wgpu's own tools do: the first adapter whose name
/// contains `WGPU_ADAPTER_NAME` (case-insensitive) when that is set, else wgpu's choice for
/// `WGPU_POWER_PREF` (`high`, the default here, ranks discrete GPUs first and software
/// renderers last; `low` ranks integrated GPUs first); only backends allowed by `WGPU_BACKEND`
/// are considered.
///
/// Unlike `wgpu::util::initialize_adapter_from_env`, a name that matches nothing is an error,
/// not a panic.
pub async fn select_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    if let Some(wanted) = adapter_name_from_env() {
        let wanted_lower = wanted.to_lowercase();
        let adapters = enumerate_adapters(instance).await;
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted_lower))
            .ok_or_else(|| Error::NoAdapter {
                detail: format!(
                    " whose name contains WGPU_ADAPTER_NAME='{wanted}' (adapters seen: {})",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            });
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            // A compute tool wants the fastest device; wgpu's own default does not rank at all.
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            ..Default::default()
        })
        .await
        .map_err(|_| Error::NoAdapter {
            detail: backend_detail(),
        })
}

/// `WGPU_ADAPTER_NAME`, when it is set to something: empty counts as unset, as it does for
/// most tools (a shell's `WGPU_ADAPTER_NAME= cmd` must not pick an adapter).
pub fn adapter_name_from_env() -> Option<String> {
    std::env::var("WGPU_ADAPTER_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
}

/// Which backends were searched, when `WGPU_BACKEND` narrowed them. wgpu's own reason lists
/// every backend it has not compiled in or could not load, which says nothing a user can act
/// on beyond "no driver": the message says what to install instead.
fn backend_detail() -> String {
    match std::env::var("WGPU_BACKEND") {
        Ok(backends) if !backends.trim().is_empty() => format!(" with WGPU_BACKEND='{backends}'"),
        _ => String::new(),
    }
}

/// Opens a device on `adapter` with everything gpuconv can use: the adapter's own limits (so
/// large images fit), `TIMESTAMP_QUERY` and `TIMESTAMP_QUERY_INSIDE_ENCODERS` when the adapter
/// has them (for kernel timings and the [`yardstick`](super::yardstick)'s copies), and
/// `PIPELINE_CACHE` when it has one (Vulkan), for the engine's specialized pipelines.
pub async fn request_device(adapter: &wgpu::Adapter) -> Result<(wgpu::Device, wgpu::Queue)> {
    let required_features = adapter.features()
        & (wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::PIPELINE_CACHE);
    adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("gpuconv::device"),
            required_features,
            required_limits: adapter.limits(),
            ..Default::default()
        })
        .await
        .map_err(|source| Error::RequestDevice {
            adapter: adapter.get_info().name,
            source,
        })
}
