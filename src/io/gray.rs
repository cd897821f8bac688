//! Decoded pixels of any layout made 8-bit gray, by the lesson's rules, in their own buffer.

use image::{ColorType, DynamicImage, GrayImage};

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

/// A floating-point sample clamped to 0..=1 and scaled to 0..=255, rounded (NaN becomes 0).
pub fn sample_float_to_8(v: f64) -> u8 {
    if v.is_nan() {
        return 0;
    }
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Makes any decoded image 8-bit gray, matching the lesson's `Image.open(...).convert('L')`
/// bit for bit on 8-bit inputs:
///
/// - 8-bit gray is used as it is (gray + alpha: the alpha is dropped);
/// - 8-bit colour becomes [`luma`] of its RGB, alpha ignored;
/// - 16-bit samples are first scaled to 8 bits with [`sample_16_to_8`] (Pillow instead clips
///   16-bit gray at 255, which turns most real 16-bit images white);
/// - floating-point samples become 8 bits with [`sample_float_to_8`], then colour follows the
///   luma rule.
///
/// 8-bit images are converted in their own buffer, so a colour image never needs a second
/// full-size buffer beside it.
pub fn to_gray(image: DynamicImage) -> GrayImage {
    let (width, height, color) = (image.width(), image.height(), image.color());
    let samples = match image {
        DynamicImage::ImageLuma8(gray) => return gray,
        DynamicImage::ImageLumaA8(image) => image.into_raw(),
        DynamicImage::ImageRgb8(image) => image.into_raw(),
        DynamicImage::ImageRgba8(image) => image.into_raw(),
        // Wider samples are read from their native-endian bytes, as decoders write them.
        other => other.as_bytes().to_vec(),
    };
    gray_in_place(samples, color, width, height).expect("every DynamicImage layout has a gray rule")
}

/// Turns decoded samples of layout `color` (native-endian, as `ImageDecoder::read_image` writes
/// them) into one gray byte per pixel, in the same buffer: pixel `i` is written over byte `i`,
/// never ahead of pixel `i`'s own bytes, so nothing unread is overwritten. `None` for a layout
/// with no rule (newer `image` versions may add some).
pub(crate) fn gray_in_place(
    mut samples: Vec<u8>,
    color: ColorType,
    width: u32,
    height: u32,
) -> Option<GrayImage> {
    let pixels = gray_row(&mut samples, color)?;
    samples.truncate(pixels);
    samples.shrink_to_fit();
    GrayImage::from_raw(width, height, samples)
}

/// [`gray_in_place`] on a slice (a row, or a whole image): the first `n` bytes become the `n`
/// gray pixels, and `n` is returned.
pub(crate) fn gray_row(samples: &mut [u8], color: ColorType) -> Option<usize> {
    let u16_at = |p: &[u8], i: usize| sample_16_to_8(u16::from_ne_bytes([p[2 * i], p[2 * i + 1]]));
    let f32_at = |p: &[u8], i: usize| {
        let bytes = p[4 * i..4 * i + 4].try_into().expect("4 bytes");
        sample_float_to_8(f64::from(f32::from_ne_bytes(bytes)))
    };
    Some(match color {
        ColorType::L8 => samples.len(),
        ColorType::La8 => convert::<2>(samples, |p| p[0]),
        ColorType::Rgb8 => convert::<3>(samples, |p| luma([p[0], p[1], p[2]])),
        ColorType::Rgba8 => convert::<4>(samples, |p| luma([p[0], p[1], p[2]])),
        ColorType::L16 => convert::<2>(samples, |p| u16_at(p, 0)),
        ColorType::La16 => convert::<4>(samples, |p| u16_at(p, 0)),
        ColorType::Rgb16 => convert::<6>(samples, |p| luma([0, 1, 2].map(|i| u16_at(p, i)))),
        ColorType::Rgba16 => convert::<8>(samples, |p| luma([0, 1, 2].map(|i| u16_at(p, i)))),
        ColorType::Rgb32F => convert::<12>(samples, |p| luma([0, 1, 2].map(|i| f32_at(p, i)))),
        ColorType::Rgba32F => convert::<16>(samples, |p| luma([0, 1, 2].map(|i| f32_at(p, i)))),
        _ => return None,
    })
}

/// Pixel `i` of `N` bytes becomes byte `i`; returns the number of pixels.
fn convert<const N: usize>(samples: &mut [u8], gray: impl Fn(&[u8; N]) -> u8) -> usize {
    let pixels = samples.len() / N;
    for i in 0..pixels {
        let pixel: [u8; N] = samples[i * N..i * N + N]
            .try_into()
            .expect("N bytes per pixel");
        samples[i] = gray(&pixel);
    }
    pixels
}

/// Big-endian samples (as PNG and PNM store them) made native, then gray into `row`.
pub(super) fn to_gray_row(line: &mut [u8], color: ColorType, row: &mut [u8]) {
    if color.bytes_per_pixel() / color.channel_count() == 2 && cfg!(target_endian = "little") {
        for sample in line.chunks_exact_mut(2) {
            sample.swap(0, 1);
        }
    }
    let pixels = gray_row(line, color).expect("a layout with a gray rule");
    row.copy_from_slice(&line[..pixels]);
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
    fn float_samples_clamp_and_round() {
        assert_eq!(sample_float_to_8(-3.0), 0);
        assert_eq!(sample_float_to_8(0.5), 128);
        assert_eq!(sample_float_to_8(0.25), 64);
        assert_eq!(sample_float_to_8(7.0), 255);
        assert_eq!(sample_float_to_8(f64::NAN), 0);
        assert_eq!(sample_float_to_8(f64::INFINITY), 255);
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

    #[test]
    fn wide_and_float_colour_follow_the_same_rules() {
        let rgba8 = image::RgbaImage::from_fn(5, 3, |x, y| {
            image::Rgba([(x * 50) as u8, (y * 80) as u8, (x * y * 17) as u8, 9])
        });
        let expected = to_gray(DynamicImage::ImageRgba8(rgba8.clone()));
        let widened = DynamicImage::ImageRgba8(rgba8.clone());
        assert_eq!(
            to_gray(DynamicImage::ImageRgba16(widened.to_rgba16())),
            expected
        );
        assert_eq!(
            to_gray(DynamicImage::ImageRgb16(widened.to_rgb16())),
            expected
        );
        assert_eq!(
            to_gray(DynamicImage::ImageRgb32F(widened.to_rgb32f())),
            expected
        );
        assert_eq!(
            to_gray(DynamicImage::ImageRgba32F(widened.to_rgba32f())),
            expected
        );
        let gray8 = to_gray(widened.clone());
        let gray_alpha16 =
            DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_fn(5, 3, |x, y| {
                image::LumaA([gray8.get_pixel(x, y)[0], 3])
            }))
            .to_luma_alpha16();
        assert_eq!(to_gray(DynamicImage::ImageLumaA16(gray_alpha16)), expected);
    }
}
