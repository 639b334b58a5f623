// SPDX-License-Identifier: MIT OR Apache-2.0
//! The durable upload queue: every crop is first written under the local directory (the file
//! is the payload), then indexed in a small SQLite database beside it (`.s3sink-queue.sqlite`,
//! opened like kafkasink's outbox, see [`crate::store`]). A row is deleted only once the object
//! store acknowledged the upload; rows are replayed in `seq` order on start and after every
//! reconnect.
//!
//! Crash safety: the file is written to a temporary name and renamed, then the row committed.
//! A kill between the two leaves a file without a row (never uploaded, never half-uploaded);
//! a committed row always names a complete file.
//!
//! Bound: the bytes of crops waiting for upload are at most `max_bytes`. Past that,
//! [`Overflow::DropOldest`] (the default) removes the oldest waiting crops, row and local file,
//! to make room (fresh plates matter most to a live system, and the bound protects the disk);
//! [`Overflow::DropNewest`] refuses new crops (neither saved nor queued). Either way the count is
//! returned so the element warns and counts; nothing is dropped silently.
//!
//! Retention of uploaded files: `-1` keeps them (the local directory is also the archive), `0`
//! deletes each file as soon as it is uploaded, `N` seconds deletes it N seconds after the upload
//! (the `uploaded` table remembers when, across restarts).

use std::path::{Component, Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

pub use crate::sink::{Overflow, PushOutcome};
use crate::sink::{PushError, Words, disk};

pub const FILE_NAME: &str = ".s3sink-queue.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot create local directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("upload queue database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// A crop to save and upload.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// Object key, also the file's path relative to the local directory.
    pub key: String,
    pub event_id: String,
    pub camera: String,
    pub plate: String,
    pub data: Vec<u8>,
}

/// A queued upload (the data is in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub seq: i64,
    pub key: String,
    pub event_id: String,
    pub camera: String,
    pub plate: String,
    pub bytes: u64,
    /// When the crop was queued, wall-clock ms since the UNIX epoch.
    pub created_ms: i64,
}

/// Checks that an object key is a safe relative file path: no absolute path, no `..`, no
/// empty segment. The error says why.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty image key".into());
    }
    if key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        return Err(format!(
            "image key {key:?} must be a relative path without empty segments"
        ));
    }
    for c in Path::new(key).components() {
        if !matches!(c, Component::Normal(_)) {
            return Err(format!("image key {key:?} must not contain `.` or `..`"));
        }
    }
    Ok(())
}

/// Writes `data` to `dir/key` atomically (temporary file, then rename), creating directories.
pub fn write_file(dir: &Path, key: &str, data: &[u8]) -> Result<PathBuf, QueueError> {
    let path = dir.join(key);
    let ferr = |p: &Path| {
        let p = p.to_path_buf();
        move |source| QueueError::File { path: p, source }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(ferr(parent))?;
    }
    let mut tmp = path.clone().into_os_string();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    // A failed write (a full disk) leaves no partial file behind.
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ferr(&path)(e)
        })?;
    Ok(path)
}

pub struct Queue {
    conn: Connection,
    dir: PathBuf,
    db_path: PathBuf,
    max_bytes: u64,
    overflow: Overflow,
    len: u64,
    bytes: u64,
}

impl Queue {
    /// Opens the queue of the local directory `dir` (created if needed).
    pub fn open(dir: &Path, max_bytes: u64, overflow: Overflow) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(dir).map_err(|source| QueueError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let db_path = dir.join(FILE_NAME);
        let db = |source| QueueError::Db {
            path: db_path.clone(),
            source,
        };
        let conn = crate::store::open_wal(&db_path, false).map_err(db)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS uploads (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 key TEXT NOT NULL,
                 event_id TEXT NOT NULL,
                 camera TEXT NOT NULL,
                 plate TEXT NOT NULL,
                 bytes INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS uploaded (
                 key TEXT PRIMARY KEY,
                 uploaded_ms INTEGER NOT NULL);",
        )
        .map_err(db)?;
        let (len, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM uploads",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)?;
        Ok(Queue {
            conn,
            dir: dir.to_path_buf(),
            db_path,
            max_bytes: max_bytes.max(1),
            overflow,
            len: len as u64,
            bytes: bytes as u64,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> QueueError + '_ {
        |source| QueueError::Db {
            path: self.db_path.clone(),
            source,
        }
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Crops waiting for upload.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the crops waiting for upload.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Saves each crop under the local directory and queues it, applying the overflow policy.
    /// Keys must have passed [`check_key`]. Each crop is saved and queued on its own: an error
    /// says how many were handled before it.
    pub fn push(&mut self, items: &[NewUpload]) -> Result<PushOutcome, PushError<QueueError>> {
        let mut out = PushOutcome::default();
        for (i, it) in items.iter().enumerate() {
            self.push_one(it, &mut out).map_err(|error| PushError {
                done: out,
                handled: i,
                error,
            })?;
        }
        Ok(out)
    }

    fn push_one(&mut self, it: &NewUpload, out: &mut PushOutcome) -> Result<(), QueueError> {
        let size = it.data.len() as u64;
        if size > self.max_bytes {
            out.dropped += 1;
            return Ok(());
        }
        if self.bytes + size > self.max_bytes {
            match self.overflow {
                Overflow::DropNewest => {
                    out.dropped += 1;
                    return Ok(());
                }
                Overflow::DropOldest => out.dropped += self.drop_for(size)?,
            }
        }
        let pending = self.key_pending(&it.key)?;
        write_file(&self.dir, &it.key, &it.data)?;
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO uploads (key, event_id, camera, plate, bytes, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    it.key,
                    it.event_id,
                    it.camera,
                    it.plate,
                    size as i64,
                    crate::event::now_ms()
                ])
            });
        if let Err(e) = inserted {
            // Not queued: the file would never be uploaded nor counted against the bound.
            if !pending {
                let _ = std::fs::remove_file(self.dir.join(&it.key));
            }
            return Err(self.err()(e));
        }
        self.len += 1;
        self.bytes += size;
        out.stored += 1;
        Ok(())
    }

    /// Removes the oldest waiting crops (rows and files) until `room` more bytes fit.
    fn drop_for(&mut self, room: u64) -> Result<u64, QueueError> {
        let mut dropped = 0;
        while self.bytes + room > self.max_bytes && self.drop_first()? {
            dropped += 1;
        }
        Ok(dropped)
    }

    /// Removes the oldest waiting crop, row and file; false when nothing waits.
    fn drop_first(&mut self) -> Result<bool, QueueError> {
        let Some(u) = self.batch_after(0, 1)?.pop() else {
            return Ok(false);
        };
        self.remove_row(u.seq, u.bytes)?;
        if !self.key_pending(&u.key)? {
            let _ = std::fs::remove_file(self.dir.join(&u.key));
        }
        Ok(true)
    }

    fn remove_row(&mut self, seq: i64, bytes: u64) -> Result<(), QueueError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM uploads WHERE seq = ?1")
            .and_then(|mut st| st.execute(params![seq]))
            .map_err(self.err())?;
        if n > 0 {
            self.len = self.len.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(bytes);
        }
        Ok(())
    }

    fn key_pending(&self, key: &str) -> Result<bool, QueueError> {
        self.conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM uploads WHERE key = ?1)")
            .and_then(|mut st| st.query_row(params![key], |r| r.get::<_, bool>(0)))
            .map_err(self.err())
    }

    /// Up to `limit` uploads after `after_seq`, oldest first.
    pub fn batch_after(&self, after_seq: i64, limit: usize) -> Result<Vec<Upload>, QueueError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, key, event_id, camera, plate, bytes, created_ms FROM uploads \
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![after_seq, limit as i64], |r| {
                Ok(Upload {
                    seq: r.get(0)?,
                    key: r.get(1)?,
                    event_id: r.get(2)?,
                    camera: r.get(3)?,
                    plate: r.get(4)?,
                    bytes: r.get::<_, i64>(5)? as u64,
                    created_ms: r.get(6)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// When the oldest waiting crop was queued (wall-clock ms), `None` when nothing waits.
    pub fn oldest_created_ms(&self) -> Result<Option<i64>, QueueError> {
        self.conn
            .prepare_cached("SELECT created_ms FROM uploads ORDER BY seq LIMIT 1")
            .and_then(|mut st| st.query_row([], |r| r.get::<_, i64>(0)).optional())
            .map_err(self.err())
    }

    /// The upload of `u` was acknowledged: forget it, and apply the retention of uploaded files
    /// (`retention_s`: -1 keep, 0 delete now, N delete N seconds from now).
    pub fn done(&mut self, u: &Upload, retention_s: i64) -> Result<(), QueueError> {
        self.remove_row(u.seq, u.bytes)?;
        if retention_s < 0 || self.key_pending(&u.key)? {
            return Ok(());
        }
        if retention_s == 0 {
            let _ = std::fs::remove_file(self.dir.join(&u.key));
        } else {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO uploaded (key, uploaded_ms) VALUES (?1, ?2)",
                )
                .and_then(|mut st| st.execute(params![u.key, crate::event::now_ms()]))
                .map_err(self.err())?;
        }
        Ok(())
    }

    /// A queued crop whose file is gone (deleted by hand): drop the row.
    pub fn forget(&mut self, u: &Upload) -> Result<(), QueueError> {
        self.remove_row(u.seq, u.bytes)
    }

    /// Deletes uploaded files older than `retention_s` seconds (as of `now_ms`); returns how
    /// many files were deleted. Files queued again under the same key are kept.
    pub fn sweep(&mut self, retention_s: i64, now_ms: i64) -> Result<u64, QueueError> {
        if retention_s < 0 {
            return Ok(0);
        }
        let cutoff = now_ms - retention_s * 1000;
        let keys: Vec<String> = {
            let mut st = self
                .conn
                .prepare_cached("SELECT key FROM uploaded WHERE uploaded_ms <= ?1 LIMIT 1000")
                .map_err(self.err())?;
            let rows = st
                .query_map(params![cutoff], |r| r.get::<_, String>(0))
                .map_err(self.err())?;
            rows.collect::<Result<_, _>>().map_err(self.err())?
        };
        let mut deleted = 0;
        for k in keys {
            if !self.key_pending(&k)? && std::fs::remove_file(self.dir.join(&k)).is_ok() {
                deleted += 1;
            }
            self.conn
                .prepare_cached("DELETE FROM uploaded WHERE key = ?1")
                .and_then(|mut st| st.execute(params![k]))
                .map_err(self.err())?;
        }
        Ok(deleted)
    }

    /// Whether uploaded files wait for the retention sweep.
    pub fn has_retained(&self) -> Result<bool, QueueError> {
        self.conn
            .query_row("SELECT EXISTS(SELECT 1 FROM uploaded)", [], |r| r.get(0))
            .map_err(self.err())
    }
}

impl crate::sink::Queue for Queue {
    type Item = NewUpload;
    type Error = QueueError;
    const WORDS: Words = Words {
        element: "s3sink",
        queue: "upload queue",
        items: "crops",
        bound: "queue-max-bytes",
        policy: "queue-overflow",
        drop_oldest: "the oldest waiting crops are deleted (queue and local file)",
        drop_newest: "new crops are refused (not saved)",
        kept: "crops stay in the local upload queue and are uploaded when the link is back",
        delivered: "uploaded",
        local: "no bucket or url set: local mode, crops are saved and kept under",
    };

    fn push(&mut self, items: &[NewUpload]) -> Result<PushOutcome, PushError<QueueError>> {
        Queue::push(self, items)
    }

    fn drop_oldest(&mut self, n: u64) -> Result<u64, QueueError> {
        let mut dropped = 0;
        while dropped < n && self.drop_first()? {
            dropped += 1;
        }
        Ok(dropped)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn fill(&self) -> f64 {
        self.bytes as f64 / self.max_bytes as f64
    }

    fn describe(&self) -> String {
        format!("{} crops, {} bytes", self.len, self.bytes)
    }

    fn oldest_created_ms(&self) -> Result<Option<i64>, QueueError> {
        Queue::oldest_created_ms(self)
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn location(&self) -> &Path {
        &self.dir
    }

    fn disk_full(e: &QueueError) -> bool {
        match e {
            QueueError::File { source, .. } | QueueError::Dir { source, .. } => {
                disk::io_full(source)
            }
            QueueError::Db { source, .. } => disk::sqlite_full(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(i: u32, size: usize) -> NewUpload {
        NewUpload {
            key: format!("2025-11-27/cam_track{i}.jpg"),
            event_id: format!("e{i}"),
            camera: "cam".into(),
            plate: format!("AB{i}"),
            data: vec![i as u8; size],
        }
    }

    #[test]
    fn survives_reopen_in_order_and_forgets_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut q = Queue::open(dir.path(), 1 << 20, Overflow::DropOldest).unwrap();
            q.push(&(0..5).map(|i| up(i, 10)).collect::<Vec<_>>())
                .unwrap();
            assert_eq!((q.len(), q.bytes()), (5, 50));
        }
        let mut q = Queue::open(dir.path(), 1 << 20, Overflow::DropOldest).unwrap();
        assert_eq!((q.len(), q.bytes()), (5, 50));
        let b = q.batch_after(0, 3).unwrap();
        let ids: Vec<_> = b.iter().map(|u| u.event_id.as_str()).collect();
        assert_eq!(ids, ["e0", "e1", "e2"]);
        let f0 = dir.path().join(&b[0].key);
        assert_eq!(std::fs::read(&f0).unwrap(), vec![0u8; 10]);
        q.done(&b[0], -1).unwrap();
        assert!(f0.exists(), "retention -1 keeps the file");
        q.done(&b[1], 0).unwrap();
        assert!(
            !dir.path().join(&b[1].key).exists(),
            "retention 0 deletes it"
        );
        q.done(&b[2], 60).unwrap();
        let f2 = dir.path().join(&b[2].key);
        assert!(f2.exists());
        assert_eq!(q.sweep(60, crate::event::now_ms()).unwrap(), 0);
        assert_eq!(q.sweep(60, crate::event::now_ms() + 61_000).unwrap(), 1);
        assert!(!f2.exists());
        assert!(!q.has_retained().unwrap());
        assert_eq!((q.len(), q.bytes()), (2, 20));
        assert_eq!(q.batch_after(b[2].seq, 10).unwrap()[0].event_id, "e3");
    }

    #[test]
    fn overflow_policies_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), 100, Overflow::DropOldest).unwrap();
        let r = q
            .push(&(0..4).map(|i| up(i, 30)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!((r.stored, r.dropped), (4, 1));
        assert_eq!((q.len(), q.bytes()), (3, 90));
        let first = &q.batch_after(0, 10).unwrap()[0];
        assert_eq!(first.event_id, "e1");
        assert!(
            !dir.path().join(up(0, 0).key).exists(),
            "dropped file deleted"
        );
        let r = q.push(&[up(9, 101)]).unwrap();
        assert_eq!((r.stored, r.dropped), (0, 1), "larger than the bound");

        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), 100, Overflow::DropNewest).unwrap();
        let r = q
            .push(&(0..4).map(|i| up(i, 30)).collect::<Vec<_>>())
            .unwrap();
        assert_eq!((r.stored, r.dropped), (3, 1));
        let ids: Vec<_> = q
            .batch_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|u| u.event_id)
            .collect();
        assert_eq!(ids, ["e0", "e1", "e2"]);
        assert!(
            !dir.path().join(up(3, 0).key).exists(),
            "refused: not saved"
        );
    }

    #[test]
    fn keys_must_be_relative_paths() {
        assert!(check_key("2025-11-27/cam_track1.jpg").is_ok());
        assert!(check_key("a.jpg").is_ok());
        for bad in [
            "",
            "/abs.jpg",
            "../up.jpg",
            "a/../b.jpg",
            "a//b.jpg",
            "./a.jpg",
            "d/",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unusable_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = Queue::open(&file.join("crops"), 5, Overflow::DropOldest)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot create local directory") && e.contains("file/crops"),
            "{e}"
        );
    }
}
