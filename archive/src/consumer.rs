// SPDX-License-Identifier: MIT OR Apache-2.0
//! The Kafka consumer group: poll a batch, decode it, write it in one transaction, then commit
//! its offsets. At-least-once delivery plus idempotent writes: every event once in the table.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gstalpr::kafkasink::registry::RegistryClient;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_postgres::Client;

use crate::config::Config;
use crate::decode::{DecodeError, Decoder};
use crate::status::{METRICS, log, set_connected};
use crate::store::{self, Item, Origin};

/// How long a batch waits for more messages once it has one.
const BATCH_WAIT: Duration = Duration::from_millis(200);

/// How often the consumer lag per partition is measured (one watermark request per partition).
const LAG_EVERY: Duration = Duration::from_secs(5);

/// Runs until `stop` is set: the consumer thread's body.
pub fn run(cfg: Config, rt: tokio::runtime::Handle, stop: Arc<AtomicBool>) {
    let retry = cfg.retry_interval;
    let registry = loop {
        match RegistryClient::new(&cfg.schema_registry, Duration::from_secs(10)) {
            Ok(r) => break r,
            Err(e) => {
                // A malformed URL does not get better: say so and keep trying the same way
                // the other services do, so the process stays up and visible.
                log(format_args!(
                    "registry: failed, will retry in {}s: {e}",
                    retry.as_secs()
                ));
                if sleep_or_stop(retry, &stop) {
                    return;
                }
            }
        }
    };
    let mut decoder = Decoder::new(registry);
    let consumer = match make_consumer(&cfg) {
        Ok(c) => c,
        Err(e) => {
            log(format_args!("kafka: cannot create the consumer: {e}"));
            std::process::exit(2);
        }
    };
    let mut writer = Writer {
        url: cfg.database_url.clone(),
        redacted: cfg.database_redacted(),
        retry,
        client: None,
    };
    // The tables first: the search API needs them even before the first event.
    if rt.block_on(writer.connected(&stop)).is_none() {
        return;
    }
    let mut in_flight = InFlight::Idle(Box::new(writer));
    wait_for_kafka(&consumer, &cfg, &stop);
    let topics = [cfg.plates_topic.as_str(), cfg.vehicles_topic.as_str()];
    if let Err(e) = consumer.subscribe(&topics) {
        log(format_args!("kafka: subscribe {topics:?}: {e}"));
        std::process::exit(2);
    }
    log(format_args!(
        "kafka: consuming {topics:?} as group {}",
        cfg.group_id
    ));
    let mut kafka_error: Option<String> = None;
    let mut lag_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if kafka_error.is_none() && lag_at.elapsed() >= LAG_EVERY {
            report_lag(&consumer);
            lag_at = Instant::now();
        }
        let mut batch = Vec::new();
        let mut first: Option<Instant> = None;
        while batch.len() < cfg.batch_size as usize {
            let wait = match first {
                None => Duration::from_millis(500),
                Some(t) => BATCH_WAIT.saturating_sub(t.elapsed()),
            };
            if wait.is_zero() || stop.load(Ordering::Relaxed) {
                break;
            }
            match consumer.poll(wait) {
                None if first.is_none() => break,
                None => {}
                Some(Ok(m)) => {
                    if kafka_error.take().is_some() {
                        set_connected("kafka", true, &cfg.brokers);
                    }
                    first.get_or_insert_with(Instant::now);
                    batch.push((
                        Origin {
                            topic: m.topic().to_string(),
                            partition: m.partition(),
                            offset: m.offset(),
                        },
                        m.payload().map(<[u8]>::to_vec),
                    ));
                }
                Some(Err(e)) => {
                    let reason = e.to_string();
                    if kafka_error.as_deref() != Some(&reason) {
                        log(format_args!(
                            "kafka: {reason} (librdkafka retries by itself)"
                        ));
                        METRICS.up.with_label_values(&["kafka"]).set(0);
                    }
                    kafka_error = Some(reason);
                }
            }
        }
        if batch.is_empty() {
            // Nothing more now: the batch being written is committed without waiting for one.
            if !in_flight.finish(&rt, &consumer) {
                return;
            }
            continue;
        }
        let items = decode_batch(&mut decoder, batch, retry, &stop);
        let Some(items) = items else {
            in_flight.finish(&rt, &consumer);
            return;
        };
        // One batch is written while the next one is polled and decoded; its offsets are
        // committed once its rows are, before the next batch goes to the database.
        if !in_flight.finish(&rt, &consumer) {
            return;
        }
        in_flight.start(&rt, items, &stop);
    }
    in_flight.finish(&rt, &consumer);
}

/// The batch being written to the database while the next one is read from Kafka: the
/// writer travels with it (one connection, one batch at a time, in order).
enum InFlight {
    Idle(Box<Writer>),
    Writing(tokio::task::JoinHandle<(Box<Writer>, Vec<Item>, bool)>),
    /// The write task panicked or was cancelled (the runtime is going away).
    Gone,
}

impl InFlight {
    fn start(&mut self, rt: &tokio::runtime::Handle, items: Vec<Item>, stop: &Arc<AtomicBool>) {
        let InFlight::Idle(mut writer) = std::mem::replace(self, InFlight::Gone) else {
            unreachable!("a batch is started only after the previous one finished");
        };
        let stop = stop.clone();
        *self = InFlight::Writing(rt.spawn(async move {
            let started = Instant::now();
            let ok = writer.write(&items, &stop).await;
            if ok {
                METRICS
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            (writer, items, ok)
        }));
    }

    /// Waits for the batch being written and commits its offsets; false when the write was
    /// given up (asked to stop) or the task is gone: its offsets stay uncommitted.
    fn finish(&mut self, rt: &tokio::runtime::Handle, consumer: &BaseConsumer) -> bool {
        let task = match std::mem::replace(self, InFlight::Gone) {
            InFlight::Writing(task) => task,
            InFlight::Idle(writer) => {
                *self = InFlight::Idle(writer);
                return true;
            }
            InFlight::Gone => return false,
        };
        match rt.block_on(task) {
            Ok((writer, items, ok)) => {
                *self = InFlight::Idle(writer);
                if ok {
                    commit(consumer, &items);
                }
                ok
            }
            Err(e) => {
                log(format_args!("database: the batch writer failed: {e}"));
                false
            }
        }
    }
}

fn make_consumer(cfg: &Config) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    let mut c = ClientConfig::new();
    if !cfg.instance_id.is_empty() {
        c.set("group.instance.id", &cfg.instance_id);
    }
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("client.id", "alpr-archive")
        // A killed instance's partitions go to the others (or to its restart) after this long
        // without heartbeats, instead of librdkafka's 45 s.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        // A rebalance waits at most this long for members to rejoin. The loop polls at least
        // every 0.5 s, except while a batch waits for the database; a longer outage than this
        // only means the batch is redelivered after it, and the writes are idempotent.
        .set("max.poll.interval.ms", "60000")
        .create()
}

/// Logs attempting / connected / failed until the brokers answer a metadata request.
fn wait_for_kafka(consumer: &BaseConsumer, cfg: &Config, stop: &AtomicBool) {
    loop {
        log(format_args!("kafka: attempting {}", cfg.brokers));
        match consumer.fetch_metadata(None, Duration::from_secs(5)) {
            Ok(md) => {
                set_connected(
                    "kafka",
                    true,
                    &format!("{}, {} brokers", cfg.brokers, md.brokers().len()),
                );
                return;
            }
            Err(e) => log(format_args!(
                "kafka: failed, will retry in {}s: {e}",
                cfg.retry_interval.as_secs()
            )),
        }
        if sleep_or_stop(cfg.retry_interval, stop) {
            return;
        }
    }
}

/// Sleeps `d` in small steps; true when asked to stop meanwhile.
fn sleep_or_stop(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
    stop.load(Ordering::Relaxed)
}

/// Decodes every message; a registry outage waits and retries the same message (never a dead
/// letter: the message is fine). None when asked to stop.
fn decode_batch(
    decoder: &mut Decoder,
    batch: Vec<(Origin, Option<Vec<u8>>)>,
    retry: Duration,
    stop: &AtomicBool,
) -> Option<Vec<Item>> {
    let mut items = Vec::with_capacity(batch.len());
    let mut registry_down = false;
    for (origin, payload) in batch {
        loop {
            match decoder.decode(payload.as_deref()) {
                Ok(d) => {
                    items.push(Item::Event(d, origin));
                    break;
                }
                Err(DecodeError::Poison(error)) => {
                    items.push(Item::Dead {
                        origin,
                        payload: payload.unwrap_or_default(),
                        error,
                    });
                    break;
                }
                Err(DecodeError::Unavailable(reason)) => {
                    registry_down = true;
                    METRICS.up.with_label_values(&["registry"]).set(0);
                    log(format_args!(
                        "registry: failed, will retry in {}s: {reason}",
                        retry.as_secs()
                    ));
                    if sleep_or_stop(retry, stop) {
                        return None;
                    }
                    log(format_args!(
                        "registry: attempting {}",
                        decoder.registry_url()
                    ));
                }
            }
        }
        if !registry_down {
            set_connected("registry", true, decoder.registry_url());
        }
        registry_down = false;
    }
    Some(items)
}

/// Sets `alpr_archive_consumer_lag` for every partition assigned to this instance: the
/// partition's high watermark minus the next offset this consumer will read (the low
/// watermark when it has read nothing there yet). Partitions it no longer owns are dropped.
fn report_lag(consumer: &BaseConsumer) {
    let Ok(position) = consumer.position() else {
        return;
    };
    METRICS.lag.reset();
    for e in position.elements() {
        let Ok((low, high)) =
            consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1))
        else {
            continue;
        };
        let next = match e.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        METRICS
            .lag
            .with_label_values(&[e.topic(), &e.partition().to_string()])
            .set((high - next).max(0));
    }
}

/// Commits, per partition, the offset after the last message of the batch.
fn commit(consumer: &BaseConsumer, items: &[Item]) {
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    for item in items {
        let o = match item {
            Item::Event(_, o) => o,
            Item::Dead { origin, .. } => origin,
        };
        let e = next.entry((o.topic.clone(), o.partition)).or_insert(0);
        *e = (*e).max(o.offset + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset));
    }
    // A failed commit (a rebalance took the partition away) only means redelivery, which the
    // idempotent writes absorb.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        log(format_args!(
            "kafka: offset commit failed (the batch will be redelivered and deduplicated): {e}"
        ));
    }
}

/// The database connection of the consumer: reconnects with the retry interval and keeps
/// the batch until it is committed.
struct Writer {
    url: String,
    redacted: String,
    retry: Duration,
    client: Option<Client>,
}

impl Writer {
    async fn connected(&mut self, stop: &AtomicBool) -> Option<&mut Client> {
        while self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            set_connected("database", false, "");
            log(format_args!("database: attempting {}", self.redacted));
            match store::connect(&self.url).await {
                Ok(mut c) => match store::migrate(&mut c).await {
                    Ok(applied) => {
                        if !applied.is_empty() {
                            log(format_args!("database: applied migrations {applied:?}"));
                        }
                        set_connected("database", true, &self.redacted);
                        self.client = Some(c);
                        break;
                    }
                    Err(e) => self.failed(&store::error_text(&e)),
                },
                Err(e) => self.failed(&e),
            }
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            tokio::time::sleep(self.retry).await;
        }
        self.client.as_mut()
    }

    fn failed(&self, reason: &str) {
        log(format_args!(
            "database: failed, will retry in {}s: {reason}",
            self.retry.as_secs()
        ));
    }

    /// Writes the batch, retrying across outages; false only when asked to stop first. Rows
    /// the server refuses (not an outage) are retried one by one and the refused ones become
    /// dead letters, so one bad record never blocks the partition.
    async fn write(&mut self, items: &[Item], stop: &AtomicBool) -> bool {
        loop {
            let Some(client) = self.connected(stop).await else {
                return false;
            };
            match store::write_batch(client, items).await {
                Ok(w) => {
                    count(w);
                    return true;
                }
                Err(e) if e.as_db_error().is_some() && !client.is_closed() => {
                    log(format_args!(
                        "database: batch refused ({}), writing its {} messages one by one",
                        store::error_text(&e),
                        items.len()
                    ));
                    if self.write_each(items).await {
                        return true;
                    }
                }
                Err(e) => {
                    set_connected("database", false, "");
                    self.failed(&store::error_text(&e));
                    self.client = None;
                    tokio::time::sleep(self.retry).await;
                }
            }
        }
    }

    /// True when every item is stored or dead-lettered.
    async fn write_each(&mut self, items: &[Item]) -> bool {
        for item in items {
            let Some(client) = self.client.as_mut() else {
                return false;
            };
            match store::write_batch(client, std::slice::from_ref(item)).await {
                Ok(w) => count(w),
                Err(e) if e.as_db_error().is_some() && !client.is_closed() => {
                    let Item::Event(_, origin) = item else {
                        return false;
                    };
                    let dead = Item::Dead {
                        origin: origin.clone(),
                        payload: Vec::new(),
                        error: format!("refused by the database: {}", store::error_text(&e)),
                    };
                    match store::write_batch(client, &[dead]).await {
                        Ok(w) => count(w),
                        Err(_) => return false,
                    }
                }
                Err(_) => return false,
            }
        }
        true
    }
}

fn count(w: store::Written) {
    METRICS
        .rows
        .with_label_values(&["plate_events"])
        .inc_by(w.plates);
    METRICS
        .rows
        .with_label_values(&["vehicle_events"])
        .inc_by(w.vehicles);
    METRICS.dead_letters.inc_by(w.dead_letters);
}
