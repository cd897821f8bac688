//! Filtering images band by band, never whole: rows come from a [`RowSource`], each output's
//! rows go to its [`RowSink`], and the memory taken is a few bands whatever the height.
//!
//! A 3×3 'valid' filter needs input rows `y..y + 3` for output row `y`, so a band of `R` new
//! input rows, after the two rows kept from the band before, gives `R` output rows. Reading,
//! filtering and writing run on their own threads with one band queued between each, so the
//! slowest stage sets the pace.

use std::time::Instant;

use image::GrayImage;

use crate::border::PaddedRows;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::memory::zeroed_bytes;
use crate::operation::{Border, FilterOutput, Operation, output_size};
use crate::timings::{Timings, add};

pub use crate::rows::{CollectRows, ImageRows, RowSink, RowSource};

pub use crate::rows::DEFAULT_BAND_BYTES;

/// The default band height for an image of `width` × `height`.
fn default_band_rows(width: u32, height: u32) -> u32 {
    (crate::rows::band_bytes(width, height) / width as usize).max(1) as u32
}

/// Applies `operation` to the image `source` yields, band by band: each output image's rows
/// go to its sink in [`FilterOutput`] order (the combined image first, if
/// any, then the responses). `band_rows` output rows are made per band (`None`: at most
/// [`DEFAULT_BAND_BYTES`] of input, an eighth of a smaller image).
///
/// The result equals [`Engine::run`] on the whole image bit for bit. Reading runs on a thread of
/// its own, as does each sink; once all of them have taken every row, every sink's rows are
/// [ended](RowSink::end_rows), and only then is each [finished](RowSink::finish); on any error
/// before that none is (dropped sinks leave nothing behind).
///
/// The [`Timings`] returned add up each stage over the bands: `decode` is the time spent
/// reading rows, `encode` the busiest sink's writing time, `compute` the filter's (upload and
/// readback included on the GPU, which writes no timestamps here: see
/// [`filter_rows_timed`]); they overlap, and `total` is the wall time of the call.
pub fn filter_rows(
    engine: &mut Engine,
    source: &mut dyn RowSource,
    operation: &Operation,
    sinks: Vec<Box<dyn RowSink + '_>>,
    band_rows: Option<u32>,
) -> Result<Timings> {
    run(engine, source, operation, sinks, band_rows, false)
}

/// [`filter_rows`], with the filter's time broken down as [`Engine::run_timed`] does it
/// (upload, compute, GPU kernel, readback), summed over the bands. On the GPU each band's pass
/// then writes timestamps, which are read back with its results.
pub fn filter_rows_timed(
    engine: &mut Engine,
    source: &mut dyn RowSource,
    operation: &Operation,
    sinks: Vec<Box<dyn RowSink + '_>>,
    band_rows: Option<u32>,
) -> Result<Timings> {
    run(engine, source, operation, sinks, band_rows, true)
}

/// What filters the bands: an engine of the caller's own, or a
/// [`SharedEngine`](super::SharedEngine) taken for one band at a time.
pub(crate) trait Bands {
    /// [`Engine::run_into`].
    fn run_into(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()>;
    /// [`Engine::run_timed`].
    fn run_timed(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)>;
}

impl Bands for Engine {
    fn run_into(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        Engine::run_into(self, image, operation, outputs)
    }

    fn run_timed(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)> {
        Engine::run_timed(self, image, operation)
    }
}

/// [`filter_rows`] with any [`Bands`].
pub(crate) fn run(
    engine: &mut dyn Bands,
    source: &mut dyn RowSource,
    operation: &Operation,
    mut sinks: Vec<Box<dyn RowSink + '_>>,
    band_rows: Option<u32>,
    timed: bool,
) -> Result<Timings> {
    if operation.border() != Border::Valid {
        // The rows widened by a pixel on every side, filtered 'valid': the image's own size.
        operation.output_size(source.width(), source.height())?;
        let mut padded = PaddedRows::new(source, operation.border());
        let valid = operation.clone().with_border(Border::Valid);
        return run(engine, &mut padded, &valid, sinks, band_rows, timed);
    }
    let start = Instant::now();
    let (width, height) = (source.width(), source.height());
    let (out_width, _) = output_size(width, height)?;
    if sinks.len() != operation.output_count() as usize {
        return Err(Error::InvalidOperation(format!(
            "{} sinks for an operation with {} outputs",
            sinks.len(),
            operation.output_count()
        )));
    }
    let band_rows = band_rows
        .unwrap_or_else(|| default_band_rows(width, height))
        .clamp(1, height);
    let row_bytes = width as usize;

    // Buffers that go round: one being read while one is filtered; for each output, one being
    // filtered into while one is written. Allocated fallibly: a band the machine cannot hold is
    // an error, not an abort. (The reader's memory check counts the same.)
    let band_capacity = (band_rows as usize + 2) * row_bytes;
    let buffers = |bytes: usize, what: &str| -> Result<Vec<Vec<u8>>> {
        (0..2)
            .map(|_| {
                zeroed_bytes(bytes, what).map(|mut b| {
                    b.clear();
                    b
                })
            })
            .collect()
    };
    let inputs = buffers(band_capacity, "a band of input rows")?;
    let outputs = (0..sinks.len())
        .map(|_| {
            buffers(
                band_rows as usize * out_width as usize,
                "a band of output rows",
            )
        })
        .collect::<Result<Vec<_>>>()?;

    // The reader: the first band with the two rows the filter needs above its first output
    // row, then `band_rows` rows at a time.
    let mut next = 0;
    let mut read = |band: &mut Vec<u8>| -> Result<bool> {
        if next >= height {
            return Ok(false);
        }
        let rows = if next == 0 { band_rows + 2 } else { band_rows }.min(height - next);
        band.resize(rows as usize * row_bytes, 0);
        source.read_rows(band)?;
        next += rows;
        Ok(true)
    };

    // The filter: each band after the two rows kept from the one before, filtered as an image
    // of its own into the outputs' buffers.
    let mut stages = Timings::default();
    let mut window: Vec<u8> = Vec::with_capacity(band_capacity);
    let mut filter = |band: Vec<u8>, planes: &mut [Vec<u8>]| -> Result<Vec<u8>> {
        window.extend_from_slice(&band);
        let rows = (window.len() / row_bytes) as u32;
        let image =
            GrayImage::from_raw(width, rows, std::mem::take(&mut window)).expect("whole rows");
        let plane_bytes = (rows as usize - 2) * out_width as usize;
        if timed {
            let (output, band) = engine.run_timed(&image, operation)?;
            for (sum, stage) in [
                (&mut stages.upload, band.upload),
                (&mut stages.compute, band.compute),
                (&mut stages.kernel, band.kernel),
                (&mut stages.readback, band.readback),
            ] {
                add(sum, stage);
            }
            for (plane, made) in planes
                .iter_mut()
                .zip(output.combined.iter().chain(&output.responses))
            {
                plane.clear();
                plane.extend_from_slice(made.as_raw());
            }
        } else {
            // Untimed: the GPU writes no timestamps and reads back nothing extra per band.
            let started = Instant::now();
            for plane in planes.iter_mut() {
                plane.resize(plane_bytes, 0);
            }
            let mut targets: Vec<&mut [u8]> = planes.iter_mut().map(|p| &mut p[..]).collect();
            engine.run_into(&image, operation, &mut targets)?;
            add(&mut stages.compute, Some(started.elapsed()));
        }
        window = image.into_raw();
        window.drain(..window.len() - 2 * row_bytes);
        Ok(band)
    };

    let mut writes: Vec<Box<crate::stages::Write<'_>>> = sinks
        .iter_mut()
        .map(|sink| Box::new(move |rows: &[u8]| sink.write_rows(rows)) as Box<_>)
        .collect();
    let busy = crate::stages::run(
        inputs,
        outputs,
        &mut read,
        &mut filter,
        writes.iter_mut().map(|w| &mut **w).collect(),
    )?;
    drop(writes);
    // Two phases: every output written to its end first, then every file put in place.
    sinks.iter_mut().try_for_each(|sink| sink.end_rows())?;
    sinks.into_iter().try_for_each(RowSink::finish)?;
    Ok(Timings {
        decode: Some(busy.read),
        encode: Some(busy.write),
        total: Some(start.elapsed()),
        ..stages
    })
}
