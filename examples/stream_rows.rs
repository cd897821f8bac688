//! Filtering an image that is never held whole: rows come from a source of the app's own (here
//! a generated pattern, 2000 × 1500) and the edge image goes to a PNG written band by band, so
//! memory stays at a few bands whatever the height.
//!
//! ```sh
//! cargo run --example stream_rows -- edges.png
//! ```

use std::path::PathBuf;

use gpuconv::pipeline::{RowSource, filter_rows};
use gpuconv::{BackendChoice, Engine, Kernel, Operation, Result, io, output_size, reference};

/// Rows computed on demand: shading, stripes and a little noise.
struct Pattern {
    width: u32,
    height: u32,
    next_row: u32,
}

impl Pattern {
    fn pixel(x: u32, y: u32) -> u8 {
        let shade = (x / 16 + y / 12) as u8;
        let stripe = if (x / 40 + y / 30).is_multiple_of(2) {
            60
        } else {
            0
        };
        let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) >> 28;
        shade.wrapping_add(stripe).wrapping_add(noise as u8)
    }
}

impl RowSource for Pattern {
    fn width(&self) -> u32 {
        self.width
    }

    fn height(&self) -> u32 {
        self.height
    }

    fn read_rows(&mut self, rows: &mut [u8]) -> Result<()> {
        for row in rows.chunks_exact_mut(self.width as usize) {
            for (x, pixel) in row.iter_mut().enumerate() {
                *pixel = Self::pixel(x as u32, self.next_row);
            }
            self.next_row += 1;
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let output = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("stream-rows.png"), PathBuf::from);
    let (width, height) = (2000, 1500);
    let mut engine = Engine::new(BackendChoice::Auto)?;
    if let Some(reason) = engine.fallback_reason() {
        eprintln!("{reason}; using the CPU");
    }
    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());

    // One sink per output image: here the edge image, as a PNG written band by band.
    let (out_width, out_height) = output_size(width, height)?;
    let sink = io::create_row_sink(&output, out_width, out_height, io::Compression::default())?
        .expect("PNG is written a band at a time");
    let mut pattern = Pattern {
        width,
        height,
        next_row: 0,
    };
    let timings = filter_rows(&mut engine, &mut pattern, &operation, vec![sink], None)?;

    // Check against the plain reference loop on the whole pattern, as the tests do.
    let whole =
        image::GrayImage::from_fn(width, height, |x, y| image::Luma([Pattern::pixel(x, y)]));
    let expected = reference::run(&whole, &operation)
        .combined
        .expect("combined");
    anyhow::ensure!(
        io::load_gray(&output)? == expected,
        "backend {} disagrees with the reference",
        engine.describe()
    );
    println!(
        "{width}×{height} pattern -> {} in bands, {timings} on {}",
        output.display(),
        engine.describe()
    );
    Ok(())
}
