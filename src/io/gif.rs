//! A GIF's first frame read as Pillow reads it, with the `gif` crate's indexed output: every
//! index becomes the luma of its palette colour (the frame's own palette, else the file's),
//! transparent ones included, on a screen filled with the transparent index (or index 0) where
//! the frame does not cover it; a file with no palette at all is read as gray indices. The
//! `image` crate instead makes transparent pixels black, and both it and the `gif` crate
//! refuse a file without a palette: such a file is read with a gray global palette put after
//! its screen descriptor as it is read (the file itself is never changed).

use std::io::{Cursor, Read};
use std::num::NonZeroU64;

use image::{ColorType, GrayImage};

use super::gray::luma;
use super::input::{Input, guarded};
use super::plausible::gif_screen_implausible;
use crate::error::{Error, Result};
use crate::memory::zeroed_bytes;

/// Reads the first frame of the GIF `reader` holds as gray, on its screen.
pub(super) fn read_whole<R: Read>(input: &Input, mut reader: R) -> Result<GrayImage> {
    let path = input.path;
    // The signature and logical screen descriptor; its flags say whether a global palette
    // follows (bit 7) and its size (bits 0-2).
    let mut screen = [0u8; 13];
    reader
        .read_exact(&mut screen)
        .map_err(|e| Input::read_failure(path, e))?;
    let gray_palette: Vec<u8> = if screen[10] & 0x80 == 0 {
        screen[10] |= 0x87;
        (0..=255u8).flat_map(|i| [i, i, i]).collect()
    } else {
        Vec::new()
    };
    let reader = Cursor::new(screen)
        .chain(Cursor::new(gray_palette))
        .chain(reader);
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let limit = NonZeroU64::new(input.limits.max_memory)
        .map_or(gif::MemoryLimit::Unlimited, gif::MemoryLimit::Bytes);
    options.set_memory_limit(limit);
    let mut decoder =
        guarded(path, || options.read_info(reader))?.map_err(|e| gif_error(input, e))?;
    let (screen_width, screen_height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    if let Some(detail) = gif_screen_implausible(input.head, screen_width, screen_height) {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            detail,
        });
    }
    let global = decoder.global_palette().map(<[u8]>::to_vec);
    // The first frame's place and palette, before any pixel is decoded.
    let frame = guarded(path, || decoder.next_frame_info().map(|f| f.cloned()))?
        .map_err(|e| gif_error(input, e))?
        .ok_or_else(|| Error::Corrupt {
            path: path.to_owned(),
            detail: "it holds no image".to_owned(),
        })?;
    // Pillow enlarges the screen to hold a first frame that reaches beyond it.
    let (left, top) = (u32::from(frame.left), u32::from(frame.top));
    let (frame_width, frame_height) = (u32::from(frame.width), u32::from(frame.height));
    let width = screen_width.max(left + frame_width);
    let height = screen_height.max(top + frame_height);
    let pixels = u64::from(width) * u64::from(height);
    let frame_pixels = u64::from(frame_width) * u64::from(frame_height);
    input.check_header(width, height, (ColorType::L8, pixels))?;
    // The screen, and the frame's indices decoded aside.
    input.check_budget(width, height, "GIF".to_owned(), pixels, frame_pixels)?;
    let mut indices = zeroed_bytes(
        usize::try_from(frame_pixels).unwrap_or(usize::MAX),
        &format!("decoding '{}'", crate::text::escape_path(path)),
    )?;
    guarded(path, || decoder.read_into_buffer(&mut indices))?.map_err(|e| gif_error(input, e))?;
    let mut table = [0u8; 256];
    match frame.palette.as_deref().or(global.as_deref()) {
        // Entries the palette does not have are black, as in Pillow.
        Some(palette) => {
            for (gray, rgb) in table.iter_mut().zip(palette.chunks_exact(3)) {
                *gray = luma([rgb[0], rgb[1], rgb[2]]);
            }
        }
        None => {
            for (i, gray) in table.iter_mut().enumerate() {
                *gray = i as u8;
            }
        }
    }
    let mut gray = zeroed_bytes(
        usize::try_from(pixels).unwrap_or(usize::MAX),
        &format!("decoding '{}'", crate::text::escape_path(path)),
    )?;
    gray.fill(table[usize::from(frame.transparent.unwrap_or(0))]);
    if frame_width > 0 {
        let (left, top, width) = (left as usize, top as usize, width as usize);
        for (y, row) in indices.chunks_exact(frame_width as usize).enumerate() {
            let out = (top + y) * width + left;
            for (pixel, &index) in gray[out..out + row.len()].iter_mut().zip(row) {
                *pixel = table[usize::from(index)];
            }
        }
    }
    GrayImage::from_raw(width, height, gray).ok_or_else(|| Error::Corrupt {
        path: path.to_owned(),
        detail: "its frame does not fill the image".to_owned(),
    })
}

/// A `gif` crate error as what it means to a user.
fn gif_error(input: &Input, error: gif::DecodingError) -> Error {
    match error {
        gif::DecodingError::Io(e) => Input::read_failure(input.path, e),
        gif::DecodingError::UnexpectedEof => Input::cut_short(input.path),
        gif::DecodingError::MemoryLimit => Error::DecoderOverBudget {
            path: input.path.to_owned(),
            budget: input.limits.max_memory,
        },
        other => Error::Corrupt {
            path: input.path.to_owned(),
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::io::{ReadLimits, decode_gray, luma};
    use std::path::Path;

    #[test]
    fn transparent_pixels_keep_their_colour_and_the_screen_its_fill() {
        let palette = [200u8, 10, 10, 10, 200, 10, 10, 10, 200, 90, 90, 90];
        let mut bytes = Vec::new();
        {
            let mut encoder = gif::Encoder::new(&mut bytes, 7, 5, &[]).unwrap();
            let indices: Vec<u8> = (0..15).map(|i| (i * 7 % 4) as u8).collect();
            let mut frame = gif::Frame::from_indexed_pixels(5, 3, indices, Some(1));
            frame.palette = Some(palette.to_vec());
            (frame.left, frame.top) = (1, 2);
            encoder.write_frame(&frame).unwrap();
        }
        let gray = decode_gray(&bytes, Path::new("t.gif"), &ReadLimits::default()).unwrap();
        let colour = |i: usize| luma([palette[3 * i], palette[3 * i + 1], palette[3 * i + 2]]);
        for y in 0..5u32 {
            for x in 0..7u32 {
                let inside = (1..6).contains(&x) && (2..5).contains(&y);
                let index = if inside {
                    ((y - 2) * 5 + (x - 1)) as usize * 7 % 4
                } else {
                    1 // the transparent index fills the screen
                };
                assert_eq!(gray.get_pixel(x, y).0[0], colour(index), "({x}, {y})");
            }
        }
    }
}
