//! The accept loop: HTTP/1.1 connections with read and write timeouts, a cap on how many are
//! open, and a graceful stop.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;

use super::Service;

/// The most a request's line and headers may take, buffered: a query of kernels is a few
/// hundred bytes.
const MAX_HEAD_BYTES: usize = 64 << 10;

pub(super) async fn serve(
    service: &Service,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<bool> {
    let config = service.config();
    let local = listener.local_addr()?;
    if config.api_key.is_none() && !super::api::is_loopback(local.ip()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "refusing to serve on {local} without an API key: any address but loopback needs one"
            ),
        ));
    }
    let router = service.router();
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client that sends its headers a byte at a time holds its own connection only, and only
    // for this long; hyper then closes it.
    http.timer(TokioTimer::new())
        .header_read_timeout(config.read_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // At the cap, new connections wait in the kernel's backlog rather than take memory here.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let request = super::api::CurrentRequest::default();
                    // A client that takes its answer too slowly, or not at all, is let go.
                    let stream = Paced::new(stream, config.min_read_rate, config.read_timeout, {
                        let state = service.state.clone();
                        let request = request.clone();
                        move |taken, waited| {
                            state.metrics.cut("slow_reader");
                            if state.config.log_requests {
                                let floor = state.config.min_read_rate;
                                let floor = if floor == 0 {
                                    String::new()
                                } else {
                                    format!(", below the floor of {} per second", crate::io::format_bytes(floor))
                                };
                                crate::text::say!(
                                    "gpuconv serve: id={} answer cut: the client at {peer} took {taken} bytes in the last {:.1} s it kept the server waiting{floor}",
                                    request.id(),
                                    waited.as_secs_f64(),
                                );
                            }
                        }
                    });
                    let connection = http.serve_connection(
                        TokioIo::new(stream),
                        // Who the peer is, for the routes that answer loopback clients only;
                        // which request it sent last, for the line saying it was let go.
                        TowerToHyperService::new(
                            router
                                .clone()
                                .layer(axum::Extension(axum::extract::ConnectInfo(peer)))
                                .layer(axum::Extension(request)),
                        ),
                    );
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        // A client that hangs up or times out ends only its own connection.
                        let _ = connection.await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    use std::io::ErrorKind;
                    // A connection that failed on its own is no reason to stop accepting.
                    let this_connection = matches!(
                        error.kind(),
                        ErrorKind::ConnectionAborted
                            | ErrorKind::ConnectionReset
                            | ErrorKind::PermissionDenied
                            | ErrorKind::Interrupted
                    );
                    if !this_connection {
                        // Out of file descriptors or memory, most likely: wait for
                        // connections to close rather than spin.
                        crate::text::say!("gpuconv serve: cannot accept a connection: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    service.drain();
    let finished = tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_ok();
    Ok(finished)
}

/// A connection whose client must take what is written to it at `floor` bytes per second: in
/// each `window` of time spent waiting for it (writes its connection could not take), at least
/// `floor × window` bytes and at least one, or the connection fails (hyper then closes it, and
/// the answer being sent is dropped with its memory). Only waiting counts, never the server's
/// own time (a filter still making a streamed answer, a keep-alive connection idle between
/// requests), and a timer wakes the connection at the window's end, so a client that trickles
/// a few bytes at a time is let go on time.
struct Paced<S> {
    inner: S,
    floor: u64,
    window: Duration,
    /// When the write now waiting began to wait.
    waiting_since: Option<Instant>,
    /// Time waited and bytes taken in this window.
    waited: Duration,
    taken: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Told, once, of a client let go: the bytes it took in the window, and the window.
    on_cut: Option<Box<dyn FnOnce(u64, Duration) + Send>>,
}

impl<S> Paced<S> {
    fn new(
        inner: S,
        floor: u64,
        window: Duration,
        on_cut: impl FnOnce(u64, Duration) + Send + 'static,
    ) -> Self {
        Self {
            inner,
            floor,
            window,
            waiting_since: None,
            waited: Duration::ZERO,
            taken: 0,
            deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
            on_cut: Some(Box::new(on_cut)),
        }
    }

    fn cut_error() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client took its answer in too slowly",
        )
    }

    /// Counts a write or flush: bytes taken, or a wait, judged at each window's end.
    fn pace<T>(
        &mut self,
        context: &mut Context<'_>,
        outcome: Poll<std::io::Result<T>>,
        bytes: impl Fn(&T) -> usize,
    ) -> Poll<std::io::Result<T>> {
        if self.on_cut.is_none() {
            return Poll::Ready(Err(Self::cut_error()));
        }
        let now = Instant::now();
        if let Some(since) = self.waiting_since.take() {
            self.waited += now - since;
        }
        match outcome {
            Poll::Ready(Ok(done)) => {
                let n = bytes(&done) as u64;
                self.taken += n;
                if self.waited >= self.window && self.fast_enough() {
                    self.next_window();
                }
                Poll::Ready(Ok(done))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                if self.waited.is_zero() {
                    // A window begins with its first wait: what the connection took before
                    // (its socket's buffers filling, an earlier answer) says nothing of the
                    // client's pace now.
                    self.taken = 0;
                }
                self.waiting_since = Some(now);
                loop {
                    if self.waited >= self.window {
                        if !self.fast_enough() {
                            let cut = self.on_cut.take().expect("not cut yet");
                            cut(self.taken, self.waited);
                            return Poll::Ready(Err(Self::cut_error()));
                        }
                        self.next_window();
                    }
                    // Woken at the window's end too, should the client take nothing more.
                    let end = tokio::time::Instant::from_std(now + (self.window - self.waited));
                    self.deadline.as_mut().reset(end);
                    if self.deadline.as_mut().poll(context).is_pending() {
                        return Poll::Pending;
                    }
                    self.waited = self.window;
                }
            }
        }
    }

    fn fast_enough(&self) -> bool {
        self.taken > 0 && self.taken as f64 >= self.floor as f64 * self.waited.as_secs_f64()
    }

    fn next_window(&mut self) {
        self.waited = Duration::ZERO;
        self.taken = 0;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Paced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let outcome = Pin::new(&mut this.inner).poll_write(context, buf);
        this.pace(context, outcome, |&n| n)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let outcome = Pin::new(&mut this.inner).poll_write_vectored(context, bufs);
        this.pace(context, outcome, |&n| n)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let outcome = Pin::new(&mut this.inner).poll_flush(context);
        this.pace(context, outcome, |_| 0)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}
