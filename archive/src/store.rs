// SPDX-License-Identifier: MIT OR Apache-2.0
//! PostgreSQL: connections, versioned migrations, idempotent batched writes.

use std::collections::HashMap;

use gstalpr::kafkasink::avro::Stream;
use serde_json::{Value as Json, json};
use tokio_postgres::{Client, NoTls};

use crate::decode::Decoded;
use crate::search::plate_norm;

/// Where a message came from (the dead-letter table and the rows keep it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One consumed message, decoded or not.
#[derive(Debug, Clone)]
pub enum Item {
    Event(Decoded, Origin),
    Dead {
        origin: Origin,
        payload: Vec<u8>,
        error: String,
    },
}

/// Rows written by one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub plates: u64,
    pub vehicles: u64,
    pub dead_letters: u64,
}

/// Versioned migrations: never edit a released one, add the next version.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE plate_events (
    event_id        text PRIMARY KEY,
    revision        integer NOT NULL,
    camera_id       text NOT NULL,
    plate_text      text NOT NULL,
    plate_norm      text NOT NULL,
    first_seen_ms   bigint NOT NULL,
    first_seen      timestamptz NOT NULL,
    record          jsonb NOT NULL,
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plate_events_recent ON plate_events (first_seen_ms DESC, event_id DESC);
CREATE INDEX plate_events_plate ON plate_events (plate_text, first_seen_ms DESC);
CREATE INDEX plate_events_camera ON plate_events (camera_id, first_seen_ms DESC);
CREATE INDEX plate_events_first_seen ON plate_events (first_seen);
CREATE INDEX plate_events_plate_trgm ON plate_events USING gist (plate_text gist_trgm_ops);
CREATE INDEX plate_events_norm_trgm ON plate_events USING gist (plate_norm gist_trgm_ops);
CREATE TABLE vehicle_events (
    event_id        text PRIMARY KEY,
    camera_id       text NOT NULL,
    plate_text      text,
    first_seen_ms   bigint NOT NULL,
    first_seen      timestamptz NOT NULL,
    record          jsonb NOT NULL,
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vehicle_events_recent ON vehicle_events (first_seen_ms DESC);
CREATE INDEX vehicle_events_first_seen ON vehicle_events (first_seen);
CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    payload         bytea,
    error           text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);
"#,
    ),
    (
        2,
        r#"
-- Fuzzy search by one-edit keys instead of trigram distance: a plate and every variant of it
-- with one character deleted. Two normalised plates within one edit (insertion, deletion or
-- substitution) share a key, so a GIN index on the keys finds them with a few posting-list
-- lookups; the trigram KNN this replaces read thousands of index pages over 1M events.
CREATE FUNCTION alpr_plate_keys(p text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    keys text[] := ARRAY[p];
BEGIN
    IF char_length(p) > 1 THEN
        FOR i IN 1..char_length(p) LOOP
            keys := keys || overlay(p PLACING '' FROM i FOR 1);
        END LOOP;
    END IF;
    RETURN keys;
END
$fn$;
CREATE INDEX plate_events_norm_keys ON plate_events USING gin (alpr_plate_keys(plate_norm));
DROP INDEX plate_events_norm_trgm;
"#,
    ),
];

/// Connects (the connection is driven by a task on the current runtime) and bounds every
/// statement so that no request waits on the database forever.
pub async fn connect(url: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| error_text(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute("SET statement_timeout = '30s'")
        .await
        .map_err(|e| error_text(&e))?;
    Ok(client)
}

/// An error with the server's message when there is one (a wrong password, a missing database).
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// Applies the migrations not yet applied, under an advisory lock (several archives may start
/// together against one database).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(724810114)", &[])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

const INSERT_PLATES: &str = r#"
INSERT INTO plate_events AS p (event_id, revision, camera_id, plate_text, plate_norm,
    first_seen_ms, first_seen, record, kafka_topic, kafka_partition, kafka_offset)
SELECT r.event_id, r.revision, r.camera_id, r.plate_text, r.plate_norm,
    r.first_seen_ms, to_timestamp(r.first_seen_ms / 1000.0), r.record, r.topic, r.part, r.off
FROM jsonb_to_recordset($1::jsonb) AS r(event_id text, revision integer, camera_id text,
    plate_text text, plate_norm text, first_seen_ms bigint, record jsonb, topic text,
    part integer, off bigint)
ON CONFLICT (event_id) DO UPDATE SET revision = EXCLUDED.revision,
    camera_id = EXCLUDED.camera_id, plate_text = EXCLUDED.plate_text,
    plate_norm = EXCLUDED.plate_norm, first_seen_ms = EXCLUDED.first_seen_ms,
    first_seen = EXCLUDED.first_seen, record = EXCLUDED.record,
    kafka_topic = EXCLUDED.kafka_topic, kafka_partition = EXCLUDED.kafka_partition,
    kafka_offset = EXCLUDED.kafka_offset, stored_at = now()
WHERE p.revision < EXCLUDED.revision
"#;

const INSERT_VEHICLES: &str = r#"
INSERT INTO vehicle_events (event_id, camera_id, plate_text, first_seen_ms, first_seen, record,
    kafka_topic, kafka_partition, kafka_offset)
SELECT r.event_id, r.camera_id, r.plate_text, r.first_seen_ms,
    to_timestamp(r.first_seen_ms / 1000.0), r.record, r.topic, r.part, r.off
FROM jsonb_to_recordset($1::jsonb) AS r(event_id text, camera_id text, plate_text text,
    first_seen_ms bigint, record jsonb, topic text, part integer, off bigint)
ON CONFLICT (event_id) DO NOTHING
"#;

const INSERT_DEAD: &str = r#"
INSERT INTO dead_letters (topic, kafka_partition, kafka_offset, payload, error)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::bytea[], $5::text[])
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING
"#;

fn int(record: &serde_json::Map<String, Json>, f: &str) -> i64 {
    record.get(f).and_then(Json::as_i64).unwrap_or(0)
}

fn text<'a>(record: &'a serde_json::Map<String, Json>, f: &str) -> &'a str {
    record.get(f).and_then(Json::as_str).unwrap_or("")
}

/// The rows of one batch: plates deduplicated by event_id keeping the highest revision (one
/// statement may not touch a row twice), vehicles by event_id.
/// A dead letter: where, the bytes, why.
type DeadRow = (Origin, Vec<u8>, String);

fn rows(items: &[Item]) -> (Vec<Json>, Vec<Json>, Vec<DeadRow>) {
    let mut plates: HashMap<&str, Json> = HashMap::new();
    let mut vehicles: HashMap<&str, Json> = HashMap::new();
    let mut dead = Vec::new();
    for item in items {
        match item {
            Item::Event(Decoded { stream, record }, o) => {
                let id = text(record, "event_id");
                let mut row = json!({
                    "event_id": id,
                    "camera_id": text(record, "camera_id"),
                    "first_seen_ms": int(record, "first_seen"),
                    "record": record,
                    "topic": o.topic,
                    "part": o.partition,
                    "off": o.offset,
                });
                match stream {
                    Stream::Plates => {
                        let plate = text(record, "plate_text");
                        let revision = int(record, "revision");
                        row["revision"] = json!(revision);
                        row["plate_text"] = json!(plate);
                        row["plate_norm"] = json!(plate_norm(plate));
                        let keep = plates
                            .get(id)
                            .is_none_or(|old| old["revision"].as_i64().unwrap_or(0) <= revision);
                        if keep {
                            plates.insert(id, row);
                        }
                    }
                    Stream::Vehicles => {
                        row["plate_text"] = record.get("plate_text").cloned().unwrap_or(Json::Null);
                        vehicles.entry(id).or_insert(row);
                    }
                    // Watchlist alerts are not archived (decode.rs never yields this stream).
                    Stream::Alerts => {}
                }
            }
            Item::Dead {
                origin,
                payload,
                error,
            } => dead.push((origin.clone(), payload.clone(), error.clone())),
        }
    }
    (
        plates.into_values().collect(),
        vehicles.into_values().collect(),
        dead,
    )
}

/// Writes one batch in one transaction: either every row of it is committed or none.
pub async fn write_batch(
    client: &mut Client,
    items: &[Item],
) -> Result<Written, tokio_postgres::Error> {
    let (plates, vehicles, dead) = rows(items);
    let tx = client.transaction().await?;
    let mut w = Written::default();
    if !plates.is_empty() {
        w.plates = tx.execute(INSERT_PLATES, &[&Json::Array(plates)]).await?;
    }
    if !vehicles.is_empty() {
        w.vehicles = tx
            .execute(INSERT_VEHICLES, &[&Json::Array(vehicles)])
            .await?;
    }
    if !dead.is_empty() {
        let topics: Vec<&str> = dead.iter().map(|d| d.0.topic.as_str()).collect();
        let parts: Vec<i32> = dead.iter().map(|d| d.0.partition).collect();
        let offsets: Vec<i64> = dead.iter().map(|d| d.0.offset).collect();
        let payloads: Vec<&[u8]> = dead.iter().map(|d| d.1.as_slice()).collect();
        let errors: Vec<String> = dead.iter().map(|d| d.2.replace('\0', "")).collect();
        w.dead_letters = tx
            .execute(
                INSERT_DEAD,
                &[&topics, &parts, &offsets, &payloads, &errors],
            )
            .await?;
    }
    tx.commit().await?;
    Ok(w)
}

/// Deletes events older than `days` days (plain PostgreSQL retention); returns rows deleted.
pub async fn delete_older_than(client: &Client, days: u32) -> Result<u64, tokio_postgres::Error> {
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let mut n = 0;
    for table in ["plate_events", "vehicle_events"] {
        n += client
            .execute(
                &format!(
                    "DELETE FROM {table} WHERE first_seen < now() - make_interval(days => $1)"
                ),
                &[&days],
            )
            .await?;
    }
    Ok(n)
}
