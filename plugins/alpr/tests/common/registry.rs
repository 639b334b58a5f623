// SPDX-License-Identifier: MIT OR Apache-2.0
//! A small Confluent-compatible Schema Registry: the REST subset real clients use (register a
//! schema under a subject, fetch by id, latest version, compatibility check, global config).
//! Used by the kafkasink tests and, through `examples/schema-registry.rs`, by `scripts/demo
//! --services` and `scripts/bench`. Schemas live in memory.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

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
    /// On a free port of 127.0.0.1.
    pub fn start() -> Registry {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        Self::start_on(port)
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
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap_or_else(|e| {
            panic!(
                "schema registry: cannot listen on 127.0.0.1:{}: {e}",
                self.port
            )
        });
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
