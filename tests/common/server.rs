//! The real `gpuconv serve` on a loopback port, and a plain HTTP client to drive it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use image::GrayImage;

/// A `gpuconv serve` process, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub address: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `gpuconv serve --backend BACKEND --bind 127.0.0.1:0 ARGS...`. `None` when the
    /// GPU backend has no adapter (under `CI=true` that fails the test instead).
    pub fn start(backend: &str, args: &[&str]) -> Option<Self> {
        Self::start_with_env(backend, args, &[])
    }

    /// [`start`](Self::start) with environment variables set.
    pub fn start_with_env(backend: &str, args: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        match Self::try_start(backend, "127.0.0.1:0", args, env) {
            Ok(server) => Some(server),
            Err(log) if backend == "gpu" && log.contains("no GPU adapter") => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("CI=true but no GPU adapter for gpuconv serve: {log}");
                }
                eprintln!("skipping the GPU backend: {log}");
                None
            }
            Err(log) => panic!("gpuconv serve did not start: {log}"),
        }
    }

    /// Starts the server on `bind`; the error is what it said on stderr before exiting.
    pub fn try_start(
        backend: &str,
        bind: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gpuconv"));
        command
            .args(["serve", "--backend", backend, "--bind", bind])
            .args(args)
            .env_remove("GPUCONV_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("gpuconv runs");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let (address_tx, address_rx) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let address = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = address_tx.send(address);
                }
                let mut log = log_writer.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match address_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => Ok(Self {
                child,
                base: format!("http://{address}"),
                address,
                log,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                Err(log.lock().unwrap().clone())
            }
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the server has written on stderr so far.
    /// The server's resident memory now, in bytes (Linux's `VmRSS`).
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log once `done` says it holds what the caller waits for (at most 20 s).
    pub fn wait_for_log(&self, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if done(&log) {
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the log never got there:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (SIGTERM: 15, SIGINT: 2) to the server.
    pub fn signal(&self, signal: i32) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the server to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the server can be waited for") {
                // Let the stderr reader catch up with the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "the server did not exit within {limit:?}; it said:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP response, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        let value: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)));
        value["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {value}"))
            .to_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or_else(
            || panic!("no {name} header in {:?}", self.headers),
            String::as_str,
        )
    }

    /// The body as an 8-bit gray image.
    pub fn image(&self) -> GrayImage {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        image::load_from_memory(&self.body)
            .expect("the body is an image")
            .to_luma8()
    }
}

/// A client that returns every status as a response, with a minute for each request.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.expect("the server answers");
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                value.to_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("the body arrives");
    Reply {
        status,
        headers,
        body,
    }
}

/// `POST url` with `body` and `headers`.
pub fn post(url: &str, body: &[u8], headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send(body))
}

/// `GET url` with `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.call())
}
