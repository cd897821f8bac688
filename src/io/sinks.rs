//! Outputs written a band at a time, for [`filter_rows`](crate::pipeline::bands::filter_rows): PNG with
//! its IDAT chunks, PGM, and TIFF in strips. Each file appears only when its sink is finished.

use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use image::ImageFormat;

use super::png_bands::{Compression, PngRows};
use super::write::{PartialFile, extension, output_format};
use crate::error::{Error, Result};
use crate::rows::RowSink;
use crate::stages::{Loader, Unloader, belt};

/// Whether [`create_row_sink`] writes `path` a band at a time: PNG, PGM, PNM and TIFF outputs.
pub fn writes_rows(path: &Path) -> bool {
    matches!(
        extension(path).as_str(),
        "png" | "pgm" | "pnm" | "tif" | "tiff"
    )
}

/// A sink writing the rows of a `width`×`height` gray image to `path`, when its format can be
/// written a band at a time (PNG, PGM, PNM, TIFF); `None` for any other format, which
/// [`save_gray`](super::save_gray) writes whole. The file appears only when the sink is
/// finished; dropped before, it leaves nothing.
pub fn create_row_sink(
    path: &Path,
    width: u32,
    height: u32,
    compression: Compression,
) -> Result<Option<Box<dyn RowSink>>> {
    let format = output_format(path)?;
    let extension = extension(path);
    if !matches!(
        (format, extension.as_str()),
        (ImageFormat::Png, _) | (ImageFormat::Pnm, "pgm" | "pnm") | (ImageFormat::Tiff, _)
    ) {
        return Ok(None);
    }
    if format == ImageFormat::Tiff {
        return Ok(Some(Box::new(TiffSink::create(path, width, height)?)));
    }
    let partial = PartialFile::create(path)?;
    let file = partial.file().try_clone().map_err(|e| Error::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Some(written_rows(
        format,
        BufWriter::new(file),
        (width, height),
        compression,
        path.to_owned(),
        Some(partial),
    )?))
}

/// The PNG or PGM sink of [`create_row_sink`] and [`encode_rows`]: rows encoded into `to`, put
/// in place as `partial` when finished, if it is a file. `path` is what errors name.
fn written_rows(
    format: ImageFormat,
    to: impl Write + Send + 'static,
    (width, height): (u32, u32),
    compression: Compression,
    path: PathBuf,
    partial: Option<PartialFile>,
) -> Result<Box<dyn RowSink>> {
    let failed = Arc::new(Mutex::new(None));
    let abandoned = Arc::new(AtomicBool::new(false));
    let mut to = Checked {
        to: Box::new(to) as Box<dyn Write + Send>,
        failed: Arc::clone(&failed),
        abandoned: Arc::clone(&abandoned),
    };
    let write_error = |e: &dyn std::fmt::Display| Error::Write {
        path: path.clone(),
        reason: e.to_string(),
    };
    let stream = if format == ImageFormat::Png {
        Encoder::Png(Some(PngRows::new(to, width, height, compression, &path)?))
    } else {
        write!(to, "P5\n{width} {height}\n255\n").map_err(|e| write_error(&e))?;
        Encoder::Pgm(Some(to))
    };
    Ok(Box::new(WrittenRows {
        encoder: stream,
        partial,
        failed,
        abandoned,
        path,
    }))
}

/// Rows encoded into a writer: a file's, or any other.
struct WrittenRows {
    encoder: Encoder,
    /// The file put in place once finished; `None` for a writer that is not a file's.
    partial: Option<PartialFile>,
    /// The first write error the writer met, if any.
    failed: Arc<Mutex<Option<String>>>,
    /// Set when the sink is dropped before its rows are ended: an image that failed part way
    /// writes nothing more (the PNG encoder's end, say), so that no reader of a pipe or a
    /// connection sees a complete-looking file.
    abandoned: Arc<AtomicBool>,
    path: PathBuf,
}

impl Drop for WrittenRows {
    fn drop(&mut self) {
        let ended = match &self.encoder {
            Encoder::Png(png) => png.is_none(),
            Encoder::Pgm(to) => to.is_none(),
        };
        if !ended {
            self.abandoned.store(true, Ordering::SeqCst);
        }
    }
}

/// What encodes the rows; `None` once they are ended.
enum Encoder {
    /// PNG, compressed band by band on every core.
    Png(Option<PngRows<Out>>),
    /// PGM (P5): the header is written first, the rows as they come.
    Pgm(Option<Out>),
}

/// Where encoded rows go.
type Out = Checked<Box<dyn Write + Send>>;

impl WrittenRows {
    fn error(&self, reason: String) -> Error {
        Error::Write {
            path: self.path.clone(),
            reason,
        }
    }
}

impl RowSink for WrittenRows {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        match &mut self.encoder {
            Encoder::Png(png) => png.as_mut().expect("rows not ended").write_rows(rows),
            Encoder::Pgm(to) => {
                let written = to.as_mut().expect("rows not ended").write_all(rows);
                written.map_err(|e| self.error(e.to_string()))
            }
        }
    }

    fn end_rows(&mut self) -> Result<()> {
        match &mut self.encoder {
            Encoder::Png(png) => {
                if let Some(png) = png.take() {
                    // The writer is flushed as it drops, its errors remembered below.
                    png.finish()?;
                }
            }
            // Dropped, it is flushed: closed before a file's rename, which some systems refuse
            // on an open file.
            Encoder::Pgm(to) => drop(to.take()),
        }
        match self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(reason) => Err(self.error(reason)),
            None => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.end_rows()?;
        match self.partial.take() {
            Some(partial) => partial.commit(),
            None => Ok(()),
        }
    }
}

/// A writer that remembers its first error, for an encoder that drops errors on the way out,
/// and that is flushed when dropped; once `abandoned`, it takes writes without passing them on.
struct Checked<W: Write> {
    to: W,
    failed: Arc<Mutex<Option<String>>>,
    abandoned: Arc<AtomicBool>,
}

impl<W: Write> Checked<W> {
    fn remember<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(error) = &result {
            self.failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| error.to_string());
        }
        result
    }
}

impl<W: Write + Seek> Seek for Checked<W> {
    fn seek(&mut self, position: std::io::SeekFrom) -> std::io::Result<u64> {
        let result = self.to.seek(position);
        self.remember(result)
    }
}

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.abandoned.load(Ordering::SeqCst) {
            return Ok(bytes.len());
        }
        let result = self.to.write(bytes);
        self.remember(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.abandoned.load(Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.to.flush();
        self.remember(result)
    }
}

impl<W: Write> Drop for Checked<W> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// TIFF rows in strips, uncompressed, as the whole-image path writes them (the same strip
/// height), and BigTIFF when the pixels reach 4 GiB, which classic TIFF's offsets cannot. The
/// `tiff` crate's strip encoder borrows its file, so it lives on a thread of its own that takes
/// bands from a [`belt`] of one buffer (the stage writing to the sink is a thread already) and
/// cuts them into strips.
struct TiffSink {
    bands: Option<Loader>,
    encoder: Option<JoinHandle<Result<()>>>,
    /// The first write error the file met, which the buffer's last flush (as the encoder is
    /// dropped) would otherwise lose.
    failed: Arc<Mutex<Option<String>>>,
    partial: Option<PartialFile>,
    path: PathBuf,
}

impl TiffSink {
    fn create(path: &Path, width: u32, height: u32) -> Result<Self> {
        let partial = PartialFile::create(path)?;
        let file = partial.file().try_clone().map_err(|e| Error::Write {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let failed = Arc::new(Mutex::new(None));
        let file = Checked {
            to: file,
            failed: Arc::clone(&failed),
            abandoned: Arc::new(AtomicBool::new(false)),
        };
        let (bands, receiver) = belt(vec![Vec::new()]);
        let owned_path = path.to_owned();
        let encoder = std::thread::Builder::new()
            .name("gpuconv-tiff".into())
            .spawn(move || {
                let writer = BufWriter::new(file);
                // Classic TIFF's offsets stop at 4 GiB, and the strip tables and directory
                // follow the pixels: 16 MiB of room for them.
                let big = u64::from(width) * u64::from(height) >= (1 << 32) - (1 << 24);
                let encoded = if big {
                    tiff::encoder::TiffEncoder::new_big(writer)
                        .and_then(|encoder| encode_strips(encoder, width, height, &receiver))
                } else {
                    tiff::encoder::TiffEncoder::new(writer)
                        .and_then(|encoder| encode_strips(encoder, width, height, &receiver))
                };
                encoded.map_err(|e| Error::Write {
                    path: owned_path,
                    reason: e.to_string(),
                })
            })
            .map_err(|e| Error::Write {
                path: path.to_owned(),
                reason: format!("starting the TIFF encoder's thread: {e}"),
            })?;
        Ok(Self {
            bands: Some(bands),
            encoder: Some(encoder),
            failed,
            partial: Some(partial),
            path: path.to_owned(),
        })
    }

    /// Closes the queue and waits for the encoder's result.
    fn join(&mut self) -> Result<()> {
        self.bands = None;
        match self.encoder.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Write {
                path: self.path.clone(),
                reason: "the TIFF encoder failed".to_owned(),
            }),
            None => Ok(()),
        }
    }
}

/// Writes the image's strips from the bands `bands` brings, then its directory, unless the
/// queue closes before the last row (the sink was dropped): then the file is left unfinished,
/// to be deleted.
fn encode_strips<W: Write + Seek, K: tiff::encoder::TiffKind>(
    mut encoder: tiff::encoder::TiffEncoder<W, K>,
    width: u32,
    height: u32,
    bands: &Unloader,
) -> tiff::TiffResult<()> {
    let mut image = encoder.new_image::<tiff::encoder::colortype::Gray8>(width, height)?;
    let mut strip = Vec::new();
    while let Some(buffer) = bands.next() {
        let mut band = buffer.as_slice();
        while !band.is_empty() {
            let wanted = usize::try_from(image.next_strip_sample_count())?;
            if wanted == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "more rows than the image's height",
                )
                .into());
            }
            let take = (wanted - strip.len()).min(band.len());
            strip.extend_from_slice(&band[..take]);
            band = &band[take..];
            if strip.len() == wanted {
                image.write_strip(&strip)?;
                strip.clear();
            }
        }
        bands.give_back(buffer);
        if image.next_strip_sample_count() == 0 {
            image.finish()?;
            return Ok(());
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the image ended before its last row",
    )
    .into())
}

impl RowSink for TiffSink {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        let bands = self.bands.as_ref().expect("not finished");
        let sent = bands.empty().is_some_and(|mut buffer| {
            buffer.clear();
            buffer.extend_from_slice(rows);
            bands.send(buffer)
        });
        if !sent {
            // The encoder stopped on an error: that error is the one to report.
            return Err(self.join().err().unwrap_or_else(|| Error::Write {
                path: self.path.clone(),
                reason: "the TIFF encoder stopped".to_owned(),
            }));
        }
        Ok(())
    }

    fn end_rows(&mut self) -> Result<()> {
        self.join()?;
        if let Some(reason) = self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(Error::Write {
                path: self.path.clone(),
                reason,
            });
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.end_rows()?;
        self.partial.take().expect("finished once").commit()
    }
}

impl Drop for TiffSink {
    fn drop(&mut self) {
        // Unfinished: the encoder sees the queue close early and stops; the partial file is
        // deleted when `partial` drops after this.
        let _ = self.join();
    }
}

/// The bytes an [`encode_rows`] sink writes, for [`encode_rows`] into memory: a shared buffer,
/// whole once the sink's rows are ended.
#[derive(Clone, Debug, Default)]
pub struct EncodedRows(Arc<Mutex<Vec<u8>>>);

impl EncodedRows {
    /// Takes the encoded file out (complete once the sink's rows are ended).
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Write for EncodedRows {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether [`encode_rows`] encodes the format a file named `*.format_extension` gets a band at
/// a time: PNG, PGM and PNM.
pub fn encodes_rows(format_extension: &str) -> bool {
    matches!(
        format_extension
            .trim_start_matches('.')
            .to_ascii_lowercase()
            .as_str(),
        "png" | "pgm" | "pnm"
    )
}

/// A sink encoding the rows of a `width`×`height` gray image into `to` as they come, in the
/// format a file named `*.format_extension` gets, when that format can be written a band at a
/// time (PNG, PGM, PNM); `None` for any other, which [`encode_gray`](super::encode_gray)
/// encodes whole. `to` is an [`EncodedRows`] for the file in memory, or any writer the bytes
/// should reach as soon as they are made (a pipe, a connection); it is flushed when the rows
/// are ended, and its errors are the sink's.
pub fn encode_rows(
    format_extension: &str,
    width: u32,
    height: u32,
    compression: Compression,
    to: impl Write + Send + 'static,
) -> Result<Option<Box<dyn RowSink>>> {
    // Named as `encode_gray` names what it encodes, for the same messages either way.
    let name = PathBuf::from(format!(
        "standard output.{}",
        format_extension.trim_start_matches('.')
    ));
    let format = output_format(&name)?;
    if !encodes_rows(format_extension) {
        return Ok(None);
    }
    // PNG or PNM (P5), as `encodes_rows` said.
    Ok(Some(written_rows(
        format,
        to,
        (width, height),
        compression,
        name,
        None,
    )?))
}
