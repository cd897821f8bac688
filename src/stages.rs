//! The one way gpuconv overlaps work on threads: buffers passed along bounded queues and handed
//! back to be refilled ([`Belt`]), and the read → filter → write runner built on them ([`run`])
//! that band streaming, the frame stream and the pipeline's files all use. A core piece, below
//! the I/O (the TIFF sink feeds its encoder's thread through a [`Belt`]) and the pipeline.
//!
//! Why by hand rather than a crate: the whole of it is two `std` channels per queue; what
//! gpuconv needs of it (a fixed set of buffers that go round, so that memory stays a few bands
//! or frames whatever the length, and a stop that drains cleanly on any stage's error) is the
//! product's own policy, not a general scheduler's.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use crate::error::Result;

/// A bounded queue of full buffers one way and empty ones the other: the loader takes an
/// empty buffer, fills it and sends it; the unloader takes it, uses it and hands it back. The
/// buffers given at the start are the only ones, so a belt holds no more memory than that
/// whatever goes along it.
pub(crate) fn belt(buffers: Vec<Vec<u8>>) -> (Loader, Unloader) {
    // Without a buffer the loader would wait for one for ever.
    assert!(!buffers.is_empty(), "a belt needs a buffer");
    let count = buffers.len();
    let (full_in, full) = sync_channel(count);
    let (empty_in, empties) = sync_channel(count);
    for buffer in buffers {
        empty_in.send(buffer).expect("room for every buffer");
    }
    (
        Loader {
            empties,
            full: full_in,
        },
        Unloader {
            full,
            empties: empty_in,
        },
    )
}

/// The filling end of a [`belt`].
pub(crate) struct Loader {
    empties: Receiver<Vec<u8>>,
    full: SyncSender<Vec<u8>>,
}

impl Loader {
    /// The next empty buffer, once one is handed back; `None` when the other end is gone.
    pub(crate) fn empty(&self) -> Option<Vec<u8>> {
        self.empties.recv().ok()
    }

    /// Passes a filled buffer on; `false` when the other end is gone.
    pub(crate) fn send(&self, buffer: Vec<u8>) -> bool {
        self.full.send(buffer).is_ok()
    }
}

/// The using end of a [`belt`].
pub(crate) struct Unloader {
    full: Receiver<Vec<u8>>,
    empties: SyncSender<Vec<u8>>,
}

impl Unloader {
    /// The next filled buffer; `None` once the loader is gone and the queue empty.
    pub(crate) fn next(&self) -> Option<Vec<u8>> {
        self.full.recv().ok()
    }

    /// Hands a used buffer back to be filled again (dropped if the loader is gone).
    pub(crate) fn give_back(&self, buffer: Vec<u8>) {
        let _ = self.empties.send(buffer);
    }
}

/// Reads into a buffer (resizing it as it needs, within its capacity): `true` when it filled
/// one, `false` at the end of the input.
pub(crate) type Read<'a> = dyn FnMut(&mut Vec<u8>) -> Result<bool> + Send + 'a;

/// Filters one input buffer into one buffer per output (resizing them as it needs), and
/// returns the input buffer to be read into again.
pub(crate) type Filter<'a> = dyn FnMut(Vec<u8>, &mut [Vec<u8>]) -> Result<Vec<u8>> + 'a;

/// Writes one output's buffer.
pub(crate) type Write<'a> = dyn FnMut(&[u8]) -> Result<()> + Send + 'a;

/// The time the reader and the writers were busy, summed over their buffers (the busiest
/// writer for `write`); the filter's is its caller's to time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Busy {
    pub(crate) read: Duration,
    pub(crate) write: Duration,
}

/// Runs `read` on a thread of its own, `filter` on the calling thread and each of `writes` on a
/// thread of its own, joined by [`belt`]s: `inputs` are the buffers read into, `outputs[i]` the
/// buffers the filter makes for `writes[i]`. The slowest stage sets the pace, and memory is the
/// buffers given.
///
/// Any stage's error stops the others at their next buffer (what was already queued for a
/// writer is written); the error returned is the first to happen.
pub(crate) fn run(
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<Vec<u8>>>,
    read: &mut Read<'_>,
    filter: &mut Filter<'_>,
    writes: Vec<&mut Write<'_>>,
) -> Result<Busy> {
    assert_eq!(outputs.len(), writes.len(), "a set of buffers per writer");
    // The first error in time: the others are mostly its echo (a stage stopped by it).
    let first_error = std::sync::Mutex::new(None);
    let failed = |result: Result<Duration>| -> Duration {
        result.unwrap_or_else(|error| {
            first_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_or_insert(error);
            Duration::ZERO
        })
    };
    let busy = std::thread::scope(|scope| {
        let (loader, unread) = belt(inputs);
        let failed = &failed;
        let reader = scope.spawn(move || {
            failed((|| {
                let mut busy = Duration::ZERO;
                while let Some(mut buffer) = loader.empty() {
                    let start = Instant::now();
                    let more = read(&mut buffer)?;
                    busy += start.elapsed();
                    if !more || !loader.send(buffer) {
                        break;
                    }
                }
                Ok(busy)
            })())
        });
        let mut planes = Vec::new();
        let mut writers = Vec::new();
        for (buffers, write) in outputs.into_iter().zip(writes) {
            let (loader, unloader) = belt(buffers);
            planes.push(loader);
            writers.push(scope.spawn(move || {
                failed((|| {
                    let mut busy = Duration::ZERO;
                    while let Some(buffer) = unloader.next() {
                        let start = Instant::now();
                        write(&buffer)?;
                        busy += start.elapsed();
                        unloader.give_back(buffer);
                    }
                    Ok(busy)
                })())
            }));
        }

        let filtered = (|| -> Result<Duration> {
            while let Some(input) = unread.next() {
                let mut made = Vec::with_capacity(planes.len());
                for plane in &planes {
                    // A writer gone has stopped on an error of its own, collected below.
                    let Some(buffer) = plane.empty() else {
                        return Ok(Duration::ZERO);
                    };
                    made.push(buffer);
                }
                let input = filter(input, &mut made)?;
                unread.give_back(input);
                for (plane, buffer) in planes.iter().zip(made) {
                    if !plane.send(buffer) {
                        return Ok(Duration::ZERO);
                    }
                }
            }
            Ok(Duration::ZERO)
        })();
        failed(filtered);
        // Closing the queues lets every writer drain and stop, and the reader stop at its next
        // buffer.
        drop(planes);
        drop(unread);
        let read = reader.join().expect("the reading thread panicked");
        let write = writers
            .into_iter()
            .map(|w| w.join().expect("a writing thread panicked"))
            .max()
            .unwrap_or_default();
        Busy { read, write }
    });
    match first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(error) => Err(error),
        None => Ok(busy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// Numbers 0..n through read → filter (doubled, and negated as a second output) → two
    /// writers, with two buffers per queue, so that each buffer goes round many times.
    fn numbers(n: u8, fail_read_at: Option<u8>, fail_write_at: Option<u8>) -> Result<Vec<u8>> {
        let mut next = 0u8;
        let mut read = |buffer: &mut Vec<u8>| -> Result<bool> {
            if Some(next) == fail_read_at {
                return Err(Error::InvalidOperation("read".into()));
            }
            if next == n {
                return Ok(false);
            }
            buffer.clear();
            buffer.push(next);
            next += 1;
            Ok(true)
        };
        let mut filter = |input: Vec<u8>, outputs: &mut [Vec<u8>]| -> Result<Vec<u8>> {
            outputs[0].clear();
            outputs[0].push(input[0].wrapping_mul(2));
            outputs[1].clear();
            outputs[1].push(input[0].wrapping_neg());
            Ok(input)
        };
        let mut doubled = Vec::new();
        let mut negated = Vec::new();
        let mut first = |b: &[u8]| -> Result<()> {
            if Some(b[0] / 2) == fail_write_at {
                return Err(Error::InvalidOperation("write".into()));
            }
            doubled.push(b[0]);
            Ok(())
        };
        let mut second = |b: &[u8]| -> Result<()> {
            negated.push(b[0]);
            Ok(())
        };
        let buffers = || vec![Vec::new(), Vec::new()];
        run(
            buffers(),
            vec![buffers(), buffers()],
            &mut read,
            &mut filter,
            vec![&mut first, &mut second],
        )?;
        let expected: Vec<u8> = (0..n).map(|i| i.wrapping_neg()).collect();
        assert_eq!(negated, expected);
        Ok(doubled)
    }

    #[test]
    fn every_buffer_arrives_in_order_through_a_few_that_go_round() {
        let doubled = numbers(100, None, None).unwrap();
        assert_eq!(doubled, (0..100).map(|i| i * 2).collect::<Vec<u8>>());
    }

    #[test]
    fn a_failing_reader_or_writer_stops_the_run_with_its_error() {
        let message = |e: Error| e.to_string();
        assert!(message(numbers(100, Some(37), None).unwrap_err()).contains("read"));
        assert!(message(numbers(100, None, Some(41)).unwrap_err()).contains("write"));
    }
}
