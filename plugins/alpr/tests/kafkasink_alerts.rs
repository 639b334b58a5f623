// SPDX-License-Identifier: MIT OR Apache-2.0
//! kafkasink's third stream: alprwatch's alerts reach the alerts topic across a broker outage
//! (real tansu broker, killed and restarted), each decoded with the schema the registry gives
//! for its id.

mod common;
#[path = "common/kafka.rs"]
mod kafka;

use std::collections::HashSet;
use std::time::Duration;

use apache_avro::types::Value;
use gst::prelude::*;
use gstalpr::meta::{Alert, AlertStatus, attach_alerts};
use kafka::*;

const ALERTS: &str = "alpr.alerts";

fn alert(i: u32) -> Alert {
    Alert {
        status: [
            AlertStatus::New,
            AlertStatus::Updated,
            AlertStatus::Retracted,
        ][i as usize % 3],
        list: "hot".into(),
        kind: "deny".into(),
        entry: format!("AB{i:03}CD"),
        label: format!("label {i}"),
        distance: 0.3,
        plate_text: format!("A8{i:03}CD"),
        event_id: format!("event-{i}"),
        camera_id: "gate".into(),
        track_id: u64::from(i),
        revision: i % 3,
        first_seen_ms: 1_764_201_600_000 + i64::from(i),
        alerted_ms: 1_764_201_600_100 + i64::from(i),
    }
}

#[test]
fn alerts_reach_their_topic_across_a_broker_outage() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::start();
    let mut tansu = Tansu::start(&dir.path().join("tansu"), free_port());
    tansu.create_topic(ALERTS);
    let el = gst::ElementFactory::make("kafkasink")
        .property(
            "outbox-location",
            dir.path().join("outbox").to_str().unwrap(),
        )
        .property("retry-interval", 1u32)
        .property("brokers", tansu.brokers())
        .property("schema-registry", reg.url())
        .build()
        .unwrap();
    assert_eq!(el.property::<String>("alerts-topic"), ALERTS);
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), None);
    h.set_src_caps_str("application/x-alpr-events");
    let delivered = || {
        el.property::<gst::Structure>("stats")
            .get::<u64>("delivered")
            .unwrap()
    };
    let queued = || {
        el.property::<gst::Structure>("stats")
            .get::<u64>("queued")
            .unwrap()
    };

    let sent: Vec<Alert> = (0..30).map(alert).collect();
    for (i, a) in sent.iter().enumerate() {
        let mut buf = gst::Buffer::new();
        attach_alerts(buf.get_mut().unwrap(), std::slice::from_ref(a)).unwrap();
        assert_eq!(h.push(buf), Ok(gst::FlowSuccess::Ok));
        if i == 9 {
            wait_for(Duration::from_secs(30), "10 alerts delivered", || {
                (delivered() >= 10).then_some(())
            });
            tansu.kill();
        }
        if i == 19 {
            std::thread::sleep(Duration::from_secs(2));
            assert!(
                queued() >= 10,
                "alerts wait in the outbox during the outage"
            );
            tansu.restart();
        }
    }
    wait_for(Duration::from_secs(60), "30 alerts delivered", || {
        (delivered() >= 30 && queued() == 0).then_some(())
    });

    let got = consume(
        &tansu.brokers(),
        &reg.url(),
        ALERTS,
        30,
        Duration::from_secs(30),
    );
    let ids: HashSet<String> = got.iter().map(|r| r.str("alert_id")).collect();
    assert_eq!(
        ids.len(),
        30,
        "every alert arrived (duplicates only repeat an id)"
    );
    for a in &sent {
        let id = format!("{}/hot/{}/{}", a.event_id, a.revision, a.status.as_str());
        let r = got
            .iter()
            .find(|r| r.str("alert_id") == id)
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(r.topic, ALERTS);
        assert_eq!(r.key, "gate");
        assert_eq!(r.headers.get("event_id"), Some(&id));
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/vnd.gstalpr.watchlist-alert.v1+avro")
        );
        assert_eq!(r.str("plate_text"), a.plate_text);
        assert_eq!(r.str("entry"), a.entry);
        assert_eq!(r.str("event_id"), a.event_id);
        assert_eq!(r.long("revision"), i64::from(a.revision));
        assert_eq!(r.long("first_seen"), a.first_seen_ms);
        let want = a.status.as_str().to_ascii_uppercase();
        assert!(
            matches!(r.fields.get("status"), Some(Value::Enum(_, s)) if *s == want),
            "{:?}",
            r.fields.get("status")
        );
        assert_eq!(r.fields.get("distance"), Some(&Value::Double(0.3)));
    }
    let schema = reg
        .schema_by_id(got[0].schema_id)
        .expect("the registry knows the schema id");
    assert!(schema.contains("WatchlistAlert"), "{schema}");
    h.push_event(gst::event::Eos::new());
    drop(h);
}
