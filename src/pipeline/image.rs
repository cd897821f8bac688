//! One image from its source to its outputs: band by band when the source's format can be read
//! in rows and every output's written in rows, whole otherwise. What `gpuconv filter` does for
//! each input and the service for each request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::GrayImage;

use super::SharedEngine;
use super::bands::{self, Bands};
use crate::auto::Workload;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::io::{self, ReadLimits};
use crate::operation::{Border, FilterOutput, Operation};
use crate::rows::{RowSink, RowSource};
use crate::timings::Timings;

/// Where an image comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file.
    File(PathBuf),
    /// A file's bytes already in memory (a request body, standard input read whole); `name` is
    /// what messages call it.
    Bytes {
        /// The encoded image.
        bytes: bytes::Bytes,
        /// What messages call it ("request body", "standard input").
        name: String,
    },
}

impl Source {
    /// What messages call the source, [escaped](crate::text) for a terminal.
    pub fn name(&self) -> String {
        match self {
            Source::File(path) => crate::text::escape_path(path),
            Source::Bytes { name, .. } => crate::text::escape(name).into_owned(),
        }
    }
}

/// Where the output images go: one per output of the operation, in
/// [`FilterOutput`] order (the combined image first, if any, then the responses).
#[derive(Clone, Debug)]
pub enum Destination {
    /// Files, each in the format its extension names, appearing only once complete.
    Files(Vec<PathBuf>),
    /// Encoded in memory, in the format a file named `*.EXTENSION` gets (`"png"`, `"pgm"`, ...),
    /// returned in [`Filtered::encoded`].
    Encoded(String),
    /// The one output of an operation that has one, encoded as for [`Encoded`](Self::Encoded)
    /// and, when the image goes band by band, written to `to` as each band is encoded, never
    /// held whole: [`Filtered::encoded`] is then empty. Whole, nothing is written and the bytes
    /// are returned in [`Filtered::encoded`], for the caller to send as it sees fit (an image
    /// that goes whole is small, or in a format not written in rows).
    ///
    /// What reaches `to` before an error is a part of the file: a caller streaming it to a
    /// client must say so (an HTTP connection closed short, a non-zero exit).
    Streamed {
        /// The format, named by a file extension.
        extension: String,
        /// Where the bytes go.
        to: Outlet,
    },
}

/// A writer for [`Destination::Streamed`], taken by the one image that streams into it.
#[derive(Clone)]
pub struct Outlet(Arc<std::sync::Mutex<Option<Box<dyn std::io::Write + Send>>>>);

impl Outlet {
    /// An outlet writing to `to`.
    pub fn new(to: impl std::io::Write + Send + 'static) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(Box::new(to)))))
    }

    /// The writer, once: `None` if an image already took it.
    fn take(&self) -> Option<Box<dyn std::io::Write + Send>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl std::fmt::Debug for Outlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outlet")
    }
}

/// What a caller hears of an image while it is filtered (a progress bar, say). Every method
/// does nothing unless overridden.
pub trait Observer: Sync {
    /// The image is open: its outputs' size, and whether it streams band by band.
    fn started(&self, _output_size: (u32, u32), _streamed: bool) {}
    /// The image (its first band, streamed) is about to be filtered on `backend`: `"gpu"` or
    /// `"cpu"`.
    fn backend(&self, _backend: &'static str) {}
    /// `rows` more rows of the first output were written.
    fn rows_written(&self, _rows: u32) {}
}

impl Observer for () {}

/// How one image is filtered, beyond its source and destination.
#[derive(Clone, Copy)]
pub struct Settings<'a> {
    /// The operation.
    pub operation: &'a Operation,
    /// What reading may take: pixels, and the memory budget (a batch worker's share of it).
    pub limits: ReadLimits,
    /// Whether to break the filter's time down by stage (on the GPU, timestamps are written and
    /// read back).
    pub timed: bool,
    /// How many images the engine filters in this run, for `auto` to weigh when the image opens
    /// the engine (`None`: a stream or a service, whose engine stays open).
    pub images: Option<u64>,
    /// How long to wait for a lost engine to be re-created (`None`: not at all, as a service
    /// answers 503 at once).
    pub patience: Option<Duration>,
    /// Told of progress.
    pub observer: &'a dyn Observer,
    /// The source's format when its contents cannot say: TGA, the one format without a
    /// signature; for any other the bytes decide ([`io::readable_format`] reads one from a name
    /// or MIME type).
    pub input_format: Option<image::ImageFormat>,
    /// How PNG outputs are compressed.
    pub compression: io::Compression,
}

impl<'a> Settings<'a> {
    /// `operation` within the default limits, untimed, for one image, waiting a minute for a lost
    /// engine, observed by no one.
    pub fn new(operation: &'a Operation) -> Self {
        Self {
            operation,
            limits: ReadLimits::default(),
            timed: false,
            images: Some(1),
            patience: Some(super::shared::DEFAULT_PATIENCE),
            observer: &(),
            input_format: None,
            compression: io::Compression::default(),
        }
    }
}

impl std::fmt::Debug for Settings<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("operation", &self.operation)
            .field("limits", &self.limits)
            .field("timed", &self.timed)
            .field("images", &self.images)
            .field("patience", &self.patience)
            .field("input_format", &self.input_format)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// What filtering one image did.
#[derive(Clone, Debug, Default)]
pub struct Filtered {
    /// The input's width and height.
    pub input_size: (u32, u32),
    /// Each output's width and height.
    pub output_size: (u32, u32),
    /// For [`Destination::Encoded`], each output's file, in [`FilterOutput`] order; for
    /// [`Destination::Streamed`], its one file when the image went whole (streamed, the bytes
    /// went to the outlet); empty for files.
    pub encoded: Vec<Vec<u8>>,
    /// Whether it went band by band (else whole).
    pub streamed: bool,
    /// Where the (first band of the) image was filtered: `"gpu"` or `"cpu"`.
    pub backend: &'static str,
    /// Where the time went: decode, filter stages, encode, total. Streamed, the stages overlap.
    pub timings: Timings,
}

impl Filtered {
    /// The input's pixels.
    pub fn pixels(&self) -> u64 {
        u64::from(self.input_size.0) * u64::from(self.input_size.1)
    }
}

/// Filters the image `source` holds into `destination` with `engine`, band by band when the
/// formats allow and the image has at least [`STREAM_FROM_PIXELS`] (or whole would be over the
/// memory budget), the engine then taken band by band so that other threads filter between
/// them; whole otherwise, the engine taken for the filter alone. Outputs appear only when all
/// of them are complete; on an error none is left behind. An [`Operation::sums`] is refused:
/// its outputs go into one NumPy `.npz` archive, with `responses_npz`.
pub fn filter_image(
    engine: &Arc<SharedEngine>,
    source: &Source,
    destination: &Destination,
    settings: &Settings<'_>,
) -> Result<Filtered> {
    let operation = settings.operation;
    if operation.is_sums() {
        return Err(Error::InvalidOperation(
            "unclipped sums are filtered into an .npz archive by pipeline::responses_npz".into(),
        ));
    }
    // A border's padded copy of the input counts as one more image.
    let outputs = operation.output_count();
    if let Destination::Files(paths) = destination
        && paths.len() != outputs as usize
    {
        return Err(Error::InvalidOperation(format!(
            "{} output files for an operation with {outputs} outputs",
            paths.len()
        )));
    }
    if let Destination::Streamed { .. } = destination
        && outputs != 1
    {
        return Err(Error::InvalidOperation(format!(
            "one stream of bytes for an operation with {outputs} outputs"
        )));
    }
    // Whole, encoded outputs are held in memory; band by band, only a streamed one is not.
    let encoded_images = |streamed: bool| match destination {
        Destination::Files(_) => 0,
        Destination::Streamed { .. } if streamed => 0,
        Destination::Encoded(extension) | Destination::Streamed { extension, .. } => {
            u64::from(outputs) * io::encoded_images_per_output(extension)
        }
    };
    let limits = ReadLimits {
        output_images: u64::from(outputs) + u64::from(operation.border() != Border::Valid),
        encoded_images: encoded_images(false),
        ..settings.limits
    };
    let row_limits = ReadLimits {
        encoded_images: encoded_images(true),
        ..limits
    };
    let streams_out = match destination {
        Destination::Files(paths) => paths.iter().all(|path| io::writes_rows(path)),
        Destination::Encoded(extension) | Destination::Streamed { extension, .. } => {
            io::encodes_rows(extension)
        }
    };
    let open_rows = || match source {
        Source::File(path) => io::open_rows(path, &row_limits),
        Source::Bytes { bytes, name } => {
            io::open_rows_in(bytes.clone(), Path::new(name), &row_limits)
        }
    };
    if !streams_out {
        return whole(engine, source, destination, settings, &limits);
    }
    // Bands have a floor (256 KiB each) that a small image whole may be under.
    let rows = match open_rows() {
        Err(error) if error.is_over_budget() => None,
        opened => opened?,
    };
    let Some(rows) = rows else {
        return whole(engine, source, destination, settings, &limits);
    };
    if u64::from(rows.width()) * u64::from(rows.height()) >= STREAM_FROM_PIXELS {
        return stream(engine, rows, destination, settings);
    }
    // Small: whole is faster, unless it does not fit the budget where bands do.
    drop(rows);
    match whole(engine, source, destination, settings, &limits) {
        Err(error) if error.is_over_budget() => match open_rows()? {
            Some(rows) => stream(engine, rows, destination, settings),
            None => Err(error),
        },
        outcome => outcome,
    }
}

/// The smallest image [`filter_image`] streams when it could also hold it whole: 4 megapixels.
/// Below, per-band costs (threads started, row-by-row decoding) outweigh what streaming saves:
/// on the 2-core benchmark machine a batch of 1-megapixel PNGs ran 19% slower streamed, one of
/// 4-megapixel PNGs equally fast either way (BENCHMARKS.md). A smaller image still streams when
/// whole it would be over the memory budget.
pub const STREAM_FROM_PIXELS: u64 = 4 << 20;

/// The shared engine, taken for one band at a time.
pub(super) struct Borrowed<'a> {
    engine: &'a Arc<SharedEngine>,
    workload: Workload,
    patience: Option<Duration>,
    observer: &'a dyn Observer,
    /// Where the first band ran.
    pub(super) backend: Option<&'static str>,
}

impl<'a> Borrowed<'a> {
    /// `engine`, for an image of `input_size` filtered as `settings` say.
    pub(super) fn new(
        engine: &'a Arc<SharedEngine>,
        settings: &Settings<'a>,
        input_size: (u32, u32),
    ) -> Self {
        Self {
            observer: settings.observer,
            engine,
            workload: Workload::new(
                settings.operation,
                u64::from(input_size.0) * u64::from(input_size.1),
                settings.images,
            ),
            patience: settings.patience,
            backend: None,
        }
    }

    pub(super) fn run<T>(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        mut work: impl FnMut(&mut Engine) -> Result<T>,
    ) -> Result<T> {
        let (backend, observer) = (&mut self.backend, self.observer);
        let work = |engine: &mut Engine| {
            backend.get_or_insert_with(|| {
                let chosen = engine.backend_for(image.width(), image.height(), operation);
                observer.backend(chosen);
                chosen
            });
            work(engine)
        };
        match self.patience {
            Some(patience) => self.engine.run_patiently(&self.workload, patience, work),
            None => self
                .engine
                .run(&self.workload, work)
                .map_err(super::Unavailable::into_error)?,
        }
    }
}

impl Bands for Borrowed<'_> {
    fn run_into(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        self.run(image, operation, |engine| {
            engine.run_into(image, operation, outputs)
        })
    }

    fn run_timed(
        &mut self,
        image: &GrayImage,
        operation: &Operation,
    ) -> Result<(FilterOutput, Timings)> {
        self.run(image, operation, |engine| {
            engine.run_timed(image, operation)
        })
    }
}

fn stream(
    engine: &Arc<SharedEngine>,
    mut rows: Box<dyn RowSource>,
    destination: &Destination,
    settings: &Settings<'_>,
) -> Result<Filtered> {
    let operation = settings.operation;
    let input_size = (rows.width(), rows.height());
    let (width, height) = operation.output_size(input_size.0, input_size.1)?;
    let mut encoded = Vec::new();
    let sinks: Vec<Box<dyn RowSink>> = match destination {
        Destination::Files(paths) => paths
            .iter()
            .map(|path| {
                io::create_row_sink(path, width, height, settings.compression)
                    .map(|sink| sink.expect("writes_rows said so"))
            })
            .collect::<Result<_>>()?,
        Destination::Encoded(extension) => (0..operation.output_count())
            .map(|_| {
                let bytes = io::EncodedRows::default();
                let sink = io::encode_rows(
                    extension,
                    width,
                    height,
                    settings.compression,
                    bytes.clone(),
                )?
                .expect("a format written in rows");
                encoded.push(bytes);
                Ok(sink)
            })
            .collect::<Result<_>>()?,
        Destination::Streamed { extension, to } => {
            let to = to.take().ok_or_else(|| {
                Error::InvalidOperation("an outlet streams one image only".to_owned())
            })?;
            vec![
                io::encode_rows(extension, width, height, settings.compression, to)?
                    .expect("a format written in rows"),
            ]
        }
    };
    settings.observer.started((width, height), true);
    let observer = settings.observer;
    let sinks: Vec<Box<dyn RowSink + '_>> = sinks
        .into_iter()
        .enumerate()
        .map(|(i, sink)| -> Box<dyn RowSink + '_> {
            if i == 0 {
                Box::new(Observed {
                    inner: sink,
                    observer,
                    width: width as usize,
                })
            } else {
                sink
            }
        })
        .collect();
    let mut borrowed = Borrowed::new(engine, settings, input_size);
    let timings = bands::run(
        &mut borrowed,
        rows.as_mut(),
        operation,
        sinks,
        None,
        settings.timed,
    )?;
    Ok(Filtered {
        input_size,
        output_size: (width, height),
        encoded: encoded.iter().map(io::EncodedRows::take).collect(),
        streamed: true,
        backend: borrowed.backend.unwrap_or("cpu"),
        timings,
    })
}

/// The first output's sink, telling the observer of its rows.
struct Observed<'a> {
    inner: Box<dyn RowSink>,
    observer: &'a dyn Observer,
    width: usize,
}

impl RowSink for Observed<'_> {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        self.inner.write_rows(rows)?;
        self.observer.rows_written((rows.len() / self.width) as u32);
        Ok(())
    }

    fn end_rows(&mut self) -> Result<()> {
        self.inner.end_rows()
    }

    fn finish(self: Box<Self>) -> Result<()> {
        self.inner.finish()
    }
}

/// The image `source` holds, decoded whole within `limits`.
pub(super) fn read_whole(
    source: &Source,
    settings: &Settings<'_>,
    limits: &ReadLimits,
) -> Result<GrayImage> {
    match source {
        Source::File(path) => io::load_gray_as(path, limits, settings.input_format),
        Source::Bytes { bytes, name } => {
            io::decode_gray_as(bytes, Path::new(name), limits, settings.input_format)
        }
    }
}

fn whole(
    engine: &Arc<SharedEngine>,
    source: &Source,
    destination: &Destination,
    settings: &Settings<'_>,
    limits: &ReadLimits,
) -> Result<Filtered> {
    let operation = settings.operation;
    let started = Instant::now();
    let image = read_whole(source, settings, limits)?;
    let decode = started.elapsed();
    let input_size = image.dimensions();
    let (width, height) = operation.output_size(input_size.0, input_size.1)?;
    settings.observer.started((width, height), false);
    let mut borrowed = Borrowed::new(engine, settings, input_size);
    let (output, mut timings) = if settings.timed {
        borrowed.run_timed(&image, operation)?
    } else {
        let started = Instant::now();
        let output = borrowed.run(&image, operation, |engine| engine.run(&image, operation))?;
        let took = started.elapsed();
        (
            output,
            Timings {
                compute: Some(took),
                ..Timings::default()
            },
        )
    };
    drop(image);
    timings.decode = Some(decode);

    let started = Instant::now();
    let FilterOutput {
        combined,
        responses,
    } = output;
    let images = combined.iter().chain(&responses);
    let encoded = match destination {
        Destination::Files(paths) => {
            // Every output written before any is put in place: an error leaves none behind.
            let written = images
                .zip(paths)
                .map(|(image, path)| io::write_partial(image, path, settings.compression))
                .collect::<Result<Vec<_>>>()?;
            written.into_iter().try_for_each(|file| file.commit())?;
            Vec::new()
        }
        Destination::Encoded(extension) | Destination::Streamed { extension, .. } => images
            .map(|image| io::encode_gray_with(image, extension, settings.compression))
            .collect::<Result<_>>()?,
    };
    timings.encode = Some(started.elapsed());
    settings.observer.rows_written(height);
    Ok(Filtered {
        input_size,
        output_size: (width, height),
        encoded,
        streamed: false,
        backend: borrowed.backend.unwrap_or("cpu"),
        timings,
    })
}
