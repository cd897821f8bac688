//! Reading any supported file as 8-bit gray, within limits judged from its header before
//! anything large is allocated.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read, Seek};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Once;

use image::{ColorType, GrayImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use super::gray::gray_in_place;
use super::plausible::{bmp_rle_implausible, gif_screen_implausible, jpeg_is_complete, too_short};
use crate::error::{Error, Result};
use crate::memory::{default_memory_budget, zeroed_bytes};

/// The default pixel limit: 2³² pixels (65536 × 65536), far above any real photo.
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 32;

/// How much of a file's start is read for its format and header checks.
pub(crate) const HEAD_BYTES: usize = 4096;

/// The formats gpuconv reads.
const READABLE: [ImageFormat; 9] = [
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::Pnm,
    ImageFormat::Bmp,
    ImageFormat::Tiff,
    ImageFormat::Gif,
    ImageFormat::WebP,
    ImageFormat::Tga,
    ImageFormat::Qoi,
];

/// What reading one input may take. Every limit is checked from the file's header, before
/// anything large is allocated, so a few hundred bytes that claim gigapixels cost nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// The most pixels an image may have ([`DEFAULT_MAX_PIXELS`] by default).
    pub max_pixels: u64,
    /// The most bytes reading and filtering one input may allocate: the file's data where the
    /// decoder holds it, the decoded pixels at the decoder's own depth, its working buffers,
    /// and the output images ([`default_memory_budget`] by default: half the machine). The GPU
    /// backend's strip buffers, reused from image to image, are not counted.
    pub max_memory: u64,
    /// How many images the size of the output the caller makes from each input (1 by default;
    /// a border's padded copy counts as one more), counted in `max_memory`.
    pub output_images: u64,
    /// How many output-sized buffers encoding the outputs in memory holds (an HTTP answer,
    /// standard output) rather than writing them to files (0 by default): one per output for
    /// most formats, more for some ([`encoded_images_per_output`](super::encoded_images_per_output)),
    /// counted whether the image is read whole or in bands.
    pub encoded_images: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_memory: default_memory_budget(),
            output_images: 1,
            encoded_images: 0,
        }
    }
}

/// Decodes any image the `image` crate reads (PNG, JPEG, PNM, BMP, TIFF, GIF, WebP, TGA, QOI),
/// and one-channel floating-point TIFF, the format found from the file's contents, and makes
/// it 8-bit gray with the rules of [`to_gray`](super::to_gray), within the default
/// [`ReadLimits`].
pub fn load_gray(path: &Path) -> Result<GrayImage> {
    load_gray_with(path, &ReadLimits::default())
}

/// [`load_gray`] within `limits`.
///
/// A file whose header claims more pixels than its data can hold is refused as
/// [`Error::Truncated`] before decoding, as is a JPEG whose data stops before its end marker
/// (decoders would fill the rest with gray); damaged data is [`Error::Corrupt`]; an image over
/// the limits is [`Error::TooManyPixels`] or [`Error::OverBudget`]. An allocation the system
/// refuses is [`Error::OutOfMemory`], never an abort.
pub fn load_gray_with(path: &Path, limits: &ReadLimits) -> Result<GrayImage> {
    load_gray_as(path, limits, None)
}

/// [`load_gray_with`], reading the file as `format` when its contents cannot say: TGA, the one
/// format without a signature (for any other the bytes decide, and the hint is not taken).
pub fn load_gray_as(
    path: &Path,
    limits: &ReadLimits,
    format: Option<ImageFormat>,
) -> Result<GrayImage> {
    let (file, file_bytes) = open_input(path)?;
    decode(path, BufReader::new(file), file_bytes, limits, format)
}

/// The extensions of the formats gpuconv reads, one per format and its usual others.
pub const READABLE_EXTENSIONS: [&str; 15] = [
    "png", "jpg", "jpeg", "pgm", "pnm", "ppm", "pbm", "pam", "bmp", "tif", "tiff", "gif", "webp",
    "tga", "qoi",
];

/// The format gpuconv reads that `name` names: an extension (`tga`, `jpg`, ...) or a MIME type
/// (`image/x-tga`, `image/png`, ...), without case; `None` for anything else.
pub fn readable_format(name: &str) -> Option<ImageFormat> {
    let name = name.trim().trim_start_matches('.').to_ascii_lowercase();
    let format = if name.contains('/') {
        match name.split(';').next().unwrap_or_default().trim() {
            // Targa's MIME types, none registered, all in use.
            "image/x-tga" | "image/tga" | "image/x-targa" | "image/targa" => Some(ImageFormat::Tga),
            mime => ImageFormat::from_mime_type(mime),
        }
    } else {
        ImageFormat::from_extension(&name)
    };
    format.filter(|format| READABLE.contains(format))
}

/// Whether `head` starts like a TGA file, which has no signature: a known image type, a colour
/// map that agrees with it, a size, and a pixel depth and descriptor TGA allows. Asked only when
/// no signature matched, so that a body or standard input in TGA is read like a `.tga` file.
fn plausible_tga(head: &[u8]) -> bool {
    let Some(h) = head.get(..18) else {
        return false;
    };
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let (map_type, image_type) = (h[1], h[2]);
    let mapped = matches!(image_type, 1 | 9);
    let map_ok = match map_type {
        0 => !mapped && h[3..8].iter().all(|&b| b == 0),
        1 => u16_at(5) > 0 && matches!(h[7], 15 | 16 | 24 | 32),
        _ => false,
    };
    map_ok
        && matches!(image_type, 1 | 2 | 3 | 9 | 10 | 11)
        && u16_at(12) > 0
        && u16_at(14) > 0
        && matches!(h[16], 8 | 15 | 16 | 24 | 32)
        && h[17] & 0xc0 == 0
        && (!mapped || h[16] == 8)
}

/// The first [`HEAD_BYTES`] of a file (enough for every header the plausibility checks read, a
/// GIF's colour table included), leaving `reader` at the start again.
pub(crate) fn read_head<R: Read + Seek>(path: &Path, reader: &mut R) -> Result<Vec<u8>> {
    let io_error = |e| Error::Decode {
        path: path.to_owned(),
        source: ImageError::IoError(e),
    };
    let mut head = Vec::with_capacity(HEAD_BYTES);
    reader
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io_error)?;
    reader.rewind().map_err(io_error)?;
    Ok(head)
}

/// Opens an input file and says how long it is; anything but a regular file is refused.
pub(crate) fn open_input(path: &Path) -> Result<(File, u64)> {
    let io_error = |e| Error::Decode {
        path: path.to_owned(),
        source: ImageError::IoError(e),
    };
    let file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    if !metadata.is_file() {
        return Err(io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    Ok((file, metadata.len()))
}

/// [`load_gray_with`] on a file's bytes already in memory; `name` is used in messages.
pub fn decode_gray(bytes: &[u8], name: &Path, limits: &ReadLimits) -> Result<GrayImage> {
    decode_gray_as(bytes, name, limits, None)
}

/// [`decode_gray`], reading the bytes as `format` when their contents cannot say: TGA, the one
/// format without a signature (for any other the bytes decide, and the hint is not taken).
pub fn decode_gray_as(
    bytes: &[u8],
    name: &Path,
    limits: &ReadLimits,
    format: Option<ImageFormat>,
) -> Result<GrayImage> {
    decode(name, Cursor::new(bytes), bytes.len() as u64, limits, format)
}

thread_local! {
    /// Whether this thread is inside a decoder, whose panics [`decode`] turns into errors.
    static DECODING: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the panic hook quiet about panics inside image decoders, which gpuconv catches and
/// reports as [`Error::Corrupt`] (decoders are third-party code fed hostile bytes: a few have
/// panicked on malformed files). Other panics are reported by the hook as before. The CLI calls
/// this at start-up; an application that wants the same calls it once.
pub fn quiet_decoder_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`: a panic while thread-locals are torn down must not panic again.
            if !DECODING.try_with(Cell::get).unwrap_or(false) {
                previous(info);
            }
        }));
    });
}

/// Runs `call`, a call into a third-party decoder, with its panics caught: a decoder that
/// panics on a malformed file makes the file [`Error::Corrupt`], not a crash. gpuconv's own
/// code runs outside it, so a bug of ours still panics (and the fuzzers still see it).
pub(crate) fn guarded<T>(path: &Path, call: impl FnOnce() -> T) -> Result<T> {
    let was_decoding = DECODING.replace(true);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(call));
    DECODING.set(was_decoding);
    outcome.map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Error::Corrupt {
            path: path.to_owned(),
            detail: format!("the decoder failed on it ({message})"),
        }
    })
}

fn decode<R: BufRead + Seek>(
    path: &Path,
    mut reader: R,
    file_bytes: u64,
    limits: &ReadLimits,
    hint: Option<ImageFormat>,
) -> Result<GrayImage> {
    let io_error = |e| Error::Decode {
        path: path.to_owned(),
        source: ImageError::IoError(e),
    };
    let head = read_head(path, &mut reader)?;
    // The contents first; then what the caller says, the name's extension, and a TGA header
    // (the one format without a signature), in that order. A hint counts only for a format
    // without a signature: bytes that lack the one their hint's format has are not that format
    // (a text file sent as image/png is not an image, not a corrupt PNG).
    let format = image::guess_format(&head)
        .ok()
        .or(hint.filter(|format| *format == ImageFormat::Tga))
        .or_else(|| ImageFormat::from_path(path).ok())
        .or_else(|| plausible_tga(&head).then_some(ImageFormat::Tga))
        .filter(|format| READABLE.contains(format))
        .ok_or_else(|| Error::UnknownFormat {
            path: path.to_owned(),
        })?;
    let input = Input {
        path,
        format,
        head: &head,
        file_bytes,
        limits,
    };
    match format {
        ImageFormat::Tiff => {
            let mut rows = super::tiff::TiffRows::open(&input, reader)?;
            let (width, height) = (rows.width(), rows.height());
            let what = format!("TIFF of {}-bit samples", rows.bits());
            read_through(&input, (width, height), what, rows.band_bytes(), |r| {
                rows.fill(r)
            })
        }
        // QOI is read by gpuconv's own decoder where it reads the header (`qoi.rs`), which
        // also takes files without their end marker.
        ImageFormat::Qoi => match super::qoi::header(&head) {
            Some(header) => {
                let mut rows = super::qoi::QoiRows::open(&input, reader, header)?;
                let (width, height, _) = header;
                read_through(&input, (width, height), "QOI".to_owned(), 0, |r| {
                    rows.fill(r)
                })
            }
            None => decode_with_image(&input, reader, || None),
        },
        ImageFormat::Jpeg => {
            // The JPEG decoder reads the whole file into memory anyway; holding it here first
            // lets its markers be walked. Twice the file must fit the budget before either.
            if file_bytes.saturating_mul(2) > limits.max_memory {
                return Err(Error::FileOverBudget {
                    path: path.to_owned(),
                    bytes: file_bytes,
                    budget: limits.max_memory,
                });
            }
            let mut data = zeroed_bytes(
                file_bytes as usize,
                &format!("reading '{}'", crate::text::escape_path(path)),
            )?;
            reader.read_exact(&mut data).map_err(io_error)?;
            let complete = || {
                (!jpeg_is_complete(&data)).then(|| {
                    "its compressed data stops before the JPEG end-of-image marker".to_owned()
                })
            };
            decode_with_image(&input, Cursor::new(data.as_slice()), complete)
        }
        _ => decode_with_image(&input, reader, || None),
    }
}

/// What the row readers read from: a buffered file, or bytes in memory.
pub(crate) trait Reader: BufRead + Seek + Send + 'static {}

impl<R: BufRead + Seek + Send + 'static> Reader for R {}

/// One input being read, and what it may take.
pub(crate) struct Input<'a> {
    pub(crate) path: &'a Path,
    pub(crate) format: ImageFormat,
    pub(crate) head: &'a [u8],
    pub(crate) file_bytes: u64,
    pub(crate) limits: &'a ReadLimits,
}

impl Input<'_> {
    /// Refuses an image over the pixel limit, or one its file is too short to hold (`decoded`:
    /// the layout and size the decoder will write).
    pub(crate) fn check_header(
        &self,
        width: u32,
        height: u32,
        decoded: (ColorType, u64),
    ) -> Result<()> {
        if u64::from(width) * u64::from(height) > self.limits.max_pixels {
            return Err(Error::TooManyPixels {
                path: self.path.to_owned(),
                width,
                height,
                max_pixels: self.limits.max_pixels,
            });
        }
        match too_short(
            self.format,
            self.head,
            (width, height),
            decoded,
            self.file_bytes,
        ) {
            Some(detail) => Err(self.truncated(detail)),
            None => Ok(()),
        }
    }

    /// Refuses an image whose decoding (`decoded` bytes of pixels plus `working` bytes of the
    /// decoder's own) and outputs would take more than the memory budget.
    fn check_budget(
        &self,
        width: u32,
        height: u32,
        what: String,
        decoded: u64,
        working: u64,
    ) -> Result<()> {
        let outputs = u64::from(width.saturating_sub(2)) * u64::from(height.saturating_sub(2));
        let needed = decoded
            .saturating_add(working)
            .saturating_add(outputs.saturating_mul(self.limits.output_images))
            .saturating_add(outputs.saturating_mul(self.limits.encoded_images));
        if needed > self.limits.max_memory {
            return Err(Error::OverBudget {
                path: self.path.to_owned(),
                width,
                height,
                what,
                needed,
                budget: self.limits.max_memory,
            });
        }
        Ok(())
    }

    /// The file ends before the image does: what every decoder's "unexpected end" means.
    pub(crate) fn cut_short(path: &Path) -> Error {
        Error::Truncated {
            path: path.to_owned(),
            detail: "its data ends before the image does".to_owned(),
        }
    }

    /// A failed read of `path`'s raw bytes: [`cut_short`](Self::cut_short) at its end, else
    /// the I/O error.
    pub(crate) fn read_failure(path: &Path, error: std::io::Error) -> Error {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            Self::cut_short(path)
        } else {
            Error::Decode {
                path: path.to_owned(),
                source: ImageError::IoError(error),
            }
        }
    }

    pub(crate) fn truncated(&self, detail: String) -> Error {
        Error::Truncated {
            path: self.path.to_owned(),
            detail,
        }
    }

    /// A decoder's error as what it means to a user: truncated, corrupt, over the budget, or
    /// (unsupported features, I/O) as the decoder says it.
    pub(crate) fn classify(&self, error: ImageError) -> Error {
        let path = self.path.to_owned();
        match error {
            ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Self::cut_short(self.path)
            }
            ImageError::Decoding(_) | ImageError::Parameter(_) => {
                let detail = error.to_string();
                let lower = detail.to_lowercase();
                let cut_short = [
                    "unexpected eof",
                    "unexpectedeof",
                    "end of file",
                    "unexpected end",
                    "truncated",
                    "fill whole buffer",
                    "no more data",
                ]
                .iter()
                .any(|sign| lower.contains(sign));
                if cut_short {
                    // The decoders' own words for it vary ("failed to fill whole buffer").
                    Self::cut_short(self.path)
                } else {
                    Error::Corrupt { path, detail }
                }
            }
            ImageError::Limits(_) => Error::DecoderOverBudget {
                path,
                budget: self.limits.max_memory,
            },
            source => Error::Decode { path, source },
        }
    }
}

/// Decodes through the `image` crate into a buffer allocated here (fallibly), after the header
/// checks, `extra_check` (a reason the file is truncated, if any) and the budget.
fn decode_with_image<R: BufRead + Seek>(
    input: &Input,
    reader: R,
    extra_check: impl FnOnce() -> Option<String>,
) -> Result<GrayImage> {
    let mut image_reader = ImageReader::with_format(reader, input.format);
    let mut decoder_limits = image::Limits::no_limits();
    decoder_limits.max_alloc = Some(input.limits.max_memory);
    image_reader.limits(decoder_limits);
    let decoder =
        guarded(input.path, || image_reader.into_decoder())?.map_err(|e| input.classify(e))?;
    let (width, height) = decoder.dimensions();
    let color = decoder.color_type();
    let decoded = decoder.total_bytes();
    input.check_header(width, height, (color, decoded))?;
    if let Some(detail) = extra_check() {
        return Err(input.truncated(detail));
    }
    let implausible = match input.format {
        ImageFormat::Gif => gif_screen_implausible(input.head, width, height),
        ImageFormat::Bmp => bmp_rle_implausible(input.head, width, height, input.file_bytes),
        _ => None,
    };
    if let Some(detail) = implausible {
        return Err(Error::Corrupt {
            path: input.path.to_owned(),
            detail,
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    let working = match input.format {
        // The file's data (held twice: here and in the decoder), and every coefficient of a
        // progressive JPEG: two bytes per sample.
        ImageFormat::Jpeg => (2 * input.file_bytes)
            .saturating_add(pixels.saturating_mul(2 * u64::from(color.channel_count()))),
        // A frame smaller than its screen is decoded aside, then placed.
        ImageFormat::Gif => decoded,
        // Lossless WebP works on 32-bit pixels.
        ImageFormat::WebP => pixels.saturating_mul(4),
        // The TIFF decoder decodes into a buffer of its own (a third larger for CMYK), then
        // copies.
        ImageFormat::Tiff => decoded.saturating_mul(2),
        _ => 0,
    };
    input.check_budget(width, height, describe(color), decoded, working)?;
    let mut samples = zeroed_bytes(
        usize::try_from(decoded).unwrap_or(usize::MAX),
        &format!("decoding '{}'", crate::text::escape_path(input.path)),
    )?;
    guarded(input.path, || decoder.read_image(&mut samples))?.map_err(|e| input.classify(e))?;
    gray_in_place(samples, color, width, height).ok_or_else(|| Error::Corrupt {
        path: input.path.to_owned(),
        detail: format!("its pixel layout {color:?} has no gray rule"),
    })
}

/// A whole image read through a row reader's `fill`: the gray image and `working` bytes of the
/// reader's own checked against the budget, then every row read into it.
fn read_through(
    input: &Input,
    (width, height): (u32, u32),
    what: String,
    working: u64,
    fill: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<GrayImage> {
    let pixels = u64::from(width) * u64::from(height);
    input.check_budget(width, height, what, pixels, working)?;
    let mut gray = zeroed_bytes(
        usize::try_from(pixels).unwrap_or(usize::MAX),
        &format!("decoding '{}'", crate::text::escape_path(input.path)),
    )?;
    if !gray.is_empty() {
        fill(&mut gray)?;
    }
    GrayImage::from_raw(width, height, gray).ok_or_else(|| Error::Corrupt {
        path: input.path.to_owned(),
        detail: "its rows do not fill the image".to_owned(),
    })
}

/// `8-bit RGBA`, `16-bit gray`, ...
fn describe(color: ColorType) -> String {
    let channels = match color.channel_count() {
        1 => "gray",
        2 => "gray + alpha",
        3 => "RGB",
        _ => "RGBA",
    };
    let bits = u32::from(color.bits_per_pixel()) / u32::from(color.channel_count());
    let float = if color == ColorType::Rgb32F || color == ColorType::Rgba32F {
        " float"
    } else {
        ""
    };
    format!("{bits}-bit{float} {channels}")
}

/// The header checks of whole images (pixel limit, file length), then the memory budget
/// against what streaming holds: the decoder's `line_bytes` of row buffers and a few bands of
/// three rows or more, for the input and each output.
pub(super) fn check_stream(
    input: &Input,
    width: u32,
    height: u32,
    color: ColorType,
    line_bytes: usize,
) -> Result<()> {
    let decoded =
        (u64::from(width) * u64::from(height)).saturating_mul(u64::from(color.bytes_per_pixel()));
    input.check_header(width, height, (color, decoded))?;
    let row = u64::from(width);
    // A band is never more than the image (and never less than the three rows a window needs),
    // and its buffers hold two rows more: the first band's rows above its first output row.
    let band = (crate::rows::band_bytes(width, height) as u64)
        .min(row * u64::from(height))
        .max(3 * row)
        + 2 * row;
    // Reader: the decoded line and the decoder's current and previous raw rows; bands: one
    // being read, one being filtered, the window; each output: one being filtered into, one
    // being written, and one in its encoder's own queue (the TIFF sink's); each output encoded
    // in memory, its whole file.
    let outputs = u64::from(width.saturating_sub(2)) * u64::from(height.saturating_sub(2));
    let needed = (line_bytes as u64)
        .saturating_mul(3)
        .saturating_add(band.saturating_mul(3 + 3 * input.limits.output_images))
        .saturating_add(outputs.saturating_mul(input.limits.encoded_images));
    if needed > input.limits.max_memory {
        return Err(Error::OverBudget {
            path: input.path.to_owned(),
            width,
            height,
            what: format!("{color:?}, streamed in bands"),
            needed,
            budget: input.limits.max_memory,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tga_is_known_by_its_header_and_other_bytes_are_not_taken_for_it() {
        let gray = image::GrayImage::from_fn(7, 5, |x, y| image::Luma([(x * 30 + y) as u8]));
        let rgb = image::RgbImage::from_fn(3, 4, |x, y| image::Rgb([x as u8, y as u8, 9]));
        for image in [
            image::DynamicImage::ImageLuma8(gray.clone()),
            image::DynamicImage::ImageRgb8(rgb),
        ] {
            let mut tga = Vec::new();
            image
                .write_to(&mut Cursor::new(&mut tga), ImageFormat::Tga)
                .unwrap();
            assert!(plausible_tga(&tga), "{:?}", &tga[..18]);
            // Read from bytes with no name to say so, by the header alone.
            let decoded =
                decode_gray(&tga, Path::new("request body"), &ReadLimits::default()).unwrap();
            assert_eq!(decoded.dimensions(), (image.width(), image.height()));
        }
        for not_tga in [
            &b"just some text, not an image"[..],
            &[0u8; 18],
            &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 24, 0][..],
            &[0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 5, 0, 24, 0][..],
            &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 5, 0, 12, 0][..],
        ] {
            assert!(!plausible_tga(not_tga), "{not_tga:?}");
        }
        assert_eq!(readable_format("TGA"), Some(ImageFormat::Tga));
        assert_eq!(readable_format("image/x-tga"), Some(ImageFormat::Tga));
        assert_eq!(
            readable_format("image/png; charset=binary"),
            Some(ImageFormat::Png)
        );
        assert_eq!(readable_format("avif"), None);
        assert_eq!(readable_format("text/plain"), None);
    }
}
