//! Outputs written a band at a time, for [`filter_rows`](crate::pipeline::bands::filter_rows): PNG with
//! its IDAT chunks, PGM, and TIFF in strips. Each file appears only when its sink is finished.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use image::ImageFormat;

use super::write::{PNG_CHUNK_BYTES, PartialFile, extension, output_format, png_encoder};
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
pub fn create_row_sink(path: &Path, width: u32, height: u32) -> Result<Option<Box<dyn RowSink>>> {
    let format = output_format(path)?;
    let extension = extension(path);
    let write_error = |e: &dyn std::fmt::Display| Error::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    match (format, extension.as_str()) {
        (ImageFormat::Png, _) => {
            let partial = PartialFile::create(path)?;
            let file = partial.file().try_clone().map_err(|e| write_error(&e))?;
            let failed = Arc::new(Mutex::new(None));
            let file = CheckedFile {
                file,
                failed: Arc::clone(&failed),
            };
            let stream = png_encoder(file, width, height)
                .write_header()
                .and_then(|header| header.into_stream_writer_with_size(PNG_CHUNK_BYTES))
                .map_err(|e| write_error(&e))?;
            Ok(Some(Box::new(PngSink {
                stream: Some(stream),
                partial: Some(partial),
                failed,
                path: path.to_owned(),
            })))
        }
        (ImageFormat::Pnm, "pgm" | "pnm") => {
            let partial = PartialFile::create(path)?;
            let file = partial.file().try_clone().map_err(|e| write_error(&e))?;
            let mut writer = BufWriter::new(file);
            write!(writer, "P5\n{width} {height}\n255\n").map_err(|e| write_error(&e))?;
            Ok(Some(Box::new(PgmSink {
                writer,
                partial,
                path: path.to_owned(),
            })))
        }
        (ImageFormat::Tiff, _) => Ok(Some(Box::new(TiffSink::create(path, width, height)?))),
        _ => Ok(None),
    }
}

/// PNG rows through the encoder's stream writer, in 1 MiB IDAT chunks.
struct PngSink {
    stream: Option<png::StreamWriter<'static, CheckedFile>>,
    partial: Option<PartialFile>,
    /// The first write error the file met, if any.
    failed: Arc<Mutex<Option<String>>>,
    path: PathBuf,
}

/// A file that remembers its first write error, for an encoder that drops errors on the way out.
struct CheckedFile {
    file: File,
    failed: Arc<Mutex<Option<String>>>,
}

impl CheckedFile {
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

impl Seek for CheckedFile {
    fn seek(&mut self, position: std::io::SeekFrom) -> std::io::Result<u64> {
        let result = self.file.seek(position);
        self.remember(result)
    }
}

impl Write for CheckedFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let result = self.file.write(bytes);
        self.remember(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.file.flush();
        self.remember(result)
    }
}

impl RowSink for PngSink {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        let stream = self.stream.as_mut().expect("rows not ended");
        stream.write_all(rows).map_err(|e| Error::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    fn end_rows(&mut self) -> Result<()> {
        let Some(stream) = self.stream.take() else {
            return Ok(());
        };
        let write_error = |reason: String| Error::Write {
            path: self.path.clone(),
            reason,
        };
        // The encoder writes its last chunk and IEND as it is dropped, where errors are lost
        // (and its deflater unwraps one): the file remembers them instead.
        let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream.finish()));
        match finished {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(write_error(e.to_string())),
            Err(_) => return Err(write_error("the PNG encoder failed".to_owned())),
        }
        if let Some(reason) = self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(write_error(reason));
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.end_rows()?;
        self.partial.take().expect("finished once").commit()
    }
}

/// PGM (P5) rows.
struct PgmSink {
    writer: BufWriter<File>,
    partial: PartialFile,
    path: PathBuf,
}

impl RowSink for PgmSink {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        self.writer.write_all(rows).map_err(|e| Error::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    fn end_rows(&mut self) -> Result<()> {
        self.writer.flush().map_err(|e| Error::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.end_rows()?;
        let Self {
            writer, partial, ..
        } = *self;
        // Closed before the rename, which some systems refuse on an open file.
        drop(writer);
        partial.commit()
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
        let file = CheckedFile {
            file,
            failed: Arc::clone(&failed),
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

/// The bytes an [`encode_rows`] sink writes, once it is finished.
#[derive(Clone, Debug, Default)]
pub struct EncodedRows(Arc<Mutex<Vec<u8>>>);

impl EncodedRows {
    /// Takes the encoded file out (empty until the sink's rows are ended).
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

/// A sink encoding the rows of a `width`×`height` gray image in memory, in the format a file
/// named `*.format_extension` gets, when that format can be written a band at a time (PNG, PGM,
/// PNM); `None` for any other, which [`encode_gray`](super::encode_gray) encodes whole. The
/// bytes are in the [`EncodedRows`] once the sink's rows are ended.
pub fn encode_rows(
    format_extension: &str,
    width: u32,
    height: u32,
) -> Result<Option<(Box<dyn RowSink>, EncodedRows)>> {
    // Named as `encode_gray` names what it encodes, for the same messages either way.
    let name = PathBuf::from(format!(
        "standard output.{}",
        format_extension.trim_start_matches('.')
    ));
    let format = output_format(&name)?;
    if !encodes_rows(format_extension) {
        return Ok(None);
    }
    let encoded = EncodedRows::default();
    let sink: Box<dyn RowSink> = match (format, extension(&name).as_str()) {
        (ImageFormat::Png, _) => {
            let stream = png_encoder(encoded.clone(), width, height)
                .write_header()
                .and_then(|header| header.into_stream_writer_with_size(PNG_CHUNK_BYTES))
                .map_err(|e| Error::Write {
                    path: name.clone(),
                    reason: e.to_string(),
                })?;
            Box::new(EncodedPng {
                stream: Some(stream),
                name,
            })
        }
        (ImageFormat::Pnm, "pgm" | "pnm") => {
            let mut header = encoded.clone();
            write!(header, "P5\n{width} {height}\n255\n").expect("memory takes every write");
            Box::new(encoded.clone())
        }
        _ => return Ok(None),
    };
    Ok(Some((sink, encoded)))
}

/// PNG rows encoded in memory.
struct EncodedPng {
    stream: Option<png::StreamWriter<'static, EncodedRows>>,
    name: PathBuf,
}

impl RowSink for EncodedPng {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        let stream = self.stream.as_mut().expect("rows not ended");
        stream.write_all(rows).map_err(|e| Error::Write {
            path: self.name.clone(),
            reason: e.to_string(),
        })
    }

    fn end_rows(&mut self) -> Result<()> {
        match self.stream.take().map(png::StreamWriter::finish) {
            Some(Err(e)) => Err(Error::Write {
                path: self.name.clone(),
                reason: e.to_string(),
            }),
            _ => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.end_rows()
    }
}

/// PGM rows in memory: the header is written first, the rows as they come.
impl RowSink for EncodedRows {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        self.write_all(rows).expect("memory takes every write");
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}
