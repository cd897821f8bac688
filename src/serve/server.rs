//! The accept loop: HTTP/1.1 connections with read and write timeouts, a cap on how many are
//! open, and a graceful stop.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;

use super::Service;

/// The most a request's line and headers may take, buffered: a query of kernels is a few
/// hundred bytes.
const MAX_HEAD_BYTES: usize = 64 << 10;

pub(super) async fn serve(
    service: &Service,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
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
                    // A client that stops reading its answer is let go after this long.
                    let mut stream = TimeoutStream::new(stream);
                    stream.set_write_timeout(Some(config.read_timeout));
                    let connection = http.serve_connection(
                        TokioIo::new(Box::pin(stream)),
                        // Who the peer is, for the routes that answer loopback clients only.
                        TowerToHyperService::new(
                            router.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer))),
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
