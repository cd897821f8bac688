//! Reading images as 8-bit gray within limits judged before decoding, and writing results
//! without ever leaving a half-written file.

mod deflate;
mod gif;
mod gray;
mod input;
mod npz;
mod plausible;
mod png_bands;
mod qoi;
mod read;
mod rows;
mod sinks;
mod tga;
mod tiff;
mod write;

pub use crate::memory::{default_memory_budget, parse_bytes, parse_positive_count};
pub use crate::units::format_bytes;
pub use gray::{luma, sample_16_to_8, sample_float_to_8, to_gray};
pub use input::{DEFAULT_MAX_PIXELS, ReadLimits, quiet_decoder_panics};
pub use npz::{Dtype, NpyArray, Npz};
pub use png_bands::Compression;
pub use read::{
    READABLE_EXTENSIONS, decode_gray, decode_gray_as, load_gray, load_gray_as, load_gray_with,
    readable_format,
};
pub use rows::{open_rows, open_rows_in};
pub use sinks::{EncodedRows, create_row_sink, encode_rows, encodes_rows, writes_rows};
pub(crate) use write::write_partial;
pub use write::{
    check_output_folder, encode_gray, encode_gray_with, encoded_images_per_output, is_bitmap_path,
    output_format, remove_partial_outputs, save_gray, save_gray_with, save_gray16,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use image::GrayImage;
    use std::path::Path;

    #[test]
    fn every_writable_format_round_trips_a_gray_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = GrayImage::from_fn(13, 7, |x, y| image::Luma([(x * 19 + y * 7) as u8]));
        for extension in [
            "png", "pgm", "pnm", "ppm", "pam", "bmp", "tif", "tiff", "webp", "tga", "jpg",
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
    fn each_netpbm_extension_gets_its_own_kind_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let binary = GrayImage::from_fn(11, 3, |x, y| {
            image::Luma([if (x + y) % 3 == 0 { 255 } else { 0 }])
        });
        let magic = |name: &str| std::fs::read(dir.path().join(name)).unwrap()[..2].to_vec();
        for (name, expected) in [
            ("a.pbm", b"P4"),
            ("a.pgm", b"P5"),
            ("a.pnm", b"P5"),
            ("a.ppm", b"P6"),
            ("a.pam", b"P7"),
        ] {
            save_gray(&binary, &dir.path().join(name)).unwrap();
            assert_eq!(magic(name), expected, "{name}");
            assert_eq!(load_gray(&dir.path().join(name)).unwrap(), binary, "{name}");
        }
        // A gray image has no faithful bitmap: refused, and nothing is left behind.
        let gray = GrayImage::from_fn(5, 5, |x, _| image::Luma([x as u8 * 60]));
        let refused = dir.path().join("gray.pbm");
        let message = save_gray(&gray, &refused).unwrap_err().to_string();
        assert!(message.contains("black and white"), "{message}");
        assert!(!refused.exists());
    }

    #[test]
    fn the_pixel_limit_is_checked_from_the_header() {
        let dir = tempfile::tempdir().unwrap();
        // A header claiming 30000 × 30000 with no pixel data behind it.
        let path = dir.path().join("huge.pgm");
        std::fs::write(&path, b"P5\n30000 30000\n255\n\x01\x02").unwrap();
        let limits = ReadLimits {
            max_pixels: 1_000_000,
            ..ReadLimits::default()
        };
        match load_gray_with(&path, &limits) {
            Err(Error::TooManyPixels {
                width: 30000,
                height: 30000,
                max_pixels: 1_000_000,
                ..
            }) => {}
            other => panic!("expected TooManyPixels, got {other:?}"),
        }
        // Within the pixel limit it is refused as truncated, before 900 MB are allocated.
        match load_gray(&path) {
            Err(Error::Truncated { detail, .. }) => {
                assert!(detail.contains("30000×30000"), "{detail}")
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
    }
}
