// SPDX-License-Identifier: MIT OR Apache-2.0
//! The embedded store both sinks keep their durable queues in: one SQLite database per queue,
//! opened the same way (kafkasink's event outbox, s3sink's upload index).
//!
//! WAL mode: a commit is one append and survives a killed process the moment `COMMIT` returns
//! (with `fsync` also a power loss); readers never block the writer; recovery after a crash is
//! automatic on open.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// Opens (creating it if needed) the SQLite database at `path` in WAL mode. `fsync = true`
/// makes every commit durable against power loss (`synchronous=FULL`), at one fsync each.
pub fn open_wal(path: &Path, fsync: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    Ok(conn)
}

/// Page size of the databases [`open_owned_queue`] creates.
pub const QUEUE_PAGE_SIZE: u64 = 1024;
/// WAL size after which [`open_owned_queue`] databases are checkpointed.
pub const QUEUE_CHECKPOINT_BYTES: u64 = 16 << 20;

/// Like [`open_wal`], for a queue that one connection owns for its whole life and commits to
/// once per item (kafkasink commits every buffer before `render` returns):
///
/// - `locking_mode=EXCLUSIVE`, set before the first WAL access, so SQLite takes the file lock
///   once and never builds the shared-memory index: no lock system calls per transaction. A
///   second connection (another element or process) gets `SQLITE_BUSY` at open instead of
///   sending the same rows a second time; the file can be inspected once the owner closed it.
/// - 1 KiB pages (new files only): a commit appends the pages it changed to the WAL, and a
///   queue row of a few hundred bytes changes one leaf page.
/// - A checkpoint every [`QUEUE_CHECKPOINT_BYTES`] of WAL instead of SQLite's 4 MiB default.
///   With `synchronous=NORMAL` the checkpoints are the only fsyncs (two each), and the
///   checkpoint copies only the newest copy of each page: fewer checkpoints, less work.
///
/// Durability: `fsync = false` (`synchronous=NORMAL`): a commit is in the OS page cache when it
/// returns, so it survives a killed process; a power loss or kernel crash may lose the commits
/// not yet written back by the kernel or a checkpoint (typically the last seconds), never the
/// database's consistency. `fsync = true` (`synchronous=FULL`): every commit also survives
/// power loss, at one fsync each.
pub fn open_owned_queue(path: &Path, fsync: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    // Only applies to a database without tables yet (a new file).
    conn.pragma_update(None, "page_size", QUEUE_PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    let page: u64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    let pages = QUEUE_CHECKPOINT_BYTES / page.max(512);
    conn.pragma_update(None, "wal_autocheckpoint", pages)?;
    // After a checkpoint the WAL is reused from its start; cap what stays allocated on disk.
    conn.pragma_update(None, "journal_size_limit", QUEUE_CHECKPOINT_BYTES)?;
    Ok(conn)
}
