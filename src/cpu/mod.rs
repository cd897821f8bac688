//! The CPU backend: the same operation as the GPU shader, on all cores with rayon.

mod conv3x3;

use std::time::Instant;

use image::GrayImage;

use crate::error::Result;
use crate::memory::zeroed_bytes;
use crate::operation::{FilterOutput, Operation, output_size};
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
        let (width, height) = image.dimensions();
        let (out_width, out_height) = output_size(width, height)?;
        let target = TargetLayout {
            bytes_per_row: out_width,
            offset: 0,
            bytes_per_image: out_width * out_height,
            kind: TARGET_BUFFER,
        };
        let params = Conv3x3Params::new(operation, SourceLayout::packed(width, height), target);
        let plane_pixels = out_width as usize * out_height as usize;
        // One zeroed allocation each, never a clone of one: fresh zeroed pages cost nothing
        // until the filter writes them, where a clone would copy a whole plane.
        let mut planes: Vec<Vec<u8>> = (0..params.output_count())
            .map(|_| zeroed_bytes(plane_pixels, "an output image"))
            .collect::<Result<_>>()?;
        let mut views: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
        conv3x3::main(&params, image.as_raw(), &mut views);
        Ok(FilterOutput::from_planes(
            operation, out_width, out_height, planes,
        ))
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
