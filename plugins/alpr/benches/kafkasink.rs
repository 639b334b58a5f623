// SPDX-License-Identifier: MIT OR Apache-2.0
//! kafkasink throughput against a raw rdkafka producer, and memory during a long outage.
//!
//!   cargo bench --bench kafkasink
//!
//! Both runs go to the same tansu broker (a real process on 127.0.0.1, sqlite storage) in the
//! same run. 1. Events/s: N events through kafkasink (one event per buffer, so one outbox commit
//! each: the worst case) versus N messages of the same size from a bare idempotent producer.
//! Goal: ratio >= 0.8. 2. Outage: the broker is down while a large backlog is accepted; the
//! process RSS is sampled as it grows (goal: flat, the backlog lives on disk), then the broker
//! comes back and the backlog drains.
//!
//! Sizes: ALPR_BENCH_EVENTS (default 20000), ALPR_BENCH_BACKLOG (default 100000).

#[path = "../tests/common/kafka.rs"]
mod kafka;

use std::time::{Duration, Instant};

use gst::prelude::*;
use kafka::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "alpr.events.plates";
const RAW_TOPIC: &str = "bench.raw";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), None);
    h.set_src_caps_str("application/x-alpr-events");
    (h, el)
}

fn stat(el: &gst::Element, f: &str) -> u64 {
    el.property::<gst::Structure>("stats")
        .get::<u64>(f)
        .unwrap()
}

fn raw_producer(brokers: &str, payload: &[u8], n: usize) -> Duration {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .unwrap();
    // One delivered message first, so both sides are timed from a warm connection with a
    // producer id (the sink gets the same warm-up).
    p.send(BaseRecord::to(RAW_TOPIC).key("warm").payload(payload))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(Duration::from_secs(20)).unwrap();
    let t0 = Instant::now();
    for i in 0..n {
        let key = format!("gate-{}", i % 3);
        loop {
            match p.send(BaseRecord::to(RAW_TOPIC).key(&key).payload(payload)) {
                Ok(()) => break,
                Err((_, _)) => p.poll(Duration::from_millis(5)),
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120)).unwrap();
    t0.elapsed()
}

fn main() {
    gst::init().unwrap();
    gstalpr::plugin_register_static().unwrap();
    let n = env_usize("ALPR_BENCH_EVENTS", 20_000);
    let backlog = env_usize("ALPR_BENCH_BACKLOG", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let mut tansu = Tansu::start(&dir.path().join("tansu"), free_port());
    tansu.create_topic(TOPIC);
    tansu.create_topic(RAW_TOPIC);
    let events: Vec<_> = (0..n as u64)
        .map(|i| plate_event(["gate-a", "gate-b", "gate-c"][(i % 3) as usize], i))
        .collect();
    let body = gstalpr::kafkasink::avro::encode_plate(&events[0]).unwrap();
    let payload = gstalpr::kafkasink::avro::frame(1, &body);

    println!(
        "kafkasink vs raw rdkafka producer, {n} events of {} bytes, tansu sqlite:",
        payload.len()
    );
    let raw = raw_producer(&tansu.brokers(), &payload, n);
    let raw_rate = n as f64 / raw.as_secs_f64();
    println!("  raw producer:  {raw:>10.2?}  {raw_rate:>9.0} events/s");

    let buffers: Vec<_> = events
        .iter()
        .map(|e| buffer_with(std::slice::from_ref(e), &[]))
        .collect();
    let (mut h, el) = sink(&dir.path().join("outbox1"), &tansu.brokers(), &reg.url());
    // Warm up: connected, schema registered.
    h.push(buffer_with(&[plate_event("warm", 0)], &[])).unwrap();
    let t = Instant::now();
    while stat(&el, "delivered") < 1 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    for b in buffers {
        h.push(b).unwrap();
    }
    let accepted = t0.elapsed();
    while stat(&el, "delivered") < n as u64 + 1 && t0.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t0.elapsed();
    let rate = n as f64 / took.as_secs_f64();
    println!(
        "  kafkasink:     {took:>10.2?}  {rate:>9.0} events/s   (all {n} accepted into the outbox \
         after {accepted:.2?}: {:.0} events/s)",
        n as f64 / accepted.as_secs_f64()
    );
    println!(
        "  ratio kafkasink / raw: {:.2} (goal >= 0.8)",
        rate / raw_rate
    );
    drop(h);

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
