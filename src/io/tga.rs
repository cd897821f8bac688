//! 15- and 16-bit true-colour TGA (5 bits a channel, the top bit unused or alpha), raw or
//! run-length coded, which the `image` crate refuses. Channels are widened as Pillow widens
//! them (`v · 255 / 31`, rounded down) and made gray by the luma rule; alpha is ignored as for
//! every format. Every other TGA is read by the `image` crate.

use std::io::Read;

use image::{ColorType, GrayImage};

use super::gray::luma;
use super::input::Input;
use crate::error::{Error, Result};
use crate::memory::zeroed_bytes;

const HEADER_BYTES: usize = 18;

/// Whether `head` is a TGA header this reader decodes: true colour (type 2, or 10 with
/// run-length coding) of 15 or 16 bits a pixel.
pub(super) fn reads(head: &[u8]) -> bool {
    head.len() >= HEADER_BYTES && matches!(head[2], 2 | 10) && matches!(head[16], 15 | 16)
}

/// Reads a TGA that [`reads`] accepts as gray.
pub(super) fn read_whole<R: Read>(input: &Input, mut reader: R) -> Result<GrayImage> {
    let path = input.path;
    let head = input.head;
    let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let (width, height) = (u32::from(u16_at(12)), u32::from(u16_at(14)));
    let pixels = u64::from(width) * u64::from(height);
    input.check_header(width, height, (ColorType::L8, 2 * pixels))?;
    input.check_budget(width, height, "16-bit TGA".to_owned(), pixels, 0)?;
    // The image ID and any colour map come before the pixels.
    let map_bytes = if head[1] == 1 {
        usize::from(u16_at(5)) * usize::from(head[7]).div_ceil(8)
    } else {
        0
    };
    let skip = (HEADER_BYTES + usize::from(head[0]) + map_bytes) as u64;
    let read_failure = |e| Input::read_failure(path, e);
    let skipped =
        std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink()).map_err(read_failure)?;
    if skipped < skip {
        return Err(Input::cut_short(path));
    }
    let mut gray = zeroed_bytes(
        usize::try_from(pixels).unwrap_or(usize::MAX),
        &format!("decoding '{}'", crate::text::escape_path(path)),
    )?;
    let widen = |v: u16| (u32::from(v & 31) * 255 / 31) as u8;
    let to_gray = |p: [u8; 2]| {
        let v = u16::from_le_bytes(p);
        luma([widen(v >> 10), widen(v >> 5), widen(v)])
    };
    let mut reader = std::io::BufReader::new(reader);
    let mut pixel = [0u8; 2];
    let mut filled = 0;
    while filled < gray.len() {
        if head[2] == 2 {
            reader.read_exact(&mut pixel).map_err(read_failure)?;
            gray[filled] = to_gray(pixel);
            filled += 1;
            continue;
        }
        let mut packet = [0u8];
        reader.read_exact(&mut packet).map_err(read_failure)?;
        let count = usize::from(packet[0] & 0x7f) + 1;
        let count = count.min(gray.len() - filled);
        if packet[0] & 0x80 != 0 {
            reader.read_exact(&mut pixel).map_err(read_failure)?;
            gray[filled..filled + count].fill(to_gray(pixel));
        } else {
            for out in &mut gray[filled..filled + count] {
                reader.read_exact(&mut pixel).map_err(read_failure)?;
                *out = to_gray(pixel);
            }
        }
        filled += count;
    }
    let mut image = GrayImage::from_raw(width, height, gray).ok_or_else(|| Error::Corrupt {
        path: path.to_owned(),
        detail: "its pixels do not fill the image".to_owned(),
    })?;
    // Rows are stored bottom up unless the descriptor's bit 5 says top down; bit 4: right to
    // left.
    if head[17] & 0x20 == 0 {
        image::imageops::flip_vertical_in_place(&mut image);
    }
    if head[17] & 0x10 != 0 {
        image::imageops::flip_horizontal_in_place(&mut image);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use crate::io::{ReadLimits, decode_gray_as, luma};
    use std::path::Path;

    #[test]
    fn sixteen_bit_pixels_raw_and_run_length_coded_read_top_down() {
        let pixels: Vec<u16> = (0..12u16)
            .map(|i| i.wrapping_mul(0x1b3d) ^ 0x8000)
            .collect();
        let widen = |v: u16| (u32::from(v & 31) * 255 / 31) as u8;
        let gray = |v: u16| luma([widen(v >> 10), widen(v >> 5), widen(v)]);
        let header = |kind: u8| {
            let mut h = vec![0, 0, kind, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 3, 0, 16, 0x20];
            h[17] |= 1; // one alpha bit
            h
        };
        let mut raw = header(2);
        raw.extend(pixels.iter().flat_map(|p| p.to_le_bytes()));
        // Run-length coded: a run of the first pixel twice, then the rest raw.
        let mut rle = header(10);
        rle.extend([0x81]);
        rle.extend(pixels[0].to_le_bytes());
        let rest = &pixels[2..];
        rle.push(rest.len() as u8 - 1);
        rle.extend(rest.iter().flat_map(|p| p.to_le_bytes()));
        let mut expected: Vec<u8> = pixels.iter().map(|&p| gray(p)).collect();
        let limits = ReadLimits::default();
        let read = |bytes: &[u8]| {
            decode_gray_as(
                bytes,
                Path::new("t.tga"),
                &limits,
                Some(image::ImageFormat::Tga),
            )
            .unwrap()
            .into_raw()
        };
        assert_eq!(read(&raw), expected);
        expected[1] = expected[0];
        assert_eq!(read(&rle), expected);
    }
}
