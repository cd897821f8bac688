//! The convolution service behind `gpuconv serve` (feature `serve`): an HTTP server that keeps
//! one [`Engine`] warm and filters the images posted to it.
//!
//! ```no_run
//! use gpuconv::serve::{Config, Service};
//! use gpuconv::{BackendChoice, Engine};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The engine is opened now and again whenever its GPU device is lost.
//! let service = Service::new(|| Engine::new(BackendChoice::Auto), Config::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let shutdown = async {
//!     tokio::signal::ctrl_c().await.ok();
//! };
//! service.serve(listener, shutdown).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Endpoints
//!
//! - `POST /v1/filter?kernel=…&edge=true&threshold=T&border=…&format=…`: the image file is the
//!   body; the response is one filtered image, with headers `x-gpuconv-backend`,
//!   `x-gpuconv-output-size` (`WxH`) and `x-request-id`. Errors are JSON `{"error": "…"}`.
//! - `GET /healthz`: the process is alive. `GET /readyz`: 503 while draining or while the GPU
//!   device is being re-created. `GET /metrics`: Prometheus text. These bypass the queue.
//! - `GET /`: a page to try the service from a browser.
//!
//! # How a request flows
//!
//! A request is admitted or refused at once (503 and `Retry-After` when `workers + queue`
//! requests are already admitted); it then reads its body within [`Config::read_timeout`],
//! waits for one of [`Config::workers`] workers, and is decoded, filtered and encoded on a
//! blocking thread, never on the async runtime's. The engine is shared: one filter runs at a
//! time, while other workers decode and encode. Memory is bounded by `workers + queue` bodies of
//! at most [`Config::max_body_bytes`], by each worker's share of the memory budget, and by the
//! answers being sent: a client that takes its answer slower than [`Config::min_read_rate`] is
//! disconnected. A large image's answer is sent as its bands are encoded (chunked), the status
//! line with the first of them; a failure after that closes the connection short.

mod admission;
mod answer;
mod api;
mod metrics;
mod request;
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::io::ReadLimits;
use crate::pipeline::SharedEngine;
use crate::{Engine, Result};

/// The largest request body [`Config::default`] accepts: 64 MiB, room for a 50-megapixel photo.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 << 20;

/// The most pixels an image may have by default in the service: 256 megapixels (the CLI's
/// default is larger, 4 gigapixels, for one image at a time).
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 28;

/// The default floor of [`Config::min_read_rate`]: 64 KiB/s (512 kbit/s), so that an answer
/// of a few megabytes reaches even a slow link, while one that would pin its memory for hours
/// does not.
pub const DEFAULT_MIN_READ_RATE: u64 = 64 << 10;

/// How the service is limited. Every limit has a default fit for a service exposed to
/// clients it does not trust.
#[derive(Clone)]
pub struct Config {
    /// The largest request body, in bytes; beyond: 413, without reading it when the
    /// `Content-Length` says so.
    pub max_body_bytes: u64,
    /// The most pixels an image may have (checked from its header, before decoding: 422).
    pub max_pixels: u64,
    /// The memory all workers may take together for decoding, outputs and answers: each worker
    /// gets an equal share while it works (an image over it: 422), and each answer keeps its
    /// bytes of the budget until it is sent; a request that finds no whole share free within a
    /// second gets 503.
    pub max_memory: u64,
    /// How many images are decoded, filtered and encoded at once.
    pub workers: usize,
    /// How many more requests may wait, reading their bodies or for a worker; beyond: 503.
    pub queue: usize,
    /// The longest a request may take from its headers to its response; beyond: 503.
    pub request_timeout: Duration,
    /// The longest a client may take to send a request's headers (the connection is closed)
    /// or its body (408); and the window over which a client taking its answer must keep
    /// [`min_read_rate`](Self::min_read_rate). The header and answer parts are
    /// [`Service::serve`]'s; a router mounted in another server gets that server's.
    pub read_timeout: Duration,
    /// The most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// The longest [`Service::serve`] waits for requests in flight once asked to stop.
    pub shutdown_grace: Duration,
    /// The key every `/v1/` and `/metrics` request must carry as `Authorization: Bearer KEY`
    /// (compared in constant time); `None`: no key is asked for.
    pub api_key: Option<String>,
    /// Whether to write one line per request on stderr.
    pub log_requests: bool,
    /// Bytes per second a client must take in its answer at: in each
    /// [`read_timeout`](Self::read_timeout) of time it keeps the server waiting (its connection
    /// taking no more), `min_read_rate × read_timeout` bytes and at least one, or it is let go
    /// (the connection closed, the answer's memory given back). Only the server's own
    /// connections ([`Service::serve`]) are paced.
    pub min_read_rate: u64,
    /// Host names a service without a key answers besides loopback ones (`localhost`,
    /// `127.0.0.1`, `[::1]`), port aside, compared without case: a request naming any other
    /// `Host` gets 403, so that a web page that rebinds its own name to this machine's address
    /// cannot reach the service. Unused with a key, which every request must carry anyway.
    pub allowed_hosts: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_memory: crate::io::default_memory_budget(),
            workers: cores.clamp(1, 8),
            queue: 64,
            request_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(30),
            max_connections: 1024,
            api_key: None,
            log_requests: true,
            min_read_rate: DEFAULT_MIN_READ_RATE,
            allowed_hosts: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_pixels", &self.max_pixels)
            .field("max_memory", &self.max_memory)
            .field("workers", &self.workers)
            .field("queue", &self.queue)
            .field("request_timeout", &self.request_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_connections", &self.max_connections)
            // Never in a log.
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("log_requests", &self.log_requests)
            .field("min_read_rate", &self.min_read_rate)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl Config {
    /// What one worker may take to read an image, filter it and encode the answer (the
    /// pipeline counts the outputs and the answer).
    fn worker_limits(&self) -> ReadLimits {
        ReadLimits {
            max_pixels: self.max_pixels,
            max_memory: self.max_memory / self.workers.max(1) as u64,
            ..ReadLimits::default()
        }
    }
}

/// A convolution service: one warm engine, its queue and its metrics. Cheap to clone; clones
/// share everything.
#[derive(Clone)]
pub struct Service {
    state: Arc<State>,
}

/// What every request handler shares.
struct State {
    config: Config,
    engine: Arc<SharedEngine>,
    admission: admission::Admission,
    memory: admission::Memory,
    metrics: metrics::Metrics,
    draining: AtomicBool,
    request_ids: AtomicU64,
    id_prefix: String,
}

/// Parses a filter request's query as `POST /v1/filter` does: `Ok` with the operation as the
/// request log names it (`edge`, `threshold=255`, `kernel=vertical`, `kernel=custom`...), or
/// the one-line message its 400 would carry. For a client to check a query before sending an
/// image, and for the fuzzer.
pub fn check_query(query: &str) -> std::result::Result<String, String> {
    request::parse(query).map(|request| request.summary)
}

/// The largest request a service with `config` takes, for an engine that weighs its work.
fn largest_request(config: &Config) -> crate::Workload {
    crate::Workload {
        pixels: config.max_pixels,
        kernels: 2,
        outputs: 1,
        images: None,
        on_gpu: false,
    }
}

/// Refuses an empty API key before any engine is opened.
fn check_key(config: &Config) -> Result<()> {
    if config.api_key.as_deref().is_some_and(str::is_empty) {
        return Err(crate::Error::InvalidResource {
            what: "API key",
            problem: "it is empty: give a key, or None for no key".to_owned(),
        });
    }
    Ok(())
}

impl Service {
    /// Opens an engine with `open` and makes a service of it. `open` is called again to
    /// re-create the engine when its GPU device is lost. An empty API key is refused.
    pub fn new<F>(open: F, config: Config) -> Result<Self>
    where
        F: Fn() -> Result<Engine> + Send + Sync + 'static,
    {
        check_key(&config)?;
        let engine = SharedEngine::open(largest_request(&config), move |_| open())?;
        Self::with_engine(engine, config)
    }

    /// A service filtering with `engine`, which an application may share with its own work (a
    /// [`batch`](crate::pipeline::batch), say): one engine, one GPU device, for both.
    /// The engine is opened first if no image has opened it yet. An empty API key is refused.
    pub fn with_engine(engine: Arc<SharedEngine>, config: Config) -> Result<Self> {
        check_key(&config)?;
        engine
            .run(&largest_request(&config), |_| Ok(()))
            .map_err(|unavailable| unavailable.into_error())??;
        let config = Config {
            workers: config.workers.max(1),
            max_connections: config.max_connections.max(1),
            ..config
        };
        let metrics = metrics::Metrics::new(&engine.description().unwrap_or_default());
        // Request ids unique across restarts and instances: the process and its start time.
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos() as u64);
        let id_prefix = format!(
            "{:06x}",
            (started ^ u64::from(std::process::id()).rotate_left(24)) & 0xff_ffff
        );
        Ok(Self {
            state: Arc::new(State {
                admission: admission::Admission::new(config.workers, config.queue),
                memory: admission::Memory::new(config.max_memory, config.workers),
                config,
                engine,
                metrics,
                draining: AtomicBool::new(false),
                request_ids: AtomicU64::new(0),
                id_prefix,
            }),
        })
    }

    /// The backend that filters, as [`Engine::describe`] says it.
    pub fn backend(&self) -> String {
        self.state.engine.description().unwrap_or_default()
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The service's routes, to serve with [`serve`](Self::serve) or to mount in an
    /// application's own axum router. Without an API key they answer clients on this machine
    /// only, and must be told who the client is: serve the application with axum's
    /// `into_make_service_with_connect_info::<SocketAddr>()`, or every request gets 403.
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// Starts draining: `/readyz` answers 503 and new filter requests get 503 with
    /// `Retry-After`, while those already admitted finish.
    pub fn drain(&self) {
        self.state.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the service takes new work: not draining, and the engine is not being re-created.
    pub fn is_ready(&self) -> bool {
        !self.state.draining.load(Ordering::SeqCst) && !self.state.engine.is_lost()
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` completes; then stops accepting, drains,
    /// and waits up to [`Config::shutdown_grace`] for the connections still open. Returns
    /// whether they all finished in time. Without an API key, a listener on anything but a
    /// loopback address is refused at once (`ErrorKind::InvalidInput`).
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<bool> {
        server::serve(self, listener, shutdown).await
    }
}
