//! The convolution service inside an application's own axum server: gpuconv's routes mounted
//! under `/conv`, beside the application's own, on the application's runtime. Posts one image to
//! itself, checks the answer against the reference, and stops.
//!
//! ```sh
//! cargo run --example serve_in_app -- img/camera.png
//! ```

use std::path::PathBuf;

use gpuconv::serve::{Config, Service};
use gpuconv::{BackendChoice, Engine, Kernel, Operation, io, reference};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let input = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("usage: serve_in_app IMAGE"))?;

    // The engine opens once and stays warm; `open` runs again if the GPU device is lost.
    let service = Service::new(|| Engine::new(BackendChoice::Auto), Config::default())?;
    println!("filtering on {}", service.backend());
    let app = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(|| async { "the application's own route" }),
        )
        .nest("/conv", service.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // With connect info: a service without an API key answers only loopback clients, and
        // it must see who the client is to know.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    // A client: any HTTP client will do; this one blocks, so it runs off the runtime.
    let body = std::fs::read(&input)?;
    let url = format!("http://{address}/conv/v1/filter?edge=true");
    let answer = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let mut response = ureq::post(&url).send(&body[..])?;
        Ok(response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()?)
    })
    .await??;
    let edges = image::load_from_memory(&answer)?.to_luma8();

    let operation = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let expected = reference::run(&io::load_gray(&input)?, &operation)
        .combined
        .expect("an edge image");
    anyhow::ensure!(
        edges == expected,
        "the service's answer differs from the reference"
    );
    println!(
        "POST /conv/v1/filter?edge=true: {}x{} edge image, equal to the reference",
        edges.width(),
        edges.height()
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}
