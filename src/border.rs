//! Borders for the backends: an image (or a stream of rows) widened by one pixel on every side
//! as its [`Border`] says, so that the 'valid' filter over it gives an output of the image's own
//! size. The reference computes the same thing straight from the definition, without padding.

use std::borrow::Cow;

use image::GrayImage;

use crate::error::Result;
use crate::memory::zeroed_bytes;
use crate::operation::{Border, GrayView, Operation, view};
use crate::rows::RowSource;

/// The image a 'valid' filter reads: the caller's own, or a widened copy of it.
pub(crate) enum Padded<'a> {
    /// The caller's image, as it is ([`Border::Valid`]).
    Borrowed(GrayView<'a>),
    /// The caller's image widened by a pixel on every side.
    Owned(GrayImage),
}

impl Padded<'_> {
    /// The pixels to filter.
    pub(crate) fn view(&self) -> GrayView<'_> {
        match self {
            Padded::Borrowed(image) => image.clone(),
            Padded::Owned(image) => view(image),
        }
    }
}

/// `image` and `operation` as the 'valid' filter takes them: unchanged for [`Border::Valid`],
/// else the image widened by one pixel on every side and the operation made 'valid'.
pub(crate) fn for_valid_filter<'a>(
    image: &GrayView<'a>,
    operation: &Operation,
) -> Result<(Padded<'a>, Cow<'static, Operation>)> {
    let border = operation.border();
    if border == Border::Valid {
        return Ok((
            Padded::Borrowed(image.clone()),
            Cow::Owned(operation.clone()),
        ));
    }
    operation.output_size(image.width(), image.height())?;
    Ok((
        Padded::Owned(pad(image, border)?),
        Cow::Owned(operation.clone().with_border(Border::Valid)),
    ))
}

/// `image` widened by one pixel on every side, the new pixels as `border` says.
pub(crate) fn pad(image: &GrayView<'_>, border: Border) -> Result<GrayImage> {
    let (width, height) = image.dimensions();
    let padded_width = width as usize + 2;
    let mut pixels = zeroed_bytes(padded_width * (height as usize + 2), "a padded image")?;
    for (y, row) in pixels.chunks_exact_mut(padded_width).enumerate() {
        if let Some(source) = border.source_index(y as i64 - 1, height) {
            let start = source as usize * width as usize;
            pad_row(&image.as_raw()[start..start + width as usize], border, row);
        }
    }
    Ok(GrayImage::from_raw(width + 2, height + 2, pixels).expect("(W+2)×(H+2) pixels"))
}

/// `row` widened by a pixel at each end into `padded` (two longer), as `border` says.
pub(crate) fn pad_row(row: &[u8], border: Border, padded: &mut [u8]) {
    let width = row.len() as u32;
    padded[1..=row.len()].copy_from_slice(row);
    for (at, index) in [(0, -1), (row.len() + 1, i64::from(width))] {
        padded[at] = border
            .source_index(index, width)
            .map_or(0, |source| row[source as usize]);
    }
}

/// The rows of `inner` widened as `border` says: a row above the first and below the last, and
/// a pixel at each end of every row. Holds the image's first two and last two rows at most.
pub(crate) struct PaddedRows<'a> {
    inner: &'a mut dyn RowSource,
    border: Border,
    /// Padded rows made but not yet handed out, in order.
    ready: std::collections::VecDeque<Vec<u8>>,
    /// The last two rows read from `inner`, padded, for the row below the last.
    recent: [Option<Vec<u8>>; 2],
    rows_read: u32,
    rows_out: u32,
}

impl<'a> PaddedRows<'a> {
    pub(crate) fn new(inner: &'a mut dyn RowSource, border: Border) -> Self {
        Self {
            inner,
            border,
            ready: Default::default(),
            recent: [None, None],
            rows_read: 0,
            rows_out: 0,
        }
    }

    /// Reads the next row of `inner`, padded.
    fn read_padded(&mut self) -> Result<Vec<u8>> {
        let width = self.inner.width() as usize;
        let mut row = vec![0; width];
        self.inner.read_rows(&mut row)?;
        let mut padded = vec![0; width + 2];
        pad_row(&row, self.border, &mut padded);
        self.rows_read += 1;
        self.recent = [self.recent[1].take(), Some(padded.clone())];
        Ok(padded)
    }

    /// The padded row for padded index `y` (0 is the row above the image).
    fn next_row(&mut self) -> Result<Vec<u8>> {
        let height = self.inner.height();
        let y = self.rows_out;
        self.rows_out += 1;
        if let Some(row) = self.ready.pop_front() {
            return Ok(row);
        }
        let width = self.inner.width() as usize + 2;
        if y == 0 {
            // The row above: row 0 or row 1 of the image, or zeros; read what it needs.
            let first = self.read_padded()?;
            let above = match self.border.source_index(-1, height) {
                None => vec![0; width],
                Some(0) => first.clone(),
                Some(_) => {
                    let second = self.read_padded()?;
                    self.ready.push_back(first);
                    self.ready.push_back(second.clone());
                    return Ok(second);
                }
            };
            self.ready.push_back(first);
            return Ok(above);
        }
        if self.rows_read < height {
            return self.read_padded();
        }
        // The row below the last: the last row, the one before it, or zeros.
        Ok(match self.border.source_index(i64::from(height), height) {
            None => vec![0; width],
            Some(source) if source + 1 == height => self.recent[1].clone().expect("a last row"),
            Some(_) => self.recent[0].clone().expect("a row before the last"),
        })
    }
}

impl RowSource for PaddedRows<'_> {
    fn width(&self) -> u32 {
        self.inner.width() + 2
    }

    fn height(&self) -> u32 {
        self.inner.height() + 2
    }

    fn read_rows(&mut self, rows: &mut [u8]) -> Result<()> {
        let width = self.width() as usize;
        for row in rows.chunks_exact_mut(width) {
            row.copy_from_slice(&self.next_row()?);
        }
        Ok(())
    }
}
