// SPDX-License-Identifier: MIT OR Apache-2.0
//! The durable outbox: every accepted event is committed to a local SQLite database before
//! anything is sent, and deleted only when the broker acknowledged it.
//!
//! Why SQLite (rusqlite, bundled): a commit in WAL mode is atomic and survives a killed process
//! (the WAL is in the OS page cache the moment `COMMIT` returns; with `fsync` on it also survives
//! power loss), recovery after a crash is automatic on open, the file is one portable database a
//! user can inspect with `sqlite3` (once the sink stopped: it holds an exclusive lock while it
//! runs), and an `INTEGER PRIMARY KEY` gives the replay order for free.
//! redb would do too, but SQLite's crash recovery has decades of field use behind it.
//!
//! The database is opened with [`crate::store::open_owned_queue`]: one connection owns it (a
//! second kafkasink on the same `outbox-location` fails at start), commits are small appends to
//! the WAL and checkpoints are rare. Rows get their `seq` from an in-memory counter rather than
//! `AUTOINCREMENT` (which writes a second page, `sqlite_sequence`, on every commit): `seq` only
//! orders rows and only has to grow while the outbox is open.
//!
//! The same database caches the schema ids the registry gave, so a registry outage does not stop
//! delivery.
//!
//! Overflow: the outbox holds at most `max_events`. Past that, [`Overflow::DropOldest`] deletes
//! the oldest events to make room (the default: fresh plates matter most to a live system) and
//! [`Overflow::DropNewest`] refuses the new ones. Either way the count is returned so the
//! element can warn and count; nothing is dropped silently.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::avro::Stream;

pub use crate::sink::{Overflow, PushOutcome};
use crate::sink::{PushError, Words, disk};

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create outbox directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "outbox database {path} is in use by another kafkasink (in this or another process): \
         each kafkasink needs its own outbox-location"
    )]
    InUse { path: PathBuf },
    #[error("outbox database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// An event ready to be stored: Avro body without framing (the schema id is added at send
/// time, so a backlog does not depend on the registry).
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub stream: Stream,
    pub event_id: String,
    pub key: String,
    pub body: Vec<u8>,
    /// Wall-clock ms of the first read of the plate (plate events), for the plate-to-delivery
    /// latency.
    pub first_seen_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub seq: i64,
    pub stream: Stream,
    pub event_id: String,
    pub key: String,
    pub body: Vec<u8>,
    /// When the outbox accepted the event, wall-clock ms.
    pub created_ms: i64,
    pub first_seen_ms: Option<i64>,
}

pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    max_events: u64,
    overflow: Overflow,
    len: u64,
    /// The `seq` of the next row.
    next_seq: i64,
    /// `created_ms` of the oldest row, `None` when empty.
    oldest_ms: Option<i64>,
}

pub const FILE_NAME: &str = "outbox.sqlite";

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl Outbox {
    pub fn open(
        dir: &Path,
        max_events: u64,
        overflow: Overflow,
        fsync: bool,
    ) -> Result<Outbox, OutboxError> {
        std::fs::create_dir_all(dir).map_err(|source| OutboxError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = |source| OutboxError::Db {
            path: path.clone(),
            source,
        };
        let conn = crate::store::open_owned_queue(&path, fsync).map_err(|source| {
            if is_busy(&source) {
                OutboxError::InUse { path: path.clone() }
            } else {
                db(source)
            }
        })?;
        // The first statement takes the exclusive lock (or finds it taken).
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY,
                 stream INTEGER NOT NULL,
                 event_id TEXT NOT NULL,
                 key TEXT NOT NULL,
                 body BLOB NOT NULL,
                 created_ms INTEGER NOT NULL,
                 first_seen_ms INTEGER);
             CREATE TABLE IF NOT EXISTS schema_ids (
                 registry TEXT NOT NULL,
                 subject TEXT NOT NULL,
                 schema TEXT NOT NULL,
                 id INTEGER NOT NULL,
                 PRIMARY KEY (registry, subject, schema));",
        )
        .map_err(|source| {
            if is_busy(&source) {
                OutboxError::InUse { path: path.clone() }
            } else {
                db(source)
            }
        })?;
        // Outboxes of earlier versions: no first_seen_ms column (and seq AUTOINCREMENT, which
        // keeps working with explicit seqs).
        let has_first_seen: bool = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('outbox') WHERE name = 'first_seen_ms'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(db)?
            > 0;
        if !has_first_seen {
            conn.execute_batch("ALTER TABLE outbox ADD COLUMN first_seen_ms INTEGER")
                .map_err(db)?;
        }
        let (len, max_seq): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)?;
        let mut o = Outbox {
            conn,
            path,
            max_events: max_events.max(1),
            overflow,
            len: len as u64,
            next_seq: max_seq + 1,
            oldest_ms: None,
        };
        o.oldest_ms = o.query_oldest_ms()?;
        Ok(o)
    }

    fn err(&self, source: rusqlite::Error) -> OutboxError {
        if is_busy(&source) {
            return OutboxError::InUse {
                path: self.path.clone(),
            };
        }
        OutboxError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn query_oldest_ms(&self) -> Result<Option<i64>, OutboxError> {
        self.conn
            .prepare_cached("SELECT created_ms FROM outbox ORDER BY seq LIMIT 1")
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Runs `f` in one transaction (cached BEGIN/COMMIT statements: this runs once per buffer);
    /// rolled back if `f` or the commit fails.
    fn transaction<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, OutboxError> {
        let run = |conn: &Connection| -> rusqlite::Result<T> {
            conn.prepare_cached("BEGIN")?.execute([])?;
            let v = f(conn)?;
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(v)
        };
        match run(&self.conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                Err(self.err(e))
            }
        }
    }

    /// When the oldest waiting event was accepted (wall-clock ms), `None` when empty.
    pub fn oldest_created_ms(&self) -> Option<i64> {
        self.oldest_ms
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events stored and not yet acknowledged.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `records` in one transaction, applying the overflow policy.
    pub fn push(&mut self, records: &[NewRecord]) -> Result<PushOutcome, OutboxError> {
        if records.is_empty() {
            return Ok(PushOutcome::default());
        }
        let n = records.len() as u64;
        let (take, drop_new) = match self.overflow {
            Overflow::DropNewest => {
                let room = self.max_events.saturating_sub(self.len);
                (n.min(room), n.saturating_sub(room))
            }
            Overflow::DropOldest => (n.min(self.max_events), n.saturating_sub(self.max_events)),
        };
        let now = crate::event::now_ms();
        // With drop-oldest and more new events than fit, the newest `max_events` win.
        let slice = match self.overflow {
            Overflow::DropOldest => &records[(n - take) as usize..],
            Overflow::DropNewest => &records[..take as usize],
        };
        let first_seq = self.next_seq;
        let excess = match self.overflow {
            Overflow::DropOldest => (self.len + take).saturating_sub(self.max_events),
            Overflow::DropNewest => 0,
        };
        let dropped_old = self.transaction(|conn| {
            let mut ins = conn.prepare_cached(
                "INSERT INTO outbox (seq, stream, event_id, key, body, created_ms, first_seen_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (i, r) in slice.iter().enumerate() {
                ins.execute(params![
                    first_seq + i as i64,
                    r.stream as i64,
                    r.event_id,
                    r.key,
                    r.body,
                    now,
                    r.first_seen_ms
                ])?;
            }
            if excess == 0 {
                return Ok(0);
            }
            conn.prepare_cached(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?1)",
            )?
            .execute(params![excess as i64])
            .map(|d| d as u64)
        })?;
        self.next_seq = first_seq + take as i64;
        let was_empty = self.len == 0;
        self.len = self.len + take - dropped_old;
        if dropped_old > 0 {
            self.oldest_ms = self.query_oldest_ms()?;
        } else if was_empty && take > 0 {
            self.oldest_ms = Some(now);
        }
        Ok(PushOutcome {
            stored: take,
            dropped: drop_new + dropped_old,
        })
    }

    /// Deletes the `n` oldest events (the disk-space policy); returns how many it deleted.
    pub fn drop_oldest(&mut self, n: u64) -> Result<u64, OutboxError> {
        if n == 0 || self.len == 0 {
            return Ok(0);
        }
        let dropped = self.transaction(|conn| {
            conn.prepare_cached(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?1)",
            )?
            .execute(params![n as i64])
            .map(|d| d as u64)
        })?;
        self.len = self.len.saturating_sub(dropped);
        self.oldest_ms = self.query_oldest_ms()?;
        Ok(dropped)
    }

    /// Up to `limit` events after `after_seq`, oldest first.
    pub fn batch_after(&self, after_seq: i64, limit: usize) -> Result<Vec<Record>, OutboxError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, stream, event_id, key, body, created_ms, first_seen_ms FROM outbox \
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![after_seq, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(1)?,
                    Record {
                        seq: r.get(0)?,
                        stream: Stream::Plates,
                        event_id: r.get(2)?,
                        key: r.get(3)?,
                        body: r.get(4)?,
                        created_ms: r.get(5)?,
                        first_seen_ms: r.get(6)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (stream, mut rec) = row.map_err(|e| self.err(e))?;
            // A row of a stream this version does not know (written by a newer one) stays.
            if let Some(stream) = Stream::from_i64(stream) {
                rec.stream = stream;
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Deletes acknowledged events, all in one transaction; `removed[i]` says whether `seqs[i]`
    /// was still there (not dropped by the overflow policy, not a repeated acknowledgement).
    pub fn remove(&mut self, seqs: &[i64]) -> Result<Vec<bool>, OutboxError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let removed = self.transaction(|conn| {
            let mut del = conn.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            seqs.iter()
                .map(|s| del.execute(params![s]).map(|n| n > 0))
                .collect::<rusqlite::Result<Vec<bool>>>()
        })?;
        let n = removed.iter().filter(|r| **r).count() as u64;
        self.len = self.len.saturating_sub(n);
        if n > 0 {
            self.oldest_ms = if self.len == 0 {
                None
            } else {
                self.query_oldest_ms()?
            };
        }
        Ok(removed)
    }

    /// The streams that have events waiting.
    pub fn pending_streams(&self) -> Result<Vec<Stream>, OutboxError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT DISTINCT stream FROM outbox ORDER BY stream")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(|e| self.err(e))?;
        let mut v = Vec::new();
        for r in rows {
            if let Some(s) = Stream::from_i64(r.map_err(|e| self.err(e))?) {
                v.push(s);
            }
        }
        Ok(v)
    }

    pub fn cached_schema_id(
        &self,
        registry: &str,
        subject: &str,
        schema: &str,
    ) -> Result<Option<u32>, OutboxError> {
        self.conn
            .query_row(
                "SELECT id FROM schema_ids WHERE registry = ?1 AND subject = ?2 AND schema = ?3",
                params![registry, subject, schema],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|id| id as u32))
            .map_err(|e| self.err(e))
    }

    pub fn store_schema_id(
        &self,
        registry: &str,
        subject: &str,
        schema: &str,
        id: u32,
    ) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO schema_ids (registry, subject, schema, id) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![registry, subject, schema, id as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

impl crate::sink::Queue for Outbox {
    type Item = NewRecord;
    type Error = OutboxError;
    const WORDS: Words = Words {
        element: "kafkasink",
        queue: "outbox",
        items: "events",
        bound: "outbox-max-events",
        policy: "outbox-overflow",
        drop_oldest: "the oldest stored events are deleted",
        drop_newest: "new events are refused",
        kept: "events stay in the outbox and are sent when the link is back",
        delivered: "delivered",
        local: "no brokers set: local mode, events are kept in the outbox",
    };

    fn push(&mut self, items: &[NewRecord]) -> Result<PushOutcome, PushError<OutboxError>> {
        Outbox::push(self, items).map_err(PushError::from)
    }

    fn drop_oldest(&mut self, n: u64) -> Result<u64, OutboxError> {
        Outbox::drop_oldest(self, n)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn fill(&self) -> f64 {
        self.len as f64 / self.max_events as f64
    }

    fn describe(&self) -> String {
        format!("{} events", self.len)
    }

    fn oldest_created_ms(&self) -> Result<Option<i64>, OutboxError> {
        Ok(self.oldest_ms)
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn location(&self) -> &Path {
        &self.path
    }

    fn disk_full(e: &OutboxError) -> bool {
        matches!(e, OutboxError::Db { source, .. } if disk::sqlite_full(source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> NewRecord {
        NewRecord {
            stream: if i.is_multiple_of(2) {
                Stream::Plates
            } else {
                Stream::Vehicles
            },
            event_id: format!("e{i}"),
            key: "cam".into(),
            body: vec![i as u8],
            first_seen_ms: Some(1000 + i as i64),
        }
    }

    #[test]
    fn survives_reopen_in_order_and_removes_acked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut o = Outbox::open(dir.path(), 100, Overflow::DropOldest, false).unwrap();
            o.push(&(0..10).map(rec).collect::<Vec<_>>()).unwrap();
            assert_eq!(o.len(), 10);
        }
        let mut o = Outbox::open(dir.path(), 100, Overflow::DropOldest, false).unwrap();
        assert_eq!(o.len(), 10);
        let b = o.batch_after(0, 4).unwrap();
        let ids: Vec<_> = b.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, ["e0", "e1", "e2", "e3"]);
        assert_eq!(
            o.remove(&[b[0].seq, b[1].seq, b[1].seq]).unwrap(),
            [true, true, false]
        );
        assert_eq!(b[3].first_seen_ms, Some(1003));
        assert_eq!(o.len(), 8);
        let rest = o.batch_after(b[3].seq, 100).unwrap();
        assert_eq!(rest.len(), 6);
        assert_eq!(rest[0].event_id, "e4");
        assert_eq!(
            o.pending_streams().unwrap(),
            vec![Stream::Plates, Stream::Vehicles]
        );
    }

    #[test]
    fn seqs_keep_growing_after_the_outbox_emptied_and_oldest_is_tracked() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100, Overflow::DropOldest, false).unwrap();
        assert_eq!(o.oldest_created_ms(), None);
        let before = crate::event::now_ms();
        o.push(&(0..3).map(rec).collect::<Vec<_>>()).unwrap();
        let oldest = o.oldest_created_ms().unwrap();
        assert!(oldest >= before && oldest <= crate::event::now_ms());
        let b = o.batch_after(0, 10).unwrap();
        let cursor = b[2].seq;
        o.remove(&b.iter().map(|r| r.seq).collect::<Vec<_>>())
            .unwrap();
        assert_eq!((o.len(), o.oldest_created_ms()), (0, None));
        // A sender's cursor stays valid: new rows come after it.
        o.push(&[rec(7)]).unwrap();
        let after = o.batch_after(cursor, 10).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].event_id, "e7");
        assert!(o.oldest_created_ms().is_some());
    }

    #[test]
    fn an_outbox_has_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Outbox::open(dir.path(), 100, Overflow::DropOldest, false).unwrap();
        let e = Outbox::open(dir.path(), 100, Overflow::DropOldest, false)
            .err()
            .expect("a second owner is refused")
            .to_string();
        assert!(
            e.contains("in use by another kafkasink") && e.contains("outbox-location"),
            "{e}"
        );
    }

    #[test]
    fn outboxes_of_earlier_versions_are_read_and_extended() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The layout of earlier versions: AUTOINCREMENT, no first_seen_ms.
            let c = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE outbox (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     stream INTEGER NOT NULL,
                     event_id TEXT NOT NULL,
                     key TEXT NOT NULL,
                     body BLOB NOT NULL,
                     created_ms INTEGER NOT NULL);
                 INSERT INTO outbox (stream, event_id, key, body, created_ms)
                     VALUES (0, 'old1', 'cam', x'01', 5), (1, 'old2', 'cam', x'02', 6);",
            )
            .unwrap();
        }
        let mut o = Outbox::open(dir.path(), 100, Overflow::DropOldest, false).unwrap();
        assert_eq!((o.len(), o.oldest_created_ms()), (2, Some(5)));
        o.push(&[rec(3)]).unwrap();
        let rows = o.batch_after(0, 10).unwrap();
        let ids: Vec<_> = rows.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, ["old1", "old2", "e3"]);
        assert_eq!(rows[0].first_seen_ms, None);
        assert_eq!(rows[2].first_seen_ms, Some(1003));
        assert!(rows[2].seq > rows[1].seq);
    }

    #[test]
    fn overflow_policies() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 5, Overflow::DropOldest, false).unwrap();
        let r = o.push(&(0..4).map(rec).collect::<Vec<_>>()).unwrap();
        assert_eq!(r.dropped, 0);
        let r = o.push(&(4..7).map(rec).collect::<Vec<_>>()).unwrap();
        assert_eq!((r.stored, r.dropped), (3, 2));
        assert_eq!(o.len(), 5);
        let ids: Vec<_> = o
            .batch_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert_eq!(ids, ["e2", "e3", "e4", "e5", "e6"]);
        let r = o.push(&(7..20).map(rec).collect::<Vec<_>>()).unwrap();
        assert_eq!(o.len(), 5);
        assert_eq!(r.dropped, 13);
        assert_eq!(o.batch_after(0, 10).unwrap()[0].event_id, "e15");

        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 5, Overflow::DropNewest, false).unwrap();
        o.push(&(0..4).map(rec).collect::<Vec<_>>()).unwrap();
        let r = o.push(&(4..7).map(rec).collect::<Vec<_>>()).unwrap();
        assert_eq!((r.stored, r.dropped), (1, 2));
        let ids: Vec<_> = o
            .batch_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4"]);
    }

    #[test]
    fn schema_ids_are_cached_per_registry_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path(), 5, Overflow::DropOldest, false).unwrap();
        assert_eq!(
            o.cached_schema_id("http://r", "t-value", "{}").unwrap(),
            None
        );
        o.store_schema_id("http://r", "t-value", "{}", 7).unwrap();
        assert_eq!(
            o.cached_schema_id("http://r", "t-value", "{}").unwrap(),
            Some(7)
        );
        assert_eq!(
            o.cached_schema_id("http://other", "t-value", "{}").unwrap(),
            None
        );
    }

    #[test]
    fn unusable_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = Outbox::open(&file.join("outbox"), 5, Overflow::DropOldest, false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot create outbox directory") && e.contains("file/outbox"),
            "{e}"
        );
    }
}
