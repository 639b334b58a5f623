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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::avro::{self, Stream};
use super::outbox::{Outbox, OutboxError};
use super::registry::{RegistryClient, RegistryError};
use crate::link::{Link, LinkStats, LinkStatus, Signal, Transition};

/// How long one connection attempt may take (metadata round trip).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Registry requests give up after this; the attempt then fails and is retried.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages handed to librdkafka and not yet acknowledged, at most.
const MAX_IN_FLIGHT: usize = 20_000;
/// Outbox rows read per batch.
const BATCH: usize = 1000;
/// The queue-age gauge is refreshed at least this often, connected or not.
const AGE_EVERY: Duration = Duration::from_secs(1);
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

/// What the worker tells the element.
pub enum Notice {
    Transition(Transition, LinkStats),
    /// Stats changed (deliveries): notify `stats`.
    Stats,
    /// librdkafka log lines, at GStreamer levels.
    Log(gst::DebugLevel, String),
}

pub type Observer = Arc<dyn Fn(Notice) + Send + Sync>;

/// State shared by the element (streaming thread, property getters) and the worker.
pub struct Shared {
    pub outbox: Mutex<Outbox>,
    pub link: Mutex<Link>,
    signal: Signal,
    /// A worker sends what the outbox holds (not local mode): new work wakes it.
    sender: bool,
}

impl Shared {
    pub fn new(outbox: Outbox, link: Link) -> Arc<Shared> {
        let sender = link.status() != LinkStatus::Local;
        Arc::new(Shared {
            outbox: Mutex::new(outbox),
            link: Mutex::new(link),
            signal: Signal::default(),
            sender,
        })
    }

    pub fn outbox(&self) -> MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New work in the outbox.
    pub fn wake(&self) {
        if self.sender {
            self.signal.wake();
        }
    }

    pub fn request_stop(&self) {
        self.signal.request_stop();
    }

    fn stopping(&self) -> bool {
        self.signal.stopping()
    }

    /// Sleeps until woken (work, stop) or `timeout`.
    fn sleep(&self, timeout: Duration) {
        self.signal.sleep(timeout);
    }

    fn signal_progress(&self) {
        self.signal.signal_progress();
    }

    /// Returns once no events wait, the link stops holding EOS, or the element is `unlocked`.
    pub fn hold_eos(&self, unlocked: &std::sync::atomic::AtomicBool) {
        self.signal
            .hold_eos(&self.link, unlocked, || !self.outbox().is_empty());
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
    oldest_age: prometheus::IntGauge,
    last_age: Option<Instant>,
}

impl Series {
    pub fn new(sink: &str) -> Series {
        let m = crate::metrics::get();
        Series {
            latency: m.sink_latency.with_label_values(&[sink]),
            plate_to_delivery: m.plate_to_delivery.with_label_values(&[sink]),
            oldest_age: m.sink_queue_oldest_age.with_label_values(&[sink]),
            last_age: None,
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

    /// Sets `alpr_sink_queue_oldest_age_seconds` (0 when nothing waits); at most once per
    /// [`AGE_EVERY`] unless `now`.
    pub fn publish_age(&mut self, shared: &Shared, now: bool) {
        if !now && self.last_age.is_some_and(|t| t.elapsed() < AGE_EVERY) {
            return;
        }
        self.last_age = Some(Instant::now());
        let oldest = shared.outbox().oldest_created_ms();
        let age = oldest.map_or(0, |ms| (crate::event::now_ms() - ms).max(0) / 1000);
        self.oldest_age.set(age);
    }
}

/// The thread of a sink in local mode (no brokers): keeps the queue-age gauge current.
pub fn run_local(shared: Arc<Shared>, mut series: Series) {
    while !shared.stopping() {
        series.publish_age(&shared, false);
        shared.sleep(AGE_EVERY);
    }
    series.publish_age(&shared, true);
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
            let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
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
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((msg, r));
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
    observer: Observer,
    registry: RegistryClient,
    session: Option<Session>,
    last_stats_notice: Instant,
    series: Series,
}

/// Things worth a failed attempt, with the reason the user reads.
fn outbox_reason(e: OutboxError) -> String {
    format!("outbox: {e}")
}

impl Worker {
    pub fn new(cfg: Config, shared: Arc<Shared>, observer: Observer) -> Result<Worker, String> {
        let registry = RegistryClient::new(&cfg.registry, REGISTRY_TIMEOUT)
            .map_err(|e| format!("schema-registry: {e}"))?;
        Ok(Worker {
            shared,
            observer,
            registry,
            session: None,
            last_stats_notice: Instant::now(),
            series: Series::new(&cfg.sink),
            cfg,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("bootstrap {}", self.cfg.brokers)
    }

    fn transition(&self, t: Transition) {
        let stats = self.shared.link().stats().clone();
        (self.observer)(Notice::Transition(t, stats));
        self.shared.signal_progress();
    }

    fn fail(&mut self, reason: String) {
        // Dropping the producer purges what it still holds; those rows are still in the outbox.
        self.session = None;
        let t = self.shared.link().failed(Instant::now(), &reason);
        self.transition(t);
    }

    pub fn run(mut self) {
        while !self.shared.stopping() {
            self.series.publish_age(&self.shared, false);
            let status = self.shared.link().status();
            match status {
                LinkStatus::Local => self.shared.sleep(Duration::from_secs(1)),
                LinkStatus::Disconnected | LinkStatus::Connecting => {
                    let pending = !self.shared.outbox().is_empty();
                    let next = self.shared.link().next_attempt_in(Instant::now(), pending);
                    match next {
                        Some(d) if d.is_zero() => self.attempt(),
                        // In steps of AGE_EVERY, so the queue-age gauge keeps growing.
                        Some(d) => self.shared.sleep(d.min(AGE_EVERY)),
                        None => self.shared.sleep(Duration::from_secs(1)),
                    }
                }
                LinkStatus::Connected => self.pump(),
            }
        }
        self.shutdown();
        self.series.publish_age(&self.shared, true);
    }

    fn attempt(&mut self) {
        let t = self
            .shared
            .link()
            .begin_attempt(Instant::now(), &self.endpoint());
        self.transition(t);
        match self.connect() {
            Ok((session, detail)) => {
                self.session = Some(session);
                let t = self.shared.link().connected(&detail);
                self.transition(t);
            }
            Err(reason) => self.fail(reason),
        }
    }

    /// The schema id of `stream`: the on-disk cache first, else the registry (then cached).
    fn schema_id(&self, stream: Stream) -> Result<u32, String> {
        let subject = format!("{}-value", self.cfg.topic(stream));
        let schema = stream.registered_schema();
        let registry = self.registry.redacted().to_string();
        let cached = self
            .shared
            .outbox()
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
            .outbox()
            .store_schema_id(&registry, &subject, &schema, id)
            .map_err(outbox_reason)?;
        Ok(id)
    }

    fn connect(&mut self) -> Result<(Session, String), String> {
        let pending = self
            .shared
            .outbox()
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
            observer: self.observer.clone(),
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
                (self.observer)(Notice::Log(gst::DebugLevel::Warning, msg));
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
        let reports = std::mem::take(&mut *ctx.reports.lock().unwrap_or_else(|e| e.into_inner()));
        let fatal = ctx.fatal.lock().unwrap_or_else(|e| e.into_inner()).take();
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
            let mut outbox = self.shared.outbox();
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
                {
                    let mut link = self.shared.link();
                    let st = link.stats_mut();
                    st.delivered += n;
                    st.queued = queued;
                }
                if n > 0 {
                    self.series.publish_age(&self.shared, true);
                }
            }
            Err(e) => failure = Some(outbox_reason(e)),
        }
        self.stats_changed(false);
        failure
    }

    /// One round while connected: reports, errors, then more sends.
    fn pump(&mut self) {
        let busy = self.session.as_ref().is_some_and(|s| s.in_flight > 0);
        if self.session.is_none() {
            self.fail("no producer".into());
            return;
        }
        let (reports, fatal) = self.take_reports(if busy {
            Duration::from_millis(10)
        } else {
            Duration::ZERO
        });
        let failure = self.settle(reports);
        if let Some(reason) = failure.or(fatal) {
            self.fail(reason);
            return;
        }
        if let Err(reason) = self.send_more() {
            self.fail(reason);
            return;
        }
        let idle = self.session.as_ref().is_some_and(|s| s.in_flight == 0);
        if idle {
            self.stats_changed(true);
            self.shared.sleep(Duration::from_millis(200));
        }
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
            .outbox()
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
                        .outbox()
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
                                .outbox()
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

    fn stats_changed(&mut self, force: bool) {
        if force && self.last_stats_notice.elapsed() < Duration::from_millis(100) {
            return;
        }
        if force || self.last_stats_notice.elapsed() >= Duration::from_millis(100) {
            self.last_stats_notice = Instant::now();
            (self.observer)(Notice::Stats);
            self.shared.signal_progress();
        }
    }

    /// Gives in-flight messages a moment to be acknowledged so they are not sent twice next
    /// time; whatever is left stays in the outbox.
    fn shutdown(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.session.as_ref().is_some_and(|s| s.in_flight > 0) && Instant::now() < deadline {
            self.pump_reports_only();
        }
        self.session = None;
        (self.observer)(Notice::Stats);
        self.shared.signal_progress();
    }

    fn pump_reports_only(&mut self) {
        let (reports, _) = self.take_reports(Duration::from_millis(50));
        let _ = self.settle(reports);
    }
}
