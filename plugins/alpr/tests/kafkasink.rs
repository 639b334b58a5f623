// SPDX-License-Identifier: MIT OR Apache-2.0
//! kafkasink against real servers on 127.0.0.1: the tansu broker (a separate process, killed
//! with SIGKILL for outages), a Schema Registry double (its port closed when "down"), and
//! rdkafka's in-process MockCluster for the fast cases.

mod common;
#[path = "common/kafka.rs"]
mod kafka;

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstalpr::event::{PlateEvent, VehicleTrackEvent};
use gstalpr::kafkasink::outbox::{Outbox, Overflow};
use kafka::*;
use rdkafka::mocking::MockCluster;

const PLATES: &str = "alpr.events.plates";
const VEHICLES: &str = "alpr.events.vehicles";

/// A kafkasink fed by a Harness, with its own bus.
struct Sink {
    h: gst_check::Harness,
    el: gst::Element,
    bus: gst::Bus,
}

fn make_sink(outbox: &Path, props: &[(&str, &dyn ToValue)]) -> gst::Element {
    common::init();
    let el = gst::ElementFactory::make("kafkasink")
        .property("outbox-location", outbox.to_str().unwrap())
        .property("retry-interval", 1u32)
        .build()
        .unwrap();
    for (k, v) in props {
        el.set_property_from_value(k, &v.to_value());
    }
    el
}

impl Sink {
    fn new(outbox: &Path, props: &[(&str, &dyn ToValue)]) -> Sink {
        let el = make_sink(outbox, props);
        let bus = gst::Bus::new();
        el.set_bus(Some(&bus));
        let mut h = gst_check::Harness::with_element(&el, Some("sink"), None);
        h.set_src_caps_str("application/x-alpr-events");
        Sink { h, el, bus }
    }

    fn push(&mut self, buf: gst::Buffer) {
        assert_eq!(self.h.push(buf), Ok(gst::FlowSuccess::Ok));
    }

    fn push_plates(&mut self, events: &[PlateEvent]) {
        for e in events {
            self.push(buffer_with(std::slice::from_ref(e), &[]));
        }
    }

    fn stats(&self) -> gst::Structure {
        self.el.property::<gst::Structure>("stats")
    }

    fn queued(&self) -> u64 {
        self.stats().get::<u64>("queued").unwrap()
    }

    fn delivered(&self) -> u64 {
        self.stats().get::<u64>("delivered").unwrap()
    }

    fn status(&self) -> String {
        let v = self.el.property_value("status");
        let (_, ev) = glib::EnumValue::from_value(&v).unwrap();
        ev.nick().to_string()
    }

    fn wait_delivered(&self, n: u64, timeout: Duration) {
        wait_for(timeout, &format!("{n} events delivered"), || {
            (self.delivered() >= n && self.queued() == 0).then_some(())
        });
    }

    /// Warnings and errors posted so far, as text.
    fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(m) = self
            .bus
            .pop_filtered(&[gst::MessageType::Warning, gst::MessageType::Error])
        {
            match m.view() {
                gst::MessageView::Warning(w) => v.push(format!("{} {:?}", w.error(), w.debug())),
                gst::MessageView::Error(e) => v.push(format!("{} {:?}", e.error(), e.debug())),
                _ => {}
            }
        }
        v
    }

    /// The `status` values of the link-status element messages posted so far.
    fn transitions(&self) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(m) = self.bus.pop_filtered(&[gst::MessageType::Element]) {
            if let Some(s) = m.structure()
                && s.name() == "alpr-link-status"
            {
                let val = s.value("status").unwrap();
                let (_, ev) = glib::EnumValue::from_value(val).unwrap();
                v.push(ev.nick().to_string());
            }
        }
        v
    }
}

use gst::glib;

/// The delivery series of one sink (label = element name).
struct DeliverySeries {
    latency: prometheus::Histogram,
    plate_to_delivery: prometheus::Histogram,
    oldest_age: prometheus::IntGauge,
}

impl DeliverySeries {
    fn of(el: &gst::Element) -> DeliverySeries {
        let name = el.name();
        let m = gstalpr::metrics::get();
        DeliverySeries {
            latency: m.sink_latency.with_label_values(&[name.as_str()]),
            plate_to_delivery: m.plate_to_delivery.with_label_values(&[name.as_str()]),
            oldest_age: m.sink_queue_oldest_age.with_label_values(&[name.as_str()]),
        }
    }
}

fn cameras_plates(n: u64) -> Vec<PlateEvent> {
    (0..n)
        .map(|i| plate_event(["gate-a", "gate-b", "gate-c"][(i % 3) as usize], i))
        .collect()
}

/// Every sent event arrived, all fields intact; duplicates only as exact repeats of one
/// event_id; per camera, first arrivals keep the sending order.
fn check_delivery(received: &[Received], sent: &[PlateEvent]) {
    let by_id: HashMap<&str, &PlateEvent> = sent.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let mut seen = HashSet::new();
    let mut last_per_camera: HashMap<String, u64> = HashMap::new();
    for r in received {
        let id = r.str("event_id");
        let e = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("unexpected event {id}"));
        check_plate(r, e);
        if seen.insert(id.clone()) {
            let track = r.long("track_id") as u64;
            if let Some(prev) = last_per_camera.insert(r.key.clone(), track) {
                assert!(
                    prev < track,
                    "camera {}: {track} arrived after {prev}",
                    r.key
                );
            }
        }
    }
    let missing: Vec<_> = sent
        .iter()
        .filter(|e| !seen.contains(&e.event_id))
        .map(|e| e.track_id)
        .collect();
    assert!(
        missing.is_empty(),
        "missing events (track ids): {missing:?}"
    );
}

/// Every vehicle event arrived, in order; a repeat (at-least-once: a broker that stored a
/// message whose acknowledgement was lost gets it again) only repeats an `event_id`.
fn check_vehicles_once_each(received: &[Received], sent: &[VehicleTrackEvent]) {
    let mut seen = HashSet::new();
    let firsts: Vec<&Received> = received
        .iter()
        .filter(|r| seen.insert(r.str("event_id")))
        .collect();
    assert_eq!(firsts.len(), sent.len(), "distinct vehicle events");
    for (r, e) in firsts.into_iter().zip(sent) {
        check_vehicle(r, e);
    }
    if received.len() > sent.len() {
        eprintln!(
            "{} vehicle events arrived twice (at-least-once delivery)",
            received.len() - sent.len()
        );
    }
}

fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mc = MockCluster::new(1).unwrap();
    mc.create_topic(PLATES, 1, 1).unwrap();
    mc.create_topic(VEHICLES, 1, 1).unwrap();
    mc
}

#[test]
fn local_mode_keeps_events_in_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let sent = cameras_plates(6);
    {
        let mut s = Sink::new(dir.path(), &[]);
        assert_eq!(s.status(), "local");
        s.push_plates(&sent);
        s.push(buffer_with(&[], &[vehicle_event("gate-a", 1)]));
        // A buffer without events is fine and stores nothing.
        s.push(gst::Buffer::new());
        assert_eq!(s.queued(), 7);
        assert_eq!(s.delivered(), 0);
        s.h.push_event(gst::event::Eos::new());
        assert!(s.problems().is_empty(), "{:?}", s.problems());
    }
    // Stored durably and in order.
    let o = Outbox::open(dir.path(), 100, Overflow::DropOldest, false).unwrap();
    let rows = o.batch_after(0, 100).unwrap();
    let ids: Vec<_> = rows.iter().map(|r| r.event_id.clone()).collect();
    let mut want: Vec<_> = sent.iter().map(|e| e.event_id.clone()).collect();
    want.push(rows[6].event_id.clone());
    assert_eq!(ids, want);
    assert_eq!(rows[0].key, "gate-a");
}

#[test]
fn overflow_policy_warns_counts_and_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Sink::new(dir.path(), &[("outbox-max-events", &5u64)]);
    let sent = cameras_plates(8);
    s.push_plates(&sent);
    let st = s.stats();
    assert_eq!(st.get::<u64>("queued").unwrap(), 5);
    assert_eq!(st.get::<u64>("dropped").unwrap(), 3);
    let problems = s.problems();
    assert_eq!(
        problems.len(),
        1,
        "one warning per overflow episode: {problems:?}"
    );
    assert!(
        problems[0].contains("outbox full") && problems[0].contains("oldest"),
        "{problems:?}"
    );
    drop(s);
    let o = Outbox::open(dir.path(), 5, Overflow::DropOldest, false).unwrap();
    let first = &o.batch_after(0, 10).unwrap()[0];
    assert_eq!(first.event_id, sent[3].event_id);
}

#[test]
fn mock_cluster_delivers_both_topics_and_survives_an_outage() {
    let mc = mock_cluster();
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let brokers = mc.bootstrap_servers();
    let mut s = Sink::new(
        dir.path(),
        &[("brokers", &brokers), ("schema-registry", &reg.url())],
    );
    let notified = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = notified.clone();
    s.el.connect_notify(Some("status"), move |_, _| {
        n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let series = DeliverySeries::of(&s.el);
    let first = cameras_plates(20);
    let vehicles: Vec<_> = (0..4).map(|i| vehicle_event("gate-a", i)).collect();
    s.push_plates(&first);
    s.push(buffer_with(&[], &vehicles));
    s.wait_delivered(24, Duration::from_secs(20));
    assert_eq!(s.status(), "connected");
    // One latency sample per delivered event; plate-to-delivery for the plate events only.
    assert_eq!(series.latency.get_sample_count(), 24);
    assert_eq!(series.plate_to_delivery.get_sample_count(), 20);

    mc.broker_down(-1).unwrap();
    let second: Vec<_> = (20..40).map(|i| plate_event("gate-b", i)).collect();
    s.push_plates(&second);
    wait_for(Duration::from_secs(20), "the link to go down", || {
        (s.status() != "connected").then_some(())
    });
    assert!(s.queued() > 0);
    mc.broker_up(-1).unwrap();
    s.wait_delivered(44, Duration::from_secs(20));
    assert_eq!(series.latency.get_sample_count(), 44);
    assert_eq!(series.plate_to_delivery.get_sample_count(), 40);
    assert_eq!(s.delivered(), 44);

    let t = s.transitions();
    assert!(
        t.windows(2).any(|w| w == ["connecting", "connected"]),
        "transitions: {t:?}"
    );
    assert!(
        t.contains(&"disconnected".to_string()),
        "transitions: {t:?}"
    );
    assert!(notified.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    let stats = s.stats();
    assert!(stats.get::<u64>("attempts").unwrap() >= 2);
    assert!(stats.get::<u64>("failures").unwrap() >= 1);
    assert!(!stats.get::<String>("last-error").unwrap().is_empty());

    let all: Vec<_> = first.iter().chain(&second).cloned().collect();
    let got = consume(
        &brokers,
        &reg.url(),
        PLATES,
        all.len(),
        Duration::from_secs(20),
    );
    check_delivery(&got, &all);
    let got = consume(&brokers, &reg.url(), VEHICLES, 4, Duration::from_secs(20));
    assert_eq!(got.len(), 4);
    for (r, e) in got.iter().zip(&vehicles) {
        check_vehicle(r, e);
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/vnd.gstalpr.vehicle-track-event.v1+avro")
        );
    }
    assert_ne!(got[0].schema_id, 0);
}

#[test]
fn registry_down_delivery_continues_with_the_cached_schema_id() {
    let mc = mock_cluster();
    let mut reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let brokers = mc.bootstrap_servers();
    let sent = cameras_plates(10);
    {
        let mut s = Sink::new(
            dir.path(),
            &[("brokers", &brokers), ("schema-registry", &reg.url())],
        );
        s.push_plates(&sent[..5]);
        s.wait_delivered(5, Duration::from_secs(20));
    }
    reg.stop();
    let before = reg.requests();
    {
        // A new run (the id comes from the on-disk cache) with the registry down.
        let mut s = Sink::new(
            dir.path(),
            &[("brokers", &brokers), ("schema-registry", &reg.url())],
        );
        s.push_plates(&sent[5..]);
        s.wait_delivered(5, Duration::from_secs(20));
        assert!(s.problems().is_empty(), "{:?}", s.problems());
    }
    assert_eq!(reg.requests(), before);
    reg.restart();
    let got = consume(&brokers, &reg.url(), PLATES, 10, Duration::from_secs(20));
    check_delivery(&got, &sent);
}

#[test]
fn registry_rejecting_the_schema_is_a_warning_and_keeps_the_events() {
    let mc = mock_cluster();
    let reg = Registry::start();
    // An incompatible schema already holds the subject: 409.
    reg.seed(&format!("{PLATES}-value"), "\"string\"");
    let dir = tempfile::tempdir().unwrap();
    let mut s = Sink::new(
        dir.path(),
        &[
            ("brokers", &mc.bootstrap_servers()),
            ("schema-registry", &reg.url()),
        ],
    );
    s.push_plates(&cameras_plates(3));
    let w = wait_for(Duration::from_secs(10), "a warning", || {
        s.problems().into_iter().next()
    });
    assert!(
        w.contains("HTTP 409") && w.contains(&format!("{PLATES}-value")),
        "{w}"
    );
    assert_eq!(s.queued(), 3, "nothing dropped");
    assert_eq!(s.status(), "disconnected");

    // A registry refusing the schema as invalid: 422.
    reg.reject_with(Some(422));
    let dir2 = tempfile::tempdir().unwrap();
    let mut s2 = Sink::new(
        dir2.path(),
        &[
            ("brokers", &mc.bootstrap_servers()),
            ("schema-registry", &reg.url()),
            ("plates-topic", &"other.topic"),
        ],
    );
    s2.push_plates(&cameras_plates(2));
    let w = wait_for(Duration::from_secs(10), "a warning", || {
        s2.problems().into_iter().next()
    });
    assert!(
        w.contains("HTTP 422") && w.contains("other.topic-value"),
        "{w}"
    );
    assert_eq!(s2.queued(), 2);
    assert!(
        s2.stats()
            .get::<String>("last-error")
            .unwrap()
            .contains("422")
    );
}

/// Start fails with an error naming the cause.
fn start_error(outbox: &Path, props: &[(&str, &dyn ToValue)]) -> String {
    let el = make_sink(outbox, props);
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    assert!(el.set_state(gst::State::Paused).is_err());
    let _ = el.set_state(gst::State::Null);
    // The element's own error comes first (GstBaseSink may add a generic one after it).
    let errs = common::bus_errors(&bus);
    assert!(!errs.is_empty(), "no error posted");
    errs[0].clone()
}

#[test]
fn bad_settings_fail_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = start_error(
        dir.path(),
        &[
            ("brokers", &"127.0.0.1:9092,nonsense"),
            ("schema-registry", &"http://127.0.0.1:1"),
        ],
    );
    assert!(e.contains("brokers") && e.contains("`nonsense`"), "{e}");

    let e = start_error(dir.path(), &[("brokers", &"127.0.0.1:9092")]);
    assert!(e.contains("schema-registry"), "{e}");

    let e = start_error(
        dir.path(),
        &[
            ("brokers", &"127.0.0.1:9092"),
            ("schema-registry", &"127.0.0.1:8081"),
        ],
    );
    assert!(e.contains("schema-registry") && e.contains("http"), "{e}");

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = start_error(&file.join("outbox"), &[]);
    assert!(
        e.contains("outbox") && e.contains("a-file/outbox") && e.contains("Not a directory"),
        "{e}"
    );
}

#[test]
fn secrets_are_never_logged_or_readable() {
    common::init();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s2 = seen.clone();
    gst::log::set_threshold_for_name("kafkasink", gst::DebugLevel::Info);
    let f = gst::log::add_log_function(move |_cat, _lvl, _f, _m, _l, _o, msg| {
        if let Some(m) = msg.get() {
            s2.lock().unwrap().push_str(&format!("{m}\n"));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = gst::Structure::builder("config")
        .field("sasl.username", "alice")
        .field("sasl.password", "hunter2")
        .field("sasl.mechanisms", "PLAIN")
        .field("security.protocol", "SASL_PLAINTEXT")
        .build();
    let port = free_port();
    let mut s = Sink::new(
        dir.path(),
        &[
            ("brokers", &format!("127.0.0.1:{port}")),
            (
                "schema-registry",
                &format!("http://bob:t0psecret@127.0.0.1:{port}"),
            ),
            ("kafka-config", &cfg),
        ],
    );
    s.push_plates(&cameras_plates(1));
    wait_for(Duration::from_secs(10), "a failed attempt", || {
        (s.stats().get::<u64>("failures").unwrap() >= 1).then_some(())
    });
    let back = s.el.property::<gst::Structure>("kafka-config");
    assert_eq!(back.get::<String>("sasl.password").unwrap(), "*****");
    assert_eq!(back.get::<String>("sasl.username").unwrap(), "alice");
    let url = s.el.property::<String>("schema-registry");
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let problems = s.problems().join("\n");
    drop(s);
    gst::log::remove_log_function(f);
    gst::log::set_threshold_for_name("kafkasink", gst::DebugLevel::None);
    let logs = seen.lock().unwrap().clone();
    assert!(logs.contains("Attempting to connect to Kafka"), "{logs}");
    assert!(
        logs.contains("Kafka connection failed (will retry in"),
        "{logs}"
    );
    for secret in ["hunter2", "t0psecret"] {
        assert!(!logs.contains(secret), "{secret} logged");
        assert!(!problems.contains(secret), "{secret} posted");
    }
}

// ---------------------------------------------------------------------------------------------
// tansu: a real broker process

/// Scenario 1: the pipeline starts before Kafka and the registry; events wait in the outbox and
/// all go out, in order per camera, within one retry interval of the services coming up.
#[test]
fn scenario1_start_before_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let (kport, rport) = (free_port(), free_port());
    let mut s = Sink::new(
        &dir.path().join("outbox"),
        &[
            ("brokers", &format!("127.0.0.1:{kport}")),
            ("schema-registry", &format!("http://127.0.0.1:{rport}")),
            ("retry-interval", &2u32),
        ],
    );
    let series = DeliverySeries::of(&s.el);
    // Plates first read 3 s ago.
    let mut sent = cameras_plates(30);
    let first_read = gstalpr::event::now_ms() - 3000;
    for e in &mut sent {
        e.first_seen_ms = first_read;
    }
    let vehicles: Vec<_> = (0..3).map(|i| vehicle_event("gate-c", i)).collect();
    let pushed = Instant::now();
    s.push_plates(&sent[..15]);
    s.push(buffer_with(&sent[15..], &vehicles));
    wait_for(Duration::from_secs(20), "a failed attempt", || {
        (s.stats().get::<u64>("failures").unwrap() >= 1).then_some(())
    });
    // The queue-age gauge grows during the outage.
    wait_for(Duration::from_secs(10), "queue age >= 2 s", || {
        (series.oldest_age.get() >= 2).then_some(())
    });
    assert_eq!(series.latency.get_sample_count(), 0);
    assert_eq!(s.queued(), 33);
    assert_eq!(s.delivered(), 0);
    assert!(
        s.problems()
            .iter()
            .any(|p| p.contains("Kafka connection failed")),
        "a warning names the failure"
    );

    let reg = Registry::start_on(rport);
    let tansu = Tansu::start(&dir.path().join("tansu"), kport);
    tansu.create_topic(PLATES);
    tansu.create_topic(VEHICLES);
    let up = Instant::now();
    let outage = pushed.elapsed().as_secs_f64();
    s.wait_delivered(33, Duration::from_secs(30));
    let took = up.elapsed();
    eprintln!("scenario 1: backlog of 33 delivered {took:?} after the services came up");
    // One retry interval (2 s) until the next attempt, plus the attempt itself.
    assert!(took < Duration::from_secs(2 + 5), "took {took:?}");
    assert_eq!(s.status(), "connected");

    // One sample per delivered event, each at least as long as the outage it waited through
    // (plus the 3 s between the first read and the push for plate-to-delivery); the gauge is
    // back to 0 once nothing waits.
    let (lat, p2d) = (&series.latency, &series.plate_to_delivery);
    assert_eq!(lat.get_sample_count(), 33);
    assert_eq!(p2d.get_sample_count(), 30);
    let bound = outage + took.as_secs_f64() + 1.0;
    assert!(
        lat.get_sample_sum() >= 33.0 * outage * 0.9 && lat.get_sample_sum() <= 33.0 * bound,
        "latency sum {} for an outage of {outage:.1} s",
        lat.get_sample_sum()
    );
    assert!(
        p2d.get_sample_sum() >= 30.0 * (3.0 + outage) * 0.9
            && p2d.get_sample_sum() <= 30.0 * (3.0 + bound),
        "plate-to-delivery sum {} for an outage of {outage:.1} s",
        p2d.get_sample_sum()
    );
    wait_for(Duration::from_secs(5), "queue age back to 0", || {
        (series.oldest_age.get() == 0).then_some(())
    });
    let text = gstalpr::metrics::render();
    let name = s.el.name();
    for line in [
        format!("alpr_sink_delivery_latency_seconds_count{{sink=\"{name}\"}} 33"),
        format!("alpr_plate_to_delivery_seconds_count{{sink=\"{name}\"}} 30"),
        format!("alpr_sink_queue_oldest_age_seconds{{sink=\"{name}\"}} 0"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }

    let got = consume(
        &tansu.brokers(),
        &reg.url(),
        PLATES,
        30,
        Duration::from_secs(30),
    );
    check_delivery(&got, &sent);
    let got = consume(
        &tansu.brokers(),
        &reg.url(),
        VEHICLES,
        3,
        Duration::from_secs(30),
    );
    check_vehicles_once_each(&got, &vehicles);
}

/// Scenario 2: the broker is SIGKILLed while events flow and restarted later: nothing is
/// missing, duplicates only repeat an event_id.
#[test]
fn scenario2_kafka_killed_while_events_flow() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let mut tansu = Tansu::start(&dir.path().join("tansu"), free_port());
    tansu.create_topic(PLATES);
    let mut s = Sink::new(
        &dir.path().join("outbox"),
        &[
            ("brokers", &tansu.brokers()),
            ("schema-registry", &reg.url()),
        ],
    );
    let sent = cameras_plates(300);
    for (i, e) in sent.iter().enumerate() {
        s.push_plates(std::slice::from_ref(e));
        std::thread::sleep(Duration::from_millis(5));
        if i == 100 {
            tansu.kill();
        }
        if i == 200 {
            tansu.restart();
        }
    }
    s.wait_delivered(300, Duration::from_secs(60));
    let failures = s.stats().get::<u64>("failures").unwrap();
    assert!(failures >= 1, "the outage was noticed");
    let got = consume(
        &tansu.brokers(),
        &reg.url(),
        PLATES,
        300,
        Duration::from_secs(30),
    );
    check_delivery(&got, &sent);
    eprintln!(
        "scenario 2: {} messages for 300 events ({} duplicates)",
        got.len(),
        got.len() - 300
    );
}

const CHILD_ENV: &str = "ALPR_KAFKASINK_CHILD";

/// Scenario 3: the producing process is SIGKILLed with a backlog (broker down); after the
/// broker is back, a restarted pipeline delivers the whole backlog.
#[test]
fn scenario3_producer_killed_with_backlog() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        // Child: brokers down; accept the events, say so, then wait to be killed.
        let mut it = spec.split(';');
        let (outbox, brokers, registry, n) = (
            it.next().unwrap(),
            it.next().unwrap(),
            it.next().unwrap(),
            it.next().unwrap().parse::<u64>().unwrap(),
        );
        let mut s = Sink::new(
            Path::new(outbox),
            &[("brokers", &brokers), ("schema-registry", &registry)],
        );
        let events = cameras_plates(n);
        s.push_plates(&events);
        for e in &events {
            println!("EVENT {}", e.event_id);
        }
        println!("ACCEPTED {}", s.queued());
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let mut tansu = Tansu::start(&dir.path().join("tansu"), free_port());
    tansu.create_topic(PLATES);
    tansu.kill();
    let outbox = dir.path().join("outbox");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "scenario3_producer_killed_with_backlog",
            "--exact",
            "--nocapture",
        ])
        .env(
            CHILD_ENV,
            format!("{};{};{};40", outbox.display(), tansu.brokers(), reg.url()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ids = Vec::new();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("EVENT ") {
            ids.push(id.to_string());
        }
        if let Some(n) = line.strip_prefix("ACCEPTED ") {
            assert_eq!(n, "40");
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(ids.len(), 40);

    tansu.restart();
    let s = Sink::new(
        &outbox,
        &[
            ("brokers", &tansu.brokers()),
            ("schema-registry", &reg.url()),
        ],
    );
    assert_eq!(s.queued(), 40, "the backlog survived the kill");
    s.wait_delivered(40, Duration::from_secs(30));
    let got = consume(
        &tansu.brokers(),
        &reg.url(),
        PLATES,
        40,
        Duration::from_secs(30),
    );
    let got_ids: Vec<String> = got.iter().map(|r| r.str("event_id")).collect();
    let mut first_seen = Vec::new();
    for id in &got_ids {
        if !first_seen.contains(id) {
            first_seen.push(id.clone());
        }
    }
    assert_eq!(first_seen, ids, "every event, in order");
}

/// A topic the broker does not have (tansu never auto-creates): a warning naming it, the
/// events stay queued.
#[test]
fn unknown_topic_is_a_warning_and_keeps_the_events() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let tansu = Tansu::start(&dir.path().join("tansu"), free_port());
    let mut s = Sink::new(
        &dir.path().join("outbox"),
        &[
            ("brokers", &tansu.brokers()),
            ("schema-registry", &reg.url()),
            ("plates-topic", &"no.such.topic"),
        ],
    );
    s.push_plates(&cameras_plates(4));
    let w = wait_for(Duration::from_secs(20), "a warning", || {
        s.problems().into_iter().next()
    });
    assert!(w.contains("topic no.such.topic does not exist"), "{w}");
    assert_eq!(s.queued(), 4, "nothing dropped");
    assert_ne!(s.status(), "connected");
}
