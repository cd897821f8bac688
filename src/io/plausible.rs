//! The least data a file can hold for the image its header describes, per format, so that a
//! few hundred bytes claiming gigapixels are refused before anything is allocated for them.
//!
//! Each bound is at most what the format's densest legal coding needs (with room to spare
//! where the arithmetic is subtle): a genuine file is never refused, while a header that claims
//! thousands of times more than its data can carry is.

use image::{ColorType, ImageFormat};

/// Why `file_bytes` of `format` cannot hold a `width`×`height` image whose file starts with
/// `head`, or `None` when it can (or when the format has no useful bound).
///
/// `decoded` is what the decoder will write: the bytes of a binary PNM's data exactly.
pub(crate) fn too_short(
    format: ImageFormat,
    head: &[u8],
    (width, height): (u32, u32),
    decoded: (ColorType, u64),
    file_bytes: u64,
) -> Option<String> {
    let pixels = u64::from(width) * u64::from(height);
    let least = match format {
        ImageFormat::Png => png_least_bytes(head, width, height)?,
        // One bit per 8×8 block of the full-resolution component is the densest Huffman coding
        // (arithmetic coding, which could go lower, is not decoded); an eighth of that is safe.
        ImageFormat::Jpeg => pixels.div_ceil(64) / 64,
        ImageFormat::Pnm => pnm_least_bytes(head, width, height, decoded)?,
        ImageFormat::Bmp => bmp_least_bytes(head, width, height)?,
        ImageFormat::Tga => tga_least_bytes(head, pixels)?,
        // QOI_OP_RUN codes up to 62 pixels in one byte.
        ImageFormat::Qoi => pixels / 62,
        // CCITT Group 4 codes a blank row of 1-bit pixels in one bit, whatever its width: one
        // byte per 8 Mi pixels leaves room for rows a million pixels wide (wider blank fax rows
        // would be refused; no scanner makes them).
        ImageFormat::Tiff => pixels / (8 << 20),
        // LZW codes at most 4096 pixels in one 12-bit code: the first frame over 4096. (Its
        // screen may be larger: see `gif_screen_implausible`.)
        ImageFormat::Gif => {
            let (frame_width, frame_height) = gif_first_frame(head)?;
            u64::from(frame_width) * u64::from(frame_height) / 4096
        }
        // WebP codes a flat image in almost no bits: only the memory budget guards it.
        _ => return None,
    };
    (file_bytes < least).then(|| {
        format!(
            "its header says {width}×{height} pixels, which need at least {least} bytes of {} \
             data, but the file has {file_bytes} bytes",
            format_name(format)
        )
    })
}

/// `PNG`, `JPEG`, `PNM`, ...
fn format_name(format: ImageFormat) -> String {
    format!("{format:?}").to_uppercase()
}

/// Deflate expands at most 1032 times (a 258-byte match in two bits): the filtered rows of a
/// non-interlaced image, over 2064.
fn png_least_bytes(head: &[u8], width: u32, height: u32) -> Option<u64> {
    // IHDR follows the signature: length, type, width, height, bit depth, colour type.
    let (&bit_depth, &colour_type) = (head.get(24)?, head.get(25)?);
    let channels: u64 = match colour_type {
        0 | 3 => 1,
        2 => 3,
        4 => 2,
        6 => 4,
        _ => return None,
    };
    let row_bytes = 1 + (u64::from(width) * channels * u64::from(bit_depth)).div_ceil(8);
    Some(row_bytes.saturating_mul(u64::from(height)) / 2064)
}

/// Binary PNM stores every sample as the decoder writes it (PBM: a bit a pixel); plain
/// (ASCII) PNM needs a character per sample at least.
fn pnm_least_bytes(head: &[u8], width: u32, height: u32, decoded: (ColorType, u64)) -> Option<u64> {
    let (color, decoded_bytes) = decoded;
    Some(match head.get(1)? {
        b'4' => u64::from(width)
            .div_ceil(8)
            .saturating_mul(u64::from(height)),
        b'5' | b'6' | b'7' => decoded_bytes,
        _ => {
            decoded_bytes / u64::from(color.bytes_per_pixel()).max(1)
                * u64::from(color.channel_count())
        }
    })
}

/// Uncompressed BMP stores every row; run-length coded ones may skip to the end at any point.
fn bmp_least_bytes(head: &[u8], width: u32, height: u32) -> Option<u64> {
    let u16_at = |at: usize| Some(u16::from_le_bytes([*head.get(at)?, *head.get(at + 1)?]));
    let u32_at = |at: usize| Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?));
    let header_size = u32_at(14)?;
    let (bits_per_pixel, compression) = if header_size == 12 {
        (u16_at(24)?, 0)
    } else {
        (u16_at(28)?, u32_at(30)?)
    };
    // 0: none; 3 and 6: bit fields. The others (RLE, embedded JPEG or PNG) have no bound here.
    if !matches!(compression, 0 | 3 | 6) {
        return None;
    }
    let row_bytes = (u64::from(width) * u64::from(bits_per_pixel)).div_ceil(8);
    Some(row_bytes.saturating_mul(u64::from(height)))
}

/// Uncompressed TGA stores every pixel; run-length packets hold at most 128.
fn tga_least_bytes(head: &[u8], pixels: u64) -> Option<u64> {
    let image_type = *head.get(2)?;
    let bytes_per_pixel = u64::from(head.get(16)?.div_ceil(8));
    match image_type {
        1..=3 => Some(pixels.saturating_mul(bytes_per_pixel)),
        9..=11 => Some(pixels.div_ceil(128).saturating_mul(1 + bytes_per_pixel)),
        _ => None,
    }
}

/// The size of a GIF's first frame, when its image descriptor lies within `head`.
fn gif_first_frame(head: &[u8]) -> Option<(u16, u16)> {
    let u16_at = |at: usize| Some(u16::from_le_bytes([*head.get(at)?, *head.get(at + 1)?]));
    let flags = *head.get(10)?;
    // The header and logical screen descriptor, then the global colour table if any.
    let mut at = 13
        + if flags & 0x80 != 0 {
            3 << ((flags & 7) + 1)
        } else {
            0
        };
    loop {
        match *head.get(at)? {
            // Image descriptor: left, top, width, height.
            0x2C => return Some((u16_at(at + 5)?, u16_at(at + 7)?)),
            // Extension: label, then sub-blocks up to an empty one.
            0x21 => {
                at += 2;
                loop {
                    let size = usize::from(*head.get(at)?);
                    at += 1 + size;
                    if size == 0 {
                        break;
                    }
                }
            }
            _ => return None,
        }
    }
}

/// Why a GIF's logical screen is not believable: far larger (over 16 Mpx, and over 64 times)
/// than its first frame. A GIF is decoded onto its whole screen, four bytes a pixel, so a
/// 40-byte file with a 65535×65535 screen around a 1×1 frame would take 16 GiB. Real GIFs'
/// first frames cover their screens.
pub(crate) fn gif_screen_implausible(head: &[u8], width: u32, height: u32) -> Option<String> {
    let (frame_width, frame_height) = gif_first_frame(head)?;
    let screen = u64::from(width) * u64::from(height);
    let frame = u64::from(frame_width) * u64::from(frame_height);
    (screen > 16 << 20 && screen > frame.saturating_mul(64)).then(|| {
        format!(
            "its {width}×{height} screen is over 64 times its first frame \
             ({frame_width}×{frame_height}): refused as implausible"
        )
    })
}

/// Why a run-length coded BMP is not believable: over 16 Mpx from less than a byte of data per
/// 64 Ki pixels. Its escapes may legally skip ahead or stop early (the rest stays black), so a
/// kilobyte can claim 60000×60000, which decodes into 10 GiB; no encoder writes such files.
pub(crate) fn bmp_rle_implausible(
    head: &[u8],
    width: u32,
    height: u32,
    file_bytes: u64,
) -> Option<String> {
    let header_size = u32::from_le_bytes(head.get(14..18)?.try_into().ok()?);
    let compression = u32::from_le_bytes(head.get(30..34)?.try_into().ok()?);
    // BI_RLE8, BI_RLE4, in a header that has a compression field.
    if header_size < 40 || !matches!(compression, 1 | 2) {
        return None;
    }
    let pixels = u64::from(width) * u64::from(height);
    (pixels > 16 << 20 && file_bytes < pixels / 65536).then(|| {
        format!(
            "a run-length coded {width}×{height} image in {file_bytes} bytes: refused as \
             implausible"
        )
    })
}

/// Whether a JPEG's marker segments run from its start to an end-of-image marker: a file cut
/// short anywhere in its compressed data lacks one (decoders then fill the rest with gray or
/// black and report success). Bytes after the end marker (a camera's appended video) are fine.
pub(crate) fn jpeg_is_complete(data: &[u8]) -> bool {
    const SOI: u8 = 0xD8;
    const EOI: u8 = 0xD9;
    const SOS: u8 = 0xDA;
    if data.len() < 4 || data[0] != 0xFF || data[1] != SOI {
        return false;
    }
    let mut at = 2;
    loop {
        // The next marker: like libjpeg and zune-jpeg, skip stray bytes, stuffed zeros and fill
        // bytes (0xFF) before it.
        let marker = loop {
            let Some(offset) = data[at..].iter().position(|&b| b == 0xFF) else {
                return false;
            };
            at += offset;
            match data.get(at + 1) {
                None => return false,
                Some(0x00 | 0xFF) => at += 1,
                Some(&marker) => break marker,
            }
        };
        at += 2;
        match marker {
            EOI => return true,
            // Markers without a length: restart markers and TEM.
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let Some(length) = data
            .get(at..at + 2)
            .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
        else {
            return false;
        };
        if length < 2 {
            return false;
        }
        at += length;
        if at > data.len() {
            return false;
        }
        if marker == SOS {
            // Entropy-coded data runs to the next marker other than a stuffed 0xFF00 or a
            // restart marker.
            loop {
                let Some(offset) = data[at..].iter().position(|&b| b == 0xFF) else {
                    return false;
                };
                at += offset;
                match data.get(at + 1) {
                    None => return false,
                    Some(0x00 | 0xD0..=0xD7 | 0xFF) => at += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_png_claiming_gigapixels_is_too_short_and_a_real_one_is_not() {
        let mut head = vec![0u8; 26];
        head[24] = 16; // bit depth
        head[25] = 6; // RGBA
        let rgba16 = (ColorType::Rgba16, 65535 * 65535 * 8);
        let why =
            too_short(ImageFormat::Png, &head, (65535, 65535), rgba16, 69).expect("too short");
        assert!(why.contains("65535×65535"), "{why}");
        assert!(why.contains("69 bytes"), "{why}");
        // A flat 4096 × 4096 gray PNG compresses to about 16 KB with zlib at level 9.
        head[24] = 8;
        head[25] = 0;
        let gray = (ColorType::L8, 4096 * 4096);
        assert_eq!(
            too_short(ImageFormat::Png, &head, (4096, 4096), gray, 16_000),
            None
        );
    }

    #[test]
    fn binary_pnm_needs_every_sample() {
        let gray = (ColorType::L8, 10_000);
        assert!(too_short(ImageFormat::Pnm, b"P5\n", (100, 100), gray, 9_999).is_some());
        assert_eq!(
            too_short(ImageFormat::Pnm, b"P5\n", (100, 100), gray, 10_015),
            None
        );
        let pam = (ColorType::Rgba16, 60000 * 60000 * 8);
        assert!(too_short(ImageFormat::Pnm, b"P7\n", (60000, 60000), pam, 175).is_some());
        // A plain PBM needs a character a pixel; a binary one a bit.
        assert!(too_short(ImageFormat::Pnm, b"P1\n", (80, 10), gray, 799).is_some());
        assert_eq!(
            too_short(ImageFormat::Pnm, b"P4\n", (80, 10), gray, 100),
            None
        );
    }

    #[test]
    fn a_gif_screen_far_larger_than_its_first_frame_is_implausible() {
        let gif = |screen: u16, frame: u16| {
            let mut gif = b"GIF89a".to_vec();
            gif.extend_from_slice(&screen.to_le_bytes());
            gif.extend_from_slice(&screen.to_le_bytes());
            gif.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
            // A comment extension before the frame.
            gif.extend_from_slice(&[0x21, 0xFE, 3, b'h', b'i', b'!', 0]);
            gif.extend_from_slice(&[0x2C, 0, 0, 0, 0]);
            gif.extend_from_slice(&frame.to_le_bytes());
            gif.extend_from_slice(&frame.to_le_bytes());
            gif
        };
        assert_eq!(gif_first_frame(&gif(65535, 7)), Some((7, 7)));
        assert!(gif_screen_implausible(&gif(65535, 7), 65535, 65535).is_some());
        assert_eq!(
            gif_screen_implausible(&gif(65535, 65535), 65535, 65535),
            None
        );
        // Small screens are never refused, whatever their frames.
        assert_eq!(gif_screen_implausible(&gif(4000, 1), 4000, 4000), None);
        // A frame needs a byte for every 4096 of its pixels.
        let least = too_short(
            ImageFormat::Gif,
            &gif(9000, 9000),
            (9000, 9000),
            (ColorType::Rgba8, 0),
            100,
        );
        assert!(least.is_some());
    }

    #[test]
    fn a_kilobyte_of_run_length_bmp_claiming_gigapixels_is_implausible() {
        let mut head = vec![0u8; 64];
        head[14..18].copy_from_slice(&40u32.to_le_bytes());
        head[30..34].copy_from_slice(&1u32.to_le_bytes()); // BI_RLE8
        assert!(bmp_rle_implausible(&head, 60000, 60000, 1080).is_some());
        // A real RLE photo, or a small image of any size, is not.
        assert_eq!(bmp_rle_implausible(&head, 6000, 4000, 4_000_000), None);
        assert_eq!(bmp_rle_implausible(&head, 4000, 4000, 100), None);
        // Uncompressed BMPs have the length check instead.
        head[30..34].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(bmp_rle_implausible(&head, 60000, 60000, 1080), None);
    }

    #[test]
    fn jpeg_markers_are_walked_to_the_end() {
        // SOI, an APP0 of 4 bytes, SOS with its header, entropy data holding a stuffed 0xFF00
        // and a restart marker, then EOI and trailing bytes.
        let complete = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xDA, 0x00, 0x03, 0x01, 0x12,
            0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xD9, 0x00, 0x07,
        ];
        assert!(jpeg_is_complete(&complete));
        for cut in 0..22 {
            assert!(!jpeg_is_complete(&complete[..cut]), "cut at {cut}");
        }
        // Stray bytes, a stuffed zero and fill bytes before a marker are skipped, as decoders do.
        let mut padded = complete[..8].to_vec();
        padded.extend_from_slice(&[0x00, 0x17, 0xFF, 0x00, 0xFF, 0xFF]);
        padded.extend_from_slice(&complete[8..]);
        assert!(jpeg_is_complete(&padded));
        assert!(!jpeg_is_complete(&padded[..padded.len() - 3]));
    }
}
