//! QOI read a row at a time. The `qoi` crate decodes whole images only, and the format is a
//! single pass over the pixels with a 64-entry colour cache, so the decoder keeps that state
//! between calls. It follows the crate's decoder (which the whole-image path uses through the
//! `image` crate) case for case, so both paths give the same pixels.

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::PathBuf;

use image::{ColorType, ImageError};

use super::gray::to_gray_row;
use super::input::Input;
use super::input::Reader;
use super::input::check_stream;
use crate::error::{Error, Result};
use crate::memory::zeroed_bytes;
use crate::rows::RowSource;

const HEADER_BYTES: usize = 14;
/// The most pixels the `qoi` crate decodes (its `QOI_PIXELS_MAX`).
const QOI_PIXELS_MAX: u64 = 400_000_000;
const OP_RGB: u8 = 0xfe;
const OP_RGBA: u8 = 0xff;
/// The eight bytes after the last pixel.
const PADDING: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 1];

/// The rows of a QOI image, RGB or RGBA.
pub(super) struct QoiRows<R: BufRead + Seek> {
    path: PathBuf,
    reader: R,
    width: u32,
    height: u32,
    color: ColorType,
    /// One decoded row, 3 or 4 bytes a pixel.
    line: Vec<u8>,
    /// The colour cache, indexed by the pixel's hash.
    index: [[u8; 4]; 64],
    /// The last pixel decoded.
    pixel: [u8; 4],
    /// Pixels still to repeat from the last run.
    run: u32,
    rows_read: u32,
}

/// A QOI header this reader decodes: its width, height and layout; `None` for one the `image`
/// crate should judge (and word its error for).
pub(super) fn header(head: &[u8]) -> Option<(u32, u32, ColorType)> {
    if head.len() < HEADER_BYTES || &head[..4] != b"qoif" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes(head[at..at + 4].try_into().expect("4 bytes"));
    let (width, height) = (word(4), word(8));
    let color = match head[12] {
        3 => ColorType::Rgb8,
        4 => ColorType::Rgba8,
        _ => return None,
    };
    // Over the `qoi` crate's limit the whole-image path refuses the file: so does this, by
    // leaving it to that path and its words.
    let pixels = u64::from(width) * u64::from(height);
    (width > 0 && height > 0 && head[13] <= 1 && pixels <= QOI_PIXELS_MAX)
        .then_some((width, height, color))
}

impl<R: BufRead + Seek> QoiRows<R> {
    /// Starts reading after a [`header`] this reader decodes.
    pub(super) fn open(
        input: &Input,
        mut reader: R,
        (width, height, color): (u32, u32, ColorType),
    ) -> Result<Self> {
        let line_bytes = width as usize * usize::from(color.bytes_per_pixel());
        check_stream(input, width, height, color, line_bytes)?;
        // The reader stands after the head that was read; go back to the first op.
        reader
            .seek(SeekFrom::Start(HEADER_BYTES as u64))
            .map_err(|e| input.classify(ImageError::IoError(e)))?;
        let line = zeroed_bytes(
            line_bytes,
            &format!("reading '{}'", crate::text::escape_path(input.path)),
        )?;
        Ok(Self {
            path: input.path.to_owned(),
            reader,
            width,
            height,
            color,
            line,
            index: [[0; 4]; 64],
            pixel: [0, 0, 0, 255],
            run: 0,
            rows_read: 0,
        })
    }

    /// The next rows, whole, into `rows`.
    pub(super) fn fill(&mut self, rows: &mut [u8]) -> Result<()> {
        let channels = usize::from(self.color.bytes_per_pixel());
        for row in rows.chunks_exact_mut(self.width as usize) {
            let mut line = std::mem::take(&mut self.line);
            for pixel in line.chunks_exact_mut(channels) {
                let decoded = self.next_pixel();
                let decoded = match decoded {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        self.line = line;
                        return Err(error);
                    }
                };
                pixel.copy_from_slice(&decoded[..channels]);
            }
            to_gray_row(&mut line, self.color, row);
            self.line = line;
            self.rows_read += 1;
        }
        if self.rows_read == self.height {
            // A run past the last pixel is cut off there, as the crate does; then the end
            // marker, which some writers leave out or cut short (Pillow reads such files).
            let mut padding = Vec::with_capacity(PADDING.len());
            (&mut self.reader)
                .take(PADDING.len() as u64)
                .read_to_end(&mut padding)
                .map_err(|e| Input::read_failure(&self.path, e))?;
            if !PADDING.starts_with(&padding) {
                return Err(Error::Corrupt {
                    path: self.path.clone(),
                    detail: "the padding after the last pixel is wrong".to_owned(),
                });
            }
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8> {
        let mut byte = [0];
        self.read(&mut byte)?;
        Ok(byte[0])
    }

    fn read(&mut self, bytes: &mut [u8]) -> Result<()> {
        self.reader
            .read_exact(bytes)
            .map_err(|e| Input::read_failure(&self.path, e))
    }

    /// The next pixel.
    fn next_pixel(&mut self) -> Result<[u8; 4]> {
        if self.run > 0 {
            self.run -= 1;
            return Ok(self.pixel);
        }
        let op = self.byte()?;
        match op {
            OP_RGB => {
                let mut rgb = [0; 3];
                self.read(&mut rgb)?;
                self.pixel[..3].copy_from_slice(&rgb);
            }
            // In a three-channel file the `qoi` crate reads nothing more for this op and
            // repeats the last pixel; so does this, to give the whole-image path's pixels.
            OP_RGBA if self.color == ColorType::Rgba8 => {
                let mut rgba = [0; 4];
                self.read(&mut rgba)?;
                self.pixel = rgba;
            }
            OP_RGBA => {}
            0x00..=0x3f => {
                // Cached pixels were hashed when cached: nothing to update. A three-channel
                // file's pixels are opaque, whatever the (zeroed) cache held.
                self.pixel = self.index[usize::from(op)];
                if self.color == ColorType::Rgb8 {
                    self.pixel[3] = 255;
                }
                return Ok(self.pixel);
            }
            0x40..=0x7f => {
                let [r, g, b, _] = &mut self.pixel;
                *r = r.wrapping_add((op >> 4) & 3).wrapping_sub(2);
                *g = g.wrapping_add((op >> 2) & 3).wrapping_sub(2);
                *b = b.wrapping_add(op & 3).wrapping_sub(2);
            }
            0x80..=0xbf => {
                let second = self.byte()?;
                let green = (op & 0x3f).wrapping_sub(32);
                let [r, g, b, _] = &mut self.pixel;
                *r = r.wrapping_add(green.wrapping_sub(8).wrapping_add(second >> 4));
                *g = g.wrapping_add(green);
                *b = b.wrapping_add(green.wrapping_sub(8).wrapping_add(second & 0x0f));
            }
            // Runs of 1 to 62: this pixel, then `op & 0x3f` more.
            _ => {
                self.run = u32::from(op & 0x3f);
                return Ok(self.pixel);
            }
        }
        let [r, g, b, a] = self.pixel;
        let hash = r
            .wrapping_mul(3)
            .wrapping_add(g.wrapping_mul(5))
            .wrapping_add(b.wrapping_mul(7))
            .wrapping_add(a.wrapping_mul(11));
        self.index[usize::from(hash % 64)] = self.pixel;
        Ok(self.pixel)
    }
}

impl<R: Reader> RowSource for QoiRows<R> {
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

#[cfg(test)]
mod tests {
    use crate::io::{ReadLimits, decode_gray};
    use std::path::Path;

    #[test]
    fn a_file_without_its_end_marker_reads_and_a_wrong_one_does_not() {
        let rgb =
            image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([(x * 50) as u8, (y * 80) as u8, 7]));
        let mut qoi = Vec::new();
        image::DynamicImage::ImageRgb8(rgb.clone())
            .write_to(&mut std::io::Cursor::new(&mut qoi), image::ImageFormat::Qoi)
            .unwrap();
        let limits = ReadLimits::default();
        let whole = decode_gray(&qoi, Path::new("a.qoi"), &limits).unwrap();
        let expected = crate::io::to_gray(image::DynamicImage::ImageRgb8(rgb));
        assert_eq!(whole, expected);
        for cut in [8, 3] {
            let short = &qoi[..qoi.len() - cut];
            assert_eq!(
                decode_gray(short, Path::new("b.qoi"), &limits).unwrap(),
                expected,
                "{cut}"
            );
        }
        let mut wrong = qoi.clone();
        *wrong.last_mut().unwrap() = 9;
        assert!(decode_gray(&wrong, Path::new("c.qoi"), &limits).is_err());
    }
}
