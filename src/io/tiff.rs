//! TIFF read a strip, or a row of tiles, at a time with the `tiff` crate's own API, for every
//! layout gpuconv reads: gray of 1 to 64 bits (unsigned, signed or floating point), palettes,
//! RGB, CMYK and YCbCr with or without extra samples, samples interleaved or in separate
//! planes, in strips or tiles. The `image` crate reads part of this only, so TIFF never goes
//! through it: one reader serves whole images and streamed bands alike.
//!
//! The `tiff` crate refuses a few things that are common in files users have; they are put
//! right here rather than by forking it:
//! - a palette image (it knows no colour maps) is read as its indices, and the map applied here;
//! - a first directory without a PhotometricInterpretation, or that points on to further pages
//!   (a loop among them makes the crate refuse the file), is read through an amended copy of
//!   that one directory ([`Amended`]); only the first page is ever read, as Pillow does;
//! - strips it cannot decode at all (CCITT Group 3, LZMA, bits stored in reverse order, depths
//!   such as 12 bits) are decompressed here from their raw bytes ([`raw_chunk`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::ColorType;
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use super::gray::{luma, sample_16_to_8, sample_float_to_8};
use super::input::{Input, Reader, check_stream, guarded};
use crate::error::{Error, Result};
use crate::rows::RowSource;

/// How a pixel's samples become gray.
enum Colour {
    /// One sample; `white_is_zero` for PhotometricInterpretation 0.
    Gray {
        white_is_zero: bool,
    },
    /// One sample, an index into this table of gray levels (the colour map's luma).
    Palette(Box<[u8; 256]>),
    Rgb,
    Cmyk,
    /// Decoded by JPEG and left in YCbCr by the `tiff` crate.
    YCbCr,
}

impl Colour {
    /// How many of a pixel's samples the rule reads.
    fn samples(&self) -> usize {
        match self {
            Colour::Gray { .. } | Colour::Palette(_) => 1,
            Colour::Rgb | Colour::YCbCr => 3,
            Colour::Cmyk => 4,
        }
    }

    /// A pixel's gray level from its first [`samples`](Self::samples) levels (indices, for a
    /// palette).
    fn gray(&self, levels: &[u8]) -> u8 {
        match self {
            Colour::Gray { white_is_zero } => {
                if *white_is_zero {
                    255 - levels[0]
                } else {
                    levels[0]
                }
            }
            Colour::Palette(table) => table[usize::from(levels[0])],
            Colour::Rgb => luma([levels[0], levels[1], levels[2]]),
            Colour::Cmyk => luma(cmyk_to_rgb([levels[0], levels[1], levels[2], levels[3]])),
            Colour::YCbCr => luma(ycbcr_to_rgb([levels[0], levels[1], levels[2]])),
        }
    }
}

impl Colour {
    /// A row of interleaved pixels of `samples` levels each made gray: [`gray`](Self::gray)
    /// pixel by pixel, with a loop of its own for each rule (the common layouts run at the
    /// speed of a copy).
    fn gray_row(&self, row: &[u8], samples: usize, out: &mut [u8]) {
        let pixels = row.chunks_exact(samples);
        match self {
            Colour::Gray {
                white_is_zero: false,
            } if samples == 1 => out.copy_from_slice(row),
            Colour::Gray {
                white_is_zero: true,
            } if samples == 1 => {
                for (out, &level) in out.iter_mut().zip(row) {
                    *out = 255 - level;
                }
            }
            Colour::Palette(table) if samples == 1 => {
                for (out, &index) in out.iter_mut().zip(row) {
                    *out = table[usize::from(index)];
                }
            }
            Colour::Rgb if samples == 3 => {
                for (out, p) in out.iter_mut().zip(row.chunks_exact(3)) {
                    *out = luma([p[0], p[1], p[2]]);
                }
            }
            Colour::Rgb if samples == 4 => {
                for (out, p) in out.iter_mut().zip(row.chunks_exact(4)) {
                    *out = luma([p[0], p[1], p[2]]);
                }
            }
            _ => {
                let used = self.samples();
                for (out, p) in out.iter_mut().zip(pixels) {
                    *out = self.gray(&p[..used]);
                }
            }
        }
    }
}

/// CMYK to RGB as Pillow converts it: `(255 − k) − c·(255 − k)/255`, the product rounded as
/// its `MULDIV255` rounds it.
fn cmyk_to_rgb([c, m, y, k]: [u8; 4]) -> [u8; 3] {
    let nk = 255 - u32::from(k);
    [c, m, y].map(|v| {
        let product = u32::from(v) * nk + 128;
        (nk - (((product >> 8) + product) >> 8)) as u8
    })
}

/// YCbCr (ITU-R 601, full range, as JPEG stores it) to RGB in libjpeg's fixed point, the
/// conversion Pillow's TIFF reader gets from libtiff.
fn ycbcr_to_rgb([y, cb, cr]: [u8; 3]) -> [u8; 3] {
    const ONE_HALF: i32 = 1 << 15;
    let fix = |x: f64| (x * 65536.0 + 0.5) as i32;
    let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
    let r = y + ((fix(1.402) * cr + ONE_HALF) >> 16);
    let g = y + ((-fix(0.34414) * cb - fix(0.71414) * cr + ONE_HALF) >> 16);
    let b = y + ((fix(1.772) * cb + ONE_HALF) >> 16);
    [r, g, b].map(|v| v.clamp(0, 255) as u8)
}

/// How the samples are stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unsigned,
    Signed,
    Float,
}

/// What the raw path (strips the `tiff` crate cannot decode) needs to know.
struct Raw {
    compression: u16,
    /// FillOrder 2: each byte's bits stored least significant first.
    reversed: bool,
    /// The file's byte order, for samples of 16, 32 or 64 bits.
    little: bool,
    /// The memory budget, for decoders that keep a dictionary (LZMA).
    budget: u64,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

/// One TIFF's first page: its layout, and where the next band comes from.
pub(super) struct TiffRows<R: Read + Seek> {
    path: PathBuf,
    /// The memory budget, for messages.
    budget: u64,
    decoder: Decoder<Amended<R>>,
    width: u32,
    height: u32,
    bits: u8,
    colour: Colour,
    /// Samples a pixel has (interleaved; 1 a plane when planar).
    samples: usize,
    planar: bool,
    /// A strip's or tile's width and height.
    chunk: (u32, u32),
    /// Tiles across the image (1 for strips).
    across: u32,
    chunks_per_plane: u32,
    raw: Option<Raw>,
    /// Whether rows are read straight from uncompressed strips ([`next_rows`](Self::next_rows)).
    direct: bool,
    /// The next row to read straight from the file.
    next_row: u32,
    /// The bytes of the rows read straight from the file.
    read: Vec<u8>,
    /// What decoding a row of strips or tiles holds, in bytes.
    band_bytes: u64,
    /// The Orientation tag's value (1, as stored, where there is none).
    orientation: u16,
    /// The next row of chunks to decode.
    next_band: u32,
    /// Gray rows decoded from the last row of chunks and not yet handed out.
    pending: Vec<u8>,
    handed_out: usize,
}

impl<R: Read + Seek> TiffRows<R> {
    /// Reads a TIFF's first directory and judges its layout, its header and the memory
    /// streaming it takes.
    pub(super) fn open(input: &Input, reader: R) -> Result<Self> {
        let (path, budget) = (input.path, input.limits.max_memory);
        let amended = Amended::new(reader).map_err(|e| tiff_error(path, budget, e))?;
        let bytes = usize::try_from(budget).unwrap_or(usize::MAX);
        let mut limits = Limits::default();
        limits.decoding_buffer_size = bytes;
        limits.intermediate_buffer_size = bytes;
        limits.ifd_value_size = bytes;
        let mut decoder = guarded(path, || Decoder::new(amended))?
            .map_err(|e| tiff_error(path, budget, e))?
            .with_limits(limits);
        let amended = decoder.inner();
        let (amended_from, missing, little) = (
            amended.photometric,
            amended.photometric_missing,
            amended.little,
        );
        let palette = amended_from == Some(3);
        let tag = |decoder: &mut Decoder<Amended<R>>, tag: Tag| {
            guarded(path, || decoder.find_tag_unsigned_vec::<u64>(tag))
                .and_then(|found| found.map_err(|e| tiff_error(path, budget, e)))
        };
        let (width, height) =
            guarded(path, || decoder.dimensions())?.map_err(|e| tiff_error(path, budget, e))?;
        let bits_per_sample = tag(&mut decoder, Tag::BitsPerSample)?.unwrap_or_else(|| vec![1]);
        let samples = tag(&mut decoder, Tag::SamplesPerPixel)?
            .and_then(|v| v.first().copied())
            .unwrap_or(1);
        let sample_format = tag(&mut decoder, Tag::SampleFormat)?
            .and_then(|v| v.first().copied())
            .unwrap_or(1);
        let photometric = match amended_from {
            Some(original) => u64::from(original),
            // Pillow reads 1- to 8-bit integer gray without the tag as WhiteIsZero (the tag's
            // default), deeper and float samples as BlackIsZero.
            None if missing
                && sample_format == 1
                && bits_per_sample.first().is_some_and(|&b| b <= 8) =>
            {
                0
            }
            None if missing => 1,
            None => tag(&mut decoder, Tag::PhotometricInterpretation)?
                .and_then(|v| v.first().copied())
                .unwrap_or(1),
        };
        let compression = tag(&mut decoder, Tag::Compression)?
            .and_then(|v| v.first().copied())
            .unwrap_or(1);
        let planar = tag(&mut decoder, Tag::PlanarConfiguration)?.and_then(|v| v.first().copied())
            == Some(2);
        let fill_order = tag(&mut decoder, Tag::FillOrder)?.and_then(|v| v.first().copied());
        let predictor = tag(&mut decoder, Tag::Predictor)?
            .and_then(|v| v.first().copied())
            .unwrap_or(1);
        let orientation = tag(&mut decoder, Tag::Orientation)?
            .and_then(|v| v.first().copied())
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(1);
        let t4_options = tag(&mut decoder, Tag::Unknown(292))?
            .and_then(|v| v.first().copied())
            .unwrap_or(0);
        if compression == 3 && t4_options & 1 != 0 {
            return Err(unsupported(
                path,
                "CCITT Group 3 two-dimensional compression",
            ));
        }
        let bits = bits_per_sample.first().copied().unwrap_or(1);
        if bits_per_sample.iter().any(|&b| b != bits) {
            return Err(unsupported(path, "samples of different depths"));
        }
        let bits = u8::try_from(bits)
            .ok()
            .filter(|b| (1..=64).contains(b))
            .ok_or_else(|| corrupt(path, format!("its samples claim {bits} bits")))?;
        let kind = match sample_format {
            1 => Kind::Unsigned,
            2 => Kind::Signed,
            3 if matches!(bits, 16 | 32 | 64) => Kind::Float,
            3 => {
                return Err(unsupported(
                    path,
                    &format!("{bits}-bit floating-point samples"),
                ));
            }
            other => return Err(unsupported(path, &format!("sample format {other}"))),
        };
        let colour = match (photometric, palette) {
            (_, true) if bits > 8 || kind != Kind::Unsigned => {
                return Err(unsupported(
                    path,
                    &format!("a palette of {bits}-bit indices"),
                ));
            }
            (_, true) => Colour::Palette(palette_gray(path, &mut decoder, bits)?),
            (0, false) => Colour::Gray {
                white_is_zero: true,
            },
            (1, false) => Colour::Gray {
                white_is_zero: false,
            },
            (2, false) => Colour::Rgb,
            (5, false) => Colour::Cmyk,
            (6, false) if compression == 7 => Colour::YCbCr,
            (6, false) if compression == 6 => {
                return Err(unsupported(path, &compression_name(compression)));
            }
            (6, false) => return Err(unsupported(path, "YCbCr colour without JPEG compression")),
            (4, false) => return Err(unsupported(path, "a transparency mask")),
            (8..=10, false) => return Err(unsupported(path, "CIE L*a*b* colour")),
            (other, false) => {
                return Err(unsupported(
                    path,
                    &format!("photometric interpretation {other}"),
                ));
            }
        };
        let samples = usize::try_from(samples).unwrap_or(usize::MAX);
        if samples < colour.samples() || samples > 64 {
            return Err(corrupt(
                path,
                format!("{samples} samples a pixel do not fit its colours"),
            ));
        }
        let tiles = decoder.get_chunk_type() == ChunkType::Tile;
        let chunk = decoder.chunk_dimensions();
        if chunk.0 == 0 || chunk.1 == 0 {
            return Err(corrupt(path, "its strips or tiles are empty".to_owned()));
        }
        let across = if tiles { width.div_ceil(chunk.0) } else { 1 };
        let rows_of_chunks = height.div_ceil(chunk.1);
        let chunks_per_plane = across.saturating_mul(rows_of_chunks);
        // Depths, bit orders and compressions the `tiff` crate cannot decode.
        let odd_depth = !matches!(bits, 1 | 2 | 4 | 8 | 16 | 32 | 64) && kind == Kind::Unsigned;
        let reversed = fill_order == Some(2);
        // Uncompressed 8-bit strips, interleaved: read a few rows at a time straight from the
        // file, at the speed of a copy, however long the strips (Pillow writes one strip).
        let direct = compression == 1
            && predictor == 1
            && !tiles
            && !planar
            && !reversed
            && bits == 8
            && kind == Kind::Unsigned;
        let raw = if direct || odd_depth || reversed || matches!(compression, 2 | 3 | 34925) {
            if !matches!(compression, 1 | 3 | 4 | 5 | 8 | 32946 | 32773 | 34925) {
                let what = match compression {
                    2 => "CCITT modified Huffman (RLE) compression".to_owned(),
                    other => format!("{} with {bits}-bit samples", compression_name(other)),
                };
                return Err(unsupported(path, &what));
            }
            if predictor != 1 {
                return Err(unsupported(
                    path,
                    "a predictor with bits stored in reverse order",
                ));
            }
            if tiles {
                return Err(unsupported(path, &format!("tiles of {bits}-bit samples")));
            }
            if kind != Kind::Unsigned {
                let what = if reversed {
                    "bits stored in reverse order"
                } else {
                    &compression_name(compression)
                };
                return Err(unsupported(
                    path,
                    &format!("signed or float samples and {what}"),
                ));
            }
            let (offsets_tag, counts_tag) = if tiles {
                (Tag::TileOffsets, Tag::TileByteCounts)
            } else {
                (Tag::StripOffsets, Tag::StripByteCounts)
            };
            let offsets = tag(&mut decoder, offsets_tag)?.unwrap_or_default();
            let counts = tag(&mut decoder, counts_tag)?.unwrap_or_default();
            Some(Raw {
                compression: compression as u16,
                reversed,
                little,
                budget,
                offsets,
                counts,
            })
        } else {
            if !matches!(compression, 1 | 4 | 5 | 7 | 8 | 32946 | 32773) {
                return Err(unsupported(path, &compression_name(compression)));
            }
            None
        };
        // What a row of chunks holds decoded, each plane read counted: the decoder's line.
        let planes = if planar { colour.samples() } else { 1 };
        let chunk_bytes = (u64::from(chunk.0) * u64::from(across))
            .saturating_mul(u64::from(chunk.1.min(height)))
            .saturating_mul(if planar { 1 } else { samples as u64 })
            .saturating_mul(u64::from(bits).div_ceil(8).max(1))
            .saturating_mul(planes as u64 + 1);
        let row_bytes = u64::from(width) * samples as u64;
        let chunk_bytes = if direct {
            // The rows read, and their gray.
            2 * direct_rows(row_bytes, height) * row_bytes
        } else {
            chunk_bytes
        };
        let line_bytes = usize::try_from(chunk_bytes).unwrap_or(usize::MAX);
        check_stream(input, width, height, ColorType::L8, line_bytes)?;
        Ok(Self {
            path: path.to_owned(),
            budget,
            decoder,
            width,
            height,
            bits,
            colour,
            samples: if planar { 1 } else { samples },
            planar,
            chunk,
            across,
            chunks_per_plane,
            raw,
            direct,
            next_row: 0,
            read: Vec::new(),
            band_bytes: chunk_bytes,
            orientation,
            next_band: 0,
            pending: Vec::new(),
            handed_out: 0,
        })
    }

    /// The width of the image.
    pub(super) fn width(&self) -> u32 {
        self.width
    }

    /// The height of the image.
    pub(super) fn height(&self) -> u32 {
        self.height
    }

    /// The depth of its samples, in bits.
    pub(super) fn bits(&self) -> u8 {
        self.bits
    }

    /// How the image is turned, by its Orientation tag (as stored where it has none or an
    /// unknown one).
    pub(super) fn orientation(&self) -> image::metadata::Orientation {
        u8::try_from(self.orientation)
            .ok()
            .and_then(image::metadata::Orientation::from_exif)
            .unwrap_or(image::metadata::Orientation::NoTransforms)
    }

    /// What decoding a row of strips or tiles holds, in bytes.
    pub(super) fn band_bytes(&self) -> u64 {
        self.band_bytes
    }

    /// The next rows, whole, into `rows`.
    pub(super) fn fill(&mut self, rows: &mut [u8]) -> Result<()> {
        let mut filled = 0;
        while filled < rows.len() {
            if self.handed_out == self.pending.len() {
                self.next_band()?;
            }
            let take = (rows.len() - filled).min(self.pending.len() - self.handed_out);
            rows[filled..filled + take]
                .copy_from_slice(&self.pending[self.handed_out..self.handed_out + take]);
            filled += take;
            self.handed_out += take;
        }
        Ok(())
    }

    /// Decodes one strip or tile (of one plane) to a level per sample, with its width and
    /// height.
    fn chunk_levels(&mut self, index: u32) -> Result<(Vec<u8>, u32, u32)> {
        let (path, budget) = (&self.path, self.budget);
        let decoder = &mut self.decoder;
        let (width, height) = guarded(path, || decoder.chunk_data_dimensions(index))?;
        let result = match &self.raw {
            Some(raw) => raw_chunk(
                path,
                decoder,
                raw,
                index,
                (width, height),
                self.bits,
                self.samples,
            )?,
            None => guarded(path, || decoder.read_chunk(index))?
                .map_err(|e| tiff_error(path, budget, e))?,
        };
        let row_samples = width as usize * self.samples;
        let indices = matches!(self.colour, Colour::Palette(_));
        let levels = levels(result, self.bits, indices, row_samples, height as usize)
            .ok_or_else(|| corrupt(path, "a strip or tile does not hold its samples".to_owned()))?;
        Ok((levels, width, height))
    }

    /// Reads the next few rows of uncompressed strips straight from the file into gray rows.
    fn next_rows(&mut self) -> Result<()> {
        let row_bytes = self.width as usize * self.samples;
        let first = self.next_row;
        let rows = direct_rows(row_bytes as u64, self.height - first) as u32;
        let raw = self
            .raw
            .as_ref()
            .expect("direct reading keeps the strips' offsets");
        self.read.resize(rows as usize * row_bytes, 0);
        let strip_rows = self.chunk.1;
        let mut done = 0;
        while done < rows {
            let row = first + done;
            let (strip, in_strip) = ((row / strip_rows) as usize, row % strip_rows);
            let n = (strip_rows - in_strip).min(rows - done);
            let (Some(&offset), Some(&count)) = (raw.offsets.get(strip), raw.counts.get(strip))
            else {
                return Err(corrupt(
                    &self.path,
                    "a strip has no offset or length".to_owned(),
                ));
            };
            let start = u64::from(in_strip) * row_bytes as u64;
            let length = u64::from(n) * row_bytes as u64;
            if count < start + length {
                return Err(Input::cut_short(&self.path));
            }
            let file = self.decoder.inner();
            let into = &mut self.read[done as usize * row_bytes..(done + n) as usize * row_bytes];
            file.seek(SeekFrom::Start(offset.saturating_add(start)))
                .and_then(|_| file.read_exact(into))
                .map_err(|e| Input::read_failure(&self.path, e))?;
            done += n;
        }
        let width = self.width as usize;
        self.pending.resize(width * rows as usize, 0);
        for (row, out) in self
            .read
            .chunks_exact(row_bytes)
            .zip(self.pending.chunks_exact_mut(width))
        {
            self.colour.gray_row(row, self.samples, out);
        }
        self.pending.truncate(width * rows as usize);
        self.handed_out = 0;
        self.next_row += rows;
        Ok(())
    }

    /// Decodes the next row of strips or tiles into gray rows.
    fn next_band(&mut self) -> Result<()> {
        if self.direct {
            return self.next_rows();
        }
        let band = self.next_band;
        let used = self.colour.samples();
        let band_height = self.chunk.1.min(self.height - band * self.chunk.1);
        let width = self.width as usize;
        self.pending.clear();
        self.pending.resize(width * band_height as usize, 0);
        let mut pixel = [0u8; 4];
        for column in 0..self.across {
            let index = band * self.across + column;
            let mut planes = Vec::with_capacity(if self.planar { used } else { 1 });
            for plane in 0..if self.planar { used } else { 1 } {
                let plane_index = index
                    .checked_add(plane as u32 * self.chunks_per_plane)
                    .ok_or_else(|| corrupt(&self.path, "too many planes".to_owned()))?;
                planes.push(self.chunk_levels(plane_index)?);
            }
            // The `tiff` crate gives a later plane's bottom tiles their whole height (it takes
            // them for inner tiles); the rows beyond the image are not read.
            let (_, chunk_width, _) = planes[0];
            if planes
                .iter()
                .any(|(_, w, h)| *w != chunk_width || *h < band_height)
            {
                return Err(corrupt(
                    &self.path,
                    "its strips or tiles disagree in size".to_owned(),
                ));
            }
            let x0 = (column * self.chunk.0) as usize;
            let visible = (chunk_width as usize).min(width.saturating_sub(x0));
            let chunk_width = chunk_width as usize;
            for y in 0..band_height as usize {
                let out = &mut self.pending[y * width + x0..y * width + x0 + visible];
                if self.planar {
                    for (x, out) in out.iter_mut().enumerate() {
                        for (p, (plane, _, _)) in planes.iter().enumerate() {
                            pixel[p] = plane[y * chunk_width + x];
                        }
                        *out = self.colour.gray(&pixel[..used]);
                    }
                } else {
                    let start = y * chunk_width * self.samples;
                    let row = &planes[0].0[start..start + visible * self.samples];
                    self.colour.gray_row(row, self.samples, out);
                }
            }
        }
        self.handed_out = 0;
        self.next_band += 1;
        Ok(())
    }
}

impl<R: Reader> RowSource for TiffRows<R> {
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

/// How many rows of `row_bytes` uncompressed strips are read at a time: about 1 MiB, at least
/// one, at most the `left` still to read.
fn direct_rows(row_bytes: u64, left: u32) -> u64 {
    ((1 << 20) / row_bytes.max(1)).clamp(1, u64::from(left.max(1)))
}

/// A chunk's samples as 8-bit levels, `rows` rows of `row_samples` each: n-bit unsigned samples
/// scaled as `round(v · 255 / (2ⁿ − 1))` (16 bits: [`sample_16_to_8`]), signed ones with
/// negatives at 0 and the positive range scaled the same way, floating point by
/// [`sample_float_to_8`]. Palette `indices` are kept as they are. `None` when the chunk is
/// shorter than its rows.
fn levels(
    result: DecodingResult,
    bits: u8,
    indices: bool,
    row_samples: usize,
    rows: usize,
) -> Option<Vec<u8>> {
    let count = row_samples.checked_mul(rows)?;
    if count == 0 {
        return Some(Vec::new());
    }
    let max = |bits: u8| u64::MAX.checked_shr(64 - u32::from(bits)).unwrap_or(0);
    let scale = |v: u64, max: u64| {
        ((u128::from(v.min(max)) * 255 + u128::from(max) / 2) / u128::from(max)) as u8
    };
    let signed = |v: i64| scale(v.max(0) as u64, max(bits.saturating_sub(1)).max(1));
    let take = |n: usize| (n >= count).then_some(());
    Some(match result {
        DecodingResult::U8(bytes) if bits == 8 => {
            take(bytes.len())?;
            let mut bytes = bytes;
            bytes.truncate(count);
            bytes
        }
        DecodingResult::U8(bytes) => {
            // Packed rows, each starting on a byte, most significant bits first.
            let row_bytes = (row_samples * usize::from(bits)).div_ceil(8);
            take(bytes.len() / row_bytes.max(1) * row_samples)?;
            let mask = max(bits) as u8;
            let mut out = Vec::with_capacity(count);
            for row in bytes.chunks_exact(row_bytes).take(rows) {
                for i in 0..row_samples {
                    let bit = i * usize::from(bits);
                    // A sample of 3, 5, 6 or 7 bits may cross into the next byte.
                    let window = u16::from(row[bit / 8]) << 8
                        | u16::from(row.get(bit / 8 + 1).copied().unwrap_or(0));
                    let v = (window >> (16 - usize::from(bits) - bit % 8)) as u8 & mask;
                    out.push(if indices {
                        v
                    } else {
                        scale(u64::from(v), u64::from(mask))
                    });
                }
            }
            out
        }
        DecodingResult::U16(words) => {
            take(words.len())?;
            let top = max(bits);
            words[..count]
                .iter()
                .map(|&v| {
                    if bits == 16 {
                        sample_16_to_8(v)
                    } else {
                        scale(u64::from(v), top)
                    }
                })
                .collect()
        }
        DecodingResult::U32(words) => {
            take(words.len())?;
            words[..count]
                .iter()
                .map(|&v| scale(u64::from(v), max(bits)))
                .collect()
        }
        DecodingResult::U64(words) => {
            take(words.len())?;
            words[..count]
                .iter()
                .map(|&v| scale(v, max(bits)))
                .collect()
        }
        DecodingResult::I8(v) => {
            take(v.len())?;
            v[..count].iter().map(|&v| signed(i64::from(v))).collect()
        }
        DecodingResult::I16(v) => {
            take(v.len())?;
            v[..count].iter().map(|&v| signed(i64::from(v))).collect()
        }
        DecodingResult::I32(v) => {
            take(v.len())?;
            v[..count].iter().map(|&v| signed(i64::from(v))).collect()
        }
        DecodingResult::I64(v) => {
            take(v.len())?;
            v[..count].iter().map(|&v| signed(v)).collect()
        }
        DecodingResult::F16(v) => {
            take(v.len())?;
            v[..count]
                .iter()
                .map(|&v| sample_float_to_8(f64::from(v)))
                .collect()
        }
        DecodingResult::F32(v) => {
            take(v.len())?;
            v[..count]
                .iter()
                .map(|&v| sample_float_to_8(f64::from(v)))
                .collect()
        }
        DecodingResult::F64(v) => {
            take(v.len())?;
            v[..count].iter().map(|&v| sample_float_to_8(v)).collect()
        }
    })
}

/// The gray level of each palette index: the luma of its colour-map entry made 8-bit by its
/// high byte, as Pillow reads it (libtiff would take a map with no value above 255 for an
/// 8-bit one; Pillow does not).
fn palette_gray<R: Read + Seek>(
    path: &Path,
    decoder: &mut Decoder<R>,
    bits: u8,
) -> Result<Box<[u8; 256]>> {
    let map = guarded(path, || decoder.get_tag_u16_vec(Tag::ColorMap))?
        .map_err(|_| corrupt(path, "its palette has no colour map".to_owned()))?;
    let entries = 1usize << bits;
    if map.len() < 3 * entries {
        return Err(corrupt(
            path,
            format!("its colour map holds fewer than {entries} colours"),
        ));
    }
    let level = |v: u16| (v >> 8) as u8;
    let mut table = Box::new([0u8; 256]);
    for (i, gray) in table.iter_mut().enumerate().take(entries) {
        *gray = luma([map[i], map[entries + i], map[2 * entries + i]].map(level));
    }
    Ok(table)
}

/// A strip or tile decoded here from its raw bytes: bits reversed where FillOrder says so, then
/// decompressed (none, LZW, Deflate, PackBits, LZMA, CCITT Group 3 or 4), as packed bytes (depths up
/// to 8) or one word per sample (deeper, unpacked from their bit stream).
fn raw_chunk<R: Read + Seek>(
    path: &Path,
    decoder: &mut Decoder<R>,
    raw: &Raw,
    index: u32,
    (width, height): (u32, u32),
    bits: u8,
    samples: usize,
) -> Result<DecodingResult> {
    let i = index as usize;
    let (Some(&offset), Some(&count)) = (raw.offsets.get(i), raw.counts.get(i)) else {
        return Err(corrupt(
            path,
            "a strip or tile has no offset or length".to_owned(),
        ));
    };
    let row_samples = width as usize * samples;
    let row_bytes = (row_samples * usize::from(bits)).div_ceil(8);
    if row_bytes == 0 || height == 0 {
        return Err(corrupt(path, "a strip is empty".to_owned()));
    }
    let expected = row_bytes
        .checked_mul(height as usize)
        .ok_or_else(|| corrupt(path, "a strip is too large".to_owned()))?;
    // No strip's compressed bytes exceed what the file holds; what they decompress to is cut
    // at what the strip needs.
    let mut data = Vec::new();
    let inner = decoder.inner();
    inner
        .seek(SeekFrom::Start(offset))
        .and_then(|_| inner.take(count).read_to_end(&mut data))
        .map_err(|e| Input::read_failure(path, e))?;
    if (data.len() as u64) < count {
        return Err(Input::cut_short(path));
    }
    if raw.reversed {
        for byte in &mut data {
            *byte = byte.reverse_bits();
        }
    }
    let short = || Input::cut_short(path);
    let mut bytes = match raw.compression {
        1 => data,
        5 => {
            // Decoded into what the strip needs and no further, whatever the data claims.
            let mut out = vec![0; expected];
            let mut lzw = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
            let (mut input, mut filled) = (data.as_slice(), 0);
            while filled < expected {
                let step = lzw.decode_bytes(input, &mut out[filled..]);
                filled += step.consumed_out;
                input = &input[step.consumed_in..];
                match step.status {
                    Ok(weezl::LzwStatus::Ok) if step.consumed_in + step.consumed_out > 0 => {}
                    Ok(_) => break,
                    Err(e) => return Err(corrupt(path, format!("its LZW data is damaged ({e})"))),
                }
            }
            out.truncate(filled);
            out
        }
        8 | 32946 => {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(data.as_slice())
                .take(expected as u64)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(path, format!("its Deflate data is damaged ({e})")))?;
            out
        }
        32773 => unpack_bits(&data, expected),
        // libtiff writes LZMA strips as .xz streams.
        34925 => {
            let mut out = Vec::new();
            // The decoder's dictionary counted against the budget, in KiB.
            let limit = u32::try_from(raw.budget / 1024).unwrap_or(u32::MAX);
            lzma_rust2::XzReader::new_mem_limit(data.as_slice(), false, limit)
                .take(expected as u64)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(path, format!("its LZMA data is damaged ({e})")))?;
            out
        }
        3 | 4 => {
            let fax_width = u16::try_from(width)
                .map_err(|_| unsupported(path, "CCITT fax rows wider than 65535 pixels"))?;
            let mut out = Vec::with_capacity(expected);
            let mut line = |transitions: &[u16]| {
                if out.len() < expected {
                    let mut row = vec![0u8; row_bytes];
                    for (x, colour) in fax::decoder::pels(transitions, fax_width).enumerate() {
                        if colour == fax::Color::Black {
                            row[x / 8] |= 0x80 >> (x % 8);
                        }
                    }
                    out.extend_from_slice(&row);
                }
            };
            // Group 3 lines end in EOL codes, and the fax crate loses a last line with none
            // after it: an RTC (six EOLs) after the data ends the page whatever the writer did.
            let rtc = [0x00, 0x10, 0x01].repeat(3);
            let tail = if raw.compression == 3 {
                &rtc[..]
            } else {
                &[][..]
            };
            let bytes = data.iter().chain(tail).copied();
            let decoded = if raw.compression == 4 {
                let rows = u16::try_from(height).ok();
                fax::decoder::decode_g4(bytes, fax_width, rows, &mut line)
            } else {
                fax::decoder::decode_g3(bytes, &mut line)
            };
            if decoded.is_none() && out.len() < expected {
                return Err(corrupt(path, "its CCITT fax data is damaged".to_owned()));
            }
            out
        }
        _ => unreachable!("compressions are checked when the file is opened"),
    };
    if bytes.len() < expected {
        return Err(short());
    }
    bytes.truncate(expected);
    if bits <= 8 {
        // Fax "black" is a 1 bit, which WhiteIsZero (as fax TIFFs are) reads as black.
        return Ok(DecodingResult::U8(bytes));
    }
    let mut words = Vec::with_capacity(row_samples * height as usize);
    if bits.is_multiple_of(8) {
        // Whole bytes: in the file's byte order.
        for sample in bytes.chunks_exact(usize::from(bits / 8)) {
            let mut v = 0u64;
            for i in 0..sample.len() {
                let byte = if raw.little {
                    sample[sample.len() - 1 - i]
                } else {
                    sample[i]
                };
                v = (v << 8) | u64::from(byte);
            }
            words.push(v);
        }
    }
    // Other depths are one bit stream, most significant bit first, each row on a byte.
    for row in bytes
        .chunks_exact(row_bytes)
        .filter(|_| !bits.is_multiple_of(8))
    {
        let mut bit = 0usize;
        for _ in 0..row_samples {
            let mut v = 0u64;
            for _ in 0..bits {
                v = (v << 1) | u64::from((row[bit / 8] >> (7 - bit % 8)) & 1);
                bit += 1;
            }
            words.push(v);
        }
    }
    Ok(if bits <= 16 {
        DecodingResult::U16(words.into_iter().map(|v| v as u16).collect())
    } else if bits <= 32 {
        DecodingResult::U32(words.into_iter().map(|v| v as u32).collect())
    } else {
        DecodingResult::U64(words)
    })
}

/// PackBits (Apple's run-length coding), stopping at `limit` bytes.
fn unpack_bits(data: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    let mut i = 0;
    while i < data.len() && out.len() < limit {
        let n = data[i] as i8;
        i += 1;
        if n >= 0 {
            let end = (i + n as usize + 1).min(data.len());
            out.extend_from_slice(&data[i..end]);
            i = end;
        } else if n != -128 {
            if let Some(&byte) = data.get(i) {
                out.extend(std::iter::repeat_n(byte, (1 - isize::from(n)) as usize));
            }
            i += 1;
        }
    }
    out
}

/// A compression's name, for messages.
fn compression_name(code: u64) -> String {
    match code {
        2 => "CCITT modified Huffman (RLE) compression".to_owned(),
        6 => "old-style JPEG compression".to_owned(),
        34925 => "LZMA compression".to_owned(),
        50000 | 34926 => "Zstandard compression".to_owned(),
        50001 | 34927 => "WebP compression".to_owned(),
        34712 | 33003 | 33005 => "JPEG 2000 compression".to_owned(),
        other => format!("compression method {other}"),
    }
}

fn unsupported(path: &Path, what: &str) -> Error {
    Error::Unsupported {
        path: path.to_owned(),
        what: format!("TIFF with {what}"),
    }
}

fn corrupt(path: &Path, detail: String) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        detail,
    }
}

/// A `tiff` crate error as what it means to a user.
fn tiff_error(path: &Path, budget: u64, error: tiff::TiffError) -> Error {
    use tiff::TiffError;
    match error {
        TiffError::IoError(e) => Input::read_failure(path, e),
        TiffError::LimitsExceeded => Error::DecoderOverBudget {
            path: path.to_owned(),
            budget,
        },
        TiffError::UnsupportedError(e) => unsupported(path, &e.to_string()),
        other => {
            let detail = other.to_string();
            if detail == "Decode Error" {
                // The fax decoder's only words.
                corrupt(path, "its CCITT fax data is damaged".to_owned())
            } else if detail.contains("fill whole buffer") {
                Input::cut_short(path)
            } else {
                corrupt(path, detail)
            }
        }
    }
}

/// The file with its first directory amended where the `tiff` crate would refuse it: read
/// through here, the file's first directory is a copy placed after its end, with no next
/// directory, a PhotometricInterpretation (BlackIsZero where none is given) and a palette's
/// photometric interpretation made BlackIsZero, so that the crate reads a palette's indices as
/// gray ([`palette`](Self::palette) remembers it was one). Every other byte is the file's own,
/// and the file itself is never written.
struct Amended<R> {
    inner: R,
    position: u64,
    /// Where the amended directory starts, [`GAP`] after the file's end.
    start: u64,
    /// The file's length.
    end: u64,
    /// The header's bytes with the first directory's offset changed (empty: nothing amended).
    header: Vec<u8>,
    /// The amended directory.
    directory: Vec<u8>,
    /// The photometric interpretation the directory had where it was changed to BlackIsZero:
    /// WhiteIsZero (0), which the crate would invert for some sample types only, and palette
    /// (3), which it refuses.
    photometric: Option<u16>,
    /// Whether the directory had no PhotometricInterpretation (one was added).
    photometric_missing: bool,
    /// Whether the file is little-endian, for samples read from raw bytes.
    little: bool,
    /// Where the file is positioned, to seek only when a read jumps (a buffered reader drops
    /// its buffer on every seek).
    inner_position: u64,
}

impl<R: Read + Seek> Amended<R> {
    fn new(mut inner: R) -> std::result::Result<Self, tiff::TiffError> {
        let end = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        let mut amended = Self {
            inner,
            position: 0,
            end,
            start: end,
            header: Vec::new(),
            directory: Vec::new(),
            photometric: None,
            photometric_missing: false,
            little: true,
            inner_position: 0,
        };
        // A header or directory that cannot be parsed here is left to the crate to judge.
        let _ = amended.amend();
        amended.inner.seek(SeekFrom::Start(0))?;
        amended.inner_position = 0;
        Ok(amended)
    }

    fn amend(&mut self) -> std::io::Result<()> {
        let mut head = [0u8; 16];
        self.inner.read_exact(&mut head[..8])?;
        let little = match &head[..2] {
            b"II" => true,
            b"MM" => false,
            _ => return Ok(()),
        };
        self.little = little;
        let u16_at = |b: &[u8]| {
            let b = [b[0], b[1]];
            if little {
                u16::from_le_bytes(b)
            } else {
                u16::from_be_bytes(b)
            }
        };
        let uint = |b: &[u8]| -> u64 {
            let mut v = 0u64;
            for i in 0..b.len() {
                let byte = if little { b[b.len() - 1 - i] } else { b[i] };
                v = (v << 8) | u64::from(byte);
            }
            v
        };
        let big = match u16_at(&head[2..4]) {
            42 => false,
            43 => true,
            _ => return Ok(()),
        };
        let (header_len, count_len, entry_len, value_at) = if big {
            self.inner.read_exact(&mut head[8..16])?;
            (16, 8, 20, 12)
        } else {
            (8, 2, 12, 8)
        };
        let first = if big {
            uint(&head[8..16])
        } else {
            uint(&head[4..8])
        };
        self.inner.seek(SeekFrom::Start(first))?;
        let mut count_bytes = vec![0u8; count_len];
        self.inner.read_exact(&mut count_bytes)?;
        let count = uint(&count_bytes);
        if count == 0 || count > 4096 {
            return Ok(());
        }
        let mut entries = vec![0u8; count as usize * entry_len];
        self.inner.read_exact(&mut entries)?;
        let mut next = vec![0u8; if big { 8 } else { 4 }];
        self.inner.read_exact(&mut next)?;
        let mut rows: Vec<Vec<u8>> = entries
            .chunks_exact(entry_len)
            .map(<[u8]>::to_vec)
            .collect();
        // An entry's single value by its type (SHORT, LONG or LONG8); where a tag is given
        // twice, the crate reads the last.
        let value_of = |e: &[u8]| match u16_at(&e[2..4]) {
            3 => u64::from(u16_at(&e[value_at..value_at + 2])),
            4 => uint(&e[value_at..value_at + 4]),
            16 if big => uint(&e[value_at..value_at + 8]),
            _ => u64::MAX,
        };
        let photometric = rows.iter().rposition(|e| u16_at(&e[..2]) == 262);
        let mut changed = uint(&next) != 0;
        let mut photometric_was = None;
        let mut photometric_missing = false;
        // BitsPerSample with more values than SamplesPerPixel (GIMP wrote such files): only
        // the first values are read, as libtiff reads them, while they stay out of line.
        let value_bytes = value_at - 4;
        let samples = rows
            .iter()
            .rfind(|e| u16_at(&e[..2]) == 277)
            .map(|e| value_of(e))
            .filter(|&v| v != u64::MAX);
        if let (Some(samples), Some(bits)) =
            (samples, rows.iter_mut().find(|e| u16_at(&e[..2]) == 258))
        {
            let count = uint(&bits[4..value_at]);
            if count > samples && samples * 2 > value_bytes as u64 {
                let mut new_count = samples.to_le_bytes()[..value_at - 4].to_vec();
                if !little {
                    new_count.reverse();
                }
                bits[4..value_at].copy_from_slice(&new_count);
                changed = true;
            }
        }
        // PhotometricInterpretation as one SHORT: BlackIsZero.
        let black_is_zero = || {
            let mut entry = vec![0u8; entry_len];
            let put16 = |v: u16| {
                if little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                }
            };
            entry[..2].copy_from_slice(&put16(262));
            entry[2..4].copy_from_slice(&put16(3));
            let mut one_count = if big {
                1u64.to_le_bytes().to_vec()
            } else {
                1u32.to_le_bytes().to_vec()
            };
            if !little {
                one_count.reverse();
            }
            entry[4..value_at].copy_from_slice(&one_count);
            entry[value_at..value_at + 2].copy_from_slice(&put16(1));
            entry
        };
        match photometric {
            Some(i) => {
                let value = value_of(&rows[i]);
                // Both read as BlackIsZero, and turned into gray here.
                if matches!(value, 0 | 3) {
                    photometric_was = Some(value as u16);
                    rows[i] = black_is_zero();
                    changed = true;
                }
            }
            None => {
                let at = rows
                    .iter()
                    .position(|e| u16_at(&e[..2]) > 262)
                    .unwrap_or(rows.len());
                rows.insert(at, black_is_zero());
                photometric_missing = true;
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        // The copy starts a gap after the file's end, on a word boundary: a strip that runs
        // on past the end meets the end of the file there, not the copy.
        let start = (self.end + GAP).next_multiple_of(2);
        let mut directory = Vec::new();
        let rows_count = rows.len() as u64;
        let mut count_out = if big {
            rows_count.to_le_bytes().to_vec()
        } else {
            (rows_count as u16).to_le_bytes().to_vec()
        };
        if !little {
            count_out.reverse();
        }
        directory.extend_from_slice(&count_out);
        for row in rows {
            directory.extend_from_slice(&row);
        }
        directory.extend(std::iter::repeat_n(0, if big { 8 } else { 4 }));
        let mut header = head[..header_len].to_vec();
        let mut offset = if big {
            start.to_le_bytes().to_vec()
        } else {
            u32::try_from(start)
                .map_err(|_| std::io::ErrorKind::InvalidData)?
                .to_le_bytes()
                .to_vec()
        };
        if !little {
            offset.reverse();
        }
        let at = if big { 8 } else { 4 };
        header[at..at + offset.len()].copy_from_slice(&offset);
        self.header = header;
        self.start = start;
        // Only once the copy is in place: a palette's indices are read as gray through it.
        self.photometric = photometric_was;
        self.photometric_missing = photometric_missing;
        self.directory = directory;
        Ok(())
    }
}

/// The bytes between a file's end and its amended directory, which read as the end of the file.
const GAP: u64 = 1 << 16;

impl<R: Read + Seek> Read for Amended<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let position = self.position;
        let n = if position >= self.end {
            // Nothing in the gap; the copy after it.
            let tail = match position.checked_sub(self.start) {
                Some(at) => self.directory.get(at as usize..).unwrap_or_default(),
                None => &[][..],
            };
            let n = tail.len().min(buf.len());
            buf[..n].copy_from_slice(&tail[..n]);
            n
        } else {
            let want = buf.len().min((self.end - position) as usize);
            if self.inner_position != position {
                self.inner.seek(SeekFrom::Start(position))?;
            }
            let n = self.inner.read(&mut buf[..want])?;
            self.inner_position = position + n as u64;
            // The amended header over the file's own.
            if (position as usize) < self.header.len() {
                let from = position as usize;
                let to = (from + n).min(self.header.len());
                buf[..to - from].copy_from_slice(&self.header[from..to]);
            }
            n
        };
        self.position += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Amended<R> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let length = if self.directory.is_empty() {
            self.end
        } else {
            self.start + self.directory.len() as u64
        };
        let position = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => length.checked_add_signed(d),
            SeekFrom::Current(d) => self.position.checked_add_signed(d),
        };
        self.position = position.ok_or(std::io::ErrorKind::InvalidInput)?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{ReadLimits, decode_gray};

    /// A little-endian TIFF of one page: `entries` as (tag, type, values), each strip's bytes
    /// placed after the directory and StripOffsets/StripByteCounts added for them; `next`: the
    /// next directory's offset (8: the directory itself, a loop).
    fn tiff(entries: &[(u16, u16, Vec<u32>)], strips: &[Vec<u8>], next: u32) -> Vec<u8> {
        let mut entries = entries.to_vec();
        let count = entries.len() + 2;
        let directory_end = 8 + 2 + 12 * count + 4;
        // Out-of-line values, then strips.
        let mut extra = Vec::new();
        let mut strip_offsets = Vec::new();
        let out_of_line = |values: &[u32], kind: u16, extra: &mut Vec<u8>| -> Option<u32> {
            let bytes: Vec<u8> = values
                .iter()
                .flat_map(|&v| {
                    if kind == 3 {
                        (v as u16).to_le_bytes().to_vec()
                    } else {
                        v.to_le_bytes().to_vec()
                    }
                })
                .collect();
            (bytes.len() > 4).then(|| {
                let at = (directory_end + extra.len()) as u32;
                extra.extend_from_slice(&bytes);
                at
            })
        };
        let mut offsets_at = Vec::new();
        for strip in strips {
            offsets_at.push(strip.len() as u32);
        }
        entries.push((279, 4, offsets_at));
        entries.push((273, 4, vec![0; strips.len()]));
        entries.sort_by_key(|e| e.0);
        // Strips go after every out-of-line value: lay out the values first.
        let mut fields = Vec::new();
        for (tag, kind, values) in &entries {
            let at = if *tag == 273 {
                None
            } else {
                out_of_line(values, *kind, &mut extra)
            };
            fields.push((*tag, *kind, values.clone(), at));
        }
        let mut at = (directory_end + extra.len()) as u32;
        if strips.len() > 1 {
            at += 4 * strips.len() as u32;
        }
        for strip in strips {
            strip_offsets.push(at);
            at += strip.len() as u32;
        }
        let mut file = b"II*\0".to_vec();
        file.extend_from_slice(&8u32.to_le_bytes());
        file.extend_from_slice(&(count as u16).to_le_bytes());
        let mut offsets_table = None;
        for (tag, kind, values, out) in &fields {
            let values = if *tag == 273 { &strip_offsets } else { values };
            file.extend_from_slice(&tag.to_le_bytes());
            file.extend_from_slice(&kind.to_le_bytes());
            file.extend_from_slice(&(values.len() as u32).to_le_bytes());
            let mut value = [0u8; 4];
            match (out, *tag == 273 && values.len() > 1) {
                (_, true) => {
                    let place = (directory_end + extra.len()) as u32;
                    value = place.to_le_bytes();
                    offsets_table = Some(values.clone());
                }
                (Some(at), false) => value = at.to_le_bytes(),
                (None, false) if *kind == 3 => {
                    for (i, v) in values.iter().enumerate() {
                        value[2 * i..2 * i + 2].copy_from_slice(&(*v as u16).to_le_bytes());
                    }
                }
                (None, false) => value = values[0].to_le_bytes(),
            }
            file.extend_from_slice(&value);
        }
        file.extend_from_slice(&next.to_le_bytes());
        file.extend_from_slice(&extra);
        if let Some(table) = offsets_table {
            for v in table {
                file.extend_from_slice(&v.to_le_bytes());
            }
        }
        for strip in strips {
            file.extend_from_slice(strip);
        }
        file
    }

    fn random(n: usize, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect()
    }

    fn read(file: &[u8]) -> crate::Result<image::GrayImage> {
        decode_gray(file, Path::new("test.tif"), &ReadLimits::default())
    }

    const W: u32 = 7;
    const H: u32 = 5;

    fn size() -> Vec<(u16, u16, Vec<u32>)> {
        vec![(256, 3, vec![W]), (257, 3, vec![H]), (278, 3, vec![H])]
    }

    #[test]
    fn low_depths_scale_to_the_full_range_either_way_round() {
        for (bits, white_is_zero) in [(2u32, false), (4, false), (4, true), (1, true)] {
            let values: Vec<u8> = random((W * H) as usize, bits)
                .iter()
                .map(|v| v >> (8 - bits))
                .collect();
            // Pack each row from its first bit.
            let row_bytes = (W * bits).div_ceil(8) as usize;
            let mut strip = vec![0u8; row_bytes * H as usize];
            for (i, &v) in values.iter().enumerate() {
                let (y, x) = (i / W as usize, i % W as usize);
                let bit = x * bits as usize;
                strip[y * row_bytes + bit / 8] |= v << (8 - bits as usize - bit % 8);
            }
            let mut entries = size();
            entries.extend([
                (258, 3, vec![bits]),
                (262, 3, vec![u32::from(!white_is_zero)]),
            ]);
            let gray = read(&tiff(&entries, &[strip], 0)).unwrap();
            let max = (1u32 << bits) - 1;
            let expected: Vec<u8> = values
                .iter()
                .map(|&v| {
                    let level = (u32::from(v) * 255 / max) as u8;
                    if white_is_zero { 255 - level } else { level }
                })
                .collect();
            assert_eq!(
                gray.as_raw(),
                &expected,
                "{bits} bits, white is zero: {white_is_zero}"
            );
        }
    }

    #[test]
    fn samples_that_cross_bytes_and_strips_cut_short_behind_an_amended_directory() {
        // 3-bit gray: samples straddle byte boundaries.
        let values: Vec<u8> = random((W * H) as usize, 15)
            .iter()
            .map(|v| v >> 5)
            .collect();
        let row_bytes = (W * 3).div_ceil(8) as usize;
        let mut strip = vec![0u8; row_bytes * H as usize];
        for (i, &v) in values.iter().enumerate() {
            let (y, x) = (i / W as usize, i % W as usize);
            for k in 0..3 {
                if v & (4 >> k) != 0 {
                    let bit = x * 3 + k;
                    strip[y * row_bytes + bit / 8] |= 0x80 >> (bit % 8);
                }
            }
        }
        let mut entries = size();
        entries.extend([(258, 3, vec![3]), (262, 3, vec![1])]);
        let gray = read(&tiff(&entries, &[strip], 0)).unwrap();
        let expected: Vec<u8> = values
            .iter()
            .map(|&v| ((u32::from(v) * 255 + 3) / 7) as u8)
            .collect();
        assert_eq!(gray.as_raw(), &expected, "3 bits");

        // WhiteIsZero (read through an amended directory) with its strip cut short: the end
        // of the file, not the amended copy, is what the strip runs into.
        let mut entries = size();
        entries.extend([(258, 3, vec![8]), (262, 3, vec![0]), (259, 3, vec![8])]);
        let pixels = random((W * H) as usize, 16);
        let mut deflated = Vec::new();
        std::io::Write::write_all(
            &mut flate2::write::ZlibEncoder::new(&mut deflated, flate2::Compression::fast()),
            &pixels,
        )
        .unwrap();
        let whole = read(&tiff(&entries, std::slice::from_ref(&deflated), 0)).unwrap();
        let inverted: Vec<u8> = pixels.iter().map(|v| 255 - v).collect();
        assert_eq!(whole.as_raw(), &inverted);
        let mut file = tiff(&entries, &[deflated.clone()], 0);
        file.truncate(file.len() - deflated.len() / 2);
        assert!(read(&file).is_err(), "a strip cut short is refused");
    }

    #[test]
    fn palettes_read_their_colour_maps_luma() {
        let indices = random((W * H) as usize, 3)
            .iter()
            .map(|v| v % 4)
            .collect::<Vec<u8>>();
        // A 2-bit palette of 16-bit colours: red, green, blue, a gray.
        let map = vec![
            0xffff, 0, 0, 0x8080, // red
            0, 0xffff, 0, 0x8080, // green
            0, 0, 0xffff, 0x8080, // blue
        ];
        let mut strip = vec![0u8; 2 * H as usize];
        for (i, &v) in indices.iter().enumerate() {
            let (y, x) = (i / W as usize, i % W as usize);
            strip[y * 2 + x / 4] |= v << (6 - 2 * (x % 4));
        }
        let mut entries = size();
        entries.extend([(258, 3, vec![2]), (262, 3, vec![3]), (320, 3, map)]);
        let gray = read(&tiff(&entries, &[strip], 0)).unwrap();
        let colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]];
        let expected: Vec<u8> = indices
            .iter()
            .map(|&i| luma(colours[usize::from(i)]))
            .collect();
        assert_eq!(gray.as_raw(), &expected);
    }

    #[test]
    fn separate_planes_twelve_bits_reversed_bits_and_signed_samples() {
        let n = (W * H) as usize;
        let (r, g, b) = (random(n, 5), random(n, 6), random(n, 7));
        let mut entries = size();
        entries.extend([
            (258, 3, vec![8, 8, 8]),
            (262, 3, vec![2]),
            (277, 3, vec![3]),
            (284, 3, vec![2]),
        ]);
        let gray = read(&tiff(&entries, &[r.clone(), g.clone(), b.clone()], 0)).unwrap();
        let expected: Vec<u8> = (0..n).map(|i| luma([r[i], g[i], b[i]])).collect();
        assert_eq!(gray.as_raw(), &expected, "planar RGB");

        // 12-bit gray: two samples in three bytes, rows starting on a byte.
        let values: Vec<u16> = random(2 * n, 8)
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]) & 0x0fff)
            .collect();
        let row_bytes = (W * 12).div_ceil(8) as usize;
        let mut strip = vec![0u8; row_bytes * H as usize];
        for (i, &v) in values.iter().enumerate() {
            let (y, x) = (i / W as usize, i % W as usize);
            for k in 0..12 {
                if v & (0x800 >> k) != 0 {
                    let bit = x * 12 + k;
                    strip[y * row_bytes + bit / 8] |= 0x80 >> (bit % 8);
                }
            }
        }
        let mut entries = size();
        entries.extend([(258, 3, vec![12]), (262, 3, vec![1])]);
        let gray = read(&tiff(&entries, &[strip], 0)).unwrap();
        let expected: Vec<u8> = values
            .iter()
            .map(|&v| ((u32::from(v) * 255 + 2047) / 4095) as u8)
            .collect();
        assert_eq!(gray.as_raw(), &expected, "12 bits");

        // FillOrder 2: each byte's bits stored the other way round.
        let pixels = random(n, 9);
        let reversed: Vec<u8> = pixels.iter().map(|v| v.reverse_bits()).collect();
        let mut entries = size();
        entries.extend([(258, 3, vec![8]), (262, 3, vec![1]), (266, 3, vec![2])]);
        let gray = read(&tiff(&entries, &[reversed], 0)).unwrap();
        assert_eq!(gray.as_raw(), &pixels, "FillOrder 2");

        // Signed 16-bit: negatives are black, the positive range scales to 255.
        let samples: Vec<i16> = random(2 * n, 10)
            .chunks_exact(2)
            .map(|p| i16::from_le_bytes([p[0], p[1]]))
            .collect();
        let strip: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut entries = size();
        entries.extend([(258, 3, vec![16]), (262, 3, vec![1]), (339, 3, vec![2])]);
        let gray = read(&tiff(&entries, &[strip], 0)).unwrap();
        let expected: Vec<u8> = samples
            .iter()
            .map(|&v| ((i64::from(v).max(0) * 255 + 16383) / 32767) as u8)
            .collect();
        assert_eq!(gray.as_raw(), &expected, "signed 16 bits");
        assert!(expected.contains(&0) && expected.iter().any(|&v| v > 128));
    }

    #[test]
    fn a_directory_without_photometric_or_looping_to_itself_is_read() {
        let stored = random((W * H) as usize, 11);
        // Without the tag, 8-bit gray is WhiteIsZero (its default), as Pillow reads it.
        let pixels: Vec<u8> = stored.iter().map(|v| 255 - v).collect();
        let mut entries = size();
        entries.push((258, 3, vec![8]));
        for next in [0, 8] {
            let file = tiff(&entries, std::slice::from_ref(&stored), next);
            assert_eq!(
                read(&file).unwrap().as_raw(),
                &pixels,
                "next directory {next}"
            );
        }
        // With it given twice, the last is read (as the tiff crate reads it).
        let mut twice = entries.clone();
        twice.extend([(262, 3, vec![0]), (262, 3, vec![1])]);
        let file = tiff(&twice, std::slice::from_ref(&stored), 0);
        assert_eq!(
            read(&file).unwrap().as_raw(),
            &stored,
            "BlackIsZero given last"
        );
        // Streamed the same.
        let file = tiff(&entries, std::slice::from_ref(&stored), 8);
        let mut rows = crate::io::open_rows_in(file, Path::new("t.tif"), &ReadLimits::default())
            .unwrap()
            .expect("TIFF streams");
        let mut out = vec![0; pixels.len()];
        rows.read_rows(&mut out).unwrap();
        assert_eq!(out, pixels);
    }

    #[test]
    fn uncompressed_strips_are_read_row_by_row_across_their_ends_and_a_short_one_is_refused() {
        let n = (W * H) as usize;
        let rgb = random(3 * n, 14);
        let row = 3 * W as usize;
        let strips: Vec<Vec<u8>> = rgb.chunks(2 * row).map(<[u8]>::to_vec).collect();
        assert_eq!(strips.len(), 3);
        let mut entries = vec![(256, 3, vec![W]), (257, 3, vec![H]), (278, 3, vec![2])];
        entries.extend([
            (258, 3, vec![8, 8, 8]),
            (262, 3, vec![2]),
            (277, 3, vec![3]),
        ]);
        let expected: Vec<u8> = rgb
            .chunks_exact(3)
            .map(|p| luma([p[0], p[1], p[2]]))
            .collect();
        let file = tiff(&entries, &strips, 0);
        assert_eq!(read(&file).unwrap().as_raw(), &expected);
        let mut rows = crate::io::open_rows_in(file, Path::new("t.tif"), &ReadLimits::default())
            .unwrap()
            .unwrap();
        let mut out = vec![0; n];
        for part in out.chunks_mut(W as usize) {
            rows.read_rows(part).unwrap();
        }
        assert_eq!(out, expected);
        // The last strip one byte short.
        let mut short = strips.clone();
        short[2].pop();
        let error = read(&tiff(&entries, &short, 0)).unwrap_err();
        assert!(matches!(error, Error::Truncated { .. }), "{error:?}");
    }

    #[test]
    fn orientation_is_honoured_only_when_asked_and_an_image_to_turn_is_read_whole() {
        let pixels = random((W * H) as usize, 12);
        let mut entries = size();
        entries.extend([(258, 3, vec![8]), (262, 3, vec![1]), (274, 3, vec![6])]);
        let file = tiff(&entries, std::slice::from_ref(&pixels), 0);
        let stored = image::GrayImage::from_raw(W, H, pixels).unwrap();
        assert_eq!(read(&file).unwrap(), stored);
        let orient = ReadLimits {
            orient: true,
            ..ReadLimits::default()
        };
        let upright = decode_gray(&file, Path::new("t.tif"), &orient).unwrap();
        assert_eq!(upright, image::imageops::rotate90(&stored));
        let rows = crate::io::open_rows_in(file.clone(), Path::new("t.tif"), &orient).unwrap();
        assert!(rows.is_none(), "an image to turn is not streamed");
        let rows = crate::io::open_rows_in(file, Path::new("t.tif"), &ReadLimits::default());
        assert!(rows.unwrap().is_some());
    }

    #[test]
    fn lzma_strips_are_read_and_what_is_not_read_is_named_in_one_plain_line() {
        // RGB in an xz stream with a delta filter over each pixel, as libtiff writes LZMA.
        let n = (W * H) as usize;
        let rgb = random(3 * n, 13);
        let mut options = lzma_rust2::XzOptions::with_preset(6);
        options.filters = vec![lzma_rust2::FilterConfig::new_delta(3)];
        let mut writer = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
        std::io::Write::write_all(&mut writer, &rgb).unwrap();
        let strip = writer.finish().unwrap();
        let mut entries = size();
        entries.extend([
            (258, 3, vec![8, 8, 8]),
            (262, 3, vec![2]),
            (277, 3, vec![3]),
            (259, 3, vec![34925]),
        ]);
        let gray = read(&tiff(&entries, std::slice::from_ref(&strip), 0)).unwrap();
        let expected: Vec<u8> = rgb
            .chunks_exact(3)
            .map(|p| luma([p[0], p[1], p[2]]))
            .collect();
        assert_eq!(gray.as_raw(), &expected);
        // Cut short: the file's own words for it, not a panic.
        let cut = tiff(&entries, &[strip[..strip.len() / 2].to_vec()], 0);
        assert!(read(&cut).is_err());

        let mut entries = size();
        entries.extend([(258, 3, vec![8]), (262, 3, vec![1]), (259, 3, vec![50001])]);
        let error = read(&tiff(&entries, &[vec![0; 35]], 0)).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::Unsupported { .. }), "{error:?}");
        assert!(message.contains("TIFF with WebP compression"), "{message}");
        assert!(!message.contains('\n'));
    }
}
