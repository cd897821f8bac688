//! Reading images as 8-bit gray, and writing results without ever leaving a half-written file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{Error, Result};

/// The largest image [`load_gray`] decodes: 2³² pixels (65536 × 65536), far above any real
/// photo; [`load_gray_limited`] sets another bound.
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 32;

/// Decodes any image the `image` crate reads (PNG, JPEG, PNM, BMP, TIFF, GIF, WebP, TGA, QOI),
/// the format found from the file's contents, and makes it 8-bit gray with [`to_gray`]. Images
/// of up to [`DEFAULT_MAX_PIXELS`] pixels are decoded, however much memory that takes (the
/// `image` crate's own 512 MiB cap is lifted).
pub fn load_gray(path: &Path) -> Result<GrayImage> {
    load_gray_limited(path, DEFAULT_MAX_PIXELS)
}

/// [`load_gray`] refusing images of more than `max_pixels` pixels, judged from the header before
/// anything large is allocated, so a malicious header cannot exhaust memory.
pub fn load_gray_limited(path: &Path, max_pixels: u64) -> Result<GrayImage> {
    let decode_error = |source| Error::Decode {
        path: path.to_owned(),
        source,
    };
    let io_error = |e| decode_error(image::ImageError::IoError(e));
    let mut reader = ImageReader::open(path)
        .map_err(io_error)?
        .with_guessed_format()
        .map_err(io_error)?;
    if reader.format().is_none() {
        return Err(Error::UnknownFormat {
            path: path.to_owned(),
        });
    }
    reader.no_limits();
    let decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(Error::TooManyPixels {
            path: path.to_owned(),
            width,
            height,
            max_pixels,
        });
    }
    DynamicImage::from_decoder(decoder)
        .map(to_gray)
        .map_err(decode_error)
}

/// The ITU-R 601-2 luma of an 8-bit RGB pixel, exactly as Pillow's `convert('L')` computes it:
/// `(R·19595 + G·38470 + B·7471 + 0x8000) >> 16`.
pub fn luma(rgb: [u8; 3]) -> u8 {
    let [r, g, b] = rgb.map(u32::from);
    ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
}

/// A 16-bit sample scaled to 8 bits, rounded to nearest: `round(v / 257)`, so that 8-bit
/// values widened the usual way (`v · 257`) come back unchanged.
pub fn sample_16_to_8(v: u16) -> u8 {
    ((u32::from(v) + 128) / 257) as u8
}

/// Makes any decoded image 8-bit gray, matching the lesson's `Image.open(...).convert('L')`
/// bit for bit on 8-bit inputs:
///
/// - 8-bit gray is used as it is (gray + alpha: the alpha is dropped);
/// - 8-bit colour becomes [`luma`] of its RGB, alpha ignored;
/// - 16-bit samples are first scaled to 8 bits with [`sample_16_to_8`] (Pillow instead clips
///   16-bit gray at 255, which turns most real 16-bit images white);
/// - floating-point samples are clamped to 0..=1 and scaled to 0..=255, rounded.
///
/// 8-bit images are converted in place, in the decoded buffer itself, so a colour image never
/// needs a second full-size buffer beside it.
pub fn to_gray(image: DynamicImage) -> GrayImage {
    let (width, height) = (image.width(), image.height());
    let from_rgb = |rgb: RgbImage| gray_in_place(rgb.into_raw(), width, height, luma);
    match image {
        DynamicImage::ImageLuma8(gray) => gray,
        DynamicImage::ImageLumaA8(gray_alpha) => {
            gray_in_place(gray_alpha.into_raw(), width, height, |[v, _]| v)
        }
        DynamicImage::ImageRgba8(rgba) => {
            gray_in_place(rgba.into_raw(), width, height, |[r, g, b, _]| {
                luma([r, g, b])
            })
        }
        DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
            let wide = image.into_luma16();
            let pixels = wide.pixels().map(|p| sample_16_to_8(p[0])).collect();
            GrayImage::from_raw(width, height, pixels).expect("one gray pixel per pixel")
        }
        DynamicImage::ImageRgb8(rgb) => from_rgb(rgb),
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgba16(_) => {
            let wide = image.into_rgb16();
            let pixels = wide
                .pixels()
                .map(|p| luma(p.0.map(sample_16_to_8)))
                .collect();
            GrayImage::from_raw(width, height, pixels).expect("one gray pixel per pixel")
        }
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
            let float = image.into_rgb32f();
            let to_8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            let pixels = float.pixels().map(|p| luma(p.0.map(to_8))).collect();
            GrayImage::from_raw(width, height, pixels).expect("one gray pixel per pixel")
        }
        // 8-bit RGBA and anything newer: to 8-bit RGB (alpha dropped), then luma.
        other => from_rgb(other.into_rgb8()),
    }
}

/// Turns interleaved `N`-byte pixels into one gray byte each, writing pixel `i` over byte `i`
/// (never ahead of pixel `i`'s own bytes, so nothing unread is overwritten), then gives back the
/// rest of the buffer.
fn gray_in_place<const N: usize>(
    mut samples: Vec<u8>,
    width: u32,
    height: u32,
    gray: impl Fn([u8; N]) -> u8,
) -> GrayImage {
    let pixels = samples.len() / N;
    for i in 0..pixels {
        let pixel: [u8; N] = samples[i * N..i * N + N]
            .try_into()
            .expect("N bytes per pixel");
        samples[i] = gray(pixel);
    }
    samples.truncate(pixels);
    samples.shrink_to_fit();
    GrayImage::from_raw(width, height, samples).expect("one gray byte per pixel")
}

/// The format an output path's extension asks for, or an error when gpuconv cannot write it.
pub fn output_format(path: &Path) -> Result<ImageFormat> {
    let unsupported = || Error::UnsupportedOutputFormat {
        path: path.to_owned(),
    };
    let format = ImageFormat::from_path(path).map_err(|_| unsupported())?;
    let writable = [
        ImageFormat::Png,
        ImageFormat::Pnm,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::Jpeg,
        ImageFormat::WebP,
        ImageFormat::Tga,
    ];
    if writable.contains(&format) {
        Ok(format)
    } else {
        Err(unsupported())
    }
}

/// The folder `path` will be written into, checked to exist (`.` for a bare file name).
pub fn check_output_folder(path: &Path) -> Result<&Path> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        let problem = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(Error::Write {
            path: path.to_owned(),
            reason: format!("'{}' {problem}", dir.display()),
        });
    }
    Ok(dir)
}

/// Writes `image` to `path` in the format its extension names. The file is written beside its
/// destination under a temporary name and renamed into place only once complete, so a failure
/// never leaves a partial or empty file behind, and an existing file is replaced atomically.
pub fn save_gray(image: &GrayImage, path: &Path) -> Result<()> {
    let format = output_format(path)?;
    let write_error = |reason: String| Error::Write {
        path: path.to_owned(),
        reason,
    };
    let dir = check_output_folder(path)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".gpuconv-").suffix(".part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let temp = builder
        .tempfile_in(dir)
        .map_err(|e| write_error(e.to_string()))?;
    {
        let mut writer = BufWriter::new(temp.as_file());
        encode(image, format, &mut writer).map_err(write_error)?;
        writer.flush().map_err(|e| write_error(e.to_string()))?;
    }
    temp.persist(path)
        .map_err(|e| write_error(e.error.to_string()))?;
    Ok(())
}

fn encode(
    image: &GrayImage,
    format: ImageFormat,
    writer: &mut BufWriter<&File>,
) -> std::result::Result<(), String> {
    use image::codecs::pnm::{PnmEncoder, PnmSubtype, SampleEncoding};
    match format {
        ImageFormat::Png => {
            let error = |e: png::EncodingError| e.to_string();
            let mut encoder = png::Encoder::new(writer, image.width(), image.height());
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            // Fast deflate: large outputs are written several times faster for a few percent
            // in size.
            encoder.set_compression(png::Compression::Fast);
            encoder.set_filter(png::Filter::Adaptive);
            // Streamed, IDAT chunk by chunk: the one-shot writer would hold the whole compressed
            // image in memory before writing any of it.
            let mut header = encoder.write_header().map_err(error)?;
            // 1 MiB IDAT chunks: the default 4 KiB makes a quarter million of them per GiB.
            let mut stream = header.stream_writer_with_size(1 << 20).map_err(error)?;
            stream
                .write_all(image.as_raw())
                .map_err(|e| e.to_string())?;
            stream.finish().map_err(error)?;
            header.finish().map_err(error)
        }
        // Binary PGM (P5), the format every PNM reader knows, rather than the crate's default PAM.
        ImageFormat::Pnm => image
            .write_with_encoder(
                PnmEncoder::new(writer).with_subtype(PnmSubtype::Graymap(SampleEncoding::Binary)),
            )
            .map_err(|e| e.to_string()),
        other => image.write_to(writer, other).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pillow_on_known_values() {
        // Values computed with Pillow 13: Image.new('RGB', (1, 1), c).convert('L').getpixel((0, 0)).
        assert_eq!(luma([255, 255, 255]), 255);
        assert_eq!(luma([0, 0, 0]), 0);
        assert_eq!(luma([255, 0, 0]), 76);
        assert_eq!(luma([0, 255, 0]), 150);
        assert_eq!(luma([0, 0, 255]), 29);
        assert_eq!(luma([12, 200, 77]), 130);
        assert_eq!(luma([1, 2, 3]), 2);
        assert_eq!(luma([128, 128, 128]), 128);
        assert_eq!(luma([200, 100, 50]), 124);
    }

    #[test]
    fn sixteen_bit_samples_round_to_nearest() {
        for v in 0..=255u16 {
            assert_eq!(sample_16_to_8(v * 257), v as u8);
        }
        assert_eq!(sample_16_to_8(128), 0);
        assert_eq!(sample_16_to_8(129), 1);
        assert_eq!(sample_16_to_8(u16::MAX), 255);
    }

    #[test]
    fn headers_are_checked_against_the_pixel_limit_and_the_crates_512_mib_cap_is_lifted() {
        let dir = tempfile::tempdir().unwrap();
        // A header claiming 30000 × 30000 (900 MB) with no pixel data behind it.
        let path = dir.path().join("huge.pgm");
        std::fs::write(&path, b"P5\n30000 30000\n255\n\x01\x02").unwrap();
        match load_gray_limited(&path, 1_000_000) {
            Err(Error::TooManyPixels {
                width: 30000,
                height: 30000,
                max_pixels: 1_000_000,
                ..
            }) => {}
            other => panic!("expected TooManyPixels, got {other:?}"),
        }
        // Within the limit the decoder tries, and fails only for want of data: the image crate's
        // default 512 MiB allocation limit would have refused it first.
        match load_gray(&path) {
            Err(error @ Error::Decode { .. }) => {
                let message = error.to_string();
                assert!(!message.to_lowercase().contains("limit"), "{message}");
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn every_writable_format_round_trips_a_gray_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = GrayImage::from_fn(13, 7, |x, y| image::Luma([(x * 19 + y * 7) as u8]));
        for extension in [
            "png", "pgm", "pnm", "bmp", "tif", "tiff", "webp", "tga", "jpg",
        ] {
            let path = dir.path().join(format!("out.{extension}"));
            save_gray(&image, &path).unwrap_or_else(|e| panic!("{extension}: {e}"));
            let back = load_gray(&path).unwrap_or_else(|e| panic!("{extension}: {e}"));
            assert_eq!(back.dimensions(), image.dimensions(), "{extension}");
            if extension != "jpg" {
                assert_eq!(back, image, "{extension} is lossless");
            }
        }
        assert!(matches!(
            output_format(Path::new("x.gif")),
            Err(Error::UnsupportedOutputFormat { .. })
        ));
    }

    #[test]
    fn colour_images_become_luma_and_alpha_is_ignored() {
        let rgba = image::RgbaImage::from_fn(3, 2, |x, y| {
            image::Rgba([x as u8 * 80, y as u8 * 90, 30, (x * 50) as u8])
        });
        let gray = to_gray(DynamicImage::ImageRgba8(rgba.clone()));
        for (x, y, p) in rgba.enumerate_pixels() {
            assert_eq!(gray.get_pixel(x, y)[0], luma([p[0], p[1], p[2]]));
        }
        let rgb = DynamicImage::ImageRgba8(rgba.clone()).into_rgb8();
        assert_eq!(to_gray(DynamicImage::ImageRgb8(rgb)), gray);
        let gray_alpha = image::GrayAlphaImage::from_fn(3, 2, |x, y| {
            image::LumaA([gray.get_pixel(x, y)[0], 7 * x as u8])
        });
        assert_eq!(to_gray(DynamicImage::ImageLumaA8(gray_alpha)), gray);
        let wide = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(4, 1, |x, _| {
            image::Luma([x as u16 * 20000])
        });
        let gray = to_gray(DynamicImage::ImageLuma16(wide));
        assert_eq!(gray.as_raw(), &[0, 78, 156, 233]);
    }
}
