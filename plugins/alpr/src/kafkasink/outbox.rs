// SPDX-License-Identifier: MIT OR Apache-2.0
//! The durable outbox: every accepted event is committed to a local SQLite database before
//! anything is sent, and deleted only when the broker acknowledged it.
//!
//! Why SQLite (rusqlite, bundled): a commit in WAL mode is atomic and survives a killed process
//! (the WAL is in the OS page cache the moment `COMMIT` returns; with `fsync` on it also survives
//! power loss), recovery after a crash is automatic on open, the file is one portable database a
//! user can inspect with `sqlite3`, and an `INTEGER PRIMARY KEY` gives the replay order for free.
//! redb would do too, but SQLite's crash recovery has decades of field use behind it.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    DropOldest,
    DropNewest,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot create outbox directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
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
}

#[derive(Debug, Clone)]
pub struct Record {
    pub seq: i64,
    pub stream: Stream,
    pub event_id: String,
    pub key: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    pub stored: u64,
    /// Events lost to the overflow policy by this push (old ones or new ones).
    pub dropped: u64,
}

pub struct Outbox {
    conn: Connection,
    path: PathBuf,
    max_events: u64,
    overflow: Overflow,
    len: u64,
}

pub const FILE_NAME: &str = "outbox.sqlite";

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
        let conn = crate::store::open_wal(&path, fsync).map_err(db)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 stream INTEGER NOT NULL,
                 event_id TEXT NOT NULL,
                 key TEXT NOT NULL,
                 body BLOB NOT NULL,
                 created_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS schema_ids (
                 registry TEXT NOT NULL,
                 subject TEXT NOT NULL,
                 schema TEXT NOT NULL,
                 id INTEGER NOT NULL,
                 PRIMARY KEY (registry, subject, schema));",
        )
        .map_err(db)?;
        let len: i64 = conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
            .map_err(db)?;
        Ok(Outbox {
            conn,
            path,
            max_events: max_events.max(1),
            overflow,
            len: len as u64,
        })
    }

    fn err(&self, source: rusqlite::Error) -> OutboxError {
        OutboxError::Db {
            path: self.path.clone(),
            source,
        }
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
        let tx = self.conn.transaction().map_err(|e| OutboxError::Db {
            path: self.path.clone(),
            source: e,
        })?;
        let mut dropped_old = 0u64;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO outbox (stream, event_id, key, body, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| OutboxError::Db {
                    path: self.path.clone(),
                    source: e,
                })?;
            // With drop-oldest and more new events than fit, the newest `max_events` win.
            let skip = (n - take) as usize;
            let slice = match self.overflow {
                Overflow::DropOldest => &records[skip..],
                Overflow::DropNewest => &records[..take as usize],
            };
            for r in slice {
                ins.execute(params![r.stream as i64, r.event_id, r.key, r.body, now])
                    .map_err(|e| OutboxError::Db {
                        path: self.path.clone(),
                        source: e,
                    })?;
            }
            let total = self.len + take;
            if self.overflow == Overflow::DropOldest && total > self.max_events {
                let excess = total - self.max_events;
                dropped_old = tx
                    .execute(
                        "DELETE FROM outbox WHERE seq IN \
                         (SELECT seq FROM outbox ORDER BY seq LIMIT ?1)",
                        params![excess as i64],
                    )
                    .map_err(|e| OutboxError::Db {
                        path: self.path.clone(),
                        source: e,
                    })? as u64;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.len = self.len + take - dropped_old;
        Ok(PushOutcome {
            stored: take,
            dropped: drop_new + dropped_old,
        })
    }

    /// Up to `limit` events after `after_seq`, oldest first.
    pub fn batch_after(&self, after_seq: i64, limit: usize) -> Result<Vec<Record>, OutboxError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, stream, event_id, key, body FROM outbox WHERE seq > ?1 \
                 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![after_seq, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, stream, event_id, key, body) = row.map_err(|e| self.err(e))?;
            // A row of a stream this version does not know (written by a newer one) stays.
            if let Some(stream) = Stream::from_i64(stream) {
                out.push(Record {
                    seq,
                    stream,
                    event_id,
                    key,
                    body,
                });
            }
        }
        Ok(out)
    }

    /// Deletes acknowledged events; returns how many were still there.
    pub fn remove(&mut self, seqs: &[i64]) -> Result<u64, OutboxError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction().map_err(|e| OutboxError::Db {
            path: self.path.clone(),
            source: e,
        })?;
        let mut removed = 0u64;
        {
            let mut del = tx
                .prepare_cached("DELETE FROM outbox WHERE seq = ?1")
                .map_err(|e| OutboxError::Db {
                    path: self.path.clone(),
                    source: e,
                })?;
            for s in seqs {
                removed += del.execute(params![s]).map_err(|e| OutboxError::Db {
                    path: self.path.clone(),
                    source: e,
                })? as u64;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        self.len = self.len.saturating_sub(removed);
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
        assert_eq!(o.remove(&[b[0].seq, b[1].seq, b[1].seq]).unwrap(), 2);
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
