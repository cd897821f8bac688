//! `gpuconv serve`: the library's service, with the command line's key rules and signals.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gpuconv::serve::{Config, Service};
use gpuconv::{BackendChoice, Engine};

use crate::args::ServeArgs;
use crate::usage;

/// `eprintln!` that cannot panic: after SIGHUP from a closed terminal, writes to it fail with
/// EIO, on which `eprintln!` panics, and the server must still drain.
macro_rules! say {
    ($($arguments:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arguments)*);
    }};
}

/// The shortest API key accepted: 16 characters, as `openssl rand -hex 8` gives.
const MIN_KEY_LENGTH: usize = 16;

pub fn run(args: &ServeArgs) -> Result<()> {
    let api_key = api_key(args)?;
    let address = resolve(&args.bind)?;
    if !address.ip().is_loopback() && api_key.is_none() {
        bail!(usage(format!(
            "refusing to listen on {address} without an API key: any address but loopback needs one (set GPUCONV_API_KEY or --api-key-file)"
        )));
    }
    let defaults = Config::default();
    let config = Config {
        max_body_bytes: args.max_body_bytes,
        max_pixels: args.max_pixels,
        max_memory: args.max_memory.unwrap_or(defaults.max_memory),
        workers: args.workers.map_or(defaults.workers, |n| n as usize),
        queue: args.queue as usize,
        request_timeout: args.request_timeout,
        read_timeout: args.read_timeout,
        shutdown_grace: args.shutdown_grace,
        max_connections: args.max_connections as usize,
        api_key,
        log_requests: !args.quiet,
        allowed_hosts: args.allowed_host.clone(),
        min_read_rate: args.min_read_rate,
    };
    let grace = config.shutdown_grace;

    // The first engine is opened here, to say on one line when `auto` fell back to the CPU;
    // the service opens the next ones itself, after a lost device, of the same kind: a GPU
    // service does not become a CPU one behind its operators' backs. With `auto` and a GPU,
    // the service keeps it open beside the CPU and sends each request where it runs faster.
    let choice: BackendChoice = args.backend.into();
    // Whether any request could run faster on a GPU: the largest one allowed, the engine kept
    // open.
    let largest_request = gpuconv::Workload {
        pixels: args.max_pixels,
        kernels: 2,
        outputs: 1,
        images: None,
        on_gpu: false,
    };
    let first = crate::open_engine(choice, &largest_request)?;
    let first = if choice == BackendChoice::Auto {
        first.into_routed()?
    } else {
        first
    };
    let routed = first.is_routed();
    let again = if first.is_gpu() {
        BackendChoice::Gpu
    } else {
        BackendChoice::Cpu
    };
    let first = Mutex::new(Some(first));
    let open = move || match first.lock().ok().and_then(|mut first| first.take()) {
        Some(engine) => Ok(engine),
        None if routed => Engine::routed(gpuconv::GpuEngine::new()?),
        None => Engine::new(again),
    };
    let workers = config.workers;
    let service = Service::new(open, config)?;
    bound_allocator_arenas(workers);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let finished = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local = listener
            .local_addr()
            .context("cannot read the bound address")?;
        let config = service.config();
        say!(
            "gpuconv serve: listening on http://{local} ({}; {} workers, queue {}; API key {})",
            service.backend(),
            config.workers,
            config.queue,
            if config.api_key.is_some() {
                "required"
            } else {
                "not required"
            },
        );
        service
            .serve(listener, stop_signal(grace))
            .await
            .context("the server failed")
    })?;
    // Work the grace cut short still holds blocking threads: they are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    if finished {
        say!("gpuconv serve: stopped");
        Ok(())
    } else {
        bail!(
            "requests were still in flight after the shutdown grace of {:.0} s; they were cut short",
            grace.as_secs_f64()
        )
    }
}

/// The key from GPUCONV_API_KEY or --api-key-file (not both), when there is one.
fn api_key(args: &ServeArgs) -> Result<Option<String>> {
    let from_env = match std::env::var("GPUCONV_API_KEY") {
        Ok(key) => Some(key).filter(|k| !k.is_empty()),
        Err(std::env::VarError::NotPresent) => None,
        // Never read as "no key": that would serve without one.
        Err(std::env::VarError::NotUnicode(_)) => bail!(usage(
            "GPUCONV_API_KEY is not valid text: the API key must be printable ASCII"
        )),
    };
    let key = match (&args.api_key_file, from_env) {
        (Some(_), Some(_)) => bail!(usage(
            "the API key is set twice: use GPUCONV_API_KEY or --api-key-file, not both"
        )),
        (Some(path), None) => {
            let bytes = read_key_file(path).with_context(|| {
                format!(
                    "cannot read the API key file '{}'",
                    gpuconv::text::escape_path(path)
                )
            })?;
            // Not text: refused below with the rule, never shown.
            let text = String::from_utf8(bytes).unwrap_or_default();
            text.trim_end_matches(['\r', '\n']).to_owned()
        }
        (None, Some(key)) => key,
        (None, None) => return Ok(None),
    };
    if key.len() < MIN_KEY_LENGTH || !key.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(usage(format!(
            "the API key must be at least {MIN_KEY_LENGTH} printable ASCII characters without spaces (for example: openssl rand -hex 16)"
        )));
    }
    Ok(Some(key))
}

/// Bounds glibc's malloc arenas to one per worker and two more (the default is eight per core):
/// memory a worker frees stays in its arena for reuse, so each arena can keep up to a share of
/// the budget resident, and arenas beyond the workers' would only add to that.
fn bound_allocator_arenas(workers: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets a tunable of glibc's allocator, which takes it at any time; it
    // touches no memory of ours.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, (workers + 2).min(64) as libc::c_int);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = workers;
}

/// The most bytes an API key file may hold: a key is tens of characters.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The bytes of the API key file: a regular file of at most [`MAX_KEY_FILE_BYTES`]. Opened
/// without blocking and checked before reading, so that a FIFO cannot hang start-up and
/// `/dev/zero` cannot fill memory.
fn read_key_file(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        bail!("it is not a regular file");
    }
    if metadata.len() > MAX_KEY_FILE_BYTES {
        bail!(
            "it holds {} bytes, and a key file holds at most {MAX_KEY_FILE_BYTES}",
            metadata.len()
        );
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        bail!("it holds more than {MAX_KEY_FILE_BYTES} bytes");
    }
    Ok(bytes)
}

/// `--bind` as one socket address.
fn resolve(bind: &str) -> Result<SocketAddr> {
    let mut addresses = bind
        .to_socket_addrs()
        .map_err(|e| usage(format!("--bind '{bind}' is not ADDR:PORT: {e}")))?;
    addresses
        .next()
        .ok_or_else(|| usage(format!("--bind '{bind}' resolves to no address")))
}

/// Completes at the first SIGTERM, SIGHUP or Ctrl-C; a second one ends the process at once.
async fn stop_signal(grace: Duration) {
    // Listened to from the start, once: a second signal that came between two listeners
    // would be lost.
    let mut signals = Signals::new();
    let first = signals.next().await;
    say!(
        "gpuconv serve: {}: stopping; requests in flight have {:.0} s to finish (a second signal stops at once)",
        signal_name(first),
        grace.as_secs_f64()
    );
    tokio::spawn(async move {
        let second = signals.next().await;
        say!("gpuconv serve: {}: stopped at once", signal_name(second));
        std::process::exit(128 + second);
    });
}

/// SIGTERM, SIGINT (Ctrl-C) and SIGHUP (a closed terminal, a process manager's stop), as a
/// stream. SIGHUP drains as SIGTERM does rather than reloading anything: the key is read once,
/// and a restart behind a load balancer is how a key changes. A SIGHUP ignored at start-up
/// (`nohup`) stays ignored.
#[cfg(unix)]
struct Signals(Vec<(tokio::signal::unix::Signal, i32)>);

#[cfg(unix)]
impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let mut wanted = vec![
            (SignalKind::terminate(), libc::SIGTERM),
            (SignalKind::interrupt(), libc::SIGINT),
        ];
        if !crate::ignored(libc::SIGHUP) {
            wanted.push((SignalKind::hangup(), libc::SIGHUP));
        }
        // Without handlers, the process ends by the signals' default action.
        Self(
            wanted
                .into_iter()
                .filter_map(|(kind, number)| Some((signal(kind).ok()?, number)))
                .collect(),
        )
    }

    async fn next(&mut self) -> i32 {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.0.iter_mut().map(|(signal, number)| {
            let number = *number;
            Box::pin(async move {
                signal.recv().await;
                number
            })
        });
        futures_select_first(waits).await
    }
}

/// The first of `futures` to complete.
#[cfg(unix)]
async fn futures_select_first<F: std::future::Future<Output = i32> + Unpin>(
    futures: impl Iterator<Item = F>,
) -> i32 {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |context| {
        for future in &mut futures {
            if let std::task::Poll::Ready(number) = std::pin::Pin::new(future).poll(context) {
                return std::task::Poll::Ready(number);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Self {
        Self
    }

    async fn next(&mut self) -> i32 {
        let _ = tokio::signal::ctrl_c().await;
        2
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        15 => "SIGTERM",
        1 => "SIGHUP",
        _ => "interrupted",
    }
}
