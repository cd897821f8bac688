#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod cpu;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod io;
pub mod kernel;
pub mod operation;
pub mod params;
pub mod reference;
pub mod timings;

pub use cpu::CpuBackend;
pub use engine::{BackendChoice, Engine};
pub use error::{Error, Result};
pub use gpu::GpuEngine;
pub use kernel::Kernel;
pub use operation::{Combine, FilterOutput, MAX_KERNELS, Operation};
pub use timings::Timings;
