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
        for row in rows.chunks_exact_mut(self.width as usize) {
            let mut line = std::mem::take(&mut self.line);
            let decoded = self.decode_line(&mut line);
            if decoded.is_ok() {
                to_gray_row(&mut line, self.color, row);
            }
            self.line = line;
            decoded?;
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

    /// One row of pixels into `line`, decoded straight from the reader's buffer; an op that
    /// straddles the buffer's end, or the file's, goes through [`next_pixel`](Self::next_pixel).
    fn decode_line(&mut self, line: &mut [u8]) -> Result<()> {
        let channels = usize::from(self.color.bytes_per_pixel());
        let width = self.width as usize;
        let mut x = 0;
        while x < width {
            if self.run > 0 {
                let n = (self.run as usize).min(width - x);
                for out in line[x * channels..(x + n) * channels].chunks_exact_mut(channels) {
                    out.copy_from_slice(&self.pixel[..channels]);
                }
                self.run -= n as u32;
                x += n;
                continue;
            }
            let buffer = self
                .reader
                .fill_buf()
                .map_err(|e| Input::read_failure(&self.path, e))?;
            let mut used = 0;
            while x < width && self.run == 0 {
                let Some(n) = op(
                    &buffer[used..],
                    &mut self.pixel,
                    &mut self.index,
                    &mut self.run,
                ) else {
                    break;
                };
                line[x * channels..(x + 1) * channels].copy_from_slice(&self.pixel[..channels]);
                used += n;
                x += 1;
            }
            self.reader.consume(used);
            if used == 0 {
                let pixel = self.next_pixel()?;
                line[x * channels..(x + 1) * channels].copy_from_slice(&pixel[..channels]);
                x += 1;
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
            // Four bytes in any file, as the specification and Pillow read it (the `qoi`
            // crate reads none in a three-channel file).
            OP_RGBA => {
                let mut rgba = [0; 4];
                self.read(&mut rgba)?;
                self.pixel = rgba;
            }
            0x00..=0x3f => {
                // Cached pixels were hashed when cached: nothing to update. Alpha is kept in
                // every file, so that later hashes are the specification's (and Pillow's).
                self.pixel = self.index[usize::from(op)];
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

/// Decodes the op at the start of `bytes` into `pixel` (and the cache, and a run's length):
/// the bytes it took, or `None` where `bytes` holds less than the whole op. The same cases as
/// [`QoiRows::next_pixel`], which reads an op byte by byte.
fn op(
    bytes: &[u8],
    pixel: &mut [u8; 4],
    index: &mut [[u8; 4]; 64],
    run: &mut u32,
) -> Option<usize> {
    let &op = bytes.first()?;
    let used = match op {
        OP_RGB => {
            pixel[..3].copy_from_slice(bytes.get(1..4)?);
            4
        }
        OP_RGBA => {
            pixel.copy_from_slice(bytes.get(1..5)?);
            5
        }
        0x00..=0x3f => {
            *pixel = index[usize::from(op)];
            return Some(1);
        }
        0x40..=0x7f => {
            let [r, g, b, _] = pixel;
            *r = r.wrapping_add((op >> 4) & 3).wrapping_sub(2);
            *g = g.wrapping_add((op >> 2) & 3).wrapping_sub(2);
            *b = b.wrapping_add(op & 3).wrapping_sub(2);
            1
        }
        0x80..=0xbf => {
            let &second = bytes.get(1)?;
            let green = (op & 0x3f).wrapping_sub(32);
            let [r, g, b, _] = pixel;
            *r = r.wrapping_add(green.wrapping_sub(8).wrapping_add(second >> 4));
            *g = g.wrapping_add(green);
            *b = b.wrapping_add(green.wrapping_sub(8).wrapping_add(second & 0x0f));
            2
        }
        _ => {
            *run = u32::from(op & 0x3f);
            return Some(1);
        }
    };
    let [r, g, b, a] = *pixel;
    let hash = r
        .wrapping_mul(3)
        .wrapping_add(g.wrapping_mul(5))
        .wrapping_add(b.wrapping_mul(7))
        .wrapping_add(a.wrapping_mul(11));
    index[usize::from(hash % 64)] = *pixel;
    Some(used)
}

#[cfg(test)]
mod tests {
    use crate::io::{ReadLimits, decode_gray};
    use std::path::Path;

    #[test]
    fn every_op_decodes_as_the_qoi_crate_decodes_it_across_buffer_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = 0x9e37_79b9u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        // Runs, small and large steps, repeats of earlier colours and changing alpha: every
        // op, over far more than one 8 KiB read buffer.
        let (width, height) = (301, 207);
        let mut pixels = Vec::new();
        let mut last = [10u8, 20, 30, 255];
        let mut seen = vec![last];
        for _ in 0..width * height {
            let pick = next() % 8;
            match pick {
                0..=2 => {}
                3 => last = seen[next() as usize % seen.len()],
                4 => last[1] = last[1].wrapping_add((next() % 5) as u8).wrapping_sub(2),
                5 => last[0] = last[0].wrapping_add((next() % 30) as u8),
                6 => last[3] = (next() % 256) as u8,
                _ => last = next().to_le_bytes(),
            }
            seen.push(last);
            pixels.extend_from_slice(&last);
        }
        let rgba = image::RgbaImage::from_raw(width, height, pixels).unwrap();
        let images = [
            image::DynamicImage::ImageRgba8(rgba.clone()),
            image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(rgba).to_rgb8()),
        ];
        for (i, image) in images.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.qoi"));
            image.save(&path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.len() > 3 * 8192, "{}", bytes.len());
            let theirs =
                image::load_from_memory_with_format(&bytes, image::ImageFormat::Qoi).unwrap();
            let want = crate::io::to_gray(theirs);
            assert_eq!(
                crate::io::load_gray(&path).unwrap(),
                want,
                "{i}: from a file"
            );
            let limits = ReadLimits::default();
            assert_eq!(
                decode_gray(&bytes, &path, &limits).unwrap(),
                want,
                "{i}: from memory"
            );
        }
    }

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
