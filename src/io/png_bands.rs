//! PNG written on every core: the image's rows are cut into bands, each band filtered and
//! deflated on a core of its own ([`deflate`](super::deflate): a block per band, ended by a sync
//! flush), and the bands joined in order into one standard zlib stream in IDAT chunks, as
//! parallel encoders (mtpng, pigz for gzip) do. Any PNG decoder reads the file.

use std::io::Write;

use rayon::prelude::*;

use super::deflate;
use crate::error::{Error, Result};

/// How outputs are compressed, the trade between time and size: PNG's predictors and deflate
/// (other formats are written one way only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// The fastest: rows predicted from the row above ("up"), fdeflate's fixed table; about
    /// a fifth larger on photos and edge images.
    Fast,
    /// Nearly as fast, as small as gpuconv's PNGs have always been: each row's predictor chosen
    /// on a sample of the row, fdeflate's fixed table.
    #[default]
    Default,
    /// The smallest, about seven times slower: each row's best predictor on the whole row,
    /// zlib's deflate at level 6; about a fifth smaller.
    Small,
}

impl Compression {
    /// Every choice, with the name the command line and the service give it.
    pub const ALL: [(&'static str, Compression); 3] = [
        ("fast", Compression::Fast),
        ("default", Compression::Default),
        ("small", Compression::Small),
    ];

    /// The choice called `name` (`fast`, `default`, `small`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, c)| c)
    }

    /// The choice's name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|&&(_, c)| c == self)
            .map(|&(n, _)| n)
            .expect("every choice is named")
    }
}

/// The size of the IDAT chunks: libpng's 8 KiB would make a quarter million of them per 2 GiB
/// image, each with its own CRC.
const PNG_CHUNK_BYTES: usize = 1 << 20;

/// Pixels of a band compressed on one core: large enough that a band's block header and flush
/// (under 60 bytes) and its start without history cost nothing, small enough that an image of
/// a few megapixels still spreads over every core.
const BAND_PIXELS: usize = 256 << 10;

/// The sample [`best_filter`] judges a row by: runs of this many pixels...
const SAMPLE_RUN: usize = 32;
/// ...every this many.
const SAMPLE_EVERY: usize = 256;

/// The PNG row filters (predictors) gpuconv writes, by their type byte.
#[derive(Clone, Copy)]
enum Predictor {
    Sub = 1,
    Up = 2,
    Average = 3,
    Paeth = 4,
}

/// A PNG of 8-bit gray rows, written band by band: [`write_rows`](Self::write_rows) takes any
/// number of whole rows, compresses them on every core (rayon's threads) and writes them out in
/// order; [`finish`](Self::finish) writes the stream's end. What is held is the rows of one call
/// and their compressed bytes.
pub(crate) struct PngRows<W: Write> {
    writer: png::Writer<W>,
    width: usize,
    height: u32,
    compression: Compression,
    /// The last row written (zeros before the first): the next row's "above".
    previous: Vec<u8>,
    rows_written: u32,
    /// The Adler-32 of the filtered rows so far.
    adler: u32,
    /// Compressed bytes not yet in an IDAT chunk.
    pending: Vec<u8>,
    /// `write` names this in errors.
    name: std::path::PathBuf,
}

impl<W: Write> PngRows<W> {
    /// Writes the signature and header of a `width`×`height` gray PNG into `to`; `name` is what
    /// errors call it.
    pub(crate) fn new(
        to: W,
        width: u32,
        height: u32,
        compression: Compression,
        name: &std::path::Path,
    ) -> Result<Self> {
        let mut encoder = png::Encoder::new(to, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let writer = encoder.write_header().map_err(|e| Error::Write {
            path: name.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            writer,
            width: width as usize,
            height,
            compression,
            previous: vec![0; width as usize],
            rows_written: 0,
            adler: 1,
            pending: Vec::new(),
            name: name.to_owned(),
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::Write {
            path: self.name.clone(),
            reason: e.to_string(),
        }
    }

    /// Compresses and writes `rows`, whole rows of the image's width, the next ones.
    pub(crate) fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        let count = (rows.len() / self.width.max(1)) as u32;
        debug_assert_eq!(rows.len(), count as usize * self.width);
        let first_row = self.rows_written;
        let last = first_row + count == self.height;
        let band_rows = (BAND_PIXELS / self.width.max(1)).max(1);
        let bands: Vec<(usize, &[u8])> = rows
            .chunks(band_rows * self.width.max(1))
            .enumerate()
            .collect();
        let band_count = bands.len();
        let previous = &self.previous;
        let width = self.width;
        let compression = self.compression;
        let compressed: Vec<(Vec<u8>, u32, usize)> = bands
            .into_par_iter()
            .map(|(i, band)| {
                // The row above a band: the last of the band before, or of the call before.
                let above = if i == 0 {
                    &previous[..]
                } else {
                    let start = i * band_rows * width;
                    &rows[start - width..start]
                };
                let filtered = filter_rows(above, band, width, compression);
                let first = first_row == 0 && i == 0;
                let last_band = last && i == band_count - 1;
                let data = match compression {
                    Compression::Small => deflate::zlib(&filtered, 6, first, last_band),
                    _ => deflate::fast(&filtered, first, last_band),
                };
                (
                    data,
                    simd_adler32::adler32(&filtered.as_slice()),
                    filtered.len(),
                )
            })
            .collect();
        for (data, adler, length) in compressed {
            self.adler = deflate::adler32_combine(self.adler, adler, length as u64);
            self.pending.extend_from_slice(&data);
            if self.pending.len() >= PNG_CHUNK_BYTES {
                let chunk = std::mem::take(&mut self.pending);
                self.writer
                    .write_chunk(png::chunk::IDAT, &chunk)
                    .map_err(|e| self.error(e))?;
            }
        }
        if let Some(row) = rows
            .len()
            .checked_sub(self.width)
            .map(|start| &rows[start..])
        {
            self.previous.copy_from_slice(row);
        }
        self.rows_written += count;
        Ok(())
    }

    /// Writes the stream's end and the file's. Every row must have been written.
    pub(crate) fn finish(mut self) -> Result<()> {
        if self.rows_written != self.height {
            return Err(self.error(format!(
                "{} of {} rows written",
                self.rows_written, self.height
            )));
        }
        self.pending
            .extend_from_slice(&deflate::zlib_trailer(self.adler));
        let chunk = std::mem::take(&mut self.pending);
        self.writer
            .write_chunk(png::chunk::IDAT, &chunk)
            .map_err(|e| self.error(e))?;
        let name = self.name.clone();
        self.writer.finish().map_err(|e| Error::Write {
            path: name,
            reason: e.to_string(),
        })
    }
}

/// `rows` filtered as PNG stores them: each row its filter type byte, then its bytes less the
/// prediction; `above` is the row before the first.
fn filter_rows(above: &[u8], rows: &[u8], width: usize, compression: Compression) -> Vec<u8> {
    let mut out = vec![0; rows.len() + rows.len() / width];
    let mut previous = above;
    for (row, target) in rows
        .chunks_exact(width)
        .zip(out.chunks_exact_mut(width + 1))
    {
        let (kind, target) = target.split_first_mut().expect("a type byte and the row");
        *kind = match compression {
            Compression::Fast => filter(Predictor::Up, previous, row, target),
            Compression::Default => best_filter(previous, row, target, SAMPLE_EVERY),
            Compression::Small => best_filter(previous, row, target, usize::MAX),
        };
        previous = row;
    }
    out
}

/// `row` less `predictor`'s prediction from it and the row `above`, into `out`; the predictor's
/// type byte.
fn filter(predictor: Predictor, above: &[u8], row: &[u8], out: &mut [u8]) -> u8 {
    // The pixel left of the first is 0, so is the one above-left.
    match predictor {
        Predictor::Sub => {
            out[0] = row[0];
            for ((o, &x), &a) in out[1..].iter_mut().zip(&row[1..]).zip(row) {
                *o = x.wrapping_sub(a);
            }
        }
        Predictor::Up => {
            for ((o, &x), &b) in out.iter_mut().zip(row).zip(above) {
                *o = x.wrapping_sub(b);
            }
        }
        Predictor::Average => {
            out[0] = row[0].wrapping_sub(above[0] / 2);
            for (((o, &x), &a), &b) in out[1..].iter_mut().zip(&row[1..]).zip(row).zip(&above[1..])
            {
                *o = x.wrapping_sub(((u16::from(a) + u16::from(b)) / 2) as u8);
            }
        }
        Predictor::Paeth => {
            // Paeth(0, b, 0) is b.
            out[0] = row[0].wrapping_sub(above[0]);
            for ((((o, &x), &a), &b), &c) in out[1..]
                .iter_mut()
                .zip(&row[1..])
                .zip(row)
                .zip(&above[1..])
                .zip(above)
            {
                *o = x.wrapping_sub(paeth(a, b, c));
            }
        }
    }
    predictor as u8
}

/// The Paeth predictor of the pixel left (`a`), above (`b`) and above-left (`c`), in the form
/// Luca Versari gave for fpnge: on bytes only, without branches, so that it vectorizes.
#[inline(always)]
fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let pa = b.max(c) - b.min(c);
    let pb = a.max(c) - a.min(c);
    // |pa - pb| when c lies between a and b; otherwise larger than both, never chosen.
    let pc = if (a < c) == (c < b) {
        pa.max(pb) - pa.min(pb)
    } else {
        255
    };
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// The row filtered by whichever predictor (or none) leaves the smallest sum of absolute
/// values, the usual estimate of what deflates best (libpng's and the png crate's "adaptive"),
/// the sums taken over runs of [`SAMPLE_RUN`] pixels every `sample_every` (all of a row shorter
/// than two of those), then the chosen filter over the whole row. A sample every
/// [`SAMPLE_EVERY`] chooses as well as the whole row on photos and edge images, at an eighth of
/// the cost (BENCHMARKS.md).
fn best_filter(above: &[u8], row: &[u8], out: &mut [u8], sample_every: usize) -> u8 {
    // |v| of a byte taken as signed: how far from zero a filtered value is.
    let cost = |v: u8| u32::from((v as i8).unsigned_abs());
    let (x, b) = (row[0], above[0]);
    // The first pixel: nothing to its left (a = c = 0).
    let mut sums = [
        cost(x),
        cost(x),
        cost(x.wrapping_sub(b)),
        cost(x.wrapping_sub(b / 2)),
        cost(x.wrapping_sub(b)),
    ];
    let width = row.len();
    // Rows under two samples' length are judged whole.
    let (run, every) = if width / 2 < sample_every {
        (width, width)
    } else {
        (SAMPLE_RUN, sample_every)
    };
    for start in (1..width).step_by(every) {
        let end = (start + run).min(width);
        let (x, a) = (&row[start..end], &row[start - 1..end - 1]);
        let (b, c) = (&above[start..end], &above[start - 1..end - 1]);
        // One simple loop per predictor: each vectorizes, where one loop of five would not.
        sums[0] += x.iter().map(|&x| cost(x)).sum::<u32>();
        sums[1] += x
            .iter()
            .zip(a)
            .map(|(&x, &a)| cost(x.wrapping_sub(a)))
            .sum::<u32>();
        sums[2] += x
            .iter()
            .zip(b)
            .map(|(&x, &b)| cost(x.wrapping_sub(b)))
            .sum::<u32>();
        sums[3] += x
            .iter()
            .zip(a.iter().zip(b))
            .map(|(&x, (&a, &b))| cost(x.wrapping_sub(((u16::from(a) + u16::from(b)) / 2) as u8)))
            .sum::<u32>();
        sums[4] += x
            .iter()
            .zip(a.iter().zip(b.iter().zip(c)))
            .map(|(&x, (&a, (&b, &c)))| cost(x.wrapping_sub(paeth(a, b, c))))
            .sum::<u32>();
    }
    // The first of the smallest, in type order, as libpng breaks ties.
    let best = (0..5).min_by_key(|&i| sums[i]).expect("five sums");
    match best {
        0 => {
            out.copy_from_slice(row);
            0
        }
        1 => filter(Predictor::Sub, above, row, out),
        2 => filter(Predictor::Up, above, row, out),
        3 => filter(Predictor::Average, above, row, out),
        _ => filter(Predictor::Paeth, above, row, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paeth as the PNG specification writes it.
    fn paeth_spec(a: u8, b: u8, c: u8) -> u8 {
        let p = i16::from(a) + i16::from(b) - i16::from(c);
        let (pa, pb, pc) = (
            (p - i16::from(a)).abs(),
            (p - i16::from(b)).abs(),
            (p - i16::from(c)).abs(),
        );
        if pa <= pb && pa <= pc {
            a
        } else if pb <= pc {
            b
        } else {
            c
        }
    }

    #[test]
    fn paeth_without_branches_is_the_specifications() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in (0..=255u8).step_by(3) {
                    assert_eq!(paeth(a, b, c), paeth_spec(a, b, c), "{a} {b} {c}");
                }
            }
        }
    }

    #[test]
    fn every_compression_decodes_to_the_same_pixels_in_one_call_or_many() {
        // Odd sizes, rows in calls of odd counts, bands cut mid-call.
        let (width, height) = (1031u32, 777u32);
        let pixels: Vec<u8> = (0..width * height)
            .map(|i| {
                let (x, y) = (i % width, i / width);
                ((x * 7 + y * 3) / 5 % 256) as u8 ^ if (x + y) % 97 == 0 { 0xa5 } else { 0 }
            })
            .collect();
        for (name, compression) in Compression::ALL {
            for calls in [1usize, 3, 777] {
                let mut file = Vec::new();
                let mut png = PngRows::new(
                    &mut file,
                    width,
                    height,
                    compression,
                    std::path::Path::new("t.png"),
                )
                .unwrap();
                let rows_per_call = (height as usize).div_ceil(calls);
                for rows in pixels.chunks(rows_per_call * width as usize) {
                    png.write_rows(rows).unwrap();
                }
                png.finish().unwrap();
                let decoded = image::load_from_memory_with_format(&file, image::ImageFormat::Png)
                    .unwrap()
                    .into_luma8();
                assert_eq!(decoded.dimensions(), (width, height));
                assert!(decoded.as_raw() == &pixels, "{name}, {calls} calls");
            }
        }
    }
}
