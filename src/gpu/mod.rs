//! The GPU backend: wgpu compute with the shader in `shaders/conv3x3.wgsl`.
//!
//! Split by concern: [`device`] finds an adapter and opens a device; `engine.rs` is
//! [`GpuEngine`], built once on it; `pipeline.rs` compiles the shader module once per device
//! and a pipeline per [`Variant`] (the shape of a pass) when first needed;
//! `resources.rs` checks the caller's buffers and textures; `dispatch.rs` builds bind groups and
//! records passes; `strips.rs` schedules an image from the CPU through the engine's own buffers
//! in strips; `transfers.rs` moves pixels in and out of mapped buffers; `timer.rs` reads the
//! kernel's timestamps; [`yardstick`] times a copy kernel, `copy_buffer_to_buffer` and passes
//! over resources already on the device, to measure the kernel against.
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

mod context;
pub mod device;
mod dispatch;
mod engine;
mod pipeline;
mod resources;
mod strips;
mod timer;
mod transfers;
pub mod yardstick;

pub use crate::params::{COLUMNS_PER_INVOCATION, MAX_ROWS_PER_INVOCATION, VECTOR_BYTES};
pub use dispatch::FilterPass;
pub use engine::{DEFAULT_ROWS_PER_INVOCATION, GpuEngine};
pub use pipeline::Variant;
pub use resources::{GpuSource, GpuTarget};
pub use strips::{STRIP_BYTES, STRIPS_IN_FLIGHT};
