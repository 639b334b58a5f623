// SPDX-License-Identifier: MIT OR Apache-2.0
//! The plate-event CSV file: one header, one row per event, appended whole.
//!
//! Crash safety: each row is written with a single `write` on a file opened with `O_APPEND`, so
//! rows never interleave; a process killed in the middle of a row leaves at most one partial last
//! line, which [`CsvLog::open`] cuts off on the next start (with a warning) before appending.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::event::PlateEvent;
use crate::meta::Alert;

pub const HEADER: &str = "event_id,camera_id,track_id,revision,plate_text,plate_confidence,reads,\
region,vehicle_class,vehicle_confidence,first_seen_ms,last_seen_ms,frame_number,plate_x,plate_y,\
plate_w,plate_h,quality,image_key,source";

/// Header of the alerts file (`alerts-location`): one row per alprwatch alert.
pub const ALERT_HEADER: &str = "alerted_ms,status,list,kind,entry,label,distance,plate_text,\
event_id,camera_id,track_id,revision,first_seen_ms";

pub struct CsvLog {
    file: File,
    pub path: PathBuf,
    sync: bool,
    header: &'static str,
    /// Bytes of whole rows in the file: where a failed append is cut back to.
    len: u64,
}

/// An append that failed after `written` rows.
#[derive(Debug)]
pub struct AppendError {
    pub written: usize,
    /// The disk is full (the rows not written are lost to it, the file is whole rows).
    pub disk_full: bool,
    pub message: String,
}

/// What opening found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub rows: usize,
    /// Bytes of a torn last line that were cut off.
    pub repaired_bytes: u64,
}

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV row (with its newline) for an event.
pub fn row(e: &PlateEvent) -> String {
    let opt_f = |v: Option<f32>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    let cols = [
        field(&e.event_id),
        field(&e.camera_id),
        e.track_id.to_string(),
        e.revision.to_string(),
        field(&e.plate_text),
        format!("{:.4}", e.plate_confidence),
        e.reads.to_string(),
        field(e.region.as_deref().unwrap_or("")),
        field(e.vehicle_class.as_deref().unwrap_or("")),
        opt_f(e.vehicle_confidence),
        e.first_seen_ms.to_string(),
        e.last_seen_ms.to_string(),
        e.frame_number.to_string(),
        format!("{:.1}", e.plate_bbox.x),
        format!("{:.1}", e.plate_bbox.y),
        format!("{:.1}", e.plate_bbox.w),
        format!("{:.1}", e.plate_bbox.h),
        format!("{:.4}", e.quality),
        field(&e.image_key),
        field(&e.source),
    ];
    let mut line = cols.join(",");
    line.push('\n');
    line
}

/// One CSV row (with its newline) for an alert.
pub fn alert_row(a: &Alert) -> String {
    let cols = [
        a.alerted_ms.to_string(),
        a.status.as_str().to_string(),
        field(&a.list),
        field(&a.kind),
        field(&a.entry),
        field(&a.label),
        format!("{:.2}", a.distance),
        field(&a.plate_text),
        field(&a.event_id),
        field(&a.camera_id),
        a.track_id.to_string(),
        a.revision.to_string(),
        a.first_seen_ms.to_string(),
    ];
    let mut line = cols.join(",");
    line.push('\n');
    line
}

impl CsvLog {
    /// Opens (creating it and its folder if needed) for appending; repairs a torn last line and
    /// checks the header of an existing file.
    pub fn open(path: &Path, sync: bool) -> Result<(CsvLog, OpenReport), String> {
        Self::open_with_header(path, sync, HEADER)
    }

    /// Like [`CsvLog::open`], for a file with another header (the alerts file).
    pub fn open_with_header(
        path: &Path,
        sync: bool,
        header: &'static str,
    ) -> Result<(CsvLog, OpenReport), String> {
        let ctx = |e: std::io::Error| format!("CSV file {}: {e}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("CSV folder {}: {e}", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(ctx)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content).map_err(ctx)?;
        let mut report = OpenReport::default();
        if !content.is_empty() {
            let keep = content
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|p| p + 1)
                .unwrap_or(0);
            if keep < content.len() {
                report.repaired_bytes = (content.len() - keep) as u64;
                file.set_len(keep as u64).map_err(ctx)?;
                file.seek(SeekFrom::End(0)).map_err(ctx)?;
                content.truncate(keep);
            }
        }
        let mut len = content.len() as u64;
        if content.is_empty() {
            let header = format!("{header}\n");
            file.write_all(header.as_bytes()).map_err(ctx)?;
            len = header.len() as u64;
        } else {
            let first = content.split(|&b| b == b'\n').next().unwrap_or_default();
            if first != header.as_bytes() {
                return Err(format!(
                    "CSV file {} exists with a different header ({:?}); move it away or choose \
                     another `location`",
                    path.display(),
                    String::from_utf8_lossy(first)
                ));
            }
            report.rows = content.iter().filter(|&&b| b == b'\n').count() - 1;
        }
        Ok((
            CsvLog {
                file,
                path: path.to_path_buf(),
                sync,
                header,
                len,
            },
            report,
        ))
    }

    /// Appends rows for `events` (one write per row). A row whose write fails (a full disk)
    /// is cut off again, so the file holds whole rows only.
    pub fn append(&mut self, events: &[PlateEvent]) -> Result<(), AppendError> {
        debug_assert_eq!(self.header, HEADER);
        self.append_rows(events.iter().map(row).collect())
    }

    /// Appends rows for `alerts` (a file opened with [`ALERT_HEADER`]), like [`CsvLog::append`].
    pub fn append_alerts(&mut self, alerts: &[Alert]) -> Result<(), AppendError> {
        debug_assert_eq!(self.header, ALERT_HEADER);
        self.append_rows(alerts.iter().map(alert_row).collect())
    }

    fn append_rows(&mut self, rows: Vec<String>) -> Result<(), AppendError> {
        for (i, line) in rows.iter().enumerate() {
            if let Err(err) = self.file.write_all(line.as_bytes()) {
                let _ = self.file.set_len(self.len);
                return Err(self.error(i, err));
            }
            self.len += line.len() as u64;
        }
        if self.sync && !rows.is_empty() {
            self.file
                .sync_data()
                .map_err(|err| self.error(rows.len(), err))?;
        }
        Ok(())
    }

    fn error(&self, written: usize, err: std::io::Error) -> AppendError {
        AppendError {
            written,
            disk_full: crate::sink::disk::io_full(&err),
            message: format!("CSV file {}: {err}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(text: &str) -> PlateEvent {
        PlateEvent {
            event_id: "id-1".into(),
            camera_id: "cam,1".into(),
            plate_text: text.into(),
            source: "h\"ost".into(),
            ..Default::default()
        }
    }

    #[test]
    fn header_rows_quoting_and_torn_line_repair() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/events.csv");
        let (mut log, rep) = CsvLog::open(&path, true).unwrap();
        assert_eq!(rep, OpenReport::default());
        log.append(&[ev("AB123"), ev("CD456")]).unwrap();
        drop(log);
        // A crash mid-row leaves a partial line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"id-3,cam,9,0,EF")
            .unwrap();
        let (mut log, rep) = CsvLog::open(&path, false).unwrap();
        assert_eq!(rep.rows, 2);
        assert_eq!(rep.repaired_bytes, 15);
        log.append(&[ev("GH789")]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], HEADER);
        assert!(
            lines[1].starts_with("id-1,\"cam,1\",0,0,AB123,"),
            "{}",
            lines[1]
        );
        assert!(lines[3].contains("GH789") && lines[3].ends_with("\"h\"\"ost\""));
    }

    #[test]
    fn alerts_have_their_own_file_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.csv");
        let (mut log, _) = CsvLog::open_with_header(&path, false, ALERT_HEADER).unwrap();
        let a = Alert {
            list: "hot".into(),
            kind: "deny".into(),
            entry: "RK3O0AG".into(),
            label: "stolen, red".into(),
            distance: 0.3,
            plate_text: "RK300AG".into(),
            event_id: "e1".into(),
            camera_id: "cam".into(),
            track_id: 4,
            revision: 1,
            first_seen_ms: 10,
            alerted_ms: 20,
            ..Default::default()
        };
        log.append_alerts(&[a]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{ALERT_HEADER}\n20,new,hot,deny,RK3O0AG,\"stolen, red\",0.30,RK300AG,e1,cam,4,1,10\n"
            )
        );
        // An events file is not an alerts file.
        let events = dir.path().join("events.csv");
        CsvLog::open(&events, false).unwrap();
        assert!(CsvLog::open_with_header(&events, false, ALERT_HEADER).is_err());
    }

    #[test]
    fn foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let e = CsvLog::open(&path, false).err().unwrap();
        assert!(e.contains("different header") && e.contains("x.csv"), "{e}");
    }
}
