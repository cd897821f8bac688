//! Side-by-side figures with titles, like the lesson's plots.

use image::{GrayImage, Luma, imageops};

const MARGIN: u32 = 16;
const GLYPH: u32 = 8;
const TEXT_SCALE: u32 = 2;
const TITLE_HEIGHT: u32 = GLYPH * TEXT_SCALE + 10;
/// Small pictures (the 7×7 stripes) are enlarged, pixels kept square, to at least this height.
const MIN_PANEL_HEIGHT: u32 = 200;

/// One picture of a figure, with its title.
pub struct Panel<'a> {
    pub title: &'a str,
    pub image: &'a GrayImage,
}

/// The panels left to right on a white background, each titled above and framed in gray.
/// All panels are enlarged by the same whole factor, chosen from the tallest.
pub fn compose(panels: &[Panel<'_>]) -> GrayImage {
    let tallest = panels
        .iter()
        .map(|p| p.image.height())
        .max()
        .unwrap_or(1)
        .max(1);
    let scale = MIN_PANEL_HEIGHT.div_ceil(tallest).max(1);
    let scaled: Vec<GrayImage> = panels
        .iter()
        .map(|p| {
            let (w, h) = p.image.dimensions();
            imageops::resize(p.image, w * scale, h * scale, imageops::FilterType::Nearest)
        })
        .collect();
    let cell_width = |i: usize| scaled[i].width().max(text_width(panels[i].title)) + 2;
    let width = MARGIN
        + (0..panels.len())
            .map(|i| cell_width(i) + MARGIN)
            .sum::<u32>();
    let height = MARGIN
        + TITLE_HEIGHT
        + scaled.iter().map(GrayImage::height).max().unwrap_or(0)
        + 2
        + MARGIN;
    let mut figure = GrayImage::from_pixel(width, height, Luma([255]));
    let mut x = MARGIN;
    for (i, (panel, image)) in panels.iter().zip(&scaled).enumerate() {
        draw_text(&mut figure, panel.title, x, MARGIN);
        let top = MARGIN + TITLE_HEIGHT;
        draw_frame(&mut figure, x, top, image.width() + 2, image.height() + 2);
        imageops::replace(&mut figure, image, i64::from(x + 1), i64::from(top + 1));
        x += cell_width(i) + MARGIN;
    }
    figure
}

fn text_width(text: &str) -> u32 {
    text.chars().count() as u32 * GLYPH * TEXT_SCALE
}

/// Draws `text` with the public-domain 8×8 font of the `font8x8` crate, enlarged.
fn draw_text(image: &mut GrayImage, text: &str, x: u32, y: u32) {
    use font8x8::UnicodeFonts;
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..GLYPH {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..TEXT_SCALE {
                    for dx in 0..TEXT_SCALE {
                        let px = x + (i as u32 * GLYPH + col) * TEXT_SCALE + dx;
                        let py = y + row as u32 * TEXT_SCALE + dy;
                        if px < image.width() && py < image.height() {
                            image.put_pixel(px, py, Luma([0]));
                        }
                    }
                }
            }
        }
    }
}

fn draw_frame(image: &mut GrayImage, x: u32, y: u32, width: u32, height: u32) {
    for dx in 0..width {
        image.put_pixel(x + dx, y, Luma([160]));
        image.put_pixel(x + dx, y + height - 1, Luma([160]));
    }
    for dy in 0..height {
        image.put_pixel(x, y + dy, Luma([160]));
        image.put_pixel(x + width - 1, y + dy, Luma([160]));
    }
}
