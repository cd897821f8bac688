//! Filtering images band by band, never whole: rows come from a [`RowSource`], each output's
//! rows go to its [`RowSink`], and the memory taken is a few bands whatever the height.
//!
//! A 3×3 'valid' filter needs input rows `y..y + 3` for output row `y`, so a band of `R` new
//! input rows, after the two rows kept from the band before, gives `R` output rows. Reading,
//! filtering and writing run on their own threads with one band queued between each, so the
//! slowest stage sets the pace.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use image::GrayImage;

use crate::border::PaddedRows;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::memory::zeroed_bytes;
use crate::operation::{Border, Operation, output_size};
use crate::timings::{Timings, add};

pub use crate::rows::{CollectRows, ImageRows, RowSink, RowSource};

pub use crate::rows::DEFAULT_BAND_BYTES;

/// The default band height for an image of `width` × `height`.
fn default_band_rows(width: u32, height: u32) -> u32 {
    (crate::rows::band_bytes(width, height) / width as usize).max(1) as u32
}

/// Applies `operation` to the image `source` yields, band by band: each output image's rows
/// go to its sink in [`FilterOutput`](crate::FilterOutput) order (the combined image first, if
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
    stream(engine, source, operation, sinks, band_rows, false)
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
    stream(engine, source, operation, sinks, band_rows, true)
}

fn stream(
    engine: &mut Engine,
    source: &mut dyn RowSource,
    operation: &Operation,
    sinks: Vec<Box<dyn RowSink + '_>>,
    band_rows: Option<u32>,
    timed: bool,
) -> Result<Timings> {
    if operation.border() != Border::Valid {
        // The rows widened by a pixel on every side, filtered 'valid': the image's own size.
        operation.output_size(source.width(), source.height())?;
        let mut padded = PaddedRows::new(source, operation.border());
        let valid = operation.clone().with_border(Border::Valid);
        return stream(engine, &mut padded, &valid, sinks, band_rows, timed);
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

    std::thread::scope(|scope| {
        let (band_sender, bands) = sync_channel::<Result<Vec<u8>>>(1);
        let reader = scope.spawn(move || read_bands(source, band_rows, &band_sender));

        let mut planes = Vec::new();
        let mut writers = Vec::new();
        for mut sink in sinks {
            let (sender, receiver) = sync_channel::<Vec<u8>>(1);
            planes.push(sender);
            writers.push(scope.spawn(move || {
                let mut busy = Duration::ZERO;
                for rows in receiver {
                    let start = Instant::now();
                    sink.write_rows(&rows)?;
                    busy += start.elapsed();
                }
                Ok((sink, busy))
            }));
        }

        let mut timings = Timings::default();
        let filtered = filter_bands(
            engine,
            operation,
            timed,
            width,
            out_width,
            &bands,
            &planes,
            &mut timings,
        );
        // Closing the queues lets every writer drain and return its sink; dropping `bands`
        // stops the reader at its next band.
        drop(planes);
        drop(bands);
        timings.decode = Some(reader.join().expect("the reading thread panicked"));
        let mut finished = Vec::new();
        let mut first_error = filtered.err();
        for writer in writers {
            match writer.join().expect("a sink's thread panicked") {
                Ok((sink, busy)) => {
                    finished.push(sink);
                    timings.encode = timings.encode.max(Some(busy));
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        // Two phases: every output written to its end first, then every file put in place.
        finished.iter_mut().try_for_each(|sink| sink.end_rows())?;
        finished.into_iter().try_for_each(RowSink::finish)?;
        timings.total = Some(start.elapsed());
        Ok(timings)
    })
}

/// The reader's thread: the first band with the two rows the filter needs above its first
/// output row, then `band_rows` rows at a time. Returns the time spent reading.
fn read_bands(
    source: &mut dyn RowSource,
    band_rows: u32,
    bands: &SyncSender<Result<Vec<u8>>>,
) -> Duration {
    let (width, height) = (source.width() as usize, source.height());
    let mut busy = Duration::ZERO;
    let mut next = 0;
    while next < height {
        let start = Instant::now();
        let rows = if next == 0 { band_rows + 2 } else { band_rows }.min(height - next);
        let band = zeroed_bytes(rows as usize * width, "a band of input rows")
            .and_then(|mut band| source.read_rows(&mut band).map(|()| band));
        busy += start.elapsed();
        let failed = band.is_err();
        if bands.send(band).is_err() || failed {
            break;
        }
        next += rows;
    }
    busy
}

/// The filter, on the calling thread: each band after the two rows kept from the one before,
/// filtered as an image of its own, its output planes handed to the writers.
#[allow(clippy::too_many_arguments, reason = "the stage's inputs and outputs")]
fn filter_bands(
    engine: &mut Engine,
    operation: &Operation,
    timed: bool,
    width: u32,
    out_width: u32,
    bands: &Receiver<Result<Vec<u8>>>,
    planes: &[SyncSender<Vec<u8>>],
    timings: &mut Timings,
) -> Result<()> {
    let row_bytes = width as usize;
    let mut window: Vec<u8> = Vec::new();
    for band in bands {
        window.extend_from_slice(&band?);
        let rows = (window.len() / row_bytes) as u32;
        let image = GrayImage::from_raw(width, rows, window).expect("whole rows");
        let output = if timed {
            let (output, band) = engine.run_timed(&image, operation)?;
            for (sum, stage) in [
                (&mut timings.upload, band.upload),
                (&mut timings.compute, band.compute),
                (&mut timings.kernel, band.kernel),
                (&mut timings.readback, band.readback),
            ] {
                add(sum, stage);
            }
            output
        } else {
            // Untimed: the GPU writes no timestamps and reads back nothing extra per band.
            let start = Instant::now();
            let output = engine.run(&image, operation)?;
            add(&mut timings.compute, Some(start.elapsed()));
            output
        };
        for (plane, sender) in output
            .combined
            .into_iter()
            .chain(output.responses)
            .zip(planes)
        {
            debug_assert_eq!(plane.width(), out_width);
            if sender.send(plane.into_raw()).is_err() {
                // The writer stopped on an error of its own, which the caller collects.
                return Ok(());
            }
        }
        window = image.into_raw();
        window.drain(..window.len() - 2 * row_bytes);
    }
    Ok(())
}
