// SPDX-License-Identifier: MIT OR Apache-2.0
//! Kafka test support: the tansu broker as a real process, a small Schema Registry (the REST
//! subset real clients use), a consumer that decodes every message against the registry, and
//! synthetic events.
#![allow(dead_code)]

#[path = "net.rs"]
mod net;
#[allow(unused_imports)]
pub use net::{free_port, server_bin, wait_for};

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut child = Command::new(tansu_bin())
                .args(["broker", "--listener-url", &url])
                .args(["--advertised-listener-url", &url])
                .args(["--storage-engine", "sqlite://tansu.db"])
                .current_dir(&self.dir)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log.try_clone().unwrap())
                .spawn()
                .expect("start tansu");
            // Ready when it accepts connections; a start that exits (port not yet free) is
            // retried.
            let ready = loop {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    break true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break false;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!(
                        "tansu did not start on port {}: see {}",
                        self.port,
                        self.dir.join("tansu.log").display()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if ready {
                self.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
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
// Schema Registry double

const SR_CT: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Default)]
struct RegistryData {
    /// Global ids: index + 1.
    schemas: Vec<String>,
    subjects: BTreeMap<String, Vec<u32>>,
    compatibility: String,
    /// Answer every registration with this status (a registry refusing the schema).
    reject_with: Option<u16>,
    requests: u64,
}

/// A small Confluent-compatible Schema Registry on 127.0.0.1. `stop()` closes the port (the
/// registry is down); `restart()` opens it again with the same data.
pub struct Registry {
    pub port: u16,
    data: Arc<Mutex<RegistryData>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn canonical(schema: &str) -> Option<String> {
    Schema::parse_str(schema).ok().map(|s| s.canonical_form())
}

fn respond(stream: &mut TcpStream, status: u16, body: &serde_json::Value) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "Error",
    };
    let body = body.to_string();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {SR_CT}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn error(code: i64, message: &str) -> serde_json::Value {
    serde_json::json!({"error_code": code, "message": message})
}

fn handle(data: &Mutex<RegistryData>, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let mut d = data.lock().unwrap();
    d.requests += 1;
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (status, answer) = match (method.as_str(), segs.as_slice()) {
        ("POST", ["subjects", subject, "versions"]) => {
            let subject = subject.to_string();
            let schema = json.get("schema").and_then(|s| s.as_str()).unwrap_or("");
            if let Some(code) = d.reject_with {
                (
                    code,
                    error(code as i64 * 100 + 1, "registration refused by test"),
                )
            } else if let Some(canon) = canonical(schema) {
                let existing = d
                    .schemas
                    .iter()
                    .position(|s| canonical(s) == Some(canon.clone()));
                let versions = d.subjects.get(&subject).cloned().unwrap_or_default();
                if let Some(id) = existing
                    .map(|i| i as u32 + 1)
                    .filter(|id| versions.contains(id))
                {
                    (200, serde_json::json!({"id": id}))
                } else {
                    let compatible = match versions.last() {
                        Some(last) if d.compatibility != "NONE" => {
                            let old = Schema::parse_str(&d.schemas[*last as usize - 1]).unwrap();
                            let new = Schema::parse_str(schema).unwrap();
                            SchemaCompatibility::can_read(&old, &new).is_ok()
                        }
                        _ => true,
                    };
                    if !compatible {
                        (
                            409,
                            error(
                                409,
                                "Schema being registered is incompatible with an earlier schema \
                                 for subject",
                            ),
                        )
                    } else {
                        let id = match existing {
                            Some(i) => i as u32 + 1,
                            None => {
                                d.schemas.push(schema.to_string());
                                d.schemas.len() as u32
                            }
                        };
                        d.subjects.entry(subject).or_default().push(id);
                        (200, serde_json::json!({"id": id}))
                    }
                }
            } else {
                (422, error(42201, "Invalid schema"))
            }
        }
        ("GET", ["schemas", "ids", id]) => match id
            .parse::<usize>()
            .ok()
            .and_then(|i| i.checked_sub(1).and_then(|i| d.schemas.get(i)))
        {
            Some(s) => (200, serde_json::json!({"schema": s})),
            None => (404, error(40403, "Schema not found")),
        },
        ("GET", ["subjects"]) => (
            200,
            serde_json::json!(d.subjects.keys().collect::<Vec<_>>()),
        ),
        ("GET", ["subjects", subject, "versions", "latest"]) => {
            match d
                .subjects
                .get(*subject)
                .and_then(|v| v.last().map(|id| (v.len(), *id)))
            {
                Some((version, id)) => (
                    200,
                    serde_json::json!({"subject": subject, "version": version, "id": id,
                        "schema": d.schemas[id as usize - 1]}),
                ),
                None => (404, error(40401, "Subject not found")),
            }
        }
        ("POST", ["compatibility", "subjects", subject, "versions", "latest"]) => {
            let schema = json.get("schema").and_then(|s| s.as_str()).unwrap_or("");
            match (
                Schema::parse_str(schema),
                d.subjects.get(*subject).and_then(|v| v.last()),
            ) {
                (Err(_), _) => (422, error(42201, "Invalid schema")),
                (Ok(_), None) => (404, error(40401, "Subject not found")),
                (Ok(new), Some(last)) => {
                    let old = Schema::parse_str(&d.schemas[*last as usize - 1]).unwrap();
                    let ok = SchemaCompatibility::can_read(&old, &new).is_ok();
                    (200, serde_json::json!({"is_compatible": ok}))
                }
            }
        }
        ("GET", ["config"]) => (
            200,
            serde_json::json!({"compatibilityLevel": d.compatibility}),
        ),
        ("PUT", ["config"]) => {
            let c = json
                .get("compatibility")
                .and_then(|c| c.as_str())
                .unwrap_or("BACKWARD")
                .to_string();
            d.compatibility = c.clone();
            (200, serde_json::json!({"compatibility": c}))
        }
        _ => (404, error(404, "Not found")),
    };
    drop(d);
    respond(&mut stream, status, &answer);
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Registry {
        let mut r = Registry {
            port,
            data: Arc::new(Mutex::new(RegistryData {
                compatibility: "BACKWARD".into(),
                ..Default::default()
            })),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.thread.is_none());
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        self.stop.store(false, Ordering::SeqCst);
        let (stop, data) = (self.stop.clone(), self.data.clone());
        self.thread = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let data = data.clone();
                    std::thread::spawn(move || handle(&data, c));
                }
            }
        }));
    }

    /// Closes the port: the registry is down.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = t.join();
        }
    }

    pub fn reject_with(&self, status: Option<u16>) {
        self.data.lock().unwrap().reject_with = status;
    }

    pub fn requests(&self) -> u64 {
        self.data.lock().unwrap().requests
    }

    /// Registers directly (test setup), bypassing HTTP.
    pub fn seed(&self, subject: &str, schema: &str) {
        let mut d = self.data.lock().unwrap();
        d.schemas.push(schema.to_string());
        let id = d.schemas.len() as u32;
        d.subjects.entry(subject.to_string()).or_default().push(id);
    }

    pub fn schema_by_id(&self, id: u32) -> Option<String> {
        self.data
            .lock()
            .unwrap()
            .schemas
            .get(id as usize - 1)
            .cloned()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
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
