// SPDX-License-Identifier: MIT OR Apache-2.0
//! The list files of the `lists` property and the cheap check of whether they changed
//! (modification time and size, looked at no more often than the reload interval).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// The files of a `lists` property value (`,`-separated, blanks around names ignored).
pub fn parse_property(value: &str) -> Result<Vec<PathBuf>, String> {
    let paths: Vec<PathBuf> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    if paths.is_empty() {
        return Err(
            "property `lists`: no list file (expected one or more CSV files, \
                    `,`-separated)"
                .into(),
        );
    }
    Ok(paths)
}

type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &PathBuf) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

pub struct ListFiles {
    paths: Vec<PathBuf>,
    stamps: Vec<Stamp>,
    interval: Option<Duration>,
    checked: Instant,
}

impl ListFiles {
    /// Takes the files' stamps now: call it before reading them, so that a change made while
    /// they are read is seen by the next check. `interval` `None`: never check.
    pub fn new(paths: Vec<PathBuf>, interval: Option<Duration>) -> Self {
        let stamps = paths.iter().map(stamp).collect();
        ListFiles {
            paths,
            stamps,
            interval,
            checked: Instant::now(),
        }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether a file changed since the last check that said so (or since [`ListFiles::new`]);
    /// looks at the files only when the interval has passed since the last look.
    pub fn changed(&mut self, now: Instant) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        if now.saturating_duration_since(self.checked) < interval {
            return false;
        }
        self.checked = now;
        let stamps: Vec<Stamp> = self.paths.iter().map(stamp).collect();
        if stamps != self.stamps {
            self.stamps = stamps;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_property_lists_files() {
        assert_eq!(
            parse_property(" a.csv, /x/b.csv ,").unwrap(),
            vec![PathBuf::from("a.csv"), PathBuf::from("/x/b.csv")]
        );
        assert!(parse_property(" , ").unwrap_err().contains("`lists`"));
    }

    #[test]
    fn a_change_is_seen_once_and_only_after_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.csv");
        std::fs::write(&p, "a").unwrap();
        let t0 = Instant::now();
        let mut f = ListFiles::new(vec![p.clone()], Some(Duration::from_secs(1)));
        std::fs::write(&p, "abc").unwrap();
        assert!(!f.changed(t0), "not looked at before the interval");
        let t1 = t0 + Duration::from_secs(2);
        assert!(f.changed(t1));
        assert!(!f.changed(t1 + Duration::from_secs(2)), "seen once");
        std::fs::remove_file(&p).unwrap();
        assert!(
            f.changed(t1 + Duration::from_secs(4)),
            "a removed file is a change"
        );
        let mut never = ListFiles::new(vec![p.clone()], None);
        std::fs::write(&p, "x").unwrap();
        assert!(!never.changed(t1 + Duration::from_secs(60)));
    }
}
