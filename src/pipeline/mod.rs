//! The one way images flow through gpuconv, whatever drives it: sources (files, bytes in memory,
//! row readers, frame readers) through a [`SharedEngine`] to sinks (files, bytes, frame
//! writers), streaming band by band whenever the formats allow and whole only where a format
//! forces it. The command line, its frame stream and the HTTP service only configure it.
//!
//! - [`bands`]: one image band by band, rows from a [`RowSource`] to a [`RowSink`] per output.
//! - [`frames`]: a stream of video frames (what `gpuconv stream` runs).
//! - [`batch`]: many inputs at once, a worker per core with its share of the memory budget.
//! - [`SharedEngine`]: the one engine a batch's workers or a service's requests share, re-opened
//!   after a lost GPU device.
//! - [`responses_npz`]: an image and its kernels' unclipped sums as one NumPy `.npz` archive.
//! - [`unclipped_edge`]: the lesson's Keras model, `|V| + |H|` unclipped, as a 16-bit image.
//!
//! All three overlap reading, filtering and writing with the same stage runner: bounded queues
//! of buffers that go round, so that memory is a few bands or frames whatever the length.

pub mod bands;
pub mod batch;
pub mod frames;
mod image;
mod responses;
mod shared;
mod unclipped;

pub use crate::rows::{CollectRows, DEFAULT_BAND_BYTES, ImageRows, RowSink, RowSource};
pub use bands::{filter_rows, filter_rows_timed};
pub use bytes::Bytes;
pub use image::{
    Destination, Filtered, Observer, Outlet, STREAM_FROM_PIXELS, Settings, Source, filter_image,
};
pub use responses::{responses_dtype, responses_npz};
pub use shared::{SharedEngine, Unavailable};
pub use unclipped::{
    Gray16Image, UNCLIPPED_EDGE_BYTES_PER_PIXEL, check_unclipped_edge, unclipped_edge,
    unclipped_edge_bound,
};
