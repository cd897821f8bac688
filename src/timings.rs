//! Where the time of one filtering call went.

use std::fmt;
use std::time::Duration;

/// Durations of the stages of one call; a stage that did not happen (or was not measured) is `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Reading and decoding the input file (set by the caller that did it, such as the CLI).
    pub decode: Option<Duration>,
    /// Copying the image into GPU memory (GPU backend).
    pub upload: Option<Duration>,
    /// Wall time of the computation: the whole CPU filter, or the time spent waiting for the GPU
    /// (with several strips in flight, only the waiting that other work did not hide).
    pub compute: Option<Duration>,
    /// Time the GPU spent in the compute pass, from timestamp queries, when the adapter has them.
    pub kernel: Option<Duration>,
    /// Copying results out of GPU memory (GPU backend).
    pub readback: Option<Duration>,
    /// Encoding and writing the output files (set by the caller that did it).
    pub encode: Option<Duration>,
    /// Wall time of the whole filtering call, image in to images out: upload, compute and
    /// readback, which overlap on the GPU when an image runs in several strips.
    pub total: Option<Duration>,
}

impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stages = [
            ("decode", self.decode),
            ("upload", self.upload),
            ("compute", self.compute),
            ("gpu kernel", self.kernel),
            ("readback", self.readback),
            ("encode", self.encode),
            ("filter total", self.total),
        ];
        let parts: Vec<String> = stages
            .iter()
            .filter_map(|(name, d)| d.map(|d| format!("{name} {:.3} ms", d.as_secs_f64() * 1e3)))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Adds `part` to a stage's total, when it was measured.
pub(crate) fn add(total: &mut Option<Duration>, part: Option<Duration>) {
    if let Some(part) = part {
        *total = Some(total.unwrap_or_default() + part);
    }
}
