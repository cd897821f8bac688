//! Reading any supported file as 8-bit gray, within limits judged from its header before
//! anything large is allocated.

use std::io::{BufRead, BufReader, Cursor, Read, Seek};
use std::path::Path;

use image::metadata::Orientation;
use image::{ColorType, GrayImage, ImageDecoder, ImageFormat, ImageReader};

use super::gray::gray_in_place;
use super::input::{Input, ReadLimits, guarded, open_input, read_head};
use super::plausible::{bmp_rle_implausible, jpeg_is_complete};
use crate::error::{Error, Result};
use crate::memory::zeroed_bytes;

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

fn decode<R: BufRead + Seek>(
    path: &Path,
    mut reader: R,
    file_bytes: u64,
    limits: &ReadLimits,
    hint: Option<ImageFormat>,
) -> Result<GrayImage> {
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
        streamed: false,
    };
    match format {
        ImageFormat::Tiff => {
            let mut rows = super::tiff::TiffRows::open(&input, reader)?;
            let (width, height) = (rows.width(), rows.height());
            let what = format!("TIFF of {}-bit samples", rows.bits());
            let gray = read_through(&input, (width, height), what, rows.band_bytes(), |r| {
                rows.fill(r)
            })?;
            upright(&input, gray, rows.orientation())
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
        // PNG a row at a time, as the band path reads it (faster than the `image` crate's whole
        // decoding for colour: BENCHMARKS.md, "Decoders"); interlaced PNG through `image`.
        ImageFormat::Png => {
            if let Some(mut rows) = super::rows::PngRows::open(&input, &mut reader)? {
                let (width, height) = (rows.width(), rows.height());
                let (orientation, line) = (rows.orientation(), rows.line_bytes());
                let what = describe(rows.color());
                let gray = read_through(&input, (width, height), what, line, |r| rows.fill(r))?;
                return upright(&input, gray, orientation);
            }
            reader.rewind().map_err(|e| Input::read_failure(path, e))?;
            decode_with_image(&input, reader, || None)
        }
        ImageFormat::Gif => super::gif::read_whole(&input, reader),
        ImageFormat::Tga if super::tga::reads(&head) => super::tga::read_whole(&input, reader),
        // A BMP header the `image` crate refuses but Pillow reads: amended in a copy held in
        // memory (such files are small test files, and the copy is counted in the budget).
        ImageFormat::Bmp => match bmp_amendment(&head) {
            Some(amendment) => {
                let mut data = read_all(path, &mut reader, file_bytes, limits)?;
                let flip = amendment.apply(&mut data);
                let mut gray = decode_with_image(&input, Cursor::new(data.as_slice()), || None)?;
                if flip {
                    image::imageops::flip_vertical_in_place(&mut gray);
                }
                Ok(gray)
            }
            None => decode_with_image(&input, reader, || None),
        },
        ImageFormat::Jpeg => {
            // The JPEG decoder reads the whole file into memory anyway; holding it here first
            // lets its markers be walked.
            let data = read_all(path, &mut reader, file_bytes, limits)?;
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
    let mut decoder =
        guarded(input.path, || image_reader.into_decoder())?.map_err(|e| input.classify(e))?;
    let (width, height) = decoder.dimensions();
    let color = decoder.color_type();
    let decoded = decoder.total_bytes();
    input.check_header(width, height, (color, decoded))?;
    if let Some(detail) = extra_check() {
        return Err(input.truncated(detail));
    }
    let implausible = match input.format {
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
        // Lossless WebP works on 32-bit pixels.
        ImageFormat::WebP => pixels.saturating_mul(4),
        _ => 0,
    };
    input.check_budget(width, height, describe(color), decoded, working)?;
    let mut samples = zeroed_bytes(
        usize::try_from(decoded).unwrap_or(usize::MAX),
        &format!("decoding '{}'", crate::text::escape_path(input.path)),
    )?;
    // EXIF orientation (JPEG, PNG, WebP): a decoder that cannot read it reads as stored.
    let orientation = match input.limits.orient {
        true => guarded(input.path, || decoder.orientation())?.unwrap_or(Orientation::NoTransforms),
        false => Orientation::NoTransforms,
    };
    guarded(input.path, || decoder.read_image(&mut samples))?.map_err(|e| input.classify(e))?;
    let gray = gray_in_place(samples, color, width, height).ok_or_else(|| Error::Corrupt {
        path: input.path.to_owned(),
        detail: format!("its pixel layout {color:?} has no gray rule"),
    })?;
    upright(input, gray, orientation)
}

/// `gray` turned upright by `orientation` when the caller asks for it
/// ([`ReadLimits::orient`]); a quarter turn needs a second image, counted in the budget.
fn upright(input: &Input, gray: GrayImage, orientation: Orientation) -> Result<GrayImage> {
    if !input.limits.orient || orientation == Orientation::NoTransforms {
        return Ok(gray);
    }
    let (width, height) = gray.dimensions();
    let quarter = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    if quarter {
        let pixels = u64::from(width) * u64::from(height);
        input.check_budget(width, height, "turned upright".to_owned(), 2 * pixels, 0)?;
    }
    let mut image = image::DynamicImage::ImageLuma8(gray);
    image.apply_orientation(orientation);
    Ok(image.into_luma8())
}

/// The whole file in memory, when twice its length (this copy, and a decoder's) fits the budget.
fn read_all<R: Read>(
    path: &Path,
    reader: &mut R,
    file_bytes: u64,
    limits: &ReadLimits,
) -> Result<Vec<u8>> {
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
    reader
        .read_exact(&mut data)
        .map_err(|e| Input::read_failure(path, e))?;
    Ok(data)
}

/// How a BMP's header is amended so that the `image` crate reads it as Pillow does: a plane
/// count other than 1 (the format allows no other; Pillow ignores it) made 1, and a run-length
/// coded image stored top down (which the format forbids and Pillow reads) made bottom up,
/// after which the decoded image is flipped back.
#[derive(Clone, Copy)]
struct BmpAmendment {
    /// The height, negative where the rows are stored top down.
    height: i32,
    top_down_rle: bool,
}

impl BmpAmendment {
    /// Amends the file's bytes; whether the decoded image must be flipped.
    fn apply(self, data: &mut [u8]) -> bool {
        data[26..28].copy_from_slice(&1u16.to_le_bytes());
        if self.top_down_rle {
            data[22..26].copy_from_slice(&(-self.height).to_le_bytes());
        }
        self.top_down_rle
    }
}

/// The amendment a BMP's header needs, if any.
fn bmp_amendment(head: &[u8]) -> Option<BmpAmendment> {
    // BITMAPINFOHEADER or later: height at 22, planes at 26, compression at 30.
    let header = head.get(14..34)?;
    if u32::from_le_bytes(header[..4].try_into().ok()?) < 40 {
        return None;
    }
    let height = i32::from_le_bytes(header[8..12].try_into().ok()?);
    let planes = u16::from_le_bytes(header[12..14].try_into().ok()?);
    let compression = u32::from_le_bytes(header[16..20].try_into().ok()?);
    let top_down_rle = height < 0 && height != i32::MIN && matches!(compression, 1 | 2);
    (planes != 1 || top_down_rle).then_some(BmpAmendment {
        height,
        top_down_rle,
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
