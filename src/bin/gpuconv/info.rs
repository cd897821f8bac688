//! `gpuconv info`: what wgpu sees.

use anyhow::Result;
use gpuconv::gpu::device;

pub fn run() -> Result<()> {
    let instance = device::instance_from_env();
    let adapters = pollster::block_on(device::enumerate_adapters(&instance));
    let chosen = pollster::block_on(device::select_adapter(&instance))
        .ok()
        .map(|a| a.get_info());
    if adapters.is_empty() {
        println!(
            "no GPU adapters found: gpuconv will use the CPU backend ({} threads)",
            rayon::current_num_threads()
        );
        println!(
            "(on Debian, 'apt-get install mesa-vulkan-drivers libvulkan1' gives a software Vulkan device)"
        );
        return Ok(());
    }
    for adapter in adapters {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let mark = if chosen.as_ref() == Some(&info) {
            "  <- used by --backend auto/gpu"
        } else {
            ""
        };
        println!(
            "{} ({:?}, {:?}){mark}",
            info.name, info.backend, info.device_type
        );
        println!("  driver: {} {}", info.driver, info.driver_info);
        println!(
            "  max_storage_buffer_binding_size: {} bytes",
            limits.max_storage_buffer_binding_size
        );
        println!("  max_buffer_size: {} bytes", limits.max_buffer_size);
        println!(
            "  max_compute_workgroups_per_dimension: {}",
            limits.max_compute_workgroups_per_dimension
        );
        println!(
            "  timestamp queries: {}",
            adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY)
        );
    }
    println!("CPU backend: {} threads", rayon::current_num_threads());
    Ok(())
}
