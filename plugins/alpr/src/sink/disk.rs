// SPDX-License-Identifier: MIT OR Apache-2.0
//! Free space on a filesystem, and telling a full disk from other write errors.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Bytes an unprivileged process may still write on the filesystem holding `path` (its nearest
/// existing ancestor when `path` does not exist yet).
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() || p.as_os_str().is_empty() {
            p = PathBuf::from(".");
            break;
        }
    }
    let c = CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Whether an I/O error says the disk (or the user's quota) is full.
pub fn io_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == io::ErrorKind::StorageFull
}

/// Whether a SQLite error says the database or the disk is full (`SQLITE_FULL`: SQLite's unix
/// layer reports a write that failed with ENOSPC so).
pub fn sqlite_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_existing_and_future_paths() {
        let dir = tempfile::tempdir().unwrap();
        let here = free_bytes(dir.path()).unwrap();
        assert!(here > 0);
        let later = free_bytes(&dir.path().join("not/yet/there")).unwrap();
        // Same filesystem; other processes may write in between.
        assert!(
            later.abs_diff(here) < here / 2 + (64 << 20),
            "{here} {later}"
        );
        assert!(io_full(&io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(!io_full(&io::Error::from_raw_os_error(libc::EACCES)));
    }
}
