// SPDX-License-Identifier: MIT OR Apache-2.0
//! alpr-archive end to end against real services: PostgreSQL 15, the tansu broker and the
//! test Schema Registry, each its own server on 127.0.0.1, events produced with the plugin's
//! Avro encoding in the Confluent wire format.

#[path = "common/cdp.rs"]
mod cdp;
#[path = "common/http.rs"]
mod http;
#[path = "../../plugins/alpr/tests/common/kafka.rs"]
mod kafka;
#[path = "common/pg.rs"]
mod pg;
// kafka.rs and s3.rs each bring the plugin tests' common/net.rs (free ports, server start).
#[allow(clippy::duplicate_mod)]
#[path = "../../plugins/alpr/tests/common/s3.rs"]
mod s3;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gstalpr::event::PlateEvent;
use gstalpr::kafkasink::avro::{Stream, encode_plate, encode_vehicle, frame};
use gstalpr::kafkasink::registry::RegistryClient;
use http::{enc, get};
use kafka::{Registry, Tansu, free_port, plate_event, vehicle_event};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const PLATES: &str = "alpr.events.plates";
const VEHICLES: &str = "alpr.events.vehicles";

struct Archive {
    child: Child,
    pub log: std::path::PathBuf,
}

impl Archive {
    fn start(dir: &Path, name: &str, args: &[String]) -> Archive {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_alpr-archive"))
            .args(args)
            .env_remove("ALPR_ARCHIVE_PASSWORD")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start alpr-archive");
        Archive { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn produce(brokers: &str, msgs: &[(&str, Vec<u8>)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (topic, payload) in msgs {
        p.send(BaseRecord::<str, [u8]>::to(topic).key("k").payload(payload))
            .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn count(rt: &tokio::runtime::Runtime, url: &str, sql: &str) -> i64 {
    rt.block_on(async {
        let Ok((c, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
            return -1;
        };
        tokio::spawn(conn);
        match c.query_one(sql, &[]).await {
            Ok(r) => r.get(0),
            Err(_) => -1,
        }
    })
}

fn wait_count(rt: &tokio::runtime::Runtime, url: &str, sql: &str, want: i64, archive: &Archive) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = count(rt, url, sql);
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {n}, expected {want}\narchive log:\n{}",
            archive.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn with_plate(seq: u64, camera: &str, plate: &str) -> PlateEvent {
    let mut e = plate_event(camera, seq);
    e.plate_text = plate.into();
    e.revision = 0;
    e
}

fn plates_of(a: &http::Answer) -> Vec<String> {
    a.json()["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {}", String::from_utf8_lossy(&a.body)))
        .iter()
        .map(|e| e["plate_text"].as_str().unwrap().to_string())
        .collect()
}

/// Services come up after the archive; events are stored once (duplicates, revisions, a
/// second consumer group re-reading everything), poison messages are dead letters, and the
/// API finds plates exactly, by wildcard and fuzzily, with bounded, parameterised input.
#[test]
fn archive_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (pg_port, k_port, r_port, api_port, m_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let pg_url = format!("postgres://postgres@127.0.0.1:{pg_port}/postgres");
    let crops = dir.path().join("crops");
    let args = |group: &str, api: u16, metrics: u16| -> Vec<String> {
        [
            "--brokers",
            &format!("127.0.0.1:{k_port}"),
            "--schema-registry",
            &format!("http://127.0.0.1:{r_port}"),
            "--database-url",
            &pg_url,
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--metrics-address",
            &format!("127.0.0.1:{metrics}"),
            "--group-id",
            group,
            "--retry-interval",
            "1s",
            "--crops-dir",
            crops.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // Started before every service it needs.
    let archive = Archive::start(
        dir.path(),
        "archive",
        &args("alpr-archive", api_port, m_port),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let a = get(api_port, "/healthz", &[]);
    assert_eq!(a.status, 503, "no database yet");

    let pg = pg::Postgres::start(pg_port);
    let tansu = Tansu::start(&dir.path().join("tansu"), k_port);
    tansu.create_topic(PLATES);
    tansu.create_topic(VEHICLES);
    let registry = Registry::start_on(r_port);
    let client = RegistryClient::new(&registry.url(), Duration::from_secs(5)).unwrap();
    let plate_id = client
        .register(
            &format!("{PLATES}-value"),
            &Stream::Plates.registered_schema(),
        )
        .unwrap();
    let vehicle_id = client
        .register(
            &format!("{VEHICLES}-value"),
            &Stream::Vehicles.registered_schema(),
        )
        .unwrap();
    let rt = rt();

    let p = |e: &PlateEvent| (PLATES, frame(plate_id, &encode_plate(e).unwrap()));
    let e1 = with_plate(1, "gate-1", "RK300AG");
    let e2 = with_plate(2, "gate-2", "AB123CD");
    let e3 = with_plate(3, "gate-1", "AB124CD");
    let e4 = with_plate(4, "gate-1", "XY987ZT");
    // Revision 1 replaces revision 0 (same event_id)...
    let r0 = with_plate(5, "gate-1", "MN45OPQ");
    let mut r1 = r0.clone();
    r1.revision = 1;
    r1.plate_text = "MN450PQ".into();
    // ...and a late revision 0 never replaces revision 1.
    let mut s1 = with_plate(6, "gate-2", "QW777ER");
    s1.revision = 1;
    let mut s0 = s1.clone();
    s0.revision = 0;
    s0.plate_text = "QW777FR".into();
    let v1 = vehicle_event("gate-1", 7);
    let garbage = b"not avro at all".to_vec();
    let unknown_id = frame(9999, &encode_plate(&e1).unwrap());
    std::fs::create_dir_all(crops.join(Path::new(&e1.image_key).parent().unwrap())).unwrap();
    std::fs::write(crops.join(&e1.image_key), b"\xff\xd8\xff\xe0 fake jpeg").unwrap();

    produce(
        &tansu.brokers(),
        &[
            p(&e1),
            p(&e2),
            p(&e1), // a duplicate delivery
            (PLATES, garbage.clone()),
            p(&r0),
            p(&s1),
            (VEHICLES, frame(vehicle_id, &encode_vehicle(&v1).unwrap())),
            (PLATES, unknown_id.clone()),
        ],
    );
    // A later batch: the revision that replaces, the late one that must not, more plates.
    wait_count(
        &rt,
        &pg_url,
        "SELECT count(*) FROM plate_events",
        4,
        &archive,
    );
    produce(&tansu.brokers(), &[p(&r1), p(&s0), p(&e3), p(&e4), p(&e2)]);
    wait_count(
        &rt,
        &pg_url,
        "SELECT count(*) FROM plate_events",
        6,
        &archive,
    );
    wait_count(
        &rt,
        &pg_url,
        "SELECT count(*) FROM dead_letters",
        2,
        &archive,
    );
    wait_count(
        &rt,
        &pg_url,
        "SELECT count(*) FROM vehicle_events",
        1,
        &archive,
    );
    wait_count(
        &rt,
        &pg_url,
        &format!(
            "SELECT count(*) FROM plate_events WHERE event_id = '{}' AND revision = 1 \
             AND plate_text = 'MN450PQ'",
            r0.event_id
        ),
        1,
        &archive,
    );
    assert_eq!(
        count(
            &rt,
            &pg_url,
            &format!(
                "SELECT count(*) FROM plate_events WHERE event_id = '{}' AND revision = 1 \
                 AND plate_text = 'QW777ER'",
                s1.event_id
            )
        ),
        1,
        "a late revision 0 replaced revision 1"
    );
    let dead = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.query(
            "SELECT topic, payload, error FROM dead_letters ORDER BY kafka_offset",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                r.get::<_, Vec<u8>>(1),
                r.get::<_, String>(2),
            )
        })
        .collect::<Vec<_>>()
    });
    assert_eq!(dead[0].0, PLATES);
    assert_eq!(dead[0].1, garbage);
    assert!(dead[0].2.contains("wire format"), "{}", dead[0].2);
    assert_eq!(dead[1].1, unknown_id);
    assert!(dead[1].2.contains("9999"), "{}", dead[1].2);
    let log = archive.log_text();
    for line in [
        "database: failed, will retry in 1s",
        "database: connected",
        "kafka: connected",
        "registry: connected",
    ] {
        assert!(log.contains(line), "no `{line}` in the log:\n{log}");
    }

    // --- Search API
    let q = |path: &str| get(api_port, path, &[]);
    assert_eq!(q("/healthz").status, 200);
    let a = q("/api/events?plate=RK300AG");
    assert_eq!(plates_of(&a), ["RK300AG"]);
    let ev = &a.json()["events"][0];
    assert_eq!(ev["event_id"], e1.event_id.as_str());
    assert_eq!(ev["camera_id"], "gate-1");
    assert_eq!(ev["first_seen"], e1.first_seen_ms);
    assert_eq!(ev["plate_confidence"], 0.91);
    assert_eq!(ev["image_key"], e1.image_key.as_str());
    let img = q(ev["image_url"].as_str().unwrap());
    assert_eq!(img.status, 200);
    assert!(img.headers.contains("image/jpeg"), "{}", img.headers);
    assert_eq!(img.body, b"\xff\xd8\xff\xe0 fake jpeg");
    assert_ne!(q("/images/..%2F..%2Fetc%2Fpasswd").status, 200);

    let fuzzy = plates_of(&q("/api/events?plate=RK3O0AG&match=fuzzy"));
    assert_eq!(
        fuzzy.first().map(String::as_str),
        Some("RK300AG"),
        "{fuzzy:?}"
    );
    let fuzzy = plates_of(&q("/api/events?plate=AB123CE&match=fuzzy"));
    assert_eq!(
        fuzzy.first().map(String::as_str),
        Some("AB123CD"),
        "{fuzzy:?}"
    );
    let mut wild = plates_of(&q(&format!(
        "/api/events?plate={}&match=wildcard",
        enc("AB12?CD")
    )));
    wild.sort();
    assert_eq!(wild, ["AB123CD", "AB124CD"]);
    assert_eq!(
        plates_of(&q(&format!(
            "/api/events?plate={}&match=wildcard",
            enc("XY*")
        ))),
        ["XY987ZT"]
    );
    assert_eq!(
        plates_of(&q("/api/events?plate=RK3O0AG")).len(),
        0,
        "exact is exact"
    );
    let mut cam2 = plates_of(&q("/api/events?camera=gate-2"));
    cam2.sort();
    assert_eq!(cam2, ["AB123CD", "QW777ER"]);
    let window = format!(
        "/api/events?from={}&to={}",
        e2.first_seen_ms,
        e3.first_seen_ms + 1
    );
    assert_eq!(
        plates_of(&q(&window)),
        ["AB124CD", "AB123CD"],
        "newest first"
    );

    // Paging: every event exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/events?limit=4&cursor={}", enc(c)),
            None => "/api/events?limit=4".into(),
        };
        let j = q(&path).json();
        for e in j["events"].as_array().unwrap() {
            seen.push(e["event_id"].as_str().unwrap().to_string());
        }
        match j["next"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!((seen.len(), dedup.len()), (6, 6), "{seen:?}");

    let one = q(&format!("/api/events/{}", e2.event_id));
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["plate_text"], "AB123CD");
    assert_eq!(q("/api/events/nope").status, 404);
    let s = q("/api/plates/AB123CD").json();
    assert_eq!(s["sightings"].as_array().unwrap().len(), 1, "{s}");

    // Bad input: metacharacters are plain values, long strings are refused, not scanned.
    let evil = enc("'; DROP TABLE plate_events; --");
    let a = q(&format!("/api/events?camera={evil}"));
    assert_eq!((a.status, plates_of(&a).len()), (200, 0));
    let long = "A".repeat(10_000);
    for p in ["plate", "camera", "from", "to", "cursor", "limit", "match"] {
        let a = q(&format!("/api/events?{p}={long}"));
        assert_eq!(a.status, 400, "{p}: {}", String::from_utf8_lossy(&a.body));
    }
    assert_eq!(q("/api/events?from=yesterday-ish").status, 400);
    assert_eq!(q(&format!("/api/events/{long}")).status, 400);
    assert_eq!(count(&rt, &pg_url, "SELECT count(*) FROM plate_events"), 6);

    let m = String::from_utf8(get(m_port, "/metrics", &[]).body).unwrap();
    assert!(m.contains("alpr_archive_dead_letters_total 2"), "{m}");
    assert!(
        m.contains("alpr_archive_service_up{service=\"database\"} 1"),
        "{m}"
    );
    assert!(m.contains("alpr_archive_rows_written_total{table=\"plate_events\"}"));

    // A second consumer group reads every message again: no new rows.
    let again = Archive::start(
        dir.path(),
        "again",
        &args("second", free_port(), free_port()),
    );
    wait_count(
        &rt,
        &pg_url,
        "SELECT count(*) FROM plate_events WHERE stored_at > now() - interval '1 hour'",
        6,
        &again,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !again.log_text().contains("kafka: consuming") || Instant::now() < deadline {
        if count(&rt, &pg_url, "SELECT count(*) FROM dead_letters") == 2
            && again.log_text().contains("kafka: consuming")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&rt, &pg_url, "SELECT count(*) FROM plate_events"), 6);
    assert_eq!(count(&rt, &pg_url, "SELECT count(*) FROM dead_letters"), 2);
    assert_eq!(
        count(&rt, &pg_url, "SELECT count(*) FROM vehicle_events"),
        1
    );
    drop(again);
    drop(archive);
    drop(pg);
}

/// A public address without credentials is refused; with a password, the API needs it.
#[test]
fn login_on_public_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_alpr-archive"))
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .env_remove("ALPR_ARCHIVE_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password"));

    let args: Vec<String> = [
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--password",
        "s3cret",
        "--database-url",
        &format!("postgres://postgres:pw@127.0.0.1:{}/x", free_port()),
        "--brokers",
        &format!("127.0.0.1:{}", free_port()),
        "--metrics-address",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let archive = Archive::start(dir.path(), "login", &args);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{}", archive.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let a = get(port, "/api/events", &[]);
    assert_eq!(a.status, 401);
    assert!(a.headers.contains("Basic realm"), "{}", a.headers);
    assert_eq!(get(port, "/", &["Authorization: Bearer wrong"]).status, 401);
    // Right token: past the login (no database here: 503).
    assert_eq!(
        get(port, "/api/events", &["Authorization: Bearer s3cret"]).status,
        503
    );
    // "op:s3cret"
    let page = get(port, "/", &["Authorization: Basic b3A6czNjcmV0"]);
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("ALPR archive"));
    std::thread::sleep(Duration::from_millis(500));
    let log = archive.log_text();
    assert!(log.contains("postgres:*****@"), "{log}");
    assert!(!log.contains(":pw@"), "{log}");
}

/// PostgreSQL, tansu with both topics, the registry with the plate schema, and the archive's
/// arguments for them.
struct Stack {
    pg: pg::Postgres,
    tansu: Tansu,
    registry: Registry,
    plate_id: u32,
    args: Vec<String>,
}

impl Stack {
    fn start(dir: &Path) -> Stack {
        let pg = pg::Postgres::start(free_port());
        let tansu = Tansu::start(&dir.join("tansu"), free_port());
        tansu.create_topic(PLATES);
        tansu.create_topic(VEHICLES);
        let registry = Registry::start_on(free_port());
        let client = RegistryClient::new(&registry.url(), Duration::from_secs(5)).unwrap();
        let plate_id = client
            .register(
                &format!("{PLATES}-value"),
                &Stream::Plates.registered_schema(),
            )
            .unwrap();
        let args = [
            "--brokers",
            &tansu.brokers(),
            "--schema-registry",
            &registry.url(),
            "--database-url",
            &pg.url(),
            "--retry-interval",
            "1s",
        ]
        .map(String::from)
        .to_vec();
        Stack {
            pg,
            tansu,
            registry,
            plate_id,
            args,
        }
    }
}

/// The page in a real browser (headless Chromium): a plate typed with one OCR confusion
/// finds the car, first, with its crop image loaded from the archive.
#[test]
fn search_page_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let st = Stack::start(dir.path());
    let api = free_port();
    let crops = dir.path().join("crops");
    let mut args = st.args.clone();
    args.extend(
        [
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--metrics-address",
            "",
            "--crops-dir",
            crops.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let archive = Archive::start(dir.path(), "page", &args);
    let events = [
        with_plate(1, "gate-1", "RK300AG"),
        with_plate(2, "gate-1", "AB123CD"),
        with_plate(3, "gate-2", "RK800XY"),
    ];
    // A real JPEG crop (a 48x16 grey gradient) for each event.
    for e in &events {
        let path = crops.join(&e.image_key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let pixels: Vec<u8> = (0..48u32 * 16).map(|i| (i % 48 * 5) as u8).collect();
        jpeg_encoder::Encoder::new_file(&path, 85)
            .unwrap()
            .encode(&pixels, 48, 16, jpeg_encoder::ColorType::Luma)
            .unwrap();
    }
    let msgs: Vec<(&str, Vec<u8>)> = events
        .iter()
        .map(|e| (PLATES, frame(st.plate_id, &encode_plate(e).unwrap())))
        .collect();
    produce(&st.tansu.brokers(), &msgs);
    let rt = rt();
    wait_count(
        &rt,
        &st.pg.url(),
        "SELECT count(*) FROM plate_events",
        3,
        &archive,
    );

    // The Grafana dashboard's SQL (deploy/grafana/dashboards/archive.json) runs on this schema
    // and finds the events (its time macro expanded as Grafana would, to a wide range).
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards/archive.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let sql = t["rawSql"].as_str().unwrap().replace(
                "$__timeFilter(first_seen)",
                "first_seen BETWEEN '2000-01-01' AND now()",
            );
            let rows = rt.block_on(async {
                let (c, conn) = tokio_postgres::connect(&st.pg.url(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                c.query(&sql, &[]).await
            });
            let rows = rows.unwrap_or_else(|e| panic!("{}: {sql}: {e}", panel["title"]));
            assert!(!rows.is_empty(), "{}: no rows from {sql}", panel["title"]);
        }
    }

    let mut b = cdp::Browser::start();
    b.navigate(&format!("http://127.0.0.1:{api}/"));
    // The page lists the newest events on its own first.
    b.wait_for(
        "document.querySelectorAll('#rows tr').length === 3",
        Duration::from_secs(30),
    );
    b.eval("document.getElementById('plate').focus()");
    b.type_text("RK3O0AG");
    b.press_enter();
    b.wait_for(
        "(() => { const tr = document.querySelector('#rows tr');          return !!tr && tr.querySelector('.plate').textContent === 'RK300AG'          && document.getElementById('status').textContent.endsWith('events'); })()",
        Duration::from_secs(30),
    );
    assert_eq!(
        b.eval("document.getElementById('plate').value"),
        "RK3O0AG",
        "the text was not typed into the search box"
    );
    // The crop of the first row is decoded by the browser: it came from the archive.
    b.wait_for(
        "(() => { const img = document.querySelector('#rows tr img');          return !!img && img.complete && img.naturalWidth === 48 && img.naturalHeight === 16; })()",
        Duration::from_secs(30),
    );
    let src = b.eval("document.querySelector('#rows tr img').src");
    assert!(
        src.as_str()
            .is_some_and(|s| s.ends_with(&format!("/images/{}", events[0].image_key))),
        "{src}"
    );
}

/// Outage drills, mid-stream: the archive SIGKILLed and restarted, then PostgreSQL stopped and
/// restarted, while events keep arriving. Every event ends in the table exactly once with the
/// field values it was produced with, and the consumer lag goes back to 0.
#[test]
fn archive_survives_kill_and_database_restart() {
    const N: u64 = 600;
    let dir = tempfile::tempdir().unwrap();
    let m_port = free_port();
    let Stack {
        pg,
        tansu,
        registry: _registry,
        plate_id,
        mut args,
    } = Stack::start(dir.path());
    let pg_url = pg.url();
    args.extend(
        [
            "--listen",
            "127.0.0.1:0",
            "--metrics-address",
            &format!("127.0.0.1:{m_port}"),
            "--instance-id",
            "archive-0",
        ]
        .map(String::from),
    );
    let events: Vec<PlateEvent> = (1..=N)
        .map(|i| {
            let mut e = with_plate(i, &format!("gate-{}", i % 3), &format!("KL{i:04}X"));
            e.revision = 0;
            e
        })
        .collect();
    let msgs: Vec<(&str, Vec<u8>)> = events
        .iter()
        .map(|e| (PLATES, frame(plate_id, &encode_plate(e).unwrap())))
        .collect();
    // Events keep arriving in small batches for the whole drill.
    let brokers = tansu.brokers();
    let producer = std::thread::spawn(move || {
        for chunk in msgs.chunks(20) {
            produce(&brokers, chunk);
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    let rt = rt();
    let stored = "SELECT count(*) FROM plate_events";
    let wait_more = |n: i64, archive: &Archive| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while count(&rt, &pg_url, stored) < n {
            std::thread::sleep(Duration::from_millis(50));
            assert!(Instant::now() < deadline, "{}", archive.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // SIGKILL in the middle of the stream, then a restart of the same group and instance name
    // (static membership: tansu 0.6 never expires a dead dynamic member, so without a name the
    // restarted instance would wait forever there; Kafka expires it after the session timeout).
    let archive = Archive::start(dir.path(), "first", &args);
    wait_more(60, &archive);
    drop(archive); // Child::kill = SIGKILL
    std::thread::sleep(Duration::from_secs(1));
    let archive = Archive::start(dir.path(), "second", &args);
    let before = count(&rt, &pg_url, stored);
    wait_more(before + 60, &archive);

    // The database goes away while events keep coming, and comes back.
    pg.stop();
    std::thread::sleep(Duration::from_secs(3));
    pg.restart();
    producer.join().unwrap();
    wait_count(&rt, &pg_url, stored, N as i64, &archive);
    let log = archive.log_text();
    assert!(
        log.contains("database: failed, will retry in 1s"),
        "the outage was not seen:\n{log}"
    );

    // Exactly once, with the values produced.
    let rows = rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.query(
            "SELECT event_id, plate_text, camera_id, first_seen_ms FROM plate_events",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, i64>(3),
                ),
            )
        })
        .collect::<std::collections::HashMap<_, _>>()
    });
    assert_eq!(rows.len(), N as usize);
    for e in &events {
        assert_eq!(
            rows.get(&e.event_id),
            Some(&(e.plate_text.clone(), e.camera_id.clone(), e.first_seen_ms)),
            "{}",
            e.plate_text
        );
    }
    assert_eq!(count(&rt, &pg_url, "SELECT count(*) FROM dead_letters"), 0);

    // Caught up: the lag gauge of the partition reads 0 within its measuring period.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = String::from_utf8(get(m_port, "/metrics", &[]).body).unwrap();
        if m.contains(&format!(
            "alpr_archive_consumer_lag{{partition=\"0\",topic=\"{PLATES}\"}} 0"
        )) {
            break;
        }
        assert!(Instant::now() < deadline, "lag never 0:\n{m}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn wait_listening(port: u16, archive: &Archive) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{}", archive.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Crop images read from S3 (s3s-fs, SigV4, the s3sink's settings) or an object_store URL and
/// served by the archive; an unreachable store is a clear 502 without secrets; bad settings
/// stop the start with the flag named.
#[test]
fn crops_from_an_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let key = "2026-12-03/gate-1_track7.jpg";
    let jpeg = b"\xff\xd8\xff\xe0 a crop from S3".to_vec();
    let mut s3 = s3::S3sFs::start(&dir.path().join("s3"), free_port(), &["crops"]);
    std::fs::create_dir_all(s3.data.join("crops/2026-12-03")).unwrap();
    std::fs::write(s3.data.join("crops").join(key), &jpeg).unwrap();
    let base = |port: u16| -> Vec<String> {
        [
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &format!("postgres://postgres@127.0.0.1:{}/x", free_port()),
            "--brokers",
            &format!("127.0.0.1:{}", free_port()),
            "--metrics-address",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    let port = free_port();
    let mut args = base(port);
    args.extend(
        [
            "--crops-bucket",
            "crops",
            "--crops-endpoint",
            &s3.endpoint(),
            "--crops-access-key-id",
            s3::ACCESS_KEY,
            "--crops-secret-access-key",
            s3::SECRET_KEY,
        ]
        .map(String::from),
    );
    let archive = Archive::start(dir.path(), "s3", &args);
    wait_listening(port, &archive);
    let a = get(port, &format!("/images/{key}"), &[]);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.body, jpeg);
    assert!(a.headers.to_ascii_lowercase().contains("image/jpeg"));
    assert_eq!(get(port, "/images/2026-12-03/none.jpg", &[]).status, 404);
    assert_eq!(get(port, "/images/..%2Fsecret.jpg", &[]).status, 400);
    // The store goes away: a gateway error naming it, never the secret.
    s3.kill();
    let a = get(port, &format!("/images/{key}"), &[]);
    assert_eq!(a.status, 502, "{}", String::from_utf8_lossy(&a.body));
    let body = String::from_utf8_lossy(&a.body);
    assert!(body.contains("bucket crops"), "{body}");
    assert!(!body.contains(s3::SECRET_KEY), "{body}");
    drop(archive);

    // An object_store URL: a local folder through the same code.
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(folder.join("2026-12-03")).unwrap();
    std::fs::write(folder.join(key), &jpeg).unwrap();
    let port = free_port();
    let mut args = base(port);
    args.extend([
        "--crops-url".to_string(),
        format!("file://{}", folder.display()),
    ]);
    let archive = Archive::start(dir.path(), "file", &args);
    wait_listening(port, &archive);
    let a = get(port, &format!("/images/{key}"), &[]);
    assert_eq!((a.status, a.body), (200, jpeg));
    drop(archive);

    // Settings that cannot work stop the start, naming the flag.
    for (extra, expect) in [
        (vec!["--crops-url", "nonsense"], "--crops-url"),
        (vec!["--crops-bucket", "Bad_Bucket!"], "--crops-bucket"),
        (
            vec!["--crops-bucket", "crops", "--crops-url", "file:///tmp"],
            "give one of them",
        ),
    ] {
        let mut args = base(free_port());
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = Command::new(env!("CARGO_BIN_EXE_alpr-archive"))
            .args(&args)
            .env_remove("ALPR_ARCHIVE_PASSWORD")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(expect), "{extra:?}: {err}");
    }
}
