//! An answer's body: the encoded image, handed out 64 KiB at a time, holding its part of the
//! memory budget until it is all sent or its client is gone, and letting go of a client that
//! takes it in slower than the service's floor.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;

/// How much of an answer is handed to the connection at a time: the unit at which a slow
/// reader is noticed.
const CHUNK: usize = 64 << 10;

/// What is said when a client is let go for reading too slowly: the bytes it took and how long
/// it took them.
pub(super) type OnCut = Box<dyn FnOnce(usize, Duration) + Send + Sync>;

pub(super) struct Answer {
    bytes: Bytes,
    sent: usize,
    started: Option<Instant>,
    /// The answer's part of the memory budget, given back when the answer is dropped.
    _memory: OwnedSemaphorePermit,
    /// Bytes per second a client must take in, on average, once `window` has passed.
    min_rate: u64,
    window: Duration,
    on_cut: Option<OnCut>,
}

impl Answer {
    pub(super) fn new(
        bytes: Vec<u8>,
        memory: OwnedSemaphorePermit,
        min_rate: u64,
        window: Duration,
        on_cut: OnCut,
    ) -> Self {
        Self {
            bytes: bytes.into(),
            sent: 0,
            started: None,
            _memory: memory,
            min_rate,
            window,
            on_cut: Some(on_cut),
        }
    }
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.sent == this.bytes.len() {
            return Poll::Ready(None);
        }
        // Asked for more only once the connection took the last piece: the pace is the
        // client's.
        let now = Instant::now();
        let elapsed = now - *this.started.get_or_insert(now);
        if elapsed > this.window
            && (this.sent as f64) < this.min_rate as f64 * elapsed.as_secs_f64()
        {
            if let Some(cut) = this.on_cut.take() {
                cut(this.sent, elapsed);
            }
            // An error here aborts the connection: the client sees a short body against its
            // Content-Length, never a complete-looking truncated image.
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took its answer in too slowly",
            ))));
        }
        let end = (this.sent + CHUNK).min(this.bytes.len());
        // A copy, not a slice: a slice would keep the whole answer alive in the connection's
        // write queue after this body, and the budget it holds, are gone.
        let chunk = Bytes::copy_from_slice(&this.bytes[this.sent..end]);
        this.sent = end;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.bytes.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.bytes.len() - self.sent) as u64)
    }
}
