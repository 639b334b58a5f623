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
