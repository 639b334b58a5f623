// SPDX-License-Identifier: MIT OR Apache-2.0
//! Log lines and Prometheus metrics: connection state per service, rows written, dead letters,
//! batch latency.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry};

/// One log line on stderr: `<unix seconds> alpr-archive <message>`.
pub fn log(msg: impl std::fmt::Display) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{}.{:03} alpr-archive {msg}",
        t.as_secs(),
        t.subsec_millis()
    );
}

pub struct Metrics {
    pub registry: Registry,
    /// 1 = connected, 0 = not, per service (kafka, registry, database).
    pub up: IntGaugeVec,
    /// Rows inserted or updated, per table.
    pub rows: IntCounterVec,
    pub dead_letters: prometheus::IntCounter,
    pub batch_seconds: Histogram,
    /// Messages not yet stored, per assigned topic partition.
    pub lag: IntGaugeVec,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let up = IntGaugeVec::new(
        Opts::new(
            "alpr_archive_service_up",
            "1 while the archive is connected to the service",
        ),
        &["service"],
    )
    .expect("valid metric");
    let rows = IntCounterVec::new(
        Opts::new(
            "alpr_archive_rows_written_total",
            "Rows inserted or updated (a newer revision) per table",
        ),
        &["table"],
    )
    .expect("valid metric");
    let dead_letters = prometheus::IntCounter::new(
        "alpr_archive_dead_letters_total",
        "Messages that could not be decoded or stored, written to the dead_letters table",
    )
    .expect("valid metric");
    let batch_seconds = Histogram::with_opts(HistogramOpts::new(
        "alpr_archive_batch_seconds",
        "Time to write one batch to the database",
    ))
    .expect("valid metric");
    let lag = IntGaugeVec::new(
        Opts::new(
            "alpr_archive_consumer_lag",
            "Messages in the partition that this instance has not stored yet (high watermark \
             minus its position), per assigned partition, measured every 5 s",
        ),
        &["topic", "partition"],
    )
    .expect("valid metric");
    for c in [
        Box::new(up.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(rows.clone()),
        Box::new(dead_letters.clone()),
        Box::new(batch_seconds.clone()),
        Box::new(lag.clone()),
    ] {
        registry.register(c).expect("unique metric");
    }
    for s in ["kafka", "registry", "database"] {
        up.with_label_values(&[s]).set(0);
    }
    Metrics {
        registry,
        up,
        rows,
        dead_letters,
        batch_seconds,
        lag,
    }
});

/// Records and logs a connection state change of `service` (only on a change).
pub fn set_connected(service: &str, connected: bool, detail: &str) {
    let g = METRICS.up.with_label_values(&[service]);
    let was = g.get() == 1;
    g.set(i64::from(connected));
    if connected && !was {
        log(format_args!("{service}: connected ({detail})"));
    }
}

/// Whether `service` is connected now.
pub fn is_connected(service: &str) -> bool {
    METRICS.up.with_label_values(&[service]).get() == 1
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&METRICS.registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
