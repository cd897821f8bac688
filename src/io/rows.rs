//! Files as rows, for [`filter_rows`](crate::pipeline::bands::filter_rows): PNG (not interlaced), binary
//! PNM and QOI (`qoi.rs`) read a row at a time and TIFF a strip at a time, made gray by the same rules as
//! whole images. Other formats are read whole; `sinks.rs` writes rows.

use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::Path;

use image::metadata::Orientation;
use image::{ColorType, ImageError, ImageFormat};

use super::gray::to_gray_row;
use super::input::{Input, ReadLimits, Reader, check_stream, guarded, open_input, read_head};
use super::qoi::QoiRows;
use super::tiff::TiffRows;
use crate::error::{Error, Result};
use crate::memory::zeroed_bytes;
use crate::rows::RowSource;

/// The rows of the image in `path`, when its format can be read a row at a time (PNG that is
/// not interlaced; binary PGM, PPM and PAM with a maxval of 255 or 65535; TIFF in strips of
/// 8- or 16-bit unsigned samples, interleaved; QOI); `None` for any
/// other file, which [`load_gray_with`](super::load_gray_with) reads whole. The header is
/// checked against `limits` and the file's length as for whole images, and the memory budget
/// against what streaming holds: the decoder's row buffers and a few bands.
pub fn open_rows(path: &Path, limits: &ReadLimits) -> Result<Option<Box<dyn RowSource>>> {
    let (file, file_bytes) = open_input(path)?;
    open_reader(path, BufReader::new(file), file_bytes, limits)
}

/// [`open_rows`] on a file's bytes already in memory (an HTTP request's body, say), which the
/// rows then read from, decoding as they go: the image is never whole in memory. `name` is
/// used in messages.
pub fn open_rows_in<B>(
    bytes: B,
    name: &Path,
    limits: &ReadLimits,
) -> Result<Option<Box<dyn RowSource>>>
where
    B: AsRef<[u8]> + Send + 'static,
{
    let length = bytes.as_ref().len() as u64;
    open_reader(name, Cursor::new(bytes), length, limits)
}

fn open_reader<R: Reader>(
    path: &Path,
    mut reader: R,
    file_bytes: u64,
    limits: &ReadLimits,
) -> Result<Option<Box<dyn RowSource>>> {
    let head = read_head(path, &mut reader)?;
    let format = match image::guess_format(&head) {
        Ok(
            format @ (ImageFormat::Png | ImageFormat::Pnm | ImageFormat::Tiff | ImageFormat::Qoi),
        ) => format,
        _ => return Ok(None),
    };
    let input = Input {
        path,
        format,
        head: &head,
        file_bytes,
        limits,
        streamed: true,
    };
    let rows: Option<Box<dyn RowSource>> = match format {
        ImageFormat::Png => PngRows::open(&input, reader)?
            .filter(|rows| !limits.orient || rows.orientation() == Orientation::NoTransforms)
            .map(|rows| Box::new(rows) as _),
        ImageFormat::Tiff => Some(TiffRows::open(&input, reader)?)
            .filter(|rows| !limits.orient || rows.orientation() == Orientation::NoTransforms)
            .map(|rows| Box::new(rows) as _),
        ImageFormat::Qoi => match super::qoi::header(&head) {
            Some(header) => Some(Box::new(QoiRows::open(&input, reader, header)?) as _),
            None => None,
        },
        _ => PnmRows::open(&input, reader)?.map(|rows| Box::new(rows) as _),
    };
    Ok(rows)
}

/// The rows of a PNG, through the same transformation the `image` crate asks for (palettes and
/// low bit depths expanded to 8 bits, 16 bits kept).
pub(super) struct PngRows<R: BufRead + Seek> {
    path: std::path::PathBuf,
    reader: png::Reader<R>,
    width: u32,
    height: u32,
    color: ColorType,
    line: Vec<u8>,
    rows_read: u32,
}

impl<R: BufRead + Seek> PngRows<R> {
    /// The width of the image.
    pub(super) fn width(&self) -> u32 {
        self.width
    }

    /// The height of the image.
    pub(super) fn height(&self) -> u32 {
        self.height
    }

    /// The layout its rows decode to.
    pub(super) fn color(&self) -> ColorType {
        self.color
    }

    /// The bytes of its decoded row buffer.
    pub(super) fn line_bytes(&self) -> u64 {
        self.line.len() as u64
    }

    /// The orientation its EXIF chunk gives, where the chunk comes before the image data.
    pub(super) fn orientation(&self) -> Orientation {
        let exif = self.reader.info().exif_metadata.as_deref();
        exif.and_then(Orientation::from_exif_chunk)
            .unwrap_or(Orientation::NoTransforms)
    }

    /// The next rows, whole, into `rows`.
    pub(super) fn fill(&mut self, rows: &mut [u8]) -> Result<()> {
        for row in rows.chunks_exact_mut(self.width as usize) {
            let (reader, line) = (&mut self.reader, &mut self.line);
            let read = guarded(&self.path, || reader.read_row(line))?;
            match read {
                Ok(Some(_)) => {}
                Ok(None) => return Err(Input::cut_short(&self.path)),
                Err(e) => return Err(png_row_error(&self.path, e)),
            }
            to_gray_row(&mut self.line, self.color, row);
            self.rows_read += 1;
        }
        if self.rows_read == self.height {
            // One more read checks the end of the data (the zlib stream's checksum, the CRC,
            // IEND), as decoding the whole image does.
            let (reader, line) = (&mut self.reader, &mut self.line);
            match guarded(&self.path, || reader.read_row(line))? {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return Err(Error::Corrupt {
                        path: self.path.clone(),
                        detail: "it holds more rows than its header says".to_owned(),
                    });
                }
                Err(e) => return Err(png_row_error(&self.path, e)),
            }
        }
        Ok(())
    }

    /// `None` for what the whole-image path reads instead (interlaced images; layouts it
    /// words its own refusal for).
    pub(super) fn open(input: &Input, reader: R) -> Result<Option<Self>> {
        let budget = usize::try_from(input.limits.max_memory).unwrap_or(usize::MAX);
        let mut decoder = png::Decoder::new_with_limits(reader, png::Limits { bytes: budget });
        decoder.set_transformations(png::Transformations::EXPAND);
        let reader =
            guarded(input.path, || decoder.read_info())?.map_err(|e| png_error(input, e))?;
        if reader.info().interlaced {
            return Ok(None);
        }
        let (width, height) = (reader.info().width, reader.info().height);
        let color = match reader.output_color_type() {
            (png::ColorType::Grayscale, png::BitDepth::Eight) => ColorType::L8,
            (png::ColorType::Grayscale, png::BitDepth::Sixteen) => ColorType::L16,
            (png::ColorType::GrayscaleAlpha, png::BitDepth::Eight) => ColorType::La8,
            (png::ColorType::GrayscaleAlpha, png::BitDepth::Sixteen) => ColorType::La16,
            (png::ColorType::Rgb, png::BitDepth::Eight) => ColorType::Rgb8,
            (png::ColorType::Rgb, png::BitDepth::Sixteen) => ColorType::Rgb16,
            (png::ColorType::Rgba, png::BitDepth::Eight) => ColorType::Rgba8,
            (png::ColorType::Rgba, png::BitDepth::Sixteen) => ColorType::Rgba16,
            // Left to the whole-image path, which says what it does not support.
            _ => return Ok(None),
        };
        let line_bytes = reader.output_line_size(width).unwrap_or(usize::MAX);
        check_stream(input, width, height, color, line_bytes)?;
        let line = zeroed_bytes(
            line_bytes,
            &format!("reading '{}'", crate::text::escape_path(input.path)),
        )?;
        Ok(Some(Self {
            path: input.path.to_owned(),
            reader,
            width,
            height,
            color,
            line,
            rows_read: 0,
        }))
    }
}

impl<R: Reader> RowSource for PngRows<R> {
    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn read_rows(&mut self, rows: &mut [u8]) -> Result<()> {
        self.fill(rows)
    }
}

fn png_error(input: &Input, error: png::DecodingError) -> Error {
    match error {
        png::DecodingError::IoError(e) => input.classify(ImageError::IoError(e)),
        png::DecodingError::LimitsExceeded => Error::DecoderOverBudget {
            path: input.path.to_owned(),
            budget: input.limits.max_memory,
        },
        other => Error::Corrupt {
            path: input.path.to_owned(),
            detail: other.to_string(),
        },
    }
}

fn png_row_error(path: &Path, error: png::DecodingError) -> Error {
    match error {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Input::cut_short(path)
        }
        other => Error::Corrupt {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    }
}

/// The rows of a binary PGM (P5), PPM (P6) or PAM (P7) whose maxval is 255 or 65535.
struct PnmRows<R: Reader> {
    path: std::path::PathBuf,
    reader: R,
    width: u32,
    height: u32,
    color: ColorType,
    line: Vec<u8>,
}

impl<R: Reader> PnmRows<R> {
    fn open(input: &Input, mut reader: R) -> Result<Option<Self>> {
        let Some((header_bytes, width, height, color)) = pnm_header(input.head) else {
            return Ok(None);
        };
        if width < 1 || height < 1 {
            return Ok(None);
        }
        let line_bytes = width as usize * usize::from(color.bytes_per_pixel());
        check_stream(input, width, height, color, line_bytes)?;
        reader
            .seek(std::io::SeekFrom::Start(header_bytes as u64))
            .map_err(|e| input.classify(ImageError::IoError(e)))?;
        let line = zeroed_bytes(
            line_bytes,
            &format!("reading '{}'", crate::text::escape_path(input.path)),
        )?;
        Ok(Some(Self {
            path: input.path.to_owned(),
            reader,
            width,
            height,
            color,
            line,
        }))
    }
}

impl<R: Reader> RowSource for PnmRows<R> {
    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn read_rows(&mut self, rows: &mut [u8]) -> Result<()> {
        for row in rows.chunks_exact_mut(self.width as usize) {
            self.reader
                .read_exact(&mut self.line)
                .map_err(|e| Input::read_failure(&self.path, e))?;
            to_gray_row(&mut self.line, self.color, row);
        }
        Ok(())
    }
}

/// A binary PNM header that can be streamed: its length, width, height and pixel layout.
fn pnm_header(head: &[u8]) -> Option<(usize, u32, u32, ColorType)> {
    // Tokens separated by whitespace, comments from '#' to the end of a line.
    let mut at = 2;
    let mut token = || -> Option<&[u8]> {
        loop {
            match head.get(at)? {
                b'#' => {
                    while *head.get(at)? != b'\n' {
                        at += 1;
                    }
                }
                b if b.is_ascii_whitespace() => at += 1,
                _ => break,
            }
        }
        let start = at;
        while !head.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        Some(&head[start..at])
    };
    // Plain digits only: anything unusual is left to the whole-image path's parser.
    let number = |t: &[u8]| {
        (!t.is_empty() && t.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(t).ok()?.parse::<u32>().ok())?
    };
    let (width, height, channels, maxval, header_bytes) = match head.get(..2)? {
        b"P5" | b"P6" => {
            let width = number(token()?)?;
            let height = number(token()?)?;
            let maxval = number(token()?)?;
            // Exactly one whitespace byte ends the header.
            let channels = if head[1] == b'5' { 1 } else { 3 };
            (width, height, channels, maxval, at + 1)
        }
        b"P7" => {
            let (mut width, mut height, mut depth, mut maxval, mut tuple_type) =
                (None, None, None, None, None);
            loop {
                match token()? {
                    b"WIDTH" if width.is_none() => width = number(token()?),
                    b"HEIGHT" if height.is_none() => height = number(token()?),
                    b"DEPTH" if depth.is_none() => depth = number(token()?),
                    b"MAXVAL" if maxval.is_none() => maxval = number(token()?),
                    b"TUPLTYPE" if tuple_type.is_none() => tuple_type = Some(token()?.to_vec()),
                    b"ENDHDR" => break,
                    _ => return None,
                }
            }
            // Only the tuple types whose depth they name; without one, the whole-image path
            // decides how to read the samples.
            let depth = depth?;
            let expected: &[u8] = match depth {
                1 => b"GRAYSCALE",
                2 => b"GRAYSCALE_ALPHA",
                3 => b"RGB",
                4 => b"RGB_ALPHA",
                _ => return None,
            };
            if tuple_type.as_deref() != Some(expected) {
                return None;
            }
            // The header ends with the line that holds ENDHDR.
            let end = at + head.get(at..)?.iter().position(|&b| b == b'\n')? + 1;
            if !head[at..end - 1].iter().all(|&b| b == b' ' || b == b'\t') {
                return None;
            }
            (width?, height?, depth, maxval?, end)
        }
        _ => return None,
    };
    let color = match (channels, maxval) {
        (1, 255) => ColorType::L8,
        (2, 255) => ColorType::La8,
        (3, 255) => ColorType::Rgb8,
        (4, 255) => ColorType::Rgba8,
        (1, 65535) => ColorType::L16,
        (2, 65535) => ColorType::La16,
        (3, 65535) => ColorType::Rgb16,
        (4, 65535) => ColorType::Rgba16,
        // Other maxvals are rescaled by the whole-image path.
        _ => return None,
    };
    Some((header_bytes, width, height, color))
}
