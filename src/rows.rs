//! Rows in and rows out: the two traits everything that streams an image speaks, and their
//! in-memory forms. A core type, below the backends, the borders and the I/O that all use them
//! ([`stream`](crate::pipeline::bands) re-exports them where users look for them).

use image::GrayImage;

use crate::error::Result;

/// The largest default band: about 8 MiB of input rows. Large enough that per-band costs (a
/// GPU submission, a thread hand-over) vanish, small enough that a few bands stay far below the
/// image. Smaller images get an eighth of themselves per band (at least 256 KiB), so that
/// reading, filtering and writing still overlap.
pub const DEFAULT_BAND_BYTES: usize = 8 << 20;

/// Input bytes per band for an image of `width` × `height` streamed with the default bands:
/// what [`filter_rows`](crate::pipeline::bands::filter_rows) reads at a time, and what a reader's
/// memory check counts.
pub fn band_bytes(width: u32, height: u32) -> usize {
    let image_bytes = width as usize * height as usize;
    (image_bytes / 8).clamp(256 << 10, DEFAULT_BAND_BYTES)
}

/// Rows of 8-bit gray pixels, read top to bottom.
pub trait RowSource: Send {
    /// Pixels per row.
    fn width(&self) -> u32;
    /// Rows in the image.
    fn height(&self) -> u32;
    /// Fills `rows`, a whole number of rows of [`width`](Self::width) bytes, with the next
    /// rows of the image.
    fn read_rows(&mut self, rows: &mut [u8]) -> Result<()>;
}

/// Where the rows of one output image go, top to bottom.
pub trait RowSink: Send {
    /// Takes the next rows, a whole number of rows of the output's width.
    fn write_rows(&mut self, rows: &[u8]) -> Result<()>;
    /// Called once every row is written, on every sink of the image before any is
    /// [finished](Self::finish): writes what follows the rows (a PNG's last chunk, a TIFF's
    /// directory) and flushes, so that an error here, the likely place for a full disk to show,
    /// still leaves none of the image's outputs behind. It may be called again (a borrowed sink's
    /// owner may end it too), and must then do nothing. The default does nothing.
    fn end_rows(&mut self) -> Result<()> {
        Ok(())
    }
    /// Called once every sink has ended its rows: completes the output (for a file, renames it
    /// into place). A sink dropped without it must leave nothing behind.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// An image already in memory as a [`RowSource`].
#[derive(Debug)]
pub struct ImageRows<'a> {
    image: &'a GrayImage,
    next_row: u32,
}

impl<'a> ImageRows<'a> {
    /// The rows of `image`.
    pub fn new(image: &'a GrayImage) -> Self {
        Self { image, next_row: 0 }
    }
}

impl RowSource for ImageRows<'_> {
    fn width(&self) -> u32 {
        self.image.width()
    }

    fn height(&self) -> u32 {
        self.image.height()
    }

    fn read_rows(&mut self, rows: &mut [u8]) -> Result<()> {
        let width = self.image.width() as usize;
        let start = self.next_row as usize * width;
        rows.copy_from_slice(&self.image.as_raw()[start..start + rows.len()]);
        self.next_row += (rows.len() / width) as u32;
        Ok(())
    }
}

/// A [`RowSink`] that collects an output image in memory.
#[derive(Debug, Default)]
pub struct CollectRows {
    rows: Vec<u8>,
}

impl CollectRows {
    /// The rows written so far.
    pub fn rows(&self) -> &[u8] {
        &self.rows
    }
}

impl RowSink for CollectRows {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        self.rows.extend_from_slice(rows);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

impl<T: RowSink + ?Sized> RowSink for &mut T {
    fn write_rows(&mut self, rows: &[u8]) -> Result<()> {
        (**self).write_rows(rows)
    }

    fn end_rows(&mut self) -> Result<()> {
        (**self).end_rows()
    }

    fn finish(self: Box<Self>) -> Result<()> {
        // A borrowed sink is finished by its owner.
        Ok(())
    }
}
