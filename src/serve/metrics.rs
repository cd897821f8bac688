//! The service's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// A finished filter request: its status and the kind of operation it asked for (`edge`,
/// `threshold`, `kernel`, or `none` when its parameters did not parse), so that the label
/// set stays small whatever kernels clients send.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    status: u16,
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

pub(super) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    cuts: Family<RejectionLabels, Counter>,
    request_seconds: Histogram,
    filter_seconds: Histogram,
    queue_depth: Gauge,
    in_flight: Gauge,
    memory_held: Gauge,
}

impl Metrics {
    pub(super) fn new(backend: &str) -> Self {
        let mut registry = Registry::with_prefix("gpuconv");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Filter requests answered, by status and operation",
            requests.clone(),
        );
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "rejections",
            "Filter requests refused before filtering, by reason",
            rejections.clone(),
        );
        let cuts = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "answers_cut",
            "Answers cut short, their connection closed: the client took them in too slowly, or the filter failed after a streamed answer began",
            cuts.clone(),
        );
        // 1 ms to about 65 s.
        let request_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register_with_unit(
            "request_duration",
            "Time from a filter request's headers to its response",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let filter_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 17));
        registry.register_with_unit(
            "filter_duration",
            "Time the engine took to filter one image (decoding and encoding excluded)",
            Unit::Seconds,
            filter_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Requests admitted and waiting for their body or a worker",
            queue_depth.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight",
            "Requests being decoded, filtered or encoded",
            in_flight.clone(),
        );
        let memory_held = Gauge::default();
        registry.register(
            "memory_held_bytes",
            "Bytes of the memory budget held by workers and by answers not yet sent",
            memory_held.clone(),
        );
        registry.register(
            "backend",
            "The backend that filters",
            Info::new(BackendLabels {
                backend: backend.to_owned(),
            }),
        );
        Self {
            registry,
            requests,
            rejections,
            cuts,
            request_seconds,
            filter_seconds,
            queue_depth,
            in_flight,
            memory_held,
        }
    }

    pub(super) fn request(&self, status: u16, op: &'static str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels { status, op })
            .inc();
        self.request_seconds.observe(seconds);
    }

    pub(super) fn rejected(&self, reason: &'static str) {
        self.rejections
            .get_or_create(&RejectionLabels { reason })
            .inc();
    }

    /// An answer cut short: `slow_reader` or `failed`.
    pub(super) fn cut(&self, reason: &'static str) {
        self.cuts.get_or_create(&RejectionLabels { reason }).inc();
    }

    pub(super) fn filtered(&self, seconds: f64) {
        self.filter_seconds.observe(seconds);
    }

    /// The metrics as OpenMetrics text, with the gauges read now.
    pub(super) fn render(&self, waiting: usize, in_flight: usize, memory_held: u64) -> String {
        self.queue_depth.set(waiting as i64);
        self.in_flight.set(in_flight as i64);
        self.memory_held.set(memory_held as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
