//! The accept loop: HTTP/1.1 connections with a header read timeout, and a graceful stop.

use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use super::Service;

pub(super) async fn serve(
    service: &Service,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<bool> {
    let router = service.router();
    let config = service.config();
    let mut http = hyper::server::conn::http1::Builder::new();
    // A client that sends its headers a byte at a time holds its own connection only, and only
    // for this long; hyper answers 408 and closes it.
    http.timer(TokioTimer::new())
        .header_read_timeout(config.read_timeout);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = http.serve_connection(
                        TokioIo::new(stream),
                        TowerToHyperService::new(router.clone()),
                    );
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        // A client that hangs up or times out ends only its own connection.
                        let _ = connection.await;
                    });
                }
                Err(error) => {
                    // Out of file descriptors, most likely: wait for connections to close
                    // rather than spin.
                    eprintln!("gpuconv serve: cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
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
