// SPDX-License-Identifier: MIT OR Apache-2.0
//! Kafka test support: the tansu broker as a real process, a small Schema Registry (the REST
//! subset real clients use), a consumer that decodes every message against the registry, and
//! synthetic events.
#![allow(dead_code)]

#[path = "net.rs"]
mod net;
#[allow(unused_imports)]
pub use net::{free_port, server_bin, wait_for};

#[path = "registry.rs"]
mod registry;
pub use registry::Registry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::types::Value;
use gstalpr::event::{PlateEvent, VehicleTrackEvent};
use gstalpr::meta::BBox;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

// ---------------------------------------------------------------------------------------------
// tansu

/// `$ALPR_TANSU`, `../shared/bin/tansu` or the cargo-install cache of scripts/lib.sh.
pub fn tansu_bin() -> PathBuf {
    server_bin("ALPR_TANSU", "tansu", "the tansu Kafka broker")
}

/// A tansu broker on 127.0.0.1 with sqlite storage in its own directory.
pub struct Tansu {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Tansu {
    pub fn start(dir: &Path, port: u16) -> Tansu {
        std::fs::create_dir_all(dir).unwrap();
        let mut t = Tansu {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        t.restart();
        t
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "tansu already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = self.dir.join("tansu.log");
        self.child = Some(net::spawn_listening("tansu", self.port, &log, || {
            let mut c = Command::new(tansu_bin());
            c.args(["broker", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "sqlite://tansu.db"])
                .current_dir(&self.dir);
            c
        }));
    }

    /// The broker's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the outage of a crashed broker.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn create_topic(&self, name: &str) {
        let out = Command::new(tansu_bin())
            .args(["topic", "create", name, "--partitions", "1", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Consumer

#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub key: String,
    pub schema_id: u32,
    pub headers: HashMap<String, String>,
    /// The decoded Avro record, by field name.
    pub fields: HashMap<String, Value>,
}

impl Received {
    pub fn str(&self, f: &str) -> String {
        match self.fields.get(f) {
            Some(Value::String(s)) => s.clone(),
            other => panic!("field {f}: expected a string, got {other:?}"),
        }
    }

    pub fn long(&self, f: &str) -> i64 {
        match self.fields.get(f) {
            Some(Value::Long(v)) | Some(Value::TimestampMillis(v)) => *v,
            Some(Value::Int(v)) => *v as i64,
            other => panic!("field {f}: expected a long, got {other:?}"),
        }
    }
}

/// Reads `topic` (partition 0) from the start until `at_least` messages arrived (plus a short
/// grace to catch duplicates) and decodes each one with the schema the registry gives for its
/// id (`GET /schemas/ids/{id}`, over HTTP like any consumer).
pub fn consume(
    brokers: &str,
    registry_url: &str,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("test-{}", gstalpr::event::new_event_id()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let client =
        gstalpr::kafkasink::registry::RegistryClient::new(registry_url, Duration::from_secs(5))
            .unwrap();
    let mut schemas: HashMap<u32, Schema> = HashMap::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut grace: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now > deadline || grace.is_some_and(|g| now > g) {
            break;
        }
        let Some(r) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = r.unwrap_or_else(|e| panic!("consuming {topic}: {e}"));
        let payload = m.payload().expect("message has a payload");
        let (id, body) = gstalpr::kafkasink::avro::unframe(payload)
            .unwrap_or_else(|| panic!("not in the Confluent wire format: {payload:?}"));
        let schema = schemas.entry(id).or_insert_with(|| {
            let text = client
                .schema_by_id(id)
                .unwrap_or_else(|e| panic!("GET /schemas/ids/{id}: {e}"));
            Schema::parse_str(&text).unwrap()
        });
        let value = gstalpr::kafkasink::avro::decode(schema, body).unwrap();
        let Value::Record(fields) = value else {
            panic!("not a record: {value:?}")
        };
        let mut headers = HashMap::new();
        if let Some(h) = m.headers() {
            for hd in h.iter() {
                headers.insert(
                    hd.key.to_string(),
                    String::from_utf8_lossy(hd.value.unwrap_or_default()).into_owned(),
                );
            }
        }
        out.push(Received {
            topic: m.topic().to_string(),
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            schema_id: id,
            headers,
            fields: fields.into_iter().collect(),
        });
        if out.len() >= at_least && grace.is_none() {
            grace = Some(Instant::now() + Duration::from_millis(500));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Events

/// A plate event with every field set; `seq` makes it unique and orderable per camera.
pub fn plate_event(camera: &str, seq: u64) -> PlateEvent {
    PlateEvent {
        event_id: gstalpr::event::new_event_id(),
        camera_id: camera.to_string(),
        track_id: seq,
        revision: (seq % 3) as u32,
        plate_text: format!("AB{seq:04}"),
        plate_confidence: 0.91,
        char_confidences: vec![0.9, 0.95, 0.99, 0.97, 0.93, 0.92],
        reads: 5,
        region: if seq.is_multiple_of(2) {
            Some("eu".into())
        } else {
            None
        },
        vehicle_class: Some("car".into()),
        vehicle_confidence: Some(0.8),
        first_seen_ms: 1_764_201_600_000 + seq as i64 * 1000,
        last_seen_ms: 1_764_201_600_500 + seq as i64 * 1000,
        frame_number: 100 + seq,
        plate_bbox: BBox::new(10.0, 20.0, 60.0, 18.0),
        vehicle_bbox: if !seq.is_multiple_of(2) {
            Some(BBox::new(0.0, 0.0, 320.0, 200.0))
        } else {
            None
        },
        quality: 0.75,
        image_key: format!("2025-11-27/{camera}_track{seq}.jpg"),
        vehicle_image_key: (!seq.is_multiple_of(2))
            .then(|| format!("2025-11-27/{camera}_track{seq}_vehicle.jpg")),
        frame_image_key: None,
        source: "test/pipeline".into(),
    }
}

pub fn vehicle_event(camera: &str, seq: u64) -> VehicleTrackEvent {
    VehicleTrackEvent {
        event_id: gstalpr::event::new_event_id(),
        camera_id: camera.to_string(),
        track_id: seq,
        vehicle_class: "truck".into(),
        first_seen_ms: 1_764_201_600_000 + seq as i64,
        last_seen_ms: 1_764_201_601_000 + seq as i64,
        frames: 30 + seq,
        plate_text: if seq.is_multiple_of(2) {
            Some(format!("AB{seq:04}"))
        } else {
            None
        },
        source: "test/pipeline".into(),
    }
}

/// A buffer carrying the given events in its metas.
pub fn buffer_with(plates: &[PlateEvent], vehicles: &[VehicleTrackEvent]) -> gst::Buffer {
    let mut buf = gst::Buffer::new();
    {
        let b = buf.get_mut().unwrap();
        if !plates.is_empty() {
            let with_crops: Vec<_> = plates.iter().map(|p| (p.clone(), None)).collect();
            gstalpr::event::attach(b, &with_crops).unwrap();
        }
        if !vehicles.is_empty() {
            gstalpr::event::attach_vehicles(b, vehicles).unwrap();
        }
    }
    buf
}

/// Checks every field of a received plate event against what was sent.
pub fn check_plate(r: &Received, e: &PlateEvent) {
    assert_eq!(r.key, e.camera_id, "key = camera id");
    assert_eq!(r.headers.get("event_id"), Some(&e.event_id));
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/vnd.gstalpr.plate-event.v1+avro")
    );
    let want = gstalpr::kafkasink::avro::plate_value(e);
    let Value::Record(want) = want else {
        unreachable!()
    };
    for (name, v) in want {
        assert_eq!(
            r.fields.get(&name),
            Some(&v),
            "field {name} of {}",
            e.event_id
        );
    }
}

pub fn check_vehicle(r: &Received, e: &VehicleTrackEvent) {
    assert_eq!(r.key, e.camera_id);
    assert_eq!(r.headers.get("event_id"), Some(&e.event_id));
    let Value::Record(want) = gstalpr::kafkasink::avro::vehicle_value(e) else {
        unreachable!()
    };
    for (name, v) in want {
        assert_eq!(
            r.fields.get(&name),
            Some(&v),
            "field {name} of {}",
            e.event_id
        );
    }
}
