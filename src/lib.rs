//! 3×3 image convolution — the Sobel-style line and edge filters of an introductory lesson on
//! convolutional networks — as a wgpu compute shader, with a CPU backend that computes the same bits.
//!
//! ```
//! use gpuconv::{BackendChoice, Engine, Kernel, Operation};
//!
//! // The lesson's 5×5 example and its X-shaped filter.
//! let example = image::GrayImage::from_raw(5, 5, vec![
//!     1, 1, 1, 0, 0,
//!     0, 1, 1, 1, 0,
//!     0, 0, 1, 1, 1,
//!     0, 0, 1, 1, 0,
//!     0, 1, 1, 0, 0,
//! ]).unwrap();
//! let x = Kernel::parse("1,0,1;0,1,0;1,0,1", "x")?;
//!
//! // One engine serves many images; Auto uses the GPU when there is one, else the CPU.
//! let mut engine = Engine::new(BackendChoice::Auto)?;
//! let output = engine.run(&example, &Operation::responses(vec![x])?)?;
//! assert_eq!(output.responses[0].as_raw(), &[4, 3, 4, 2, 4, 3, 2, 3, 4]);
//!
//! // The lesson's edge image: min(V + H, 255), V and H computed in the same pass.
//! let edges = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
//! let edge_image = engine.run(&example, &edges)?.combined.unwrap();
//! assert_eq!(edge_image.dimensions(), (3, 3));
//! # Ok::<(), gpuconv::Error>(())
//! ```
//!
//! # What it computes
//!
//! - **Input**: 8-bit gray images ([`image::GrayImage`]). [`io::load_gray`] decodes any file the
//!   `image` crate reads and makes it gray: colour by ITU-R 601-2 luma exactly as Pillow's
//!   `convert('L')` computes it, `L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16`, alpha
//!   ignored; 16-bit samples scaled to 8 bits by `round(v / 257)` first (see [`io::to_gray`]).
//! - **Operation**: 'valid' cross-correlation — no padding, stride 1, no kernel flip — so a W×H
//!   image gives a (W−2)×(H−2) output whose pixel is `clamp(|Σ patch ∘ kernel|, 0, 255)`.
//! - **Weights** are `f32` and finite. Whole-number kernels (at most [`kernel::MAX_WEIGHT`] in
//!   magnitude) are summed exactly in `i32`: GPU, CPU and [`reference`](mod@reference) agree bit
//!   for bit. Kernels with a fractional weight (at most [`kernel::MAX_FRACTIONAL_WEIGHT`]) are
//!   summed in `f32` in row-major tap order and rounded to nearest, ties to even; the CPU equals
//!   the reference exactly, and a GPU response may differ by at most 1 (drivers may fuse a
//!   multiply and an add). Combined images are computed from the same backend's responses, so
//!   there a threshold pixel may flip where `V + H` lies within 1 of the threshold.

//! - An image smaller than 3×3 is an [`Error::ImageTooSmall`].
//! - Up to [`MAX_KERNELS`] kernels per [`Operation`] are computed in one pass that reads the
//!   input once.
//! - [`Combine::Edge`]: `clamp(V + H, 0, 255)`; [`Combine::Threshold`]`(T)`: 255 where
//!   `V + H >= T`, else 0 (the lesson uses 255). Computed in the same pass as V and H, which are
//!   returned only when asked for ([`Operation::with_responses`]).
//!
//! # Layout
//!
//! [`Engine`] picks a backend at start-up: [`GpuEngine`] (device, queue, pipelines and reusable
//! buffers; also built from an application's own device with [`GpuEngine::from_device`]) or
//! [`CpuBackend`]. The shader, `shaders/conv3x3.wgsl`, and its CPU twin, `src/cpu/conv3x3.rs`,
//! share the uniform block in `src/params.rs`. [`auto`] weighs a job before a GPU is opened.
//! [`reference`](mod@reference) is the plain loop the tests trust. [`io`] reads and writes
//! files, whole or row by row. [`pipeline`] is the one way images flow: one image from a file
//! or bytes to files or bytes ([`pipeline::filter_image`]), band by band when the formats allow;
//! video frames ([`pipeline::frames`]); batches ([`pipeline::batch`]); the
//! [`SharedEngine`](pipeline::SharedEngine) they take turns with.
//! With the cargo feature `serve`, [`serve`](mod@serve) is the HTTP service behind `gpuconv serve`:
//! one shared engine behind a bounded queue, as an axum router to mount or a server to run.
//!
//! # Vocabulary
//!
//! One word per quantity, in the code, the docs and the messages:
//!
//! - **pixel**: one 8-bit gray value; **row**: a line of an image; **kernel**: one 3×3 filter;
//!   **response**: one kernel's output image; **combined**: the edge or threshold image made
//!   from two responses; **output**: any image a pass writes; **operation**: kernels, how they
//!   combine, and the border.
//! - **band**: a piece of rows streamed through the filter (at most [`pipeline::DEFAULT_BAND_BYTES`]
//!   of input, never more than the image); **strip**: a piece of an image sent through the GPU
//!   engine's own buffers; **task**: a piece of rows the CPU backend hands one thread.
//! - **stage**: reading, filtering or writing, each on a thread of its own; **source** and
//!   **destination**: where an image is read and its outputs written; **frame stream**: video
//!   frames through the filter (`gpuconv stream`).
//! - **worker**: a thread that takes one input of a batch, or one request of the service, at a
//!   time, with its **share** of the memory budget; **shared engine**: the one engine they take
//!   turns with.
//! - **workload**: what a job asks of a backend ([`Workload`]); **routed**: an engine holding
//!   both backends, each image sent to one.
//! - **input fault**, **limit**, **run-wide**: the three [`ErrorKind`]s.
#![deny(missing_docs)]

pub mod auto;
mod border;
mod cpu;
mod engine;
mod error;
pub mod gpu;
pub mod io;
pub mod kernel;
mod memory;
mod operation;
mod params;
pub mod pipeline;
pub mod reference;
mod rows;
#[cfg(feature = "serve")]
pub mod serve;
mod stages;
pub mod text;
mod timings;
mod units;

pub use auto::Workload;
pub use cpu::CpuBackend;
pub use engine::{BackendChoice, Engine, Fallback};
pub use error::{Error, ErrorKind, Result};
pub use gpu::{FilterPass, GpuEngine, GpuSource, GpuTarget};
pub use kernel::Kernel;
pub use operation::{
    Border, Combine, FilterOutput, GrayView, MAX_KERNELS, Operation, SumPlane, Sums, output_size,
    view,
};
pub use timings::Timings;

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
