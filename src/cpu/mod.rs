//! The CPU backend: the same operation as the GPU shader, on all cores with rayon.

mod conv3x3;

use std::sync::Arc;
use std::time::Instant;

use image::GrayImage;

use crate::error::{Error, Result};
use crate::operation::{
    FilterOutput, GrayView, Operation, Sums, check_outputs, output_planes, view,
};
use crate::params::{Conv3x3Params, SourceLayout, TARGET_BUFFER, TargetLayout};
use crate::timings::Timings;

/// Runs [`Operation`]s on the CPU. Bit-identical to the GPU backend for integer kernels.
#[derive(Clone, Debug, Default)]
pub struct CpuBackend {
    threads: Threads,
}

/// Where a [`CpuBackend`] filters.
#[derive(Clone, Debug, Default)]
enum Threads {
    /// On rayon's global pool.
    #[default]
    Global,
    /// On the calling thread alone: no hand-over to a pool thread and back, which costs tens of
    /// microseconds a call when that thread has gone to sleep.
    Caller,
    /// On the calling thread and a pool of its own, one thread fewer than the count asked for:
    /// the caller starts at once, and the pool's threads join as they wake (a Python program's
    /// calls come with gaps long enough for them to fall asleep).
    Pool(Arc<rayon::ThreadPool>),
}

impl CpuBackend {
    /// A CPU backend using rayon's global thread pool (`RAYON_NUM_THREADS` sets its size).
    pub fn new() -> Self {
        Self::default()
    }

    /// A CPU backend of `threads` threads: the calling thread and a pool of `threads − 1` of
    /// its own (the global pool's size is fixed at its first use, so a caller that wants a
    /// different count per call, such as the Python package's `threads=`, keeps a backend per
    /// count). Clones share the pool; callers on several threads at once each add their own
    /// thread to it.
    pub fn with_threads(threads: usize) -> Result<Self> {
        let failed = |detail: String| Error::Threads { threads, detail };
        let threads = match threads {
            0 => return Err(failed("at least one is needed".into())),
            1 => Threads::Caller,
            _ => Threads::Pool(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads - 1)
                    .thread_name(|i| format!("gpuconv-cpu-{i}"))
                    .build()
                    .map_err(|e| failed(e.to_string()))?,
            )),
        };
        Ok(Self { threads })
    }

    /// How many threads filter an image.
    pub fn threads(&self) -> usize {
        match &self.threads {
            Threads::Global => rayon::current_num_threads(),
            Threads::Caller => 1,
            Threads::Pool(pool) => pool.current_num_threads() + 1,
        }
    }

    /// Applies `operation` to `image`.
    pub fn run(&self, image: &GrayImage, operation: &Operation) -> Result<FilterOutput> {
        self.run_view(&view(image), operation)
    }

    /// [`run`](Self::run) on pixels held elsewhere, read where they lie.
    pub fn run_view(&self, image: &GrayView<'_>, operation: &Operation) -> Result<FilterOutput> {
        let (out_width, out_height) = operation.output_size(image.width(), image.height())?;
        let mut planes = output_planes(operation, out_width, out_height)?;
        let mut outputs: Vec<&mut [u8]> = planes.iter_mut().map(Vec::as_mut_slice).collect();
        self.run_view_into(image, operation, &mut outputs)?;
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
        self.run_view_into(&view(image), operation, outputs)
    }

    /// Each kernel's unclipped sums (an [`Operation::sums`]); see `Engine::run_sums`.
    pub fn run_sums(&self, image: &GrayView<'_>, operation: &Operation) -> Result<Sums> {
        let mut sums = Sums::for_image(operation, image.width(), image.height())?;
        self.run_view_into(image, operation, &mut sums.planes_as_bytes())?;
        Ok(sums)
    }

    /// [`run_into`](Self::run_into) on pixels held elsewhere, read where they lie.
    pub fn run_view_into(
        &self,
        image: &GrayView<'_>,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        let (out_width, out_height) = operation.output_size(image.width(), image.height())?;
        check_outputs(operation, out_width, out_height, outputs)?;
        let (padded, operation) = crate::border::for_valid_filter(image, operation)?;
        let image = padded.view();
        let (width, height) = image.dimensions();
        let row_bytes = out_width * operation.output_pixel_bytes();
        let target = TargetLayout {
            bytes_per_row: row_bytes,
            offset: 0,
            bytes_per_image: row_bytes * out_height,
            kind: TARGET_BUFFER,
        };
        let params = Conv3x3Params::new(&operation, SourceLayout::packed(width, height), target);
        let parallel = match &self.threads {
            Threads::Global => conv3x3::Parallel::Current,
            Threads::Caller => conv3x3::Parallel::Caller,
            Threads::Pool(pool) => conv3x3::Parallel::Beside(pool),
        };
        conv3x3::main(&params, image.as_raw(), outputs, parallel);
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
