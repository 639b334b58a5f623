// SPDX-License-Identifier: MIT OR Apache-2.0
//! One process-wide Prometheus registry for every ALPR element, served at
//! `http://<metrics-address>/metrics` by a small HTTP server that the first ALPR element to start
//! opens ([`start_for`]; default `0.0.0.0:8001`, as the original pilot: Prometheus in another
//! container scrapes it; `$ALPR_METRICS_ADDRESS` or alprdetect's `metrics-address` property
//! change it, `off` disables it). A busy port is a warning, never a pipeline error: the counters
//! keep counting and another process may be serving its own.
//!
//! The server (hyper, HTTP/1.1, on the plugin's tokio runtime) is reachable by whatever can reach
//! the port, so each connection is bounded: a request head of at most [`MAX_HEAD_BYTES`] (more
//! gets `431` and the connection closed), sent within [`HEADER_READ_TIMEOUT`], one request per
//! connection, and the whole exchange within [`CONNECTION_DEADLINE`]. At most
//! [`MAX_CONNECTIONS`] connections are served at once, each on its own task; a connection
//! beyond that is accepted and closed at once (the scraper retries at its next interval), so
//! neither memory nor the accept loop wait on clients. Only `GET`/`HEAD /metrics` answer `200`;
//! other paths get `404`, other methods on `/metrics` `405`.
//!
//! Series follow Prometheus conventions (`_total` counters, `_seconds` units) and are labelled by
//! element instance name (`element`), sink name (`sink`) and camera where known.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::sync::Semaphore;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "alprmetrics",
        gst::DebugColorFlags::empty(),
        Some("ALPR Prometheus endpoint"),
    )
});

pub const DEFAULT_ADDRESS: &str = "0.0.0.0:8001";
/// Largest request head (request line and headers) read from a client; hyper's minimum.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// A client must have sent its whole request head this long after connecting.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection is closed this long after it was accepted, whatever it is doing.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every series name this module exports (the dashboard and the tests check against it).
pub const SERIES: &[&str] = &[
    "alpr_frames_total",
    "alpr_detections_total",
    "alpr_reads_total",
    "alpr_events_total",
    "alpr_alerts_total",
    "alpr_processing_seconds",
    "alpr_sink_connected",
    "alpr_sink_connection_attempts_total",
    "alpr_sink_queue_depth",
    "alpr_sink_queue_oldest_age_seconds",
    "alpr_sink_delivered_total",
    "alpr_sink_failed_total",
    "alpr_sink_dropped_total",
    "alpr_sink_delivery_latency_seconds",
    "alpr_plate_to_delivery_seconds",
];

pub struct Metrics {
    pub registry: Registry,
    /// Frames processed, by element.
    pub frames: IntCounterVec,
    /// Objects detected, by element and kind (vehicle, license-plate).
    pub detections: IntCounterVec,
    /// Plate reads (non-empty OCR results), by element.
    pub reads: IntCounterVec,
    /// Plate events emitted, by element and camera.
    pub events: IntCounterVec,
    /// Watchlist alerts raised (status `new`), by list and camera (alprwatch).
    pub alerts: IntCounterVec,
    /// Processing time per frame, by element.
    pub processing: HistogramVec,
    /// 1 while a sink is connected to its service, by sink.
    pub sink_connected: IntGaugeVec,
    /// Connection attempts, by sink and result (ok, failed).
    pub sink_attempts: IntCounterVec,
    /// Items waiting in a sink's outbox / upload queue.
    pub sink_queue_depth: IntGaugeVec,
    /// Age of the oldest waiting item, seconds.
    pub sink_queue_oldest_age: IntGaugeVec,
    pub sink_delivered: IntCounterVec,
    pub sink_failed: IntCounterVec,
    /// Items given up by the overflow policy.
    pub sink_dropped: IntCounterVec,
    /// Time from acceptance by the sink to acknowledgement by the service.
    pub sink_latency: HistogramVec,
    /// Time from the first read of a plate (the event's `first_seen`) to the acknowledgement of
    /// its event by the service, by sink: what a consumer of the events waits.
    pub plate_to_delivery: HistogramVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let seconds = vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];
    let latency = vec![
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ];
    // From a plate's first read: the track's own duration (seconds) plus delivery; the goal is
    // p95 < 1.5 s, and outages add minutes to hours.
    let plate_latency = vec![
        0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
        900.0, 3600.0,
    ];
    Metrics {
        frames: counter(&r, "alpr_frames_total", "Frames processed", &["element"]),
        detections: counter(
            &r,
            "alpr_detections_total",
            "Objects detected",
            &["element", "kind"],
        ),
        reads: counter(
            &r,
            "alpr_reads_total",
            "Plate reads (non-empty OCR results)",
            &["element"],
        ),
        events: counter(
            &r,
            "alpr_events_total",
            "Plate events emitted",
            &["element", "camera"],
        ),
        alerts: counter(
            &r,
            "alpr_alerts_total",
            "Watchlist alerts raised (new alerts; updates and retractions not counted)",
            &["list", "camera"],
        ),
        processing: histogram(
            &r,
            "alpr_processing_seconds",
            "Processing time per frame",
            &["element"],
            seconds,
        ),
        sink_connected: gauge(
            &r,
            "alpr_sink_connected",
            "1 while the sink is connected to its service",
            &["sink"],
        ),
        sink_attempts: counter(
            &r,
            "alpr_sink_connection_attempts_total",
            "Connection attempts by result",
            &["sink", "result"],
        ),
        sink_queue_depth: gauge(
            &r,
            "alpr_sink_queue_depth",
            "Items waiting in the sink's outbox or upload queue",
            &["sink"],
        ),
        sink_queue_oldest_age: gauge(
            &r,
            "alpr_sink_queue_oldest_age_seconds",
            "Age of the oldest waiting item",
            &["sink"],
        ),
        sink_delivered: counter(
            &r,
            "alpr_sink_delivered_total",
            "Items acknowledged by the service",
            &["sink"],
        ),
        sink_failed: counter(
            &r,
            "alpr_sink_failed_total",
            "Delivery attempts that failed (the item stays queued)",
            &["sink"],
        ),
        sink_dropped: counter(
            &r,
            "alpr_sink_dropped_total",
            "Items given up by the overflow policy",
            &["sink"],
        ),
        sink_latency: histogram(
            &r,
            "alpr_sink_delivery_latency_seconds",
            "Time from acceptance by the sink to acknowledgement by the service",
            &["sink"],
            latency,
        ),
        plate_to_delivery: histogram(
            &r,
            "alpr_plate_to_delivery_seconds",
            "Time from the first read of a plate to the acknowledgement of its event by the \
             service",
            &["sink"],
            plate_latency,
        ),
        registry: r,
    }
});

/// The process-wide metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// An analyser element's series, resolved once at start (no label lookups per frame).
pub struct ElementSeries {
    pub frames: IntCounter,
    pub processing: Histogram,
    pub vehicles: IntCounter,
    pub plates: IntCounter,
    pub reads: IntCounter,
}

impl ElementSeries {
    pub fn new(element: &str) -> Self {
        let m = get();
        ElementSeries {
            frames: m.frames.with_label_values(&[element]),
            processing: m.processing.with_label_values(&[element]),
            vehicles: m.detections.with_label_values(&[element, "vehicle"]),
            plates: m.detections.with_label_values(&[element, "license-plate"]),
            reads: m.reads.with_label_values(&[element]),
        }
    }
}

/// The exposition text of every series (what `/metrics` serves).
pub fn render() -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&METRICS.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Records a link transition of sink `sink` (connected gauge, attempts by result).
pub fn link_transition(sink: &str, t: &crate::link::Transition) {
    use crate::link::LinkStatus;
    let m = get();
    m.sink_connected
        .with_label_values(&[sink])
        .set((t.to == LinkStatus::Connected) as i64);
    match (t.from, t.to) {
        (_, LinkStatus::Connected) => m.sink_attempts.with_label_values(&[sink, "ok"]).inc(),
        (LinkStatus::Connecting, LinkStatus::Disconnected) => {
            m.sink_attempts.with_label_values(&[sink, "failed"]).inc()
        }
        _ => {}
    }
}

static LINK_LAST: LazyLock<Mutex<std::collections::HashMap<String, crate::link::LinkStats>>> =
    LazyLock::new(Default::default);

/// Publishes a sink's counters (its `stats` property) as series; counters advance by the
/// difference to the last published values.
pub fn link_stats(sink: &str, stats: &crate::link::LinkStats) {
    let m = get();
    m.sink_queue_depth
        .with_label_values(&[sink])
        .set(stats.queued as i64);
    let mut last = LINK_LAST.lock().unwrap_or_else(|e| e.into_inner());
    let prev = last.entry(sink.to_string()).or_default();
    let delta = |now: u64, before: u64| now.saturating_sub(before);
    m.sink_delivered
        .with_label_values(&[sink])
        .inc_by(delta(stats.delivered, prev.delivered));
    m.sink_failed
        .with_label_values(&[sink])
        .inc_by(delta(stats.failures, prev.failures));
    m.sink_dropped
        .with_label_values(&[sink])
        .inc_by(delta(stats.dropped, prev.dropped));
    *prev = stats.clone();
}

/// What [`ensure_server`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Serving on this address (possibly started by another element earlier).
    Serving(SocketAddr),
    Disabled,
}

static SERVER: Mutex<Option<ServerState>> = Mutex::new(None);

/// The address to serve on: `requested` (a property) if set, else `$ALPR_METRICS_ADDRESS`, else
/// [`DEFAULT_ADDRESS`]. `off` (or empty) disables the server.
pub fn address(requested: Option<&str>) -> String {
    requested
        .map(str::to_string)
        .or_else(|| std::env::var("ALPR_METRICS_ADDRESS").ok())
        .unwrap_or_else(|| DEFAULT_ADDRESS.to_string())
}

/// What the server is doing now, without starting it: `None` until an element started it (or
/// decided it is off).
pub fn serving() -> Option<ServerState> {
    SERVER.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Starts the `/metrics` server once per process. Later calls return the first result; an error
/// (port busy, bad address, no tokio runtime) is returned once and retried by the next element
/// that starts.
pub fn ensure_server(requested: Option<&str>) -> Result<ServerState, String> {
    let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = guard.as_ref() {
        return Ok(s.clone());
    }
    let addr = address(requested);
    if addr.is_empty() || addr == "off" {
        *guard = Some(ServerState::Disabled);
        return Ok(ServerState::Disabled);
    }
    let runtime = crate::tokio_runtime().map_err(|e| format!("metrics server on {addr}: {e}"))?;
    // Bound here, synchronously, so that a busy port is the caller's error.
    let listener = std::net::TcpListener::bind(&addr)
        .map_err(|e| format!("metrics server cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("metrics server on {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("metrics server on {addr}: {e}"))?;
    let listener = {
        let _runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("metrics server on {addr}: {e}"))?
    };
    runtime.spawn(accept_loop(listener));
    gst::info!(CAT, "serving http://{local}/metrics");
    let state = ServerState::Serving(local);
    *guard = Some(state.clone());
    Ok(state)
}

/// What every ALPR element calls in `start`: makes sure the server runs ([`ensure_server`]
/// with `requested`, alprdetect's `metrics-address`, or `None`). A failure is posted as a
/// warning by `element`, never a pipeline error.
pub fn start_for(element: &gst::Element, requested: Option<&str>) {
    match ensure_server(requested) {
        Ok(state) => gst::debug!(CAT, obj = element, "metrics: {state:?}"),
        Err(e) => {
            gst::warning!(CAT, obj = element, "{e}");
            gst::element_warning!(
                element,
                gst::ResourceError::OpenWrite,
                ("{e}: the Prometheus endpoint is not served by this process"),
                [
                    "set ALPR_METRICS_ADDRESS (or alprdetect's metrics-address) to a free \
                     host:port, or off"
                ]
            );
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                gst::warning!(CAT, "metrics server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            gst::debug!(
                CAT,
                "metrics server: {MAX_CONNECTIONS} connections open, closing one"
            );
            drop(stream);
            continue;
        };
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .max_header_size(MAX_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(respond(req.method(), req.uri().path()))
                    }),
                );
            match tokio::time::timeout(CONNECTION_DEADLINE, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => gst::debug!(CAT, "metrics connection: {e}"),
                Err(_) => gst::debug!(
                    CAT,
                    "metrics connection: closed after {CONNECTION_DEADLINE:?}"
                ),
            }
            drop(slot);
        });
    }
}

/// The answer to `method path` (the path without its query).
fn respond(method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match (path, method) {
        ("/metrics", &Method::GET | &Method::HEAD) => (StatusCode::OK, render()),
        ("/metrics", _) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let content_type = if status == StatusCode::OK {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_registered_and_rendered() {
        let m = get();
        m.frames.with_label_values(&["t"]).inc();
        m.detections.with_label_values(&["t", "vehicle"]).inc();
        m.reads.with_label_values(&["t"]).inc();
        m.events.with_label_values(&["t", "cam"]).inc();
        m.processing.with_label_values(&["t"]).observe(0.01);
        m.sink_connected.with_label_values(&["s"]).set(1);
        m.sink_attempts.with_label_values(&["s", "ok"]).inc();
        m.sink_queue_depth.with_label_values(&["s"]).set(3);
        m.sink_queue_oldest_age.with_label_values(&["s"]).set(2);
        m.sink_delivered.with_label_values(&["s"]).inc();
        m.sink_failed.with_label_values(&["s"]).inc();
        m.sink_dropped.with_label_values(&["s"]).inc();
        m.sink_latency.with_label_values(&["s"]).observe(0.2);
        m.plate_to_delivery.with_label_values(&["s"]).observe(1.2);
        m.alerts.with_label_values(&["l", "c"]).inc();
        let text = render();
        for s in SERIES {
            assert!(text.contains(&format!("# TYPE {s} ")), "{s} missing");
        }
    }

    #[test]
    fn only_get_and_head_of_metrics_are_served() {
        for m in [Method::GET, Method::HEAD] {
            let r = respond(&m, "/metrics");
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(r.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        }
        let r = respond(&Method::POST, "/metrics");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        for (m, p) in [
            (Method::GET, "/"),
            (Method::GET, "/metrics/x"),
            (Method::GET, "/metricsx"),
            (Method::DELETE, "/other"),
        ] {
            assert_eq!(respond(&m, p).status(), StatusCode::NOT_FOUND, "{m} {p}");
        }
    }
}
