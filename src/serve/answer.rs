//! An answer's body, in one of two forms: a small image encoded whole, handed out 64 KiB at a
//! time and holding its bytes of the memory budget until it is all sent or its client gone;
//! or a large one streamed as the filter encodes it, band by band, through a queue of a few
//! chunks. (How slowly a client may take either is the connection's business:
//! [`Paced`](super::server).)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use axum::body::Bytes;
use http_body::{Frame, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc;

/// How much of an answer is handed to the connection at a time.
const CHUNK: usize = 64 << 10;

/// How many chunks of a streamed answer wait between the filter and the connection: enough
/// that the filter rarely waits for a client that keeps up.
pub(super) const QUEUED_CHUNKS: usize = 4;

/// What a streamed answer still holds once its filter is done: the chunks queued, at most.
pub(super) const QUEUED_BYTES: usize = QUEUED_CHUNKS * CHUNK;

/// An answer encoded whole.
pub(super) struct Answer {
    bytes: Bytes,
    sent: usize,
    /// The answer's part of the memory budget, given back when the answer is dropped.
    _memory: OwnedSemaphorePermit,
}

impl Answer {
    pub(super) fn new(bytes: Vec<u8>, memory: OwnedSemaphorePermit) -> Self {
        Self {
            bytes: bytes.into(),
            sent: 0,
            _memory: memory,
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

/// What the filter sends a streamed answer.
pub(super) enum Piece {
    /// The next bytes of the file.
    Bytes(Bytes),
    /// The filter failed after the answer began: the connection is closed short.
    Failed(String),
    /// The file is complete; what the queue still holds is inside this part of the budget.
    Done(OwnedSemaphorePermit),
}

/// The writer a streamed answer's encoder writes into, on the filter's thread: it hands the
/// connection a chunk at a time, waiting while the queue is full (the client sets the pace),
/// and fails once the answer is dropped (the client gone or let go), which stops the filter.
/// It waits at most `patience` for the client to make room: the filter holds a worker, which a
/// client that takes nothing must not keep, whatever server the service's routes are mounted
/// in (the service's own connections also keep a floor on the rate).
pub(super) struct Outgoing {
    sender: mpsc::Sender<Piece>,
    pending: Vec<u8>,
    begun: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
    patience: std::time::Duration,
}

impl Outgoing {
    /// Must be made on the runtime, whose timers it waits with.
    pub(super) fn new(sender: mpsc::Sender<Piece>, patience: std::time::Duration) -> Self {
        Self {
            sender,
            pending: Vec::with_capacity(CHUNK),
            begun: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(AtomicBool::new(false)),
            runtime: tokio::runtime::Handle::current(),
            patience,
        }
    }

    /// Set once a chunk is sent: from then on the status line may be out, and a failure can
    /// only close the connection short.
    pub(super) fn begun(&self) -> Arc<AtomicBool> {
        self.begun.clone()
    }

    /// Set when the client took nothing for the whole patience, which ended the answer.
    pub(super) fn stalled(&self) -> Arc<AtomicBool> {
        self.stalled.clone()
    }

    fn send(&mut self) -> std::io::Result<()> {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        self.begun.store(true, Ordering::SeqCst);
        // The filter's threads are never the runtime's, where blocking would not be allowed.
        let sent = self.runtime.block_on(
            self.sender
                .send_timeout(Piece::Bytes(chunk.into()), self.patience),
        );
        match sent {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                self.stalled.store(true, Ordering::SeqCst);
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client took nothing of its answer for twice the read timeout",
                ))
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client is gone",
            )),
        }
    }
}

impl std::io::Write for Outgoing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.sender.is_closed() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client is gone",
            ));
        }
        let taken = bytes.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&bytes[..taken]);
        if self.pending.len() == CHUNK {
            self.send()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// An answer streamed from its filter.
pub(super) struct Streamed {
    /// The piece that began it, received before the status line was sent.
    first: Option<Piece>,
    receiver: mpsc::Receiver<Piece>,
    /// The budget the queue's last chunks hold, once the filter is done.
    memory: Option<OwnedSemaphorePermit>,
}

impl Streamed {
    pub(super) fn new(first: Option<Piece>, receiver: mpsc::Receiver<Piece>) -> Self {
        Self {
            first,
            receiver,
            memory: None,
        }
    }
}

impl http_body::Body for Streamed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            let piece = match this.first.take() {
                Some(piece) => piece,
                None => match ready!(this.receiver.poll_recv(context)) {
                    Some(piece) => piece,
                    // The filter's sender gone without a last word: it stopped abnormally.
                    None if this.memory.is_none() => {
                        return Poll::Ready(Some(Err(std::io::Error::other(
                            "the filter stopped before the answer was complete",
                        ))));
                    }
                    None => return Poll::Ready(None),
                },
            };
            match piece {
                Piece::Bytes(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                // An error aborts the connection: a chunked answer without its last chunk,
                // which no client takes for a complete image.
                Piece::Failed(reason) => {
                    return Poll::Ready(Some(Err(std::io::Error::other(reason))));
                }
                Piece::Done(memory) => this.memory = Some(memory),
            }
        }
    }
}
