//! The service embedded as a library: `gpuconv::serve::Service` in an application's own
//! runtime, and what only an embedder can do to it (lose the GPU device on purpose, drain).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::png;
use common::server::{get, post};
use gpuconv::serve::{Config, Service};
use gpuconv::{BackendChoice, Engine, Kernel, Operation};

/// `service` on a loopback port of a runtime of its own; stops when the sender is dropped.
fn serve(service: &Service) -> (String, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (address_tx, address_rx) = mpsc::channel();
    let service = service.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            address_tx.send(listener.local_addr().unwrap()).unwrap();
            let _ = service
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
    });
    let address = address_rx.recv().unwrap();
    (format!("http://{address}"), stop)
}

/// Polls `url` until it answers `status`.
fn wait_for(url: &str, status: u16) {
    let start = Instant::now();
    while get(url, &[]).status != status {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{url} never answered {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn quiet() -> Config {
    Config {
        log_requests: false,
        ..Config::default()
    }
}

#[test]
fn a_lost_gpu_device_is_reported_by_readyz_and_re_created() {
    let devices = Arc::new(Mutex::new(Vec::<wgpu::Device>::new()));
    let opened = Arc::new(AtomicUsize::new(0));
    // The second opening waits for the test, so that the lost state can be seen from outside.
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let open = {
        let (devices, opened) = (devices.clone(), opened.clone());
        move || {
            if opened.fetch_add(1, Ordering::SeqCst) > 0 {
                let _ = released
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
            }
            let engine = Engine::new(BackendChoice::Gpu)?;
            devices
                .lock()
                .unwrap()
                .push(engine.gpu().expect("a GPU engine").device().clone());
            Ok(engine)
        }
    };
    let service = match Service::new(open, quiet()) {
        Ok(service) => service,
        Err(error @ gpuconv::Error::NoAdapter { .. }) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but {error}"
            );
            eprintln!("skipping: {error}");
            return;
        }
        Err(error) => panic!("{error}"),
    };
    let (base, _stop) = serve(&service);
    let image = common::random_image(37, 23, 255, 17);
    let want = common::reference_image(
        &image,
        &Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()),
    );
    let filter = format!("{base}/v1/filter?edge=true");
    let readyz = format!("{base}/readyz");
    common::assert_same(&post(&filter, &png(&image), &[]).image(), &want, "before");

    devices.lock().unwrap()[0].destroy();
    wait_for(&readyz, 503);
    assert!(get(&readyz, &[]).error().contains("lost"));
    let refused = post(&filter, &png(&image), &[]);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), "1");
    assert!(
        refused.error().contains("re-created"),
        "{}",
        refused.error()
    );

    release.send(()).unwrap();
    wait_for(&readyz, 200);
    let reply = post(&filter, &png(&image), &[]);
    common::assert_same(&reply.image(), &want, "on the re-created device");
    assert_eq!(reply.header("x-gpuconv-backend"), "gpu");
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    let metrics = String::from_utf8(get(&format!("{base}/metrics"), &[]).body).unwrap();
    assert!(
        metrics.contains("gpuconv_rejections_total{reason=\"gpu_lost\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_draining_service_refuses_new_work_and_says_so() {
    let service = Service::new(|| Engine::new(BackendChoice::Cpu), quiet()).unwrap();
    let (base, _stop) = serve(&service);
    let body = png(&common::random_image(15, 11, 255, 2));
    assert!(service.is_ready());
    assert_eq!(
        post(&format!("{base}/v1/filter?edge=1"), &body, &[]).status,
        200
    );
    service.drain();
    assert!(!service.is_ready());
    let readyz = get(&format!("{base}/readyz"), &[]);
    assert_eq!(readyz.status, 503);
    assert!(readyz.error().contains("draining"));
    let refused = post(&format!("{base}/v1/filter?edge=1"), &body, &[]);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), "1");
    assert!(refused.error().contains("shutting down"));
    // Still alive: only readiness changes.
    assert_eq!(get(&format!("{base}/healthz"), &[]).status, 200);
}

#[test]
fn without_a_key_the_service_answers_loopback_clients_only_however_it_is_served() {
    let service = Service::new(|| Engine::new(BackendChoice::Cpu), quiet()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Its own server refuses to listen beyond loopback without a key (binding sends nothing).
        let open = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let refused = service.serve(open, async {}).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            refused.to_string().contains("without an API key"),
            "{refused}"
        );
    });
    // Mounted in an app's own server, its routes need to know the peer: without connect info
    // they refuse, with it they answer a loopback client.
    for connect_info in [false, true] {
        let (address_tx, address_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new().nest("/conv", service.router());
        let server = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            address_tx.send(listener.local_addr().unwrap()).unwrap();
            let stop = async {
                let _ = stopped.await;
            };
            if connect_info {
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            } else {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }
        });
        let address = address_rx.recv().unwrap();
        let reply = get(&format!("http://{address}/conv/readyz"), &[]);
        if connect_info {
            assert_eq!(reply.status, 200, "{}", reply.error());
        } else {
            assert_eq!(reply.status, 403);
            assert!(reply.error().contains("no API key"), "{}", reply.error());
        }
        drop(stop);
        runtime.block_on(server).unwrap().unwrap();
    }
}

#[test]
fn a_query_is_checked_as_the_server_checks_it_and_hostile_bytes_come_back_escaped() {
    assert_eq!(gpuconv::serve::check_query("edge=true").unwrap(), "edge");
    assert_eq!(
        gpuconv::serve::check_query("kernel=vertical&border=reflect").unwrap(),
        "kernel=vertical,border=reflect"
    );
    for (query, says) in [
        ("edge=%1b%5B2J", "edge=\\x1b[2J"),
        ("col%07our=1", "'col\\x07our'"),
        ("kernel=%0d%0a1,2", "'\\x0d\\x0a1,2'"),
        ("edge=1&format=p%1bng", "format=p\\x1bng"),
        ("edge=1&edge=0", "'edge' is given twice"),
    ] {
        let message = gpuconv::serve::check_query(query).unwrap_err();
        assert!(message.contains(says), "{query}: {message}");
        assert!(
            !message.chars().any(char::is_control),
            "{query}: {message:?}"
        );
    }
}
