//! The HTTP endpoints: what each answers, and how a failure becomes a status.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawQuery, Request, State as Shared};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;

use super::State;
use super::request::{self, FilterRequest};
use super::{admission, answer};
use crate::Error;
use crate::pipeline::{self, Destination, Settings, SharedEngine, Source};

pub(super) fn router(state: Arc<State>) -> Router {
    let (page, policy) = page();
    Router::new()
        .route("/v1/filter", post(filter))
        .route("/lesson/{name}", get(lesson_image))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/",
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CONTENT_SECURITY_POLICY, policy.as_str()),
                        (header::X_FRAME_OPTIONS, "DENY"),
                    ],
                    page.clone(),
                )
                    .into_response()
            }),
        )
        .fallback(|| async {
            Failure::new(
                StatusCode::NOT_FOUND,
                "no such endpoint (see GET / and /v1/filter)",
            )
        })
        .method_not_allowed_fallback(|| async {
            Failure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: filter with POST /v1/filter, the image as the body",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            loopback_unless_key,
        ))
        .layer(middleware::map_response(no_sniffing_no_storing))
        .with_state(state)
}

/// On every response, refusals included: browsers must not guess a type other than the one
/// given (an answer is an image, an error JSON), and nothing is kept in caches (answers are
/// made from a client's image and, with a key, for that client only).
async fn no_sniffing_no_storing(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A service without an API key answers clients on this machine only, whoever serves its
/// routes: a request whose peer is not a loopback address, or whose server does not say who
/// the peer is (axum's `ConnectInfo<SocketAddr>`), gets 403.
///
/// Such a service also answers only requests whose `Host` names this machine (a loopback name
/// or address, or one of [`Config::allowed_hosts`](super::Config::allowed_hosts)): a page a
/// browser loaded from elsewhere, whose name an attacker then points at 127.0.0.1 (DNS
/// rebinding), sends its own name as `Host` and gets 403.
async fn loopback_unless_key(
    Shared(state): Shared<Arc<State>>,
    request: Request,
    next: Next,
) -> Response {
    if state.config.api_key.is_none() {
        let peer = request
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        if !peer.is_some_and(is_loopback) {
            state.metrics.rejected("not_loopback");
            return Failure::new(
                StatusCode::FORBIDDEN,
                "this service has no API key, so it answers clients on its own machine only",
            )
            .into_response();
        }
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        if !host.is_some_and(|host| host_allowed(host, &state.config.allowed_hosts)) {
            state.metrics.rejected("host");
            return Failure::new(
                StatusCode::FORBIDDEN,
                "this service has no API key, so it answers requests for this machine's names only (localhost, 127.0.0.1, [::1], or one the server allows)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether a `Host` header (`name`, `name:port`, `[v6]:port`) names a loopback host or one of
/// `allowed`, port aside, without case.
pub(super) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Some(name) = host_name(host) else {
        return false;
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(is_loopback)
        // The allowed names read the same way, so `[fe80::1]`, `name.` or `name:8080` match.
        || allowed
            .iter()
            .filter_map(|a| host_name(a))
            .any(|a| a.eq_ignore_ascii_case(name))
}

/// The name in a `Host` value: without its port, an IPv6 literal's brackets, or a trailing
/// dot; `None` for a malformed literal.
fn host_name(host: &str) -> Option<&str> {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal: up to its closing bracket.
        match rest.split_once(']') {
            Some((v6, after)) if after.is_empty() || after.starts_with(':') => v6,
            _ => return None,
        }
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    Some(name.trim_end_matches('.'))
}

/// Whether `ip` is this machine's, an IPv4 loopback address written as IPv6 included.
pub(super) fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

/// The page at `/`, with the kernels this build knows, and its content security policy: its
/// own inline style and script (named by their SHA-256) and nothing else; requests to its own
/// origin (the filter, the lesson's images); no images loaded (it draws on canvases), no
/// framing.
fn page() -> (String, String) {
    let options: String = crate::kernel::NAMED_KERNELS
        .iter()
        .map(|(name, description, weights)| {
            let title = description
                .replace('&', "&amp;")
                .replace('"', "&quot;")
                .replace('<', "&lt;");
            // Each weight as the shortest text that reads back as the same f32.
            let weights: Vec<String> = weights.iter().map(f32::to_string).collect();
            format!(
                "<option value=\"{name}\" title=\"{title}\" data-weights=\"{}\">{name}</option>",
                weights.join(",")
            )
        })
        .chain(std::iter::once(
            "<option value=\"custom\" disabled>custom</option>".to_owned(),
        ))
        .collect();
    // The file picker offers exactly what the service reads.
    let accept: Vec<String> = crate::io::READABLE_EXTENSIONS
        .iter()
        .map(|e| format!(".{e}"))
        .collect();
    // Line ends as a browser hashes them, whatever the checkout made of the file's.
    let page = include_str!("page.html")
        .replace("\r\n", "\n")
        .replace("<!--KERNELS-->", &options)
        .replace("<!--ACCEPT-->", &accept.join(","));
    let hash = |open: &str, close: &str| {
        use base64::Engine;
        use sha2::Digest;
        let start = page.find(open).expect("the page has the block") + open.len();
        let end = start + page[start..].find(close).expect("the block ends");
        let digest = sha2::Sha256::digest(&page.as_bytes()[start..end]);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        )
    };
    let policy = format!(
        "default-src 'none'; style-src {}; script-src {}; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash("<style>", "</style>"),
        hash("<script>", "</script>")
    );
    (page, policy)
}

/// The lesson's own pictures (`img/`), which the page offers beside a visitor's: name, type,
/// bytes. Built into the binary, so that the page works wherever the service runs.
const LESSON_IMAGES: [(&str, &str, &[u8]); 4] = [
    (
        "stripe-vertical.pgm",
        "image/x-portable-graymap",
        include_bytes!("../../img/stripe-vertical.pgm"),
    ),
    (
        "stripe-horizontal.pgm",
        "image/x-portable-graymap",
        include_bytes!("../../img/stripe-horizontal.pgm"),
    ),
    (
        "arrows.png",
        "image/png",
        include_bytes!("../../img/arrows.png"),
    ),
    (
        "camera.png",
        "image/png",
        include_bytes!("../../img/camera.png"),
    ),
];

async fn lesson_image(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match LESSON_IMAGES.iter().find(|(n, ..)| *n == name) {
        Some((_, content_type, bytes)) => {
            ([(header::CONTENT_TYPE, *content_type)], *bytes).into_response()
        }
        None => Failure::new(
            StatusCode::NOT_FOUND,
            format!(
                "no lesson image '{}' (there are {})",
                crate::text::escape(&name),
                LESSON_IMAGES.map(|(n, ..)| n).join(", ")
            ),
        )
        .into_response(),
    }
}

/// A request the service did not serve: its status, its one-line reason, and what the client
/// may do about it.
#[derive(Debug)]
pub(super) struct Failure {
    status: StatusCode,
    message: String,
    /// Seconds after which trying again may succeed (503s).
    retry_after: Option<u32>,
    /// Why it was refused before filtering, for `gpuconv_rejections_total`.
    rejection: Option<&'static str>,
    /// Refused before its body was read: the connection is not kept for another request.
    close: bool,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
            rejection: None,
            close: false,
        }
    }

    /// A refusal before any filtering, counted by `reason`.
    fn refused(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            rejection: Some(reason),
            retry_after: (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1),
            ..Self::new(status, message)
        }
    }

    /// How a library error reads to a client: the input's fault (4xx), or the server's state
    /// (503), by its [`ErrorKind`](crate::ErrorKind), with the status that says most.
    fn from_error(error: Error) -> Self {
        use crate::ErrorKind;
        let status = match (error.kind(), &error) {
            (ErrorKind::Input, Error::UnknownFormat { .. } | Error::Unsupported { .. }) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            // The only output that can refuse an image: PBM, for one not black and white. The
            // path in the error is made up; the reason is the client's.
            (ErrorKind::Input, Error::Write { reason, .. }) => {
                return Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("cannot encode the answer: {reason}"),
                );
            }
            // Well-formed, but no 3×3 window fits: the client's image, not its syntax.
            (ErrorKind::Input, Error::ImageTooSmall { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            (ErrorKind::Input, _) => StatusCode::BAD_REQUEST,
            // Memory refused right now is the server's state, worth trying again.
            (ErrorKind::Limit, Error::OutOfMemory { .. }) | (ErrorKind::RunWide, _) => {
                return Self::refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "resources",
                    error.to_string(),
                );
            }
            (ErrorKind::Limit, _) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, error.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// An image filtered, or being filtered into its answer.
struct Filtered {
    answer: Body,
    /// The answer's length, when it was encoded whole (streamed, it is not known until sent).
    bytes_out: Option<usize>,
    width: u32,
    height: u32,
    content_type: &'static str,
    backend: &'static str,
    /// The filter's time, when it is over.
    filter_time: Option<Duration>,
}

/// The id of the request a connection sent last, for what is said of the connection itself (a
/// client let go for reading too slowly).
#[derive(Clone, Default)]
pub(super) struct CurrentRequest(Arc<std::sync::Mutex<String>>);

impl CurrentRequest {
    fn set(&self, id: &str) {
        id.clone_into(
            &mut self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }

    /// The id, or `-` before the first request.
    pub(super) fn id(&self) -> String {
        let id = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if id.is_empty() {
            "-".to_owned()
        } else {
            id.clone()
        }
    }
}

/// What a request's log line and metrics say of it.
#[derive(Default)]
struct Record {
    kind: Option<&'static str>,
    summary: Option<String>,
    bytes_in: usize,
    queue_time: Option<Duration>,
    filter_time: Option<Duration>,
}

async fn filter(
    Shared(state): Shared<Arc<State>>,
    connection: Option<axum::Extension<CurrentRequest>>,
    version: axum::http::Version,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Body,
) -> Response {
    let started = Instant::now();
    let id = request_id(&state, &headers);
    if let Some(axum::Extension(connection)) = connection {
        connection.set(&id);
    }
    let mut record = Record::default();
    let outcome = match tokio::time::timeout(
        state.config.request_timeout,
        serve_filter(
            &state,
            &id,
            // HTTP/1.0 has no chunks: an answer of unknown length ends when the connection
            // closes, and one cut short would look complete. Its clients get answers whole.
            version == axum::http::Version::HTTP_11,
            &headers,
            query.as_deref().unwrap_or(""),
            body,
            &mut record,
        ),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!(
                "the request took longer than the request timeout ({:.0} s)",
                state.config.request_timeout.as_secs_f64()
            ),
        )),
    };
    let elapsed = started.elapsed();
    let (mut response, status, size, backend, bytes_out, error) = match outcome {
        Ok(filtered) => {
            let size = format!("{}x{}", filtered.width, filtered.height);
            let mut response = (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(filtered.content_type),
                    ),
                    (
                        header::HeaderName::from_static("x-gpuconv-backend"),
                        HeaderValue::from_static(filtered.backend),
                    ),
                    (
                        header::HeaderName::from_static("x-gpuconv-output-size"),
                        HeaderValue::from_str(&size).expect("digits and x"),
                    ),
                ],
                filtered.answer,
            )
                .into_response();
            if let Some(time) = filtered.filter_time {
                state.metrics.filtered(time.as_secs_f64());
                // The filter's own time, for a client (the page) to show beside its round trip.
                let timing = format!("filter;dur={:.3}", time.as_secs_f64() * 1e3);
                response.headers_mut().insert(
                    header::HeaderName::from_static("server-timing"),
                    HeaderValue::from_str(&timing).expect("digits"),
                );
            }
            (
                response,
                StatusCode::OK,
                size,
                filtered.backend,
                filtered.bytes_out,
                None,
            )
        }
        Err(failure) => {
            if let Some(reason) = failure.rejection {
                state.metrics.rejected(reason);
            }
            let status = failure.status;
            let message = failure.message.clone();
            let backend = state.engine.backend();
            (
                failure.into_response(),
                status,
                "-".to_owned(),
                backend,
                Some(0),
                Some(message),
            )
        }
    };
    response.headers_mut().insert(
        header::HeaderName::from_static("x-request-id"),
        HeaderValue::from_str(&id).expect("request ids are checked to be visible ASCII"),
    );
    let kind = record.kind.unwrap_or("none");
    state
        .metrics
        .request(status.as_u16(), kind, elapsed.as_secs_f64());
    if state.config.log_requests {
        let millis = |d: Option<Duration>| {
            d.map_or_else(
                || "-".to_owned(),
                |d| format!("{:.1}", d.as_secs_f64() * 1e3),
            )
        };
        let error = error.map_or_else(String::new, |e| format!(" error={e:?}"));
        let bytes_out = bytes_out.map_or_else(|| "streamed".to_owned(), |b| format!("{b}B"));
        crate::text::say!(
            "gpuconv serve: id={id} op={} status={} in={}B out={bytes_out} size={size} backend={backend} queue_ms={} filter_ms={} total_ms={:.1}{error}",
            record.summary.as_deref().unwrap_or("-"),
            status.as_u16(),
            record.bytes_in,
            millis(record.queue_time),
            millis(record.filter_time),
            elapsed.as_secs_f64() * 1e3,
        );
    }
    response
}

/// How long a request with a worker waits for its share of the memory budget before a 503.
const MEMORY_PATIENCE: Duration = Duration::from_secs(1);

/// The filter request's steps, each with the status its failure gets.
async fn serve_filter(
    state: &Arc<State>,
    id: &str,
    may_stream: bool,
    headers: &HeaderMap,
    query: &str,
    body: Body,
    record: &mut Record,
) -> Result<Filtered, Failure> {
    let max_body = state.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (request, ticket) = match admit(state, headers, query, declared, record) {
        Ok(admitted) => admitted,
        Err(failure) => {
            linger(body, max_body, state.config.read_timeout);
            return Err(Failure {
                close: true,
                ..failure
            });
        }
    };
    let bytes = read_body(body, max_body, declared, state.config.read_timeout).await?;
    record.bytes_in = bytes.len();
    if bytes.is_empty() {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "the request body is empty: send the image file as the body",
        ));
    }
    let waiting = Instant::now();
    let worker = state.admission.worker().await;
    record.queue_time = Some(waiting.elapsed());
    // A worker's share of the memory budget, unless answers waiting for their readers hold it
    // for longer than a moment (under load, answers being sent come and go).
    let share = state.memory.share(MEMORY_PATIENCE).await.ok_or_else(|| {
        Failure::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "memory",
            "the server's memory budget is held by answers still being sent: try again shortly",
        )
    })?;

    // The body's Content-Type, when it names a format read here, says what bytes without a
    // signature (TGA) are; `input=` says it louder.
    let declared_format = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::io::readable_format);
    let engine = state.engine.clone();
    let limits = crate::io::ReadLimits {
        orient: request.orient,
        ..state.config.worker_limits()
    };
    // A large answer is streamed as it is encoded: the filter hands it over through a queue of
    // a few chunks, and the status line goes out with the first of them.
    let (sender, mut receiver) = tokio::sync::mpsc::channel(answer::QUEUED_CHUNKS);
    // Twice the window the service's own connections judge a client's pace in: there the
    // connection lets a stalled client go first (and says so once); elsewhere this does.
    let patience = 2 * state.config.read_timeout;
    let outgoing = answer::Outgoing::new(sender.clone(), patience);
    let begun = outgoing.begun();
    let stalled = outgoing.stalled();
    let outlet = may_stream.then(|| pipeline::Outlet::new(outgoing));
    let seen = Arc::new(Seen::default());
    let content_type = request.content_type;
    let work = {
        let (state, id, seen) = (state.clone(), id.to_owned(), seen.clone());
        tokio::task::spawn_blocking(move || {
            // Held until the work ends, even if the client is gone by then.
            let _places = (ticket, worker);
            let outcome = filter_image(
                &engine,
                bytes,
                &request,
                declared_format,
                &limits,
                outlet,
                &seen,
            );
            match outcome {
                // What the answer needs of the share is kept until it is sent; the rest goes
                // back.
                Ok(Made::Whole(bytes, filter_time)) => {
                    let memory = admission::keep_for_answer(share, bytes.len());
                    Ok((Made::Whole(bytes, filter_time), Some(memory)))
                }
                Ok(Made::Streamed(filter_time)) => {
                    state.metrics.filtered(filter_time.as_secs_f64());
                    let memory = admission::keep_for_answer(share, answer::QUEUED_BYTES);
                    // A client that makes no room for the last word within the read timeout
                    // is cut as one that stalls mid-answer (the body then ends short).
                    let last = sender.send_timeout(answer::Piece::Done(memory), patience);
                    let _ = tokio::runtime::Handle::current().block_on(last);
                    Ok((Made::Streamed(filter_time), None))
                }
                Err(failure) if begun.load(std::sync::atomic::Ordering::SeqCst) => {
                    // The status line may be out: the connection is closed short. A client
                    // gone, or let go for its pace, was the connection's to report.
                    use std::sync::atomic::Ordering::SeqCst;
                    let (reason, said) = if stalled.load(SeqCst) {
                        (
                            "slow_reader",
                            "the client took nothing of it for twice the read timeout",
                        )
                    } else {
                        ("failed", "filtering failed after the answer began")
                    };
                    if !sender.is_closed() {
                        state.metrics.cut(reason);
                        if state.config.log_requests {
                            crate::text::say!(
                                "gpuconv serve: id={id} answer cut: {said}: {}",
                                failure.message
                            );
                        }
                        // Without waiting: a full queue (a stalled client) ends short anyway.
                        let _ = sender.try_send(answer::Piece::Failed(failure.message));
                    }
                    Err(None)
                }
                Err(failure) => Err(Some(failure)),
            }
        })
    };
    tokio::pin!(work);
    // The first chunk of a streamed answer, or the work's end, whichever comes first.
    let first = tokio::select! {
        biased;
        done = &mut work => Err(done),
        piece = receiver.recv() => Ok(piece),
    };
    let done = match first {
        Ok(Some(piece)) => return Ok(streamed(Some(piece), receiver, &seen, content_type)),
        Ok(None) => work.await,
        Err(done) => done,
    };
    match done {
        Ok(Ok((Made::Whole(bytes, filter_time), memory))) => {
            record.filter_time = Some(filter_time);
            let (width, height) = seen.size.get().copied().unwrap_or_default();
            Ok(Filtered {
                bytes_out: Some(bytes.len()),
                answer: Body::new(answer::Answer::new(
                    bytes,
                    memory.expect("a whole answer holds its memory"),
                )),
                width,
                height,
                content_type,
                backend: seen.backend.get().copied().unwrap_or("cpu"),
                filter_time: Some(filter_time),
            })
        }
        // Streamed to its end, or failed once begun: the body says which.
        Ok(Ok((Made::Streamed(_), ..)) | Err(None)) => {
            Ok(streamed(None, receiver, &seen, content_type))
        }
        Ok(Err(Some(failure))) => Err(failure),
        Err(_) => Err(Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error while filtering (a bug: please report it)",
        )),
    }
}

/// What the pipeline saw of an image: its outputs' size and the backend that filtered it,
/// known before a streamed answer's status line.
#[derive(Default)]
struct Seen {
    size: std::sync::OnceLock<(u32, u32)>,
    backend: std::sync::OnceLock<&'static str>,
}

impl pipeline::Observer for Seen {
    fn started(&self, output_size: (u32, u32), _streamed: bool) {
        let _ = self.size.set(output_size);
    }

    fn backend(&self, backend: &'static str) {
        let _ = self.backend.set(backend);
    }
}

/// A streamed answer, from its first piece (if the status line waited for it) and the queue.
fn streamed(
    first: Option<answer::Piece>,
    receiver: tokio::sync::mpsc::Receiver<answer::Piece>,
    seen: &Seen,
    content_type: &'static str,
) -> Filtered {
    let (width, height) = seen.size.get().copied().unwrap_or_default();
    Filtered {
        answer: Body::new(answer::Streamed::new(first, receiver)),
        bytes_out: None,
        width,
        height,
        content_type,
        backend: seen.backend.get().copied().unwrap_or("cpu"),
        filter_time: None,
    }
}

/// Whether a request may be served: its key, its parameters, its declared length, and a place
/// in the queue.
fn admit(
    state: &Arc<State>,
    headers: &HeaderMap,
    query: &str,
    declared: Option<u64>,
    record: &mut Record,
) -> Result<(FilterRequest, super::admission::Ticket), Failure> {
    authorize(state, headers)?;
    if state.draining.load(Ordering::SeqCst) {
        return Err(Failure::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the server is shutting down: send the request to another instance",
        ));
    }
    let request = request::parse(query).map_err(|m| Failure::new(StatusCode::BAD_REQUEST, m))?;
    record.kind = Some(request.kind);
    record.summary = Some(request.summary.clone());
    let max_body = state.config.max_body_bytes;
    if declared.is_some_and(|length| length > max_body) {
        return Err(body_too_large(max_body));
    }
    if state.engine.is_lost() {
        return Err(Failure::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "gpu_lost",
            "the GPU device was lost and is being re-created",
        ));
    }
    let ticket = state.admission.admit().ok_or_else(|| {
        Failure::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            format!(
                "the server is busy: {} requests filtering and the queue of {} full",
                state.config.workers, state.config.queue
            ),
        )
    })?;
    Ok((request, ticket))
}

/// Reads and drops the body of a request refused before its body was read, at most `max`
/// bytes for at most `timeout` (and 5 s), so that the client, still sending, reads the refusal
/// rather than a reset connection (what web servers call a lingering close). Nothing is kept.
fn linger(body: Body, max: u64, timeout: Duration) {
    let timeout = timeout.min(Duration::from_secs(5));
    tokio::spawn(async move {
        let mut body = body;
        let mut read = 0u64;
        let _ = tokio::time::timeout(timeout, async {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > max {
                    break;
                }
            }
        })
        .await;
    });
}

fn body_too_large(max_body: u64) -> Failure {
    Failure::refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "the request body is larger than this server's limit of {}",
            crate::io::format_bytes(max_body)
        ),
    )
}

/// Checks `Authorization: Bearer KEY` when the service has a key.
fn authorize(state: &State, headers: &HeaderMap) -> Result<(), Failure> {
    let Some(key) = &state.config.api_key else {
        return Ok(());
    };
    // The scheme's name is case-insensitive (RFC 9110); the key is not.
    let given = headers.get(header::AUTHORIZATION).and_then(|v| {
        let v = v.as_bytes();
        (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..])
    });
    // Constant time whatever the key's first wrong byte; only its length can be timed.
    let matches =
        given.is_some_and(|given| bool::from(subtle::ConstantTimeEq::ct_eq(given, key.as_bytes())));
    if matches {
        Ok(())
    } else {
        let message = if given.is_none() {
            "this server needs an API key: send it as 'Authorization: Bearer KEY'"
        } else {
            "wrong API key"
        };
        Err(Failure::refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            message,
        ))
    }
}

/// The whole body, within `max` bytes and `timeout`. Frames are appended to one buffer and
/// dropped as they are copied, so the body is held once, not as its frames and again as one
/// buffer. The buffer is reserved at the `Content-Length` the client declared (at most `max`),
/// so that it is never copied to grow: reserved pages take no memory until bytes arrive in
/// them. A chunked body grows it by doubling.
async fn read_body(
    body: Body,
    max: u64,
    declared: Option<u64>,
    timeout: Duration,
) -> Result<Bytes, Failure> {
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let read = async move {
        let mut body = body;
        let capacity = declared.filter(|&length| length <= max).unwrap_or(0);
        let mut bytes = bytes::BytesMut::with_capacity(capacity as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {error}"),
                )
            })?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > limit {
                    return Err(body_too_large(max));
                }
                bytes.extend_from_slice(&data);
            }
        }
        Ok(bytes.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::refused(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within the read timeout ({:.0} s)",
                    timeout.as_secs_f64()
                ),
            ))
        })
}

/// An image filtered: its answer whole, or streamed into the outlet; the filter's time.
enum Made {
    Whole(Vec<u8>, Duration),
    Streamed(Duration),
}

/// Decodes, filters and encodes one image with the library's pipeline, on a blocking thread:
/// band by band when the formats allow, so that a large PNG is never whole in memory, its
/// answer then written into `outlet` as it is encoded.
fn filter_image(
    engine: &Arc<SharedEngine>,
    bytes: Bytes,
    request: &FilterRequest,
    declared_format: Option<image::ImageFormat>,
    limits: &crate::io::ReadLimits,
    outlet: Option<pipeline::Outlet>,
    seen: &Seen,
) -> Result<Made, Failure> {
    let source = Source::Bytes {
        bytes,
        name: "request body".to_owned(),
    };
    let settings = Settings {
        limits: *limits,
        input_format: request.input_format.or(declared_format),
        images: None,
        // A lost engine is a 503 at once: the client tries again, or another instance.
        patience: None,
        observer: seen,
        compression: request.compression,
        ..Settings::new(&request.operation)
    };
    let started = Instant::now();
    let destination = match outlet {
        Some(to) => Destination::Streamed {
            extension: request.format.clone(),
            to,
        },
        None => Destination::Encoded(request.format.clone()),
    };
    let filtered = if request.operation.is_sums() {
        pipeline::responses_npz(engine, &source, &destination, &settings)
    } else {
        pipeline::filter_image(engine, &source, &destination, &settings)
    };
    let filtered = filtered.map_err(|error| {
        match error {
            Error::EngineLost => Failure::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "gpu_lost",
                "the GPU device was lost and is being re-created",
            ),
            // Not a 503: the same input would likely fail again, and re-create the engine
            // again for everyone.
            Error::EnginePanicked => Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error while filtering this image (a bug: please report it)",
            ),
            other => Failure::from_error(other),
        }
    })?;
    let filter_time = filtered
        .timings
        .compute
        .unwrap_or_else(|| started.elapsed());
    Ok(match filtered.encoded.into_iter().next() {
        Some(bytes) => Made::Whole(bytes, filter_time),
        None => Made::Streamed(filter_time),
    })
}

/// The client's `x-request-id` when it is a plausible one (a proxy's), else a new one.
fn request_id(state: &State, headers: &HeaderMap) -> String {
    if let Some(given) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
        && (1..=64).contains(&given.len())
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return given.to_owned();
    }
    let n = state.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{}-{n}", state.id_prefix)
}

async fn healthz() -> impl IntoResponse {
    json(StatusCode::OK, serde_json::json!({ "status": "alive" }))
}

async fn readyz(Shared(state): Shared<Arc<State>>) -> Response {
    // Only the kind: the adapter's name is for /metrics, behind the key.
    let backend = state.engine.backend();
    if state.draining.load(Ordering::SeqCst) {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: the server is shutting down",
        )
        .into_response()
    } else if state.engine.is_lost() {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the GPU device was lost and is being re-created",
        )
        .into_response()
    } else {
        json(
            StatusCode::OK,
            serde_json::json!({ "status": "ready", "backend": backend }),
        )
    }
}

async fn metrics(Shared(state): Shared<Arc<State>>, headers: HeaderMap) -> Response {
    if let Err(failure) = authorize(&state, &headers) {
        return failure.into_response();
    }
    let text = state.metrics.render(
        state.admission.waiting(),
        state.admission.in_flight(),
        state.memory.held_bytes(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}
