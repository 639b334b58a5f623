// SPDX-License-Identifier: MIT OR Apache-2.0
//! The kafkasink worker thread: drives the link state machine, replays the outbox through an
//! rdkafka producer and deletes what the broker acknowledged.
//!
//! Threading: the streaming thread only commits events to the outbox (local disk) and wakes
//! this thread; everything that touches the network (registry, broker, delivery reports) runs
//! here. One thread per element, stopped and joined in `stop()`.
//!
//! Delivery: the outbox is read in `seq` order and handed to an idempotent producer
//! (`acks=all`), so librdkafka keeps the order per partition and never duplicates while the
//! producer lives. When the link fails (all brokers down, a delivery error, a fatal producer
//! error), the producer is dropped and, after reconnecting, everything still in the outbox is
//! sent again from the oldest: a message the broker stored but did not get to acknowledge may
//! then arrive twice, with the same `event_id` and `revision` (consumers dedup by `event_id`,
//! keeping the highest `revision`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::avro::{self, Stream};
use super::outbox::{Outbox, OutboxError};
use super::registry::{RegistryClient, RegistryError};
use crate::sink::{Notice, Observer, Uploader, lock};

/// What the element and the worker share: the outbox and the link.
pub type Shared = crate::sink::Shared<Outbox>;

/// How long one connection attempt may take (metadata round trip).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Registry requests give up after this; the attempt then fails and is retried.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages handed to librdkafka and not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 20_000;
/// Outbox rows read per batch.
const BATCH: usize = 1000;
/// Settings the element enforces: delivery guarantees are not negotiable.
pub const ENFORCED: [(&str, &str); 2] = [("enable.idempotence", "true"), ("acks", "all")];

/// What the worker needs, snapshot of the element's settings at `start`.
#[derive(Clone)]
pub struct Config {
    /// The element's name: the `sink` label of its metrics.
    pub sink: String,
    pub brokers: String,
    /// The registry URL, credentials included (never logged: see `RegistryClient::redacted`).
    pub registry: String,
    pub topics: HashMap<Stream, String>,
    /// Extra librdkafka settings, applied as given.
    pub kafka_config: Vec<(String, String)>,
}

impl Config {
    pub fn topic(&self, s: Stream) -> &str {
        self.topics.get(&s).map(String::as_str).unwrap_or("")
    }
}

/// What a message in flight carries to its delivery report: its row, and the times its latency
/// series are measured from.
pub struct InFlight {
    seq: i64,
    created_ms: i64,
    first_seen_ms: Option<i64>,
}

type Report = (Box<InFlight>, Result<(), String>);

/// The sink's delivery series, resolved once (no label lookups per event).
pub struct Series {
    latency: prometheus::Histogram,
    plate_to_delivery: prometheus::Histogram,
}

impl Series {
    pub fn new(sink: &str) -> Series {
        let m = crate::metrics::get();
        Series {
            latency: m.sink_latency.with_label_values(&[sink]),
            plate_to_delivery: m.plate_to_delivery.with_label_values(&[sink]),
        }
    }

    /// An acknowledged event, `now_ms` being the time of its delivery report.
    fn delivered(&self, f: &InFlight, now_ms: i64) {
        self.latency
            .observe((now_ms - f.created_ms).max(0) as f64 / 1000.0);
        if let Some(first) = f.first_seen_ms {
            self.plate_to_delivery
                .observe((now_ms - first).max(0) as f64 / 1000.0);
        }
    }
}

/// Delivery reports and global errors, collected during `poll` (same thread).
struct Ctx {
    reports: Mutex<Vec<Report>>,
    fatal: Mutex<Option<String>>,
    observer: Observer,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => gst::DebugLevel::Error,
            RDKafkaLogLevel::Warning => gst::DebugLevel::Warning,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => gst::DebugLevel::Info,
            RDKafkaLogLevel::Debug => gst::DebugLevel::Debug,
        };
        (self.observer)(Notice::Log(level, format!("librdkafka {fac}: {msg}")));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        let link_lost = matches!(
            code,
            Some(RDKafkaErrorCode::AllBrokersDown) | Some(RDKafkaErrorCode::Fatal)
        );
        (self.observer)(Notice::Log(
            gst::DebugLevel::Info,
            format!("librdkafka: {error}: {reason}"),
        ));
        if link_lost {
            let mut f = lock(&self.fatal);
            if f.is_none() {
                *f = Some(if code == Some(RDKafkaErrorCode::AllBrokersDown) {
                    format!("all brokers down: {reason}")
                } else {
                    format!("fatal producer error: {reason}")
                });
            }
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<InFlight>;

    fn delivery(&self, result: &DeliveryResult<'_>, msg: Box<InFlight>) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, m)) => {
                use rdkafka::Message;
                Err(format!("delivery to topic {} failed: {e}", m.topic()))
            }
        };
        lock(&self.reports).push((msg, r));
    }
}

type KProducer = BaseProducer<Ctx>;

struct Session {
    producer: KProducer,
    schema_ids: HashMap<Stream, u32>,
    /// Highest seq handed to the producer.
    cursor: i64,
    in_flight: usize,
}

pub struct Worker {
    cfg: Config,
    shared: Arc<Shared>,
    registry: RegistryClient,
    session: Option<Session>,
    series: Series,
}

/// Things worth a failed attempt, with the reason the user reads.
fn outbox_reason(e: OutboxError) -> String {
    format!("outbox: {e}")
}

impl Worker {
    pub fn new(cfg: Config, shared: Arc<Shared>) -> Result<Worker, String> {
        let registry = RegistryClient::new(&cfg.registry, REGISTRY_TIMEOUT)
            .map_err(|e| format!("schema-registry: {e}"))?;
        Ok(Worker {
            shared,
            registry,
            session: None,
            series: Series::new(&cfg.sink),
            cfg,
        })
    }

    /// The schema id of `stream`: the on-disk cache first, else the registry (then cached).
    fn schema_id(&self, stream: Stream) -> Result<u32, String> {
        let subject = format!("{}-value", self.cfg.topic(stream));
        let schema = stream.registered_schema();
        let registry = self.registry.redacted().to_string();
        let cached = self
            .shared
            .queue()
            .cached_schema_id(&registry, &subject, &schema)
            .map_err(outbox_reason)?;
        if let Some(id) = cached {
            return Ok(id);
        }
        let id = self
            .registry
            .register(&subject, &schema)
            .map_err(|e| match e {
                RegistryError::Rejected { .. } => format!(
                    "{e} (the subject holds an incompatible schema, or the registry refuses \
                     this one: fix the subject's compatibility or the topic name; events wait \
                     in the outbox)"
                ),
                e => e.to_string(),
            })?;
        self.shared
            .queue()
            .store_schema_id(&registry, &subject, &schema, id)
            .map_err(outbox_reason)?;
        Ok(id)
    }

    fn open_session(&mut self) -> Result<(Session, String), String> {
        let pending = self
            .shared
            .queue()
            .pending_streams()
            .map_err(outbox_reason)?;
        let mut schema_ids = HashMap::new();
        for s in Stream::ALL {
            match self.schema_id(s) {
                Ok(id) => {
                    schema_ids.insert(s, id);
                }
                // Only streams with events waiting must have an id now; others get one later.
                Err(e) if pending.contains(&s) => return Err(e),
                Err(_) => {}
            }
        }

        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &self.cfg.brokers)
            .set("client.id", "gst-alpr-kafkasink");
        for (k, v) in &self.cfg.kafka_config {
            cc.set(k, v);
        }
        for (k, v) in ENFORCED {
            cc.set(k, v);
        }
        let ctx = Ctx {
            reports: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
            observer: self.shared.observer(),
        };
        let producer: KProducer = cc
            .create_with_context(ctx)
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;

        // Short metadata requests so that stop() is never held up for long.
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let md = loop {
            match producer
                .client()
                .fetch_metadata(None, Duration::from_millis(500))
            {
                Ok(md) => break md,
                Err(e) => {
                    if self.shared.stopping() || Instant::now() >= deadline {
                        return Err(format!(
                            "no answer from bootstrap {}: {e}",
                            self.cfg.brokers
                        ));
                    }
                }
            }
        };
        let mut topics = Vec::new();
        for s in Stream::ALL {
            let name = self.cfg.topic(s);
            let found = md
                .topics()
                .iter()
                .find(|t| t.name() == name)
                .filter(|t| t.error().is_none() && !t.partitions().is_empty());
            if found.is_none() {
                let msg = format!(
                    "topic {name} does not exist on the broker (create it first: brokers \
                     without topic auto-creation refuse to make it)"
                );
                if pending.contains(&s) {
                    return Err(msg);
                }
                self.shared
                    .notice(Notice::Log(gst::DebugLevel::Warning, msg));
            }
            topics.push(name.to_string());
        }
        let detail = format!(
            "bootstrap {}, schema registry {}, topics {}",
            self.cfg.brokers,
            self.registry.redacted(),
            topics.join(", ")
        );
        Ok((
            Session {
                producer,
                schema_ids,
                cursor: 0,
                in_flight: 0,
            },
            detail,
        ))
    }

    /// Takes the delivery reports and the fatal error collected by the last `poll`.
    fn take_reports(&mut self, poll: Duration) -> (Vec<Report>, Option<String>) {
        let Some(session) = self.session.as_mut() else {
            return (Vec::new(), None);
        };
        session.producer.poll(poll);
        let ctx = session.producer.context();
        let reports = std::mem::take(&mut *lock(&ctx.reports));
        let fatal = lock(&ctx.fatal).take();
        session.in_flight = session.in_flight.saturating_sub(reports.len());
        (reports, fatal)
    }

    /// Deletes the acknowledged rows (one transaction for all the reports of a poll) and
    /// records them; returns the first failure a report or the outbox gave.
    fn settle(&mut self, reports: Vec<Report>) -> Option<String> {
        let mut acked = Vec::with_capacity(reports.len());
        let mut failure = None;
        for (msg, r) in reports {
            match r {
                Ok(()) => acked.push(msg),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if acked.is_empty() {
            return failure;
        }
        let seqs: Vec<i64> = acked.iter().map(|m| m.seq).collect();
        let removed = {
            let mut outbox = self.shared.queue();
            outbox.remove(&seqs).map(|r| (r, outbox.len()))
        };
        match removed {
            Ok((removed, queued)) => {
                let now = crate::event::now_ms();
                let mut n = 0;
                // A row no longer there was dropped by the overflow policy or already counted.
                for (msg, _) in acked.iter().zip(&removed).filter(|(_, r)| **r) {
                    self.series.delivered(msg, now);
                    n += 1;
                }
                self.shared.delivered(n, queued);
            }
            Err(e) => failure = Some(outbox_reason(e)),
        }
        self.shared.stats_changed();
        failure
    }

    /// One round while connected: reports, errors, then more sends.
    fn round(&mut self) -> Result<(), String> {
        let busy = self.session.as_ref().is_some_and(|s| s.in_flight > 0);
        if self.session.is_none() {
            return Err("no producer".into());
        }
        let (reports, fatal) = self.take_reports(if busy {
            Duration::from_millis(10)
        } else {
            Duration::ZERO
        });
        let failure = self.settle(reports);
        if let Some(reason) = failure.or(fatal) {
            return Err(reason);
        }
        self.send_more()?;
        let idle = self.session.as_ref().is_some_and(|s| s.in_flight == 0);
        if idle {
            self.shared.stats_changed();
            self.shared.sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn send_more(&mut self) -> Result<(), String> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        if session.in_flight >= MAX_IN_FLIGHT {
            return Ok(());
        }
        let batch = self
            .shared
            .queue()
            .batch_after(session.cursor, BATCH.min(MAX_IN_FLIGHT - session.in_flight))
            .map_err(outbox_reason)?;
        for r in batch {
            let id = match session.schema_ids.get(&r.stream) {
                Some(id) => *id,
                None => {
                    // A stream that had no events at connect time.
                    let subject = format!("{}-value", self.cfg.topic(r.stream));
                    let schema = r.stream.registered_schema();
                    let registry = self.registry.redacted().to_string();
                    let cached = self
                        .shared
                        .queue()
                        .cached_schema_id(&registry, &subject, &schema)
                        .map_err(outbox_reason)?;
                    let id = match cached {
                        Some(id) => id,
                        None => {
                            let id = self
                                .registry
                                .register(&subject, &schema)
                                .map_err(|e| e.to_string())?;
                            self.shared
                                .queue()
                                .store_schema_id(&registry, &subject, &schema, id)
                                .map_err(outbox_reason)?;
                            id
                        }
                    };
                    session.schema_ids.insert(r.stream, id);
                    id
                }
            };
            let payload = avro::frame(id, &r.body);
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "event_id",
                    value: Some(r.event_id.as_bytes()),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some(r.stream.content_type().as_bytes()),
                });
            let msg = Box::new(InFlight {
                seq: r.seq,
                created_ms: r.created_ms,
                first_seen_ms: r.first_seen_ms,
            });
            let record = BaseRecord::with_opaque_to(self.cfg.topic(r.stream), msg)
                .key(r.key.as_bytes())
                .payload(&payload)
                .headers(headers);
            match session.producer.send(record) {
                Ok(()) => {
                    session.cursor = r.seq;
                    session.in_flight += 1;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                Err((e, _)) => {
                    return Err(format!(
                        "cannot queue a message for topic {}: {e}",
                        self.cfg.topic(r.stream)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Gives in-flight messages a moment to be acknowledged so they are not sent twice next
    /// time; whatever is left stays in the outbox.
    fn finish(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.session.as_ref().is_some_and(|s| s.in_flight > 0) && Instant::now() < deadline {
            self.pump_reports_only();
        }
        self.session = None;
    }

    fn pump_reports_only(&mut self) {
        let (reports, _) = self.take_reports(Duration::from_millis(50));
        let _ = self.settle(reports);
    }
}

impl Uploader for Worker {
    fn endpoint(&self) -> String {
        format!("bootstrap {}", self.cfg.brokers)
    }

    fn connect(&mut self) -> Result<Option<String>, String> {
        let (session, detail) = self.open_session()?;
        self.session = Some(session);
        Ok(Some(detail))
    }

    /// Dropping the producer purges what it still holds; those rows are still in the outbox.
    fn disconnect(&mut self) {
        self.session = None;
    }

    fn pump(&mut self) -> Result<(), String> {
        self.round()
    }

    fn shutdown(&mut self) {
        self.finish();
    }
}
