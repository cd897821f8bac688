//! `gpuconv info`: what wgpu sees, and which backend each `--backend` choice would use.

use anyhow::Result;
use gpuconv::Engine;
use gpuconv::gpu::device;

pub fn run() -> Result<()> {
    let threads = rayon::current_num_threads();
    let instance = device::instance_from_env();
    let adapters = pollster::block_on(device::enumerate_adapters(&instance));
    for adapter in &adapters {
        let info = adapter.get_info();
        let limits = adapter.limits();
        println!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
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
    match pollster::block_on(device::select_adapter(&instance)) {
        Ok(adapter) => {
            let info = adapter.get_info();
            println!("--backend gpu:  {} ({:?})", info.name, info.backend);
            match Engine::auto_rejects(&info) {
                None => println!(
                    "--backend auto: {} ({:?}) for the jobs where it is expected to beat the CPU \
                     backend ({threads} threads), the CPU backend for the others",
                    info.name, info.backend
                ),
                Some(_) => println!(
                    "--backend auto: the CPU backend, {threads} threads ('{}' is a software renderer)",
                    info.name
                ),
            }
        }
        Err(error) => {
            println!("--backend gpu:  fails: {error}");
            println!("--backend auto: the CPU backend, {threads} threads");
        }
    }
    println!("--backend cpu:  the CPU backend, {threads} threads");
    println!(
        "memory budget per input: {} (half of this machine; --max-memory sets another)",
        gpuconv::io::format_bytes(gpuconv::io::default_memory_budget())
    );
    Ok(())
}
