// SPDX-License-Identifier: MIT OR Apache-2.0
//! alpr-archive against real servers (PostgreSQL 15, tansu, the test registry), not a timed test:
//!
//!   cargo bench -p alpr-archive --bench archive [-- --events N --rows M --queries Q]
//!
//! 1. **Ingest**: N plate events (default 50,000, random plates) are produced in the Confluent
//!    wire format before the archive starts; the archive then consumes, decodes and writes them.
//!    Its rate is taken from its first row to its last (start-up and group join left out, and
//!    printed apart). The baseline is a raw binary COPY of the very same rows into a copy of the
//!    table with the same indexes, in transactions of the archive's batch size.
//! 2. **Fuzzy search**: the table is filled to M rows (default 1,000,000) by COPY, then Q
//!    queries (default 200) go through the archive's HTTP API with `match=fuzzy`: half are a
//!    stored plate with one OCR confusion (it must come first), half with one ordinary
//!    substitution (it must be among the results). p50/p95/max latency per kind, after 20
//!    queries of warm-up.

#[path = "../tests/common/http.rs"]
mod http;
#[path = "../../plugins/alpr/tests/common/kafka.rs"]
mod kafka;
#[path = "../tests/common/pg.rs"]
mod pg;
#[path = "../src/search.rs"]
#[allow(dead_code, unused_imports)]
mod search;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use gstalpr::alprocr::vote::confusion_key;
use gstalpr::kafkasink::avro::{Stream, encode_plate, frame};
use gstalpr::kafkasink::registry::RegistryClient;
use http::{enc, get};
use kafka::{Registry, Tansu, free_port, plate_event};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value as Json;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

const PLATES: &str = "alpr.events.plates";
const BATCH: usize = 500;

/// A small deterministic generator (xorshift64*), so that runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// A plate in one of a few common layouts (EU and US style).
    fn plate(&mut self) -> String {
        const L: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ";
        const D: &[u8] = b"0123456789";
        let layout = ["LLDDDLL", "LLLDDDD", "DLLLDDD", "LLDDLL", "DDLLDDD"][self.below(5)];
        layout
            .bytes()
            .map(|c| {
                let set = if c == b'L' { L } else { D };
                set[self.below(set.len())] as char
            })
            .collect()
    }
}

/// One OCR confusion (a character swapped for another of its confusion group, as the search
/// folds them: `confusion_key`), if the plate has a character with one.
fn confuse(plate: &str, rng: &mut Rng) -> Option<String> {
    let key = |c: char| confusion_key(&c.to_string());
    let chars: Vec<char> = plate.chars().collect();
    let spots: Vec<(usize, char)> = chars
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| {
            ('A'..='Z')
                .chain('0'..='9')
                .filter(move |&d| d != c && key(d) == key(c))
                .map(move |d| (i, d))
        })
        .collect();
    if spots.is_empty() {
        return None;
    }
    let (i, to) = spots[rng.below(spots.len())];
    let mut out = chars;
    out[i] = to;
    Some(out.into_iter().collect())
}

/// One ordinary substitution (not an OCR confusion: X <-> K, 3 <-> 7 and the like).
fn substitute(plate: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = plate.chars().collect();
    let i = rng.below(chars.len());
    chars[i] = if chars[i].is_ascii_digit() {
        if chars[i] == '3' { '7' } else { '3' }
    } else if chars[i] == 'X' {
        'K'
    } else {
        'X'
    };
    chars.into_iter().collect()
}

struct Archive(Child);

impl Drop for Archive {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: expected a number, got {v}"))
        })
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn count(c: &tokio_postgres::Client, table: &str) -> i64 {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or(-1)
}

const COLUMNS: &str = "event_id, revision, camera_id, plate_text, plate_norm, first_seen_ms, \
                       first_seen, record, kafka_topic, kafka_partition, kafka_offset";
const TYPES: &[Type] = &[
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::JSONB,
    Type::TEXT,
    Type::INT4,
    Type::INT8,
];

/// A row of `plate_events` as the archive writes it.
struct Row {
    event_id: String,
    revision: i32,
    camera_id: String,
    plate_text: String,
    plate_norm: String,
    first_seen_ms: i64,
    first_seen: SystemTime,
    record: Json,
    topic: String,
    partition: i32,
    offset: i64,
}

/// COPYs `rows` into `table`, one transaction per `batch` rows.
async fn copy(c: &mut tokio_postgres::Client, table: &str, rows: &[Row], batch: usize) {
    for chunk in rows.chunks(batch) {
        let tx = c.transaction().await.unwrap();
        let sink = tx
            .copy_in(&format!(
                "COPY {table} ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await
            .unwrap();
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, TYPES));
        for r in chunk {
            let vals: [&(dyn ToSql + Sync); 11] = [
                &r.event_id,
                &r.revision,
                &r.camera_id,
                &r.plate_text,
                &r.plate_norm,
                &r.first_seen_ms,
                &r.first_seen,
                &r.record,
                &r.topic,
                &r.partition,
                &r.offset,
            ];
            w.as_mut().write(&vals).await.unwrap();
        }
        w.as_mut().finish().await.unwrap();
        tx.commit().await.unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let events = arg(&args, "--events", 50_000);
    let rows_total = arg(&args, "--rows", 1_000_000);
    let queries = arg(&args, "--queries", 200);
    let dir = tempfile::tempdir().unwrap();
    let (pg_port, k_port, r_port, api_port, m_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let pg = pg::Postgres::start(pg_port);
    let pg_url = pg.url();
    let tansu = Tansu::start(&dir.path().join("tansu"), k_port);
    tansu.create_topic(PLATES);
    let registry = Registry::start_on(r_port);
    let client = RegistryClient::new(&registry.url(), Duration::from_secs(5)).unwrap();
    let schema_id = client
        .register(
            &format!("{PLATES}-value"),
            &Stream::Plates.registered_schema(),
        )
        .unwrap();

    // Produce first, so that the archive's rate is its own and not the producer's.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t = Instant::now();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.brokers())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for seq in 0..events as u64 {
        let mut e = plate_event(&format!("gate-{}", seq % 4), seq);
        e.revision = 0;
        e.plate_text = rng.plate();
        let payload = frame(schema_id, &encode_plate(&e).unwrap());
        loop {
            match producer.send(
                BaseRecord::<str, [u8]>::to(PLATES)
                    .key("k")
                    .payload(&payload),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(300)).unwrap();
    println!(
        "produced {events} plate events in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let _archive = Archive(
        Command::new(env!("CARGO_BIN_EXE_alpr-archive"))
            .args([
                "--brokers",
                &tansu.brokers(),
                "--schema-registry",
                &registry.url(),
                "--database-url",
                &pg_url,
                "--listen",
                &format!("127.0.0.1:{api_port}"),
                "--metrics-address",
                &format!("127.0.0.1:{m_port}"),
                "--retry-interval",
                "1s",
                "--batch-size",
                &BATCH.to_string(),
            ])
            .env_remove("ALPR_ARCHIVE_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start alpr-archive"),
    );
    let (first_at, first_n, last_at) = rt.block_on(async {
        let c = loop {
            if let Ok((c, conn)) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                break c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut first = None;
        loop {
            let n = count(&c, "plate_events").await;
            if n > 0 && first.is_none() {
                first = Some((Instant::now(), n));
            }
            if n == events as i64 {
                let (at, n0) = first.unwrap();
                return (at, n0, Instant::now());
            }
            assert!(Instant::now() < deadline, "archive stored {n} of {events}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let steady = (events as i64 - first_n) as f64 / (last_at - first_at).as_secs_f64();
    // Where the archive's time went: its own histogram of database writes per batch.
    let metrics = String::from_utf8_lossy(&get(m_port, "/metrics", &[]).body).into_owned();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let (db_s, batches) = (
        metric("alpr_archive_batch_seconds_sum"),
        metric("alpr_archive_batch_seconds_count"),
    );
    println!(
        "archive: {events} events stored {:.2} s after its start (first rows after {:.2} s), \
         {steady:.0} events/s from the first row to the last; {batches} batches, {db_s:.2} s \
         of them writing to the database",
        (last_at - started).as_secs_f64(),
        (first_at - started).as_secs_f64()
    );

    // The raw COPY baseline: the same rows, the same indexes, the same transaction size.
    let (copy_rate, mut c) = rt.block_on(async {
        let (mut c, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let rows: Vec<Row> = c
            .query(&format!("SELECT {COLUMNS} FROM plate_events"), &[])
            .await
            .unwrap()
            .into_iter()
            .map(|r| Row {
                event_id: r.get(0),
                revision: r.get(1),
                camera_id: r.get(2),
                plate_text: r.get(3),
                plate_norm: r.get(4),
                first_seen_ms: r.get(5),
                first_seen: r.get(6),
                record: r.get(7),
                topic: r.get(8),
                partition: r.get(9),
                offset: r.get(10),
            })
            .collect();
        c.batch_execute("CREATE TABLE copy_baseline (LIKE plate_events INCLUDING ALL); CHECKPOINT")
            .await
            .unwrap();
        let t = Instant::now();
        copy(&mut c, "copy_baseline", &rows, BATCH).await;
        let rate = rows.len() as f64 / t.elapsed().as_secs_f64();
        c.batch_execute("DROP TABLE copy_baseline").await.unwrap();
        (rate, c)
    });
    println!(
        "raw COPY of the same rows: {copy_rate:.0} events/s; archive / COPY = {:.2}",
        steady / copy_rate
    );

    // Fuzzy search over `rows_total` events.
    let template: Json = rt.block_on(async {
        c.query_one("SELECT record FROM plate_events LIMIT 1", &[])
            .await
            .unwrap()
            .get(0)
    });
    let mut stored: Vec<String> = rt.block_on(async {
        c.query("SELECT plate_text FROM plate_events", &[])
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.get(0))
            .collect()
    });
    let t = Instant::now();
    let mut seq = events as i64;
    rt.block_on(async {
        while (seq as usize) < rows_total {
            let n = (rows_total - seq as usize).min(50_000);
            let rows: Vec<Row> = (0..n)
                .map(|_| {
                    seq += 1;
                    let plate = rng.plate();
                    let mut record = template.clone();
                    let event_id = format!("bench-{seq}");
                    let first_seen_ms = 1_764_201_600_000 + seq * 250;
                    record["event_id"] = Json::from(event_id.clone());
                    record["plate_text"] = Json::from(plate.clone());
                    record["first_seen"] = Json::from(first_seen_ms);
                    stored.push(plate.clone());
                    Row {
                        event_id,
                        revision: 0,
                        camera_id: format!("gate-{}", seq % 4),
                        plate_norm: search::plate_norm(&plate),
                        plate_text: plate,
                        first_seen_ms,
                        first_seen: SystemTime::UNIX_EPOCH
                            + Duration::from_millis(first_seen_ms as u64),
                        record,
                        topic: PLATES.into(),
                        partition: 0,
                        offset: seq,
                    }
                })
                .collect();
            copy(&mut c, "plate_events", &rows, 50_000).await;
        }
        c.batch_execute("VACUUM ANALYZE plate_events")
            .await
            .unwrap();
        println!(
            "filled to {} rows in {:.0} s",
            count(&c, "plate_events").await,
            t.elapsed().as_secs_f64()
        );
    });

    // Warm-up (not counted): the first queries after the bulk load read the index from disk.
    for _ in 0..20 {
        let q = stored[rng.below(stored.len())].clone();
        get(
            api_port,
            &format!("/api/events?plate={}&match=fuzzy&limit=20", enc(&q)),
            &[],
        );
    }
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut right = [0usize; 2];
    let mut asked = [0usize; 2];
    while asked[0] + asked[1] < queries {
        let truth = stored[rng.below(stored.len())].clone();
        let kind = (asked[0] + asked[1]) % 2;
        let query = if kind == 0 {
            match confuse(&truth, &mut rng) {
                Some(q) => q,
                None => continue,
            }
        } else {
            substitute(&truth, &mut rng)
        };
        let t = Instant::now();
        let a = get(
            api_port,
            &format!("/api/events?plate={}&match=fuzzy&limit=20", enc(&query)),
            &[],
        );
        times[kind].push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let found: Vec<String> = a.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["plate_text"].as_str().unwrap_or_default().to_string())
            .collect();
        asked[kind] += 1;
        right[kind] += if kind == 0 {
            found.first() == Some(&truth)
        } else {
            found.contains(&truth)
        } as usize;
    }
    for (kind, name) in [(0, "one OCR confusion"), (1, "one other substitution")] {
        let mut t = std::mem::take(&mut times[kind]);
        t.sort_by(f64::total_cmp);
        println!(
            "fuzzy search over {rows_total} events, {name}: {} queries, p50 {:.1} ms, \
             p95 {:.1} ms, max {:.1} ms; the stored plate {} in {}",
            asked[kind],
            percentile(&t, 0.5),
            percentile(&t, 0.95),
            t.last().copied().unwrap_or(f64::NAN),
            if kind == 0 { "first" } else { "found" },
            right[kind]
        );
    }
}
