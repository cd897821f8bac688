//! `gpuconv serve` as its users drive it: the real binary on a loopback port, over HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::server::{Server, get, post};
use common::{png, reference_image};
use gpuconv::{Border, Combine, Kernel, Operation};
use image::GrayImage;

const BACKENDS: [&str; 2] = ["cpu", "gpu"];

/// A random image of `width`×`height` as PNG, and its edge image by the reference.
fn edge_case(width: u32, height: u32, seed: u64) -> (Vec<u8>, GrayImage) {
    let image = common::random_image(width, height, 255, seed);
    let edge = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    (png(&image), reference_image(&image, &edge))
}

#[test]
fn every_operation_and_border_gives_the_reference_bits_on_both_backends() {
    let lines = || vec![Kernel::vertical_lines(), Kernel::horizontal_lines()];
    let operations: Vec<(&str, Operation)> = vec![
        (
            "kernel=vertical",
            Operation::responses(vec![Kernel::vertical_lines()]).unwrap(),
        ),
        (
            "kernel=horizontal",
            Operation::responses(vec![Kernel::horizontal_lines()]).unwrap(),
        ),
        (
            // Rows with a leading minus, URL-encoded as a client must.
            "kernel=-1%2C0%2C1%3B-2%2C0%2C2%3B-1%2C0%2C1",
            Operation::responses(vec![Kernel::parse("-1,0,1;-2,0,2;-1,0,1", "k").unwrap()])
                .unwrap(),
        ),
        (
            "kernel=gaussian-blur",
            Operation::responses(vec![Kernel::named("gaussian-blur").unwrap()]).unwrap(),
        ),
        (
            "edge=true",
            Operation::new(lines(), Combine::Edge, false).unwrap(),
        ),
        (
            "threshold=255",
            Operation::new(lines(), Combine::Threshold(255), false).unwrap(),
        ),
        (
            "threshold=90",
            Operation::new(lines(), Combine::Threshold(90), false).unwrap(),
        ),
    ];
    let borders = [
        Border::Valid,
        Border::Zero,
        Border::Replicate,
        Border::Reflect,
    ];
    let image = common::random_image(53, 31, 255, 11);
    let body = png(&image);
    for backend in BACKENDS {
        let Some(server) = Server::start(backend, &[]) else {
            continue;
        };
        for (query, operation) in &operations {
            for border in borders {
                let url = server.url(&format!("/v1/filter?{query}&border={}", border.name()));
                let reply = post(&url, &body, &[]);
                let what = format!("{backend}: {query}, border {}", border.name());
                let want = reference_image(&image, &operation.clone().with_border(border));
                common::assert_same(&reply.image(), &want, &what);
                assert_eq!(reply.header("content-type"), "image/png", "{what}");
                assert_eq!(reply.header("x-gpuconv-backend"), backend, "{what}");
                assert_eq!(
                    reply.header("x-gpuconv-output-size"),
                    format!("{}x{}", want.width(), want.height()),
                    "{what}"
                );
                assert!(!reply.header("x-request-id").is_empty());
            }
        }
    }
}

#[test]
fn the_lessons_example_and_output_formats() {
    let example = common::gray(&[
        &[1, 1, 1, 0, 0],
        &[0, 1, 1, 1, 0],
        &[0, 0, 1, 1, 1],
        &[0, 0, 1, 1, 0],
        &[0, 1, 1, 0, 0],
    ]);
    let photo = common::random_image(41, 27, 255, 5);
    for backend in BACKENDS {
        let Some(server) = Server::start(backend, &[]) else {
            continue;
        };
        let reply = post(
            &server.url("/v1/filter?kernel=1%2C0%2C1%3B0%2C1%2C0%3B1%2C0%2C1"),
            &png(&example),
            &[],
        );
        assert_eq!(
            common::rows(&reply.image()),
            [[4, 3, 4], [2, 4, 3], [2, 3, 4]],
            "{backend}"
        );
        let want = reference_image(
            &photo,
            &Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()),
        );
        for (format, content_type) in [
            ("pgm", "image/x-portable-graymap"),
            ("tif", "image/tiff"),
            ("bmp", "image/bmp"),
            ("png", "image/png"),
        ] {
            let reply = post(
                &server.url(&format!("/v1/filter?edge=true&format={format}")),
                &png(&photo),
                &[],
            );
            assert_eq!(
                reply.header("content-type"),
                content_type,
                "{backend} {format}"
            );
            common::assert_same(&reply.image(), &want, &format!("{backend} {format}"));
        }
        // Any format gpuconv reads is a fine body: here a PGM, and a colour JPEG made gray.
        let mut pgm = format!("P5\n{} {}\n255\n", photo.width(), photo.height()).into_bytes();
        pgm.extend_from_slice(photo.as_raw());
        common::assert_same(
            &post(&server.url("/v1/filter?edge=true"), &pgm, &[]).image(),
            &want,
            &format!("{backend} PGM body"),
        );
    }
}

/// A PNG whose header claims `width`×`height` and whose data is a few bytes.
fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(&ihdr);
    bytes.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 4, b'I', b'D', b'A', b'T', 1, 2, 3, 4, 0, 0, 0, 0]);
    bytes
}

#[test]
fn every_error_has_its_status_and_one_json_line() {
    let image = png(&common::random_image(29, 17, 255, 3));
    let tiny = png(&common::random_image(2, 2, 255, 4));
    let mut corrupt = image.clone();
    corrupt.truncate(60);
    let big = png(&GrayImage::from_fn(300, 300, |x, y| {
        image::Luma([(x ^ y) as u8])
    }));
    for backend in BACKENDS {
        let Some(server) = Server::start(
            backend,
            &[
                "--max-pixels",
                "100000",
                "--max-body-bytes",
                "64K",
                "--max-memory",
                "128K",
                "--workers",
                "2",
            ],
        ) else {
            continue;
        };
        // Queries that do not parse, each with a good image.
        let bad_queries = [
            ("kernel=1,2;3", "invalid kernel"),
            ("kernel=nonsense", "invalid kernel"),
            ("edge=true&kernel=vertical", "exactly 2 kernels"),
            ("kernel=vertical&kernel=horizontal", "a request yields one"),
            ("", "no kernel given"),
            ("edge=maybe", "edge=maybe"),
            ("threshold=600", "0 to 510"),
            ("edge=true&threshold=9", "exclude each other"),
            ("border=wrap&edge=1", "border=wrap"),
            ("format=xyz&edge=1", "format=xyz"),
            ("colour=red&edge=1", "unknown parameter 'colour'"),
        ];
        let mut cases: Vec<(&str, Vec<u8>, u16, &str)> = bad_queries
            .into_iter()
            .map(|(query, says)| (query, image.clone(), 400, says))
            .collect();
        // Bodies that are not images gpuconv can filter here.
        cases.extend([
            ("edge=true", Vec::new(), 400, "empty"),
            ("edge=true", corrupt.clone(), 400, "truncated"),
            ("edge=true", b"just some text".to_vec(), 415, "not a PNG"),
            ("edge=true", tiny.clone(), 422, "smaller than the 3"),
            (
                "edge=true",
                png_header_claiming(40_000, 30_000),
                422,
                "pixels",
            ),
            (
                "edge=true",
                vec![0x89; 70 * 1024],
                413,
                "larger than this server's limit of 64.0 KiB",
            ),
            ("edge=true&format=pbm", image.clone(), 422, "PBM"),
            // 90 000 pixels: under --max-pixels, over a worker's 64 KiB share of the memory.
            (
                "edge=true",
                big.clone(),
                422,
                "more than the memory budget of 64.0 KiB",
            ),
        ]);
        for (query, body, status, says) in cases {
            let reply = post(&server.url(&format!("/v1/filter?{query}")), &body, &[]);
            let what = format!("{backend}: ?{query} with {} bytes", body.len());
            assert_eq!(
                reply.status,
                status,
                "{what}: {:?}",
                String::from_utf8_lossy(&reply.body[..reply.body.len().min(200)])
            );
            assert_eq!(reply.header("content-type"), "application/json", "{what}");
            let error = reply.error();
            assert!(
                error.contains(says),
                "{what}: {error:?} does not say {says:?}"
            );
            assert!(!error.contains('\n'), "{what}: {error:?}");
        }
        // The tiny image is fine once a border keeps the output the image's size.
        let reply = post(
            &server.url("/v1/filter?edge=true&border=replicate"),
            &tiny,
            &[],
        );
        assert_eq!(reply.image().dimensions(), (2, 2));

        assert_eq!(get(&server.url("/nowhere"), &[]).status, 404);
        let wrong_method = get(&server.url("/v1/filter?edge=true"), &[]);
        assert_eq!(wrong_method.status, 405);
        assert!(wrong_method.error().contains("POST"));
        // A server that answered every bad request is still alive and serving.
        assert_eq!(get(&server.url("/healthz"), &[]).status, 200);
        assert_eq!(
            post(&server.url("/v1/filter?edge=1"), &image, &[]).status,
            200
        );
        let log = server.wait_for_log(|log| log.contains("status=415"));
        assert!(!log.contains("status=500"), "{log}");
    }
}

/// Writes raw bytes to the server and returns the connection.
fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes the connection, as text.
fn read_all(stream: TcpStream) -> String {
    String::from_utf8_lossy(&read_bytes(stream)).into_owned()
}

fn read_bytes(mut stream: TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    bytes
}

#[test]
fn a_body_over_the_limit_is_refused_with_or_without_a_length() {
    let Some(server) = Server::start("cpu", &["--max-body-bytes", "10K"]) else {
        unreachable!()
    };
    // Declared too long: refused from the headers, before the body is sent.
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /v1/filter?edge=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n\r\n")
        .unwrap();
    let answer = read_all(stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Chunked, with no length: refused once the limit is crossed.
    let mut stream = connect(&server);
    stream
        .write_all(b"POST /v1/filter?edge=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .unwrap();
    for _ in 0..4 {
        let chunk = vec![b'a'; 4096];
        let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        let _ = stream.write_all(&chunk);
        let _ = stream.write_all(b"\r\n");
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let answer = read_all(stream);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // The client is told the limit, not the server's flags.
    assert!(answer.contains("limit of 10.0 KiB"), "{answer}");
    assert!(!answer.contains("--"), "{answer}");
}

#[test]
fn an_api_key_is_enforced_on_every_address_and_needed_off_loopback() {
    let key = "0123456789abcdef0123";
    let image = png(&common::random_image(19, 13, 255, 8));
    let Some(server) = Server::start_with_env("cpu", &[], &[("GPUCONV_API_KEY", key)]) else {
        unreachable!()
    };
    let url = server.url("/v1/filter?edge=true");
    let missing = post(&url, &image, &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), "Bearer");
    assert!(missing.error().contains("Authorization: Bearer"));
    let wrong = post(
        &url,
        &image,
        &[("Authorization", "Bearer 0123456789abcdef0124")],
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error(), "wrong API key");
    assert_eq!(post(&url, &image, &[("Authorization", key)]).status, 401);
    let bearer = format!("Bearer {key}");
    let right = post(&url, &image, &[("Authorization", &bearer)]);
    assert_eq!(right.status, 200);
    // The scheme's name in any case, as HTTP allows.
    let lower = format!("bearer {key}");
    assert_eq!(post(&url, &image, &[("Authorization", &lower)]).status, 200);
    assert_eq!(get(&server.url("/metrics"), &[]).status, 401);
    assert_eq!(
        get(&server.url("/metrics"), &[("Authorization", &bearer)]).status,
        200
    );
    // Probes need no key: load balancers send none.
    assert_eq!(get(&server.url("/readyz"), &[]).status, 200);
    assert_eq!(get(&server.url("/healthz"), &[]).status, 200);

    // Any address but loopback needs a key; the server says so and does not start.
    let refused = Server::try_start("cpu", "0.0.0.0:0", &[], &[])
        .err()
        .unwrap();
    assert!(
        refused.contains("refusing to listen on 0.0.0.0:0 without an API key"),
        "{refused}"
    );
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let key_file = key_file.to_str().unwrap();
    let open = Server::try_start("cpu", "0.0.0.0:0", &["--api-key-file", key_file], &[])
        .expect("a key file lets it listen on every interface");
    let port = open.address.rsplit(':').next().unwrap();
    let loopback = format!("http://127.0.0.1:{port}/v1/filter?edge=true");
    assert_eq!(post(&loopback, &image, &[]).status, 401);
    assert_eq!(
        post(&loopback, &image, &[("Authorization", &bearer)]).status,
        200
    );
    drop(open);
    let short = Server::try_start("cpu", "127.0.0.1:0", &[], &[("GPUCONV_API_KEY", "short")]);
    assert!(short.err().unwrap().contains("at least 16"));
    let twice = Server::try_start(
        "cpu",
        "127.0.0.1:0",
        &["--api-key-file", key_file],
        &[("GPUCONV_API_KEY", key)],
    );
    assert!(twice.err().unwrap().contains("set twice"));

    // Key files are small regular files: an endless one, a FIFO (which would hang start-up
    // waiting for a writer) and a large one are refused in one line.
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let large = dir.path().join("large");
    std::fs::write(&large, vec![b'k'; 5000]).unwrap();
    for (file, says) in [
        (Path::new("/dev/zero"), "not a regular file"),
        (fifo.as_path(), "not a regular file"),
        (large.as_path(), "at most 4096"),
    ] {
        let started = Instant::now();
        let refused = Server::try_start(
            "cpu",
            "127.0.0.1:0",
            &["--api-key-file", file.to_str().unwrap()],
            &[],
        )
        .err()
        .unwrap();
        assert!(refused.contains(says), "{refused}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

#[test]
fn slow_clients_hold_only_their_own_connection() {
    let (body, want) = edge_case(33, 21, 9);
    let Some(server) = Server::start("cpu", &["--read-timeout", "8", "--workers", "1"]) else {
        unreachable!()
    };
    // Headers a byte at a time, never finished.
    let mut dribbling = connect(&server);
    let dribbler = std::thread::spawn(move || {
        for byte in b"POST /v1/filter?edge=true HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " {
            if dribbling.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Bounded, so that a header timeout that never comes fails the test, not hangs it.
        for _ in 0..600 {
            std::thread::sleep(Duration::from_millis(100));
            if dribbling.write_all(b"a").is_err() {
                return Some(Instant::now());
            }
        }
        None
    });
    // A body that stops half-way.
    let stalled = half_sent(&server, &body);
    let stalled_at = Instant::now();

    // Meanwhile, with one worker, others are served, correctly, while the slow ones still wait
    // for their 8 s to run out.
    for _ in 0..5 {
        let reply = post(&server.url("/v1/filter?edge=true"), &body, &[]);
        common::assert_same(&reply.image(), &want, "beside slow clients");
    }
    let served_in = stalled_at.elapsed();
    let answer = read_all(stalled);
    let waited = stalled_at.elapsed();
    assert!(served_in < Duration::from_secs(6), "{served_in:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("read timeout"), "{answer}");
    assert!(
        waited >= Duration::from_millis(7000) && waited < Duration::from_secs(30),
        "{waited:?}"
    );
    // The dribbler is cut off by the header timeout.
    let cut_at = dribbler.join().unwrap().expect("the dribbler was cut off");
    assert!(cut_at.duration_since(stalled_at) < Duration::from_secs(30));
    server.wait_for_log(|log| log.contains("status=408"));
}

#[test]
fn a_burst_beyond_the_queue_gets_503_and_the_served_stay_correct() {
    // Large enough that one worker is still busy when the burst's last requests arrive.
    let (body, want) = edge_case(1500, 1201, 21);
    for backend in BACKENDS {
        if let Some(server) = Server::start(backend, &["--workers", "1", "--queue", "1"]) {
            burst(&server, &body, &want);
        }
    }
}

fn burst(server: &Server, body: &[u8], want: &GrayImage) {
    let url = server.url("/v1/filter?edge=true");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(12));
    let replies: Vec<_> = (0..12)
        .map(|_| {
            let (url, body, barrier) = (url.clone(), body.to_vec(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                post(&url, &body, &[])
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let served = replies.iter().filter(|r| r.status == 200).count();
    let refused = replies.iter().filter(|r| r.status == 503).count();
    assert_eq!(served + refused, 12, "only 200s and 503s");
    assert!(
        served >= 2 && refused >= 1,
        "{served} served, {refused} refused"
    );
    for reply in &replies {
        if reply.status == 200 {
            common::assert_same(&reply.image(), want, "served in a burst");
        } else {
            assert_eq!(reply.header("retry-after"), "1");
            assert!(reply.error().contains("busy"), "{}", reply.error());
        }
    }
    let metrics = String::from_utf8(get(&server.url("/metrics"), &[]).body).unwrap();
    assert!(
        metrics.contains(&format!(
            "gpuconv_rejections_total{{reason=\"queue_full\"}} {refused}"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "gpuconv_requests_total{{status=\"200\",op=\"edge\"}} {served}"
        )),
        "{metrics}"
    );
}

#[test]
fn health_readiness_and_metrics() {
    for backend in BACKENDS {
        let Some(server) = Server::start(backend, &[]) else {
            continue;
        };
        let health = get(&server.url("/healthz"), &[]);
        assert_eq!(health.status, 200);
        let ready = get(&server.url("/readyz"), &[]);
        assert_eq!(ready.status, 200);
        let ready: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
        assert_eq!(ready["backend"], backend, "{ready}");
        let body = png(&common::random_image(17, 15, 255, 1));
        for query in [
            "edge=1",
            "edge=1",
            "threshold=200",
            "kernel=vertical",
            "kernel=nonsense",
        ] {
            post(&server.url(&format!("/v1/filter?{query}")), &body, &[]);
        }
        let metrics = get(&server.url("/metrics"), &[]);
        assert!(metrics.header("content-type").contains("openmetrics-text"));
        let text = String::from_utf8(metrics.body).unwrap();
        for line in [
            "gpuconv_requests_total{status=\"200\",op=\"edge\"} 2",
            "gpuconv_requests_total{status=\"200\",op=\"threshold\"} 1",
            "gpuconv_requests_total{status=\"200\",op=\"kernel\"} 1",
            "gpuconv_requests_total{status=\"400\",op=\"none\"} 1",
            "gpuconv_request_duration_seconds_count 5",
            "gpuconv_filter_duration_seconds_count 4",
            "gpuconv_queue_depth 0",
            "gpuconv_in_flight 0",
        ] {
            assert!(text.contains(line), "{backend}: no {line:?} in\n{text}");
        }
        assert!(
            text.contains(&format!("gpuconv_backend_info{{backend=\"{backend}")),
            "{text}"
        );
        // One log line per request, with what an operator needs.
        let log = server.wait_for_log(|log| log.matches(" id=").count() >= 5);
        let lines: Vec<_> = log.lines().filter(|l| l.contains(" id=")).collect();
        assert_eq!(lines.len(), 5, "{log}");
        for field in [
            "op=edge",
            "status=200",
            "size=15x13",
            "queue_ms=",
            "filter_ms=",
            "in=",
        ] {
            assert!(lines[0].contains(field), "{}", lines[0]);
        }
        assert!(
            lines[0].contains(&format!("backend={backend}")),
            "{}",
            lines[0]
        );
        // A request id a proxy set is kept.
        let reply = post(
            &server.url("/v1/filter?edge=1"),
            &body,
            &[("X-Request-Id", "abc-123")],
        );
        assert_eq!(reply.header("x-request-id"), "abc-123");
    }
}

/// Sends an edge request's headers and half its body, and waits a moment: the request is then
/// in flight, and the caller sends the rest, or not.
fn half_sent(server: &Server, body: &[u8]) -> TcpStream {
    let mut stream = connect(server);
    stream
        .write_all(
            format!(
                "POST /v1/filter?edge=true HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    // In flight once the server has admitted it and waits for the rest of its body.
    let start = Instant::now();
    while !String::from_utf8(get(&server.url("/metrics"), &[]).body)
        .unwrap()
        .contains("gpuconv_queue_depth 1")
    {
        assert!(start.elapsed() < Duration::from_secs(20), "never admitted");
        std::thread::sleep(Duration::from_millis(10));
    }
    stream
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let (body, want) = edge_case(45, 29, 13);
    for backend in BACKENDS {
        let Some(mut server) = Server::start(backend, &["--shutdown-grace", "20"]) else {
            continue;
        };
        stop_with_a_request_in_flight(&mut server, &body, &want, 15);
    }
}

#[test]
fn sighup_drains_as_sigterm_does() {
    // A SIGHUP ignored where the tests run (nohup) is inherited, and gpuconv keeps it ignored.
    let ignored = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find(|l| l.starts_with("SigIgn:"))?;
            u64::from_str_radix(mask.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|mask| mask & 1 != 0);
    if ignored {
        eprintln!("skipping: SIGHUP is ignored in this process, and so in gpuconv serve");
        return;
    }
    let (body, want) = edge_case(45, 29, 16);
    let Some(mut server) = Server::start("cpu", &["--shutdown-grace", "20"]) else {
        unreachable!()
    };
    stop_with_a_request_in_flight(&mut server, &body, &want, 1);
    assert!(
        server.log().contains("SIGHUP: stopping"),
        "{}",
        server.log()
    );
}

fn stop_with_a_request_in_flight(server: &mut Server, body: &[u8], want: &GrayImage, signal: i32) {
    let mut in_flight = half_sent(server, body);
    server.signal(signal);
    // No new connections once stopping.
    let start = Instant::now();
    while TcpStream::connect(&server.address).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the listener stays open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    in_flight.write_all(&body[body.len() / 2..]).unwrap();
    let answer = read_bytes(in_flight);
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response")
        + 4;
    let head = String::from_utf8_lossy(&answer[..at]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let filtered = image::load_from_memory(&answer[at..]).unwrap().to_luma8();
    common::assert_same(&filtered, want, "finished while stopping");
    let status = server.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        server.log().contains("gpuconv serve: stopped"),
        "{}",
        server.log()
    );
}

#[test]
fn a_second_signal_stops_at_once_and_a_spent_grace_exits_1() {
    let body = png(&common::random_image(45, 29, 255, 14));
    let Some(mut server) = Server::start("cpu", &["--shutdown-grace", "60"]) else {
        unreachable!()
    };
    let _in_flight = half_sent(&server, &body);
    server.signal(15);
    server.wait_for_log(|log| log.contains("stopping"));
    server.signal(2);
    let status = server.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "{}", server.log());
    assert!(server.log().contains("stopped at once"));

    let Some(mut server) = Server::start("cpu", &["--shutdown-grace", "1", "--read-timeout", "30"])
    else {
        unreachable!()
    };
    let _in_flight = half_sent(&server, &body);
    let asked = Instant::now();
    server.signal(15);
    let status = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", server.log());
    assert!(asked.elapsed() >= Duration::from_millis(900));
    assert!(server.log().contains("cut short"), "{}", server.log());
}

#[test]
fn a_request_over_the_request_timeout_gets_503() {
    let body = png(&common::random_image(45, 29, 255, 15));
    let Some(server) = Server::start("cpu", &["--request-timeout", "1", "--read-timeout", "20"])
    else {
        unreachable!()
    };
    let started = Instant::now();
    let answer = read_all(half_sent(&server, &body));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("request timeout (1 s)"), "{answer}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let metrics = String::from_utf8(get(&server.url("/metrics"), &[]).body).unwrap();
    assert!(
        metrics.contains("gpuconv_rejections_total{reason=\"request_timeout\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_client_that_stops_reading_its_answer_is_let_go() {
    // A smooth image: a small PNG to send, a 25 MB PGM to answer, more than loopback buffers.
    let image = GrayImage::from_fn(5000, 5000, |x, y| {
        image::Luma([((x / 7 + y / 5) % 256) as u8])
    });
    let body = png(&image);
    let Some(server) = Server::start("cpu", &["--read-timeout", "2"]) else {
        unreachable!()
    };
    let mut stream = connect(&server);
    stream
        .write_all(
            format!(
                "POST /v1/filter?kernel=vertical&format=pgm HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&body).unwrap();
    server.wait_for_log(|log| log.contains("status=200"));
    // Not reading for longer than the timeout: the server gives up on the answer.
    std::thread::sleep(Duration::from_secs(5));
    let answer = read_bytes(stream);
    let expected_bytes = "P5\n4998 4998\n255\n".len() + 4998 * 4998;
    assert!(
        answer.len() < expected_bytes,
        "the whole answer ({} bytes) waited for a client that did not read",
        answer.len()
    );
    assert!(String::from_utf8_lossy(&answer[..64]).starts_with("HTTP/1.1 200"));
}

/// `GET /healthz` naming `host` as its Host, on a connection of its own; the whole answer.
fn get_as_host(server: &Server, host: &str) -> String {
    let mut stream = connect(server);
    stream
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    read_all(stream)
}

#[test]
fn without_a_key_only_this_machines_names_are_answered_and_every_answer_says_how_to_treat_it() {
    let Some(server) = Server::start(
        "cpu",
        &[
            "--allowed-host",
            "Conv.Local",
            "--allowed-host",
            "[fe80::1]:8080",
        ],
    ) else {
        unreachable!()
    };
    let port = server.address.rsplit(':').next().unwrap().to_owned();
    for host in [
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("LOCALHOST:{port}"),
        "127.1.2.3".to_owned(),
        format!("[::1]:{port}"),
        "conv.local".to_owned(),
        "conv.local.:80".to_owned(),
        "[FE80::1]".to_owned(),
    ] {
        let answer = get_as_host(&server, &host);
        assert!(answer.starts_with("HTTP/1.1 200"), "{host}: {answer}");
    }
    // A rebinding page's own name, a name that only starts like an allowed one, a bad literal.
    for host in [
        "evil.example",
        "localhost.evil.example",
        "[::1",
        "127.0.0.1.nip.io",
    ] {
        let answer = get_as_host(&server, host);
        assert!(answer.starts_with("HTTP/1.1 403"), "{host}: {answer}");
        assert!(answer.contains("this machine's names only"), "{answer}");
    }
    let metrics = String::from_utf8(get(&server.url("/metrics"), &[]).body).unwrap();
    assert!(
        metrics.contains("gpuconv_rejections_total{reason=\"host\"} 4"),
        "{metrics}"
    );

    // Every answer, an image, an error or the page: no sniffing, no storing.
    let image = png(&common::random_image(9, 7, 255, 3));
    let answers = [
        post(&server.url("/v1/filter?edge=true"), &image, &[]),
        post(&server.url("/v1/filter?edge=maybe"), &image, &[]),
        get(&server.url("/nowhere"), &[]),
        get(&server.url("/"), &[]),
    ];
    for reply in &answers {
        assert_eq!(reply.header("x-content-type-options"), "nosniff");
        assert_eq!(reply.header("cache-control"), "no-store");
    }
    // The page runs its own inline style and script and nothing else, and is never framed.
    let page = &answers[3];
    let policy = page.header("content-security-policy");
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(page.header("x-frame-options"), "DENY");

    // Kernels add up; anything else twice is refused by name.
    for (query, says) in [
        ("edge=true&edge=false", "'edge' is given twice"),
        ("edge=true&format=a/b.webp", "give an extension"),
        (
            "kernel=vertical&format=png&format=pgm",
            "'format' is given twice",
        ),
    ] {
        let reply = post(&server.url(&format!("/v1/filter?{query}")), &image, &[]);
        assert_eq!(reply.status, 400, "{query}");
        assert!(reply.error().contains(says), "{query}: {}", reply.error());
    }
}

#[test]
fn every_format_the_page_offers_is_read_from_a_body_tga_included() {
    let Some(server) = Server::start("cpu", &[]) else {
        unreachable!()
    };
    let image = common::random_image(23, 19, 255, 21);
    let want = reference_image(
        &image,
        &Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines()),
    );
    let page = String::from_utf8(get(&server.url("/"), &[]).body).unwrap();
    let accept = page
        .split("accept=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    assert!(accept.contains(".tga"), "{accept}");
    for extension in accept.split(',') {
        let extension = extension.trim_start_matches('.');
        let format = gpuconv::io::readable_format(extension)
            .unwrap_or_else(|| panic!("the page offers {extension}, which is not read"));
        // Gray where the format's encoder takes it, else the same gray in colour channels (QOI
        // has no gray of its own), which the luma rule turns back into the same values.
        let gray = image::DynamicImage::ImageLuma8(image.clone());
        let body = [gray.clone(), gray.to_rgb8().into(), gray.to_rgba8().into()]
            .into_iter()
            .find_map(|candidate| {
                let mut body = Vec::new();
                candidate
                    .write_to(&mut std::io::Cursor::new(&mut body), format)
                    .ok()
                    .map(|()| body)
            })
            .unwrap_or_else(|| panic!("cannot write {extension} to post"));
        let reply = post(&server.url("/v1/filter?edge=true"), &body, &[]);
        assert_eq!(
            reply.status,
            200,
            "{extension}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        if !matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::WebP) {
            common::assert_same(&reply.image(), &want, extension);
        }
    }
    // A hint for bytes that say nothing, and one that names no format.
    let mut tga = Vec::new();
    image::DynamicImage::ImageLuma8(image.clone())
        .write_to(&mut std::io::Cursor::new(&mut tga), image::ImageFormat::Tga)
        .unwrap();
    for (query, headers) in [
        ("edge=true&input=tga", vec![]),
        ("edge=true", vec![("Content-Type", "image/x-tga")]),
    ] {
        let reply = post(&server.url(&format!("/v1/filter?{query}")), &tga, &headers);
        assert_eq!(reply.status, 200, "{query}");
        common::assert_same(&reply.image(), &want, query);
    }
    let reply = post(&server.url("/v1/filter?edge=true&input=avif"), &tga, &[]);
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("input=avif"), "{}", reply.error());
}

/// Posts `body` for `query` on a connection of its own and reads only the answer's head and
/// the first bytes after it, then stops reading: a slow reader, as far as the server can tell.
fn post_and_stall(server: &Server, query: &str, body: &[u8]) -> (TcpStream, String) {
    let mut stream = connect(server);
    stream
        .write_all(
            format!(
                "POST /v1/filter?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(body).unwrap();
    let mut head = vec![0; 4096];
    let read = stream.read(&mut head).unwrap();
    head.truncate(read);
    let head = String::from_utf8_lossy(&head);
    let head = head.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    (stream, head)
}

/// A smooth image: a small PNG to send, a large answer to get back.
fn smooth(width: u32, height: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        image::Luma([((x / 50 + y / 40) % 7 * 30) as u8])
    })
}

#[test]
fn answers_waiting_for_slow_readers_stay_inside_the_memory_budget() {
    // A small PNG whose PPM answer is 11.7 MB, encoded whole (under 4 megapixels, in a format
    // not written in rows): more than loopback's socket buffers take, so a client that stops
    // reading leaves most of it with the server.
    let body = png(&smooth(2002, 1952));
    let budget: u64 = 64 << 20;
    let Some(server) = Server::start(
        "cpu",
        &[
            "--workers",
            "2",
            "--max-memory",
            "64M",
            "--read-timeout",
            "60",
            "--min-read-rate",
            "1",
            "--quiet",
        ],
    ) else {
        unreachable!()
    };
    let idle = server.resident_bytes();
    // Each held answer keeps its 11.7 MB of the 64; a new request needs a whole 32 MiB share.
    let mut stalled = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let (stream, head) = post_and_stall(&server, "edge=true&format=ppm", &body);
        if head.starts_with("HTTP/1.1 200") {
            assert!(head.contains("content-length: 11700017"), "{head}");
            stalled.push(stream);
        } else {
            assert!(head.starts_with("HTTP/1.1 503"), "{head}");
            assert!(
                head.to_ascii_lowercase().contains("retry-after: 1"),
                "{head}"
            );
            refused += 1;
        }
    }
    assert_eq!(
        (stalled.len(), refused),
        (3, 5),
        "three answers fit beside a share"
    );
    let held = server.resident_bytes().saturating_sub(idle);
    // The budget, plus what the allocator keeps of freed work and the bodies: 24 MiB.
    assert!(
        held < budget + (24 << 20),
        "{} MiB resident beyond idle, over the 64 MiB budget",
        held >> 20
    );
    let metrics = String::from_utf8(get(&server.url("/metrics"), &[]).body).unwrap();
    assert!(
        metrics.contains("gpuconv_rejections_total{reason=\"memory\"} 5"),
        "{metrics}"
    );
    // The readers gone, their answers' memory is back: work is taken again.
    drop(stalled);
    let start = Instant::now();
    loop {
        let reply = post(&server.url("/v1/filter?edge=true&format=ppm"), &body, &[]);
        if reply.status == 200 {
            assert_eq!(reply.body.len(), 17 + 2000 * 1950 * 3);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `stream` a hundred bytes every 50 ms (2 KB/s) for at most 5 s, or until it ends.
fn trickle(mut stream: TcpStream) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = vec![0; 100];
        for _ in 0..100 {
            if matches!(stream.read(&mut chunk), Ok(0) | Err(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn a_client_that_reads_its_answer_too_slowly_is_let_go_on_time() {
    let body = png(&smooth(2002, 1952));
    let Some(server) = Server::start("cpu", &["--read-timeout", "2", "--min-read-rate", "4M"])
    else {
        unreachable!()
    };
    let started = Instant::now();
    let (stream, head) = post_and_stall(&server, "edge=true&format=ppm", &body);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-length: 11700017"), "{head}");
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap()
        .to_owned();
    // A client that takes a hundred bytes at a time, far below 4 MiB/s: it is let go once
    // it has kept the server waiting for --read-timeout, not when its answer's next chunk is
    // due (what the kernel already buffered still reaches it, then the connection ends short
    // of its Content-Length).
    let reader = trickle(stream);
    let log = server.wait_for_log(|log| log.contains("answer cut"));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "let go after {:?}",
        started.elapsed()
    );
    assert!(log.contains(&format!("id={id} answer cut")), "{log}");
    assert!(
        log.contains("below the floor of 4.0 MiB per second"),
        "{log}"
    );
    let metrics = String::from_utf8(get(&server.url("/metrics"), &[]).body).unwrap();
    assert!(
        metrics.contains("gpuconv_answers_cut_total{reason=\"slow_reader\"} 1"),
        "{metrics}"
    );
    // Its answer's memory is back.
    wait_for_metric(&server, "gpuconv_memory_held_bytes 0");
    reader.join().unwrap();
}

#[test]
fn large_answers_stream_as_they_are_encoded_and_a_stalled_one_frees_its_worker() {
    // 30 megapixels: streamed band by band, the answer too, which is more than loopback's
    // socket buffers take.
    let image = smooth(6002, 5002);
    let body = png(&image);
    let edge = Operation::edge(Kernel::vertical_lines(), Kernel::horizontal_lines());
    let want = reference_image(&image, &edge);
    let Some(server) = Server::start(
        "cpu",
        &[
            "--workers",
            "1",
            "--max-memory",
            "64M",
            "--read-timeout",
            "2",
        ],
    ) else {
        unreachable!()
    };
    for format in ["pgm", "png"] {
        let reply = post(
            &server.url(&format!("/v1/filter?edge=true&format={format}")),
            &body,
            &[],
        );
        assert_eq!(reply.status, 200, "{format}");
        assert_eq!(reply.header("x-gpuconv-output-size"), "6000x5000");
        common::assert_same(&reply.image(), &want, format);
    }
    let log = server.wait_for_log(|log| log.matches("out=streamed").count() == 2);
    assert!(!log.contains("answer cut"), "{log}");
    let idle = server.resident_bytes();
    // The one worker streams to a client that stops reading: no Content-Length, chunks as
    // they are encoded, and the worker waits for the client...
    let (stalled, head) = post_and_stall(&server, "edge=true&format=pgm", &body);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    let held = server.resident_bytes().saturating_sub(idle);
    assert!(
        held < 64 << 20,
        "{} MiB held for one stalled stream",
        held >> 20
    );
    // ...until the floor lets the client go, when the next request has the worker.
    let started = Instant::now();
    let reply = post(&server.url("/v1/filter?edge=true&format=pgm"), &body, &[]);
    assert_eq!(reply.status, 200);
    common::assert_same(&reply.image(), &want, "after the stalled one");
    assert!(started.elapsed() < Duration::from_secs(10));
    let metrics = String::from_utf8(get(&server.url("/metrics"), &[]).body).unwrap();
    assert!(
        metrics.contains("gpuconv_answers_cut_total{reason=\"slow_reader\"} 1"),
        "{metrics}"
    );
    // The stalled client got a part of the answer and no end to it.
    let answer = read_bytes(stalled);
    assert!(
        !answer.ends_with(b"0\r\n\r\n"),
        "a chunked answer's end was sent"
    );
}

#[test]
fn a_failure_after_a_streamed_answer_began_closes_the_connection_short() {
    // A 12-megapixel PNG cut after 60% of its bytes: its header and first bands are good, so
    // the answer begins before the decoder meets the end.
    let image = common::random_image(4002, 3002, 255, 17);
    let mut body = png(&image);
    body.truncate(body.len() * 3 / 5);
    let Some(server) = Server::start("cpu", &[]) else {
        unreachable!()
    };
    let mut stream = connect(&server);
    stream
        .write_all(
            format!(
                "POST /v1/filter?edge=true&format=pgm HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&body).unwrap();
    let answer = read_bytes(stream);
    let head = String::from_utf8_lossy(&answer[..answer.len().min(512)]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(answer.len() > 1 << 20, "{} bytes", answer.len());
    assert!(
        !answer.ends_with(b"0\r\n\r\n"),
        "a chunked answer's end was sent"
    );
    let log = server.wait_for_log(|log| log.contains("answer cut"));
    assert!(
        log.contains("answer cut: filtering failed after the answer began"),
        "{log}"
    );
    let metrics = String::from_utf8(get(&server.url("/metrics"), &[]).body).unwrap();
    assert!(
        metrics.contains("gpuconv_answers_cut_total{reason=\"failed\"} 1"),
        "{metrics}"
    );
    wait_for_metric(&server, "gpuconv_memory_held_bytes 0");
}

/// Waits (at most 5 s) for `/metrics` to hold `line`.
fn wait_for_metric(server: &Server, line: &str) {
    let start = Instant::now();
    loop {
        let metrics = String::from_utf8(get(&server.url("/metrics"), &[]).body).unwrap();
        if metrics.contains(line) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no {line} in {metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn orient_is_asked_per_request_and_anything_but_true_or_false_is_refused() {
    let stored = common::random_image(33, 19, 255, 43);
    let body = common::oriented_tiff(&stored, 8);
    let Some(server) = Server::start("cpu", &[]) else {
        unreachable!()
    };
    let operation = gpuconv::Operation::edge(
        gpuconv::Kernel::vertical_lines(),
        gpuconv::Kernel::horizontal_lines(),
    );
    // Orientation 8: turned 90° counter-clockwise to be upright.
    for (query, upright) in [
        ("edge=true", stored.clone()),
        ("edge=true&orient=false", stored.clone()),
        ("edge=true&orient=true", image::imageops::rotate270(&stored)),
    ] {
        let reply = post(&server.url(&format!("/v1/filter?{query}")), &body, &[]);
        assert_eq!(reply.status, 200, "{query}");
        let want = common::reference_image(&upright, &operation);
        common::assert_same(&reply.image(), &want, query);
    }
    let reply = post(&server.url("/v1/filter?edge=true&orient=yes"), &body, &[]);
    assert_eq!(reply.status, 400);
    assert!(
        reply.error().contains("orient=yes: give true or false"),
        "{}",
        reply.error()
    );
}

#[test]
fn compression_is_chosen_per_request_and_every_choice_gives_the_same_pixels() {
    let (body, want) = edge_case(301, 199, 23);
    let Some(server) = Server::start("cpu", &[]) else {
        unreachable!()
    };
    let mut sizes = Vec::new();
    for compression in ["fast", "default", "small"] {
        let reply = post(
            &server.url(&format!("/v1/filter?edge=true&compression={compression}")),
            &body,
            &[],
        );
        assert_eq!(reply.status, 200, "{compression}");
        common::assert_same(&reply.image(), &want, compression);
        sizes.push(reply.body.len());
    }
    assert!(sizes[2] < sizes[1], "{sizes:?}");
    let reply = post(
        &server.url("/v1/filter?edge=true&compression=best"),
        &body,
        &[],
    );
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .error()
            .contains("compression=best: the choices are fast, default, small"),
        "{}",
        reply.error()
    );
}

#[test]
fn a_large_body_that_fails_early_gets_its_error_and_an_http_1_0_client_a_whole_answer() {
    let image = common::random_image(4002, 3002, 255, 29);
    let whole = png(&image);
    let Some(server) = Server::start("cpu", &[]) else {
        unreachable!()
    };
    // Cut in its first band: nothing of the answer was sent, so the client hears why.
    let reply = post(
        &server.url("/v1/filter?edge=true&format=pgm"),
        &whole[..whole.len() / 100],
        &[],
    );
    assert_eq!(reply.status, 400);
    assert!(reply.error().contains("truncated"), "{}", reply.error());
    // HTTP/1.0 has no chunked answers: a large one comes whole, with its length, so that a
    // cut one could never pass for complete.
    let mut stream = connect(&server);
    stream
        .write_all(
            format!(
                "POST /v1/filter?edge=true&format=pgm HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
                whole.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&whole).unwrap();
    let answer = read_bytes(stream);
    let head = String::from_utf8_lossy(&answer[..512]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.0 200"), "{head}");
    assert!(head.contains("content-length: 12000017"), "{head}");
    assert!(!head.contains("chunked"), "{head}");
}

/// One array of an `.npz` answer: its `descr`, shape and value bytes.
struct Npy {
    descr: String,
    shape: Vec<usize>,
    values: Vec<u8>,
}

/// Reads an `.npz` answer as the ZIP format and `.npy` say, checking what a reader relies on:
/// stored members with the right CRC-32, the central directory counting them, each array's
/// values 64-byte aligned from the archive's start and exactly as long as its shape says.
fn read_npz(bytes: &[u8]) -> Vec<(String, Npy)> {
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let end = bytes.len() - 22;
    assert_eq!(u32_at(end), 0x0605_4b50, "the end record");
    let count = u16_at(end + 10);
    let mut arrays = Vec::new();
    let mut at = 0;
    while u32_at(at) == 0x0403_4b50 {
        assert_eq!(u16_at(at + 8), 0, "stored");
        let size = u32_at(at + 18);
        let (name_length, extra) = (u16_at(at + 26), u16_at(at + 28));
        let name = std::str::from_utf8(&bytes[at + 30..at + 30 + name_length]).unwrap();
        let file = &bytes[at + 30 + name_length + extra..][..size];
        assert_eq!(
            u32_at(at + 14) as u32,
            crc32fast::hash(file),
            "{name}'s CRC"
        );
        assert_eq!(&file[..8], b"\x93NUMPY\x01\x00", "{name}");
        let header_length = u16::from_le_bytes([file[8], file[9]]) as usize;
        let header = std::str::from_utf8(&file[10..10 + header_length]).unwrap();
        let field = |key: &str| {
            let start = header.find(key).unwrap() + key.len();
            header[start..]
                .split(['\'', ')'])
                .next()
                .unwrap()
                .to_owned()
        };
        let descr = field("'descr': '");
        let shape: Vec<usize> = field("'shape': (")
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        let offset = at + 30 + name_length + extra + 10 + header_length;
        assert_eq!(offset % 64, 0, "{name}'s values are aligned");
        let values = file[10 + header_length..].to_vec();
        let element = descr[2..].parse::<usize>().unwrap();
        assert_eq!(
            values.len(),
            element * shape.iter().product::<usize>(),
            "{name}"
        );
        arrays.push((
            name.trim_end_matches(".npy").to_owned(),
            Npy {
                descr,
                shape,
                values,
            },
        ));
        at += 30 + name_length + extra + size;
    }
    assert_eq!(arrays.len(), count, "the end record counts every member");
    // The central directory, which readers go by: each entry names its member, where its local
    // header is, its CRC and size, as the local header says.
    let mut entry = u32_at(end + 16);
    assert_eq!(
        entry + u32_at(end + 12),
        end,
        "the directory ends at the end record"
    );
    let mut local = 0;
    for (name, _) in &arrays {
        assert_eq!(u32_at(entry), 0x0201_4b50, "a directory entry for {name}");
        assert_eq!(u32_at(entry + 42), local, "{name}'s local header");
        for (central, local_at) in [(16, 14), (20, 18), (24, 22)] {
            assert_eq!(u32_at(entry + central), u32_at(local + local_at), "{name}");
        }
        let name_length = u16_at(entry + 28);
        let named = &bytes[entry + 46..entry + 46 + name_length];
        assert_eq!(named, format!("{name}.npy").as_bytes());
        local += 30 + u16_at(local + 26) + u16_at(local + 28) + u32_at(local + 18);
        entry += 46 + name_length + u16_at(entry + 30) + u16_at(entry + 32);
    }
    arrays
}

#[test]
fn responses_answer_one_npz_of_the_image_its_kernels_and_their_exact_sums() {
    let image = common::random_image(37, 23, 255, 17);
    let body = png(&image);
    let vertical = Kernel::vertical_lines();
    let blur = Kernel::named("box-blur").unwrap();
    let cases: [(&str, Vec<Kernel>, &str); 4] = [
        (
            "",
            vec![vertical.clone(), Kernel::horizontal_lines()],
            "<i4",
        ),
        (
            "&kernel=0%2C1%2C0%3B1%2C-4%2C1%3B0%2C1%2C0",
            vec![Kernel::parse("0,1,0;1,-4,1;0,1,0", "k").unwrap()],
            "<i4",
        ),
        ("&kernel=box-blur", vec![blur.clone()], "<f4"),
        (
            "&kernel=box-blur&kernel=vertical",
            vec![blur, vertical],
            "<f8",
        ),
    ];
    for backend in BACKENDS {
        let Some(server) = Server::start(backend, &[]) else {
            continue;
        };
        for (kernels, expected_kernels, descr) in &cases {
            for border in [Border::Valid, Border::Reflect] {
                let query = format!(
                    "/v1/filter?responses=true{kernels}&border={}",
                    border.name()
                );
                let what = format!("{backend} {query}");
                let reply = post(&server.url(&query), &body, &[]);
                assert_eq!(
                    reply.status,
                    200,
                    "{what}: {}",
                    String::from_utf8_lossy(&reply.body)
                );
                assert_eq!(reply.header("content-type"), "application/x-npz", "{what}");
                let timing = reply.header("server-timing");
                assert!(
                    timing
                        .strip_prefix("filter;dur=")
                        .is_some_and(|ms| ms.parse::<f64>().is_ok()),
                    "{timing}"
                );
                let arrays = read_npz(&reply.body);
                let names: Vec<&str> = arrays.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, ["image", "kernels", "responses"], "{what}");
                let [(_, pixels), (_, weights), (_, responses)] = &arrays[..] else {
                    unreachable!()
                };
                assert_eq!(
                    (pixels.descr.as_str(), &pixels.shape[..]),
                    ("|u1", &[23, 37][..])
                );
                assert_eq!(pixels.values, image.as_raw().as_slice(), "{what}");
                assert_eq!(weights.descr, "<f8");
                assert_eq!(weights.shape, [expected_kernels.len(), 3, 3]);
                let expected_weights: Vec<f64> = expected_kernels
                    .iter()
                    .flat_map(|k| k.weights().iter().map(|&w| f64::from(w)))
                    .collect();
                let got_weights: Vec<f64> = weights
                    .values
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                assert_eq!(got_weights, expected_weights, "{what}");
                assert_eq!(responses.descr, *descr, "{what}");
                let operation = Operation::sums(expected_kernels.clone())
                    .unwrap()
                    .with_border(border);
                let want = gpuconv::reference::sums(&image, &operation);
                assert_eq!(
                    responses.shape,
                    [
                        expected_kernels.len(),
                        want.height as usize,
                        want.width as usize
                    ]
                );
                // Every sum, as the number the archive's type holds.
                let expected: Vec<f64> = want
                    .planes
                    .iter()
                    .flat_map(|plane| match plane {
                        gpuconv::SumPlane::Integer(sums) => {
                            sums.iter().map(|&s| f64::from(s)).collect::<Vec<_>>()
                        }
                        gpuconv::SumPlane::Float(sums) => {
                            sums.iter().map(|&s| f64::from(s)).collect()
                        }
                    })
                    .collect();
                let got: Vec<f64> = match *descr {
                    "<i4" => responses
                        .values
                        .chunks_exact(4)
                        .map(|b| f64::from(i32::from_le_bytes(b.try_into().unwrap())))
                        .collect(),
                    "<f4" => responses
                        .values
                        .chunks_exact(4)
                        .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
                        .collect(),
                    _ => responses
                        .values
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                };
                assert_eq!(got, expected, "{what}");
                assert!(
                    got.iter().any(|&s| s < 0.0) || *descr == "<f4",
                    "signed sums"
                );
            }
        }
        // What cannot be asked with responses, each a 400 naming it.
        let nine = format!("responses=true{}", "&kernel=vertical".repeat(9));
        for (query, says) in [
            (
                "responses=true&edge=true",
                "ask for responses or for edge/threshold",
            ),
            (
                "responses=true&threshold=9",
                "ask for responses or for edge/threshold",
            ),
            (
                "responses=true&format=png",
                "format=png: responses=true answers an .npz",
            ),
            ("responses=maybe", "responses=maybe: say responses=true or"),
            ("kernel=vertical&format=npz", "ask responses=true"),
            (nine.as_str(), "9 kernels given"),
        ] {
            let reply = post(&server.url(&format!("/v1/filter?{query}")), &body, &[]);
            assert_eq!(reply.status, 400, "{query}");
            assert!(reply.error().contains(says), "{query}: {}", reply.error());
        }
        // The lesson's pictures, as the page fetches them.
        let arrows = get(&server.url("/lesson/arrows.png"), &[]);
        assert_eq!(arrows.body, std::fs::read("img/arrows.png").unwrap());
        assert_eq!(arrows.header("content-type"), "image/png");
        let missing = get(&server.url("/lesson/hands.png"), &[]);
        assert_eq!(missing.status, 404);
        assert!(missing.error().contains("no lesson image 'hands.png'"));
    }
    // Sums take 4 bytes a pixel a kernel: counted in the memory budget before decoding.
    let Some(server) = Server::start("cpu", &["--max-memory", "1M", "--workers", "1"]) else {
        unreachable!()
    };
    let body = png(&common::random_image(400, 300, 255, 3));
    let edge = post(&server.url("/v1/filter?edge=true"), &body, &[]);
    assert_eq!(
        edge.status, 200,
        "the image fits the budget as an edge image"
    );
    let sums = post(&server.url("/v1/filter?responses=true"), &body, &[]);
    assert_eq!(sums.status, 422, "{}", String::from_utf8_lossy(&sums.body));
    assert!(
        sums.error()
            .contains("more than the memory budget of 1.0 MiB"),
        "{}",
        sums.error()
    );
    // A narrow image with a border makes outputs as large as itself, and eight kernels of
    // mixed kinds 64 bytes a pixel of them: counted exactly, however small the body.
    let narrow = png(&common::random_image(1, 60_000, 255, 4));
    let query = format!(
        "/v1/filter?responses=true&border=zero&kernel=box-blur{}",
        "&kernel=vertical".repeat(7)
    );
    let sums = post(&server.url(&query), &narrow, &[]);
    assert_eq!(sums.status, 422, "{}", String::from_utf8_lossy(&sums.body));
    assert!(
        sums.error().contains("8 unclipped sums a pixel of 8 bytes"),
        "{}",
        sums.error()
    );
    let query = format!(
        "/v1/filter?responses=true&border=zero{}",
        "&kernel=vertical".repeat(2)
    );
    assert_eq!(
        post(&server.url(&query), &narrow, &[]).status,
        200,
        "two kernels fit"
    );
}
