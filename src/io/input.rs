//! One input being read: the limits it is read within, its first bytes and length, the
//! checks every reader makes against its header and the memory budget, and decoder panics
//! caught. Every format's reader (`read.rs`, `rows.rs`, `tiff.rs`, `qoi.rs`) builds on this.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, Read, Seek};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Once;

use image::{ColorType, ImageError, ImageFormat};

use super::plausible::too_short;
use crate::error::{Error, Result};
use crate::memory::default_memory_budget;

/// The default pixel limit: 2³² pixels (65536 × 65536), far above any real photo.
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 32;

/// How much of a file's start is read for its format and header checks.
pub(crate) const HEAD_BYTES: usize = 4096;

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
    /// Whether images are turned upright by their TIFF or EXIF orientation (false by default:
    /// as stored, as the lesson's Pillow `Image.open` gives them). An image to be turned is read
    /// whole, and turning it by a quarter counts a second copy in `max_memory`.
    pub orient: bool,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_memory: default_memory_budget(),
            output_images: 1,
            encoded_images: 0,
            orient: false,
        }
    }
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
    /// Whether the image is read in bands (the budget judged by [`check_stream`]) or whole
    /// through a row reader (judged by the whole-image reader, for the whole image).
    pub(crate) streamed: bool,
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
    pub(super) fn check_budget(
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
            // What a decoder does not support, in one plain line that names the format.
            ImageError::Unsupported(unsupported) => {
                use image::error::UnsupportedErrorKind as Kind;
                let format = format!("{:?}", self.format).to_uppercase();
                let what = match unsupported.kind() {
                    Kind::Color(color) => format!("{format} with the pixel layout {color:?}"),
                    Kind::GenericFeature(feature) => {
                        format!("{format} with {}", feature.to_lowercase())
                    }
                    _ => format!("a kind of {format} ({unsupported})"),
                };
                Error::Unsupported { path, what }
            }
            source => Error::Decode { path, source },
        }
    }
}

/// The header checks of whole images (pixel limit, file length), then the memory budget
/// against what streaming holds: the decoder's `line_bytes` of row buffers and a few bands of
/// three rows or more, for the input and each output. An input read whole through its row
/// reader ([`Input::streamed`] false) has only its header checked here.
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
    if !input.streamed {
        return Ok(());
    }
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
