// SPDX-License-Identifier: MIT OR Apache-2.0
//! kafkasink throughput against a raw rdkafka producer, and memory during a long outage.
//!
//!   cargo bench --bench kafkasink
//!
//! Both sides go to the same tansu broker (a real process on 127.0.0.1, sqlite storage) in the
//! same run. 1. Events/s: N events through kafkasink (one event per buffer, so one outbox commit
//! each: the worst case), timed from the first buffer to the last acknowledgement, versus the
//! same N Kafka messages from a bare idempotent producer: it encodes each event itself and sends
//! the same payload, key and headers (the broker stores headers too: without them it does a
//! third of the work), timed from the first send to the last acknowledgement. Rounds alternate
//! which side goes first (the broker's database grows as it runs). Each side also shows where
//! its CPU time went, per thread kind and in the broker. Goal: ratio >= 0.8. 2. Outage: the
//! broker is down while a large backlog is accepted; the process RSS is sampled as it grows
//! (goal: flat, the backlog lives on disk), then the broker comes back and the backlog drains.
//!
//! Sizes: ALPR_BENCH_EVENTS (default 20000), ALPR_BENCH_ROUNDS (default 4), ALPR_BENCH_BACKLOG
//! (default 100000). ALPR_BENCH_KAFKA_CONFIG=k=v,... adds librdkafka settings to both sides.

#[path = "../tests/common/kafka.rs"]
mod kafka;

use std::time::{Duration, Instant};

use gst::prelude::*;
use gstalpr::kafkasink::avro::{self, Stream};
use kafka::*;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "alpr.events.plates";
const RAW_TOPIC: &str = "bench.raw";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Extra librdkafka settings for both sides, `ALPR_BENCH_KAFKA_CONFIG=k=v,k=v`.
fn kafka_config() -> Vec<(String, String)> {
    std::env::var("ALPR_BENCH_KAFKA_CONFIG")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time (utime + stime, clock ticks) of every live thread of process `pid`, by thread id,
/// with the thread's name.
fn thread_ticks(pid: &str) -> std::collections::HashMap<String, (String, u64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... : the name may contain spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.insert(t.file_name().to_string_lossy().into_owned(), (name, ticks));
    }
    out
}

/// Where the CPU time of a phase went: this process by thread kind, and the broker.
struct CpuProbe {
    me: std::collections::HashMap<String, (String, u64)>,
    broker_pid: Option<u32>,
    broker: u64,
}

const TICK_MS: f64 = 10.0; // USER_HZ is 100 on Linux

fn broker_ticks(pid: Option<u32>) -> u64 {
    pid.map(|p| thread_ticks(&p.to_string()).values().map(|(_, t)| t).sum())
        .unwrap_or(0)
}

impl CpuProbe {
    fn start(broker_pid: Option<u32>) -> CpuProbe {
        CpuProbe {
            me: thread_ticks("self"),
            broker_pid,
            broker: broker_ticks(broker_pid),
        }
    }

    /// CPU ms per 1000 events of the phase so far, by thread kind. Threads that ended during
    /// the phase are not counted: call this before dropping producers.
    fn report(&self, events: usize) -> String {
        let main_tid = std::process::id().to_string();
        let now = thread_ticks("self");
        let mut kinds: std::collections::BTreeMap<&str, u64> = Default::default();
        for (tid, (name, t)) in &now {
            let before = self.me.get(tid).map(|(_, b)| *b).unwrap_or(0);
            let kind = if *tid == main_tid {
                "main thread"
            } else if name == "kafkasink" {
                "sink worker"
            } else if name.starts_with("rdk:") {
                "librdkafka"
            } else {
                "other"
            };
            *kinds.entry(kind).or_default() += t.saturating_sub(before);
        }
        let broker = broker_ticks(self.broker_pid).saturating_sub(self.broker);
        let per_k = |ticks: u64| ticks as f64 * TICK_MS * 1000.0 / events.max(1) as f64;
        let mut parts: Vec<String> = kinds
            .iter()
            .filter(|(_, t)| **t > 0)
            .map(|(k, t)| format!("{k} {:.0}", per_k(*t)))
            .collect();
        parts.push(format!("broker {:.0}", per_k(broker)));
        format!("CPU ms per 1000 events: {}", parts.join(", "))
    }
}

fn sink(
    outbox: &std::path::Path,
    brokers: &str,
    registry: &str,
) -> (gst_check::Harness, gst::Element) {
    let el = gst::ElementFactory::make("kafkasink")
        .property("outbox-location", outbox.to_str().unwrap())
        .property("retry-interval", 1u32)
        .property("brokers", brokers)
        .property("schema-registry", registry)
        .build()
        .unwrap();
    let extra = kafka_config();
    if !extra.is_empty() {
        let mut cfg = gst::Structure::builder("config");
        for (k, v) in &extra {
            cfg = cfg.field(k.as_str(), v.as_str());
        }
        el.set_property("kafka-config", cfg.build());
    }
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), None);
    h.set_src_caps_str("application/x-alpr-events");
    (h, el)
}

fn stat(el: &gst::Element, f: &str) -> u64 {
    el.property::<gst::Structure>("stats")
        .get::<u64>(f)
        .unwrap()
}

/// The same Kafka messages the sink sends (Confluent-framed Avro of each event, encoded here per
/// event, key = camera id, headers `event_id` and `content-type`) from a bare idempotent
/// producer with the sink's client settings: what an application without the outbox would do.
fn raw_producer(
    brokers: &str,
    broker_pid: Option<u32>,
    schema_id: u32,
    events: &[gstalpr::event::PlateEvent],
) -> (Duration, String) {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers);
    for (k, v) in kafka_config() {
        cc.set(k, v);
    }
    let p: BaseProducer = cc
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    let content_type = Stream::Plates.content_type();
    let send = |e: &gstalpr::event::PlateEvent| {
        let payload = avro::frame(schema_id, &avro::encode_plate(e).unwrap());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event_id",
                value: Some(e.event_id.as_bytes()),
            })
            .insert(Header {
                key: "content-type",
                value: Some(content_type.as_bytes()),
            });
        let mut record = BaseRecord::to(RAW_TOPIC)
            .key(e.camera_id.as_bytes())
            .payload(&payload)
            .headers(headers);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    p.poll(Duration::from_millis(5));
                }
            }
        }
        p.poll(Duration::ZERO);
    };
    // One delivered message first, so both sides are timed from a warm connection with a
    // producer id (the sink gets the same warm-up).
    send(&plate_event("warm", 0));
    p.flush(Duration::from_secs(20)).unwrap();
    let cpu = CpuProbe::start(broker_pid);
    let t0 = Instant::now();
    for e in events {
        send(e);
    }
    p.flush(Duration::from_secs(120)).unwrap();
    (t0.elapsed(), cpu.report(events.len()))
}

/// kafkasink from the first buffer pushed until the broker acknowledged the last event.
fn through_sink(
    outbox: &std::path::Path,
    tansu: &Tansu,
    registry: &str,
    events: &[gstalpr::event::PlateEvent],
) -> (Duration, Duration, String) {
    let n = events.len();
    let buffers: Vec<_> = events
        .iter()
        .map(|e| buffer_with(std::slice::from_ref(e), &[]))
        .collect();
    let (mut h, el) = sink(outbox, &tansu.brokers(), registry);
    // Warm up: connected, schema registered.
    h.push(buffer_with(&[plate_event("warm", 0)], &[])).unwrap();
    let t = Instant::now();
    while stat(&el, "delivered") < 1 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu = CpuProbe::start(tansu.pid());
    let t0 = Instant::now();
    for b in buffers {
        h.push(b).unwrap();
    }
    let accepted = t0.elapsed();
    while stat(&el, "delivered") < n as u64 + 1 && t0.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t0.elapsed();
    let cpu = cpu.report(n);
    assert_eq!(
        stat(&el, "delivered"),
        n as u64 + 1,
        "every event delivered"
    );
    (took, accepted, cpu)
}

fn main() {
    gst::init().unwrap();
    gstalpr::plugin_register_static().unwrap();
    let n = env_usize("ALPR_BENCH_EVENTS", 20_000);
    let rounds = env_usize("ALPR_BENCH_ROUNDS", 4).max(1);
    let backlog = env_usize("ALPR_BENCH_BACKLOG", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let mut tansu = Tansu::start(&dir.path().join("tansu"), free_port());
    tansu.create_topic(TOPIC);
    tansu.create_topic(RAW_TOPIC);
    let payload = avro::frame(1, &avro::encode_plate(&plate_event("gate-a", 0)).unwrap());

    println!(
        "kafkasink vs raw rdkafka producer, {n} events of ~{} bytes (+ key and 2 headers), \
         tansu sqlite, {rounds} rounds (the order alternates):",
        payload.len()
    );
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let events: Vec<_> = (0..n as u64)
            .map(|i| plate_event(["gate-a", "gate-b", "gate-c"][(i % 3) as usize], i))
            .collect();
        let outbox = dir.path().join(format!("outbox-round{round}"));
        let raw_first = round % 2 == 0;
        let mut raw = None;
        if raw_first {
            raw = Some(raw_producer(&tansu.brokers(), tansu.pid(), 1, &events));
        }
        let (took, accepted, sink_cpu) = through_sink(&outbox, &tansu, &reg.url(), &events);
        let (raw, raw_cpu) =
            raw.unwrap_or_else(|| raw_producer(&tansu.brokers(), tansu.pid(), 1, &events));
        let raw_rate = n as f64 / raw.as_secs_f64();
        let rate = n as f64 / took.as_secs_f64();
        ratios.push(rate / raw_rate);
        println!("  round {}:", round + 1);
        println!("    raw producer: {raw:>9.2?} {raw_rate:>7.0} events/s; {raw_cpu}");
        println!("    kafkasink:    {took:>9.2?} {rate:>7.0} events/s; {sink_cpu}");
        println!(
            "                  (all accepted into the outbox after {accepted:.2?}: {:.0} events/s)",
            n as f64 / accepted.as_secs_f64()
        );
        println!("    ratio kafkasink / raw: {:.2}", rate / raw_rate);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  ratio kafkasink / raw: median {:.2}, range {:.2}..{:.2} (goal >= 0.8)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );

    println!("outage: broker down, {backlog} events accepted (RSS sampled every 10%):");
    tansu.kill();
    let out2 = dir.path().join("outbox2");
    let (mut h, el) = sink(&out2, &tansu.brokers(), &reg.url());
    let rss0 = rss_mib();
    let t0 = Instant::now();
    let mut peak = rss0;
    for i in 0..backlog as u64 {
        h.push(buffer_with(&[plate_event("gate-a", i)], &[]))
            .unwrap();
        if (i + 1) % (backlog as u64 / 10).max(1) == 0 {
            let r = rss_mib();
            peak = peak.max(r);
            let size = std::fs::metadata(out2.join("outbox.sqlite"))
                .map(|m| m.len())
                .unwrap_or(0)
                + std::fs::metadata(out2.join("outbox.sqlite-wal"))
                    .map(|m| m.len())
                    .unwrap_or(0);
            println!(
                "  {:>8} queued  RSS {r:>7.1} MiB  outbox on disk {:>7.1} MiB",
                stat(&el, "queued"),
                size as f64 / 1048576.0
            );
        }
    }
    let accept = t0.elapsed();
    println!(
        "  accepted {backlog} in {accept:.2?} ({:.0} events/s); RSS start {rss0:.1} MiB, peak \
         {peak:.1} MiB",
        backlog as f64 / accept.as_secs_f64()
    );
    tansu.restart();
    let t0 = Instant::now();
    while stat(&el, "queued") > 0 && t0.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(20));
        peak = peak.max(rss_mib());
    }
    let drain = t0.elapsed();
    println!(
        "  broker back: backlog drained in {drain:.2?} ({:.0} events/s, reconnect included); \
         peak RSS {peak:.1} MiB",
        stat(&el, "delivered") as f64 / drain.as_secs_f64()
    );
}
