//! A progress bar on stderr for long runs: files done in a batch, rows done in one large
//! streamed image. Only on a terminal, and never with `--quiet`: piped or logged, stderr holds
//! nothing but gpuconv's messages.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Whether a bar is on the screen: a second one would tear it.
static SHOWING: AtomicBool = AtomicBool::new(false);
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Images of at least this many pixels get a bar of their rows.
const LARGE_IMAGE_PIXELS: u64 = 64 << 20;

/// A bar, or nothing when stderr is not a terminal or the user asked for quiet.
pub struct Progress {
    bar: Option<ProgressBar>,
    pixels: AtomicU64,
    start: Instant,
}

impl Progress {
    fn shown(quiet: bool) -> bool {
        !quiet && std::io::stderr().is_terminal() && !SHOWING.load(Ordering::Relaxed)
    }

    /// A bar of `length` steps; a count, when how many is not known.
    fn bar(length: Option<u64>, template: &str) -> ProgressBar {
        let bar = length.map_or_else(ProgressBar::no_length, ProgressBar::new);
        let bar = bar.with_style(
            ProgressStyle::with_template(template)
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        SHOWING.store(true, Ordering::Relaxed);
        bar
    }

    /// A bar of files for a batch of `files` (none for a single file); a count of them when
    /// how many is not known (a list read as it is consumed).
    pub fn files(files: Option<usize>, quiet: bool) -> Self {
        let bar = (files != Some(1) && Self::shown(quiet)).then(|| {
            let bar = match files {
                Some(files) => Self::bar(
                    Some(files as u64),
                    "{bar:30} {pos}/{len} files, {msg}, {eta} left",
                ),
                None => Self::bar(None, "{spinner} {pos} files, {msg}"),
            };
            bar.set_message("- Mpx/s");
            bar
        });
        Self {
            bar,
            pixels: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// A bar of rows for one streamed image of `width × height` (none for smaller images).
    pub fn rows(width: u32, height: u32, quiet: bool) -> Self {
        let large = u64::from(width) * u64::from(height) >= LARGE_IMAGE_PIXELS;
        let bar = (large && Self::shown(quiet)).then(|| {
            Self::bar(
                Some(u64::from(height)),
                "{bar:30} {pos}/{len} rows, {per_sec}, {eta} left",
            )
        });
        Self {
            bar,
            pixels: AtomicU64::new(0),
            start: Instant::now(),
        }
    }

    /// One more file done, of `pixels` pixels.
    pub fn file_done(&self, pixels: u64) {
        let total = self.pixels.fetch_add(pixels, Ordering::Relaxed) + pixels;
        if let Some(bar) = &self.bar {
            let seconds = self.start.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{:.0} Mpx/s", total as f64 / seconds / 1e6));
            bar.inc(1);
        }
    }

    /// `rows` more rows done.
    pub fn rows_done(&self, rows: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(rows);
        }
    }

    /// Prints `line` on stderr without tearing the bar.
    pub fn eprintln(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            SHOWING.store(false, Ordering::Relaxed);
        }
    }
}

impl Drop for Progress {
    /// A run that stops on an error clears its bar before the error is printed.
    fn drop(&mut self) {
        self.finish();
    }
}
