//! The CPU backend: the same operation as the GPU shader, on all cores with rayon.

mod conv3x3;

use std::time::Instant;

use image::GrayImage;

use crate::error::Result;
use crate::operation::{FilterOutput, Operation, check_outputs, output_planes};
use crate::params::{Conv3x3Params, SourceLayout, TARGET_BUFFER, TargetLayout};
use crate::timings::Timings;

/// Runs [`Operation`]s on the CPU. Bit-identical to the GPU backend for integer kernels.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    _private: (),
}

impl CpuBackend {
    /// A CPU backend using rayon's global thread pool (`RAYON_NUM_THREADS` sets its size).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `operation` to `image`.
    pub fn run(&self, image: &GrayImage, operation: &Operation) -> Result<FilterOutput> {
        let (out_width, out_height) = operation.output_size(image.width(), image.height())?;
        let mut planes = output_planes(operation, out_width, out_height)?;
        let mut outputs: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
        self.run_into(image, operation, &mut outputs)?;
        Ok(FilterOutput::from_planes(
            operation, out_width, out_height, planes,
        ))
    }

    /// [`run`](Self::run), writing into the caller's buffers instead of new ones: `outputs`
    /// holds one buffer per output image, in [`FilterOutput`] order (the combined image first,
    /// if any, then the responses), each of [`Operation::output_size`] (rows packed). Reusing the
    /// same buffers call after call saves allocating, and faulting in, a fresh image each time.
    pub fn run_into(
        &self,
        image: &GrayImage,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        let (out_width, out_height) = operation.output_size(image.width(), image.height())?;
        check_outputs(operation, out_width, out_height, outputs)?;
        let (image, operation) = crate::border::for_valid_filter(image, operation)?;
        let (width, height) = image.dimensions();
        let target = TargetLayout {
            bytes_per_row: out_width,
            offset: 0,
            bytes_per_image: out_width * out_height,
            kind: TARGET_BUFFER,
        };
        let params = Conv3x3Params::new(&operation, SourceLayout::packed(width, height), target);
        conv3x3::main(&params, image.as_raw(), outputs);
        Ok(())
    }

    /// Applies `operation` to `image` and says how long it took (with `std::time::Instant`,
    /// which wasm32-unknown-unknown lacks: there, use [`run`](Self::run)).
    pub fn run_timed(
        &self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)> {
        let start = Instant::now();
        let output = self.run(image, operation)?;
        let elapsed = Some(start.elapsed());
        Ok((
            output,
            Timings {
                compute: elapsed,
                total: elapsed,
                ..Timings::default()
            },
        ))
    }
}
