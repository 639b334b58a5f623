// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::csv::{AppendError, CsvLog};
use crate::event;
use crate::sink::{DEFAULT_MIN_FREE_SPACE, disk, lock};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "alprcsvsink",
        gst::DebugColorFlags::empty(),
        Some("ALPR plate event CSV writer"),
    )
});

const DEFAULT_LOCATION: &str = "output/plate_events.csv";
const DEFAULT_SYNC_WRITES: bool = true;

#[derive(Debug, Clone)]
struct Settings {
    location: String,
    sync_writes: bool,
    min_free_space: u64,
    alerts_location: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: DEFAULT_LOCATION.into(),
            sync_writes: DEFAULT_SYNC_WRITES,
            min_free_space: DEFAULT_MIN_FREE_SPACE,
            alerts_location: None,
        }
    }
}

#[derive(Default)]
pub struct AlprCsvSink {
    settings: Mutex<Settings>,
    log: Mutex<Option<CsvLog>>,
    /// Rows are being lost to a full disk (one warning per episode).
    dropping: AtomicBool,
    alerts: Mutex<Option<CsvLog>>,
}

impl AlprCsvSink {
    /// `n` events not written for lack of space (`why`): counted in
    /// `alpr_sink_dropped_total`, one bus warning per episode. The pipeline goes on.
    fn dropped(&self, n: usize, why: &str) {
        crate::metrics::get()
            .sink_dropped
            .with_label_values(&[self.obj().name().as_str()])
            .inc_by(n as u64);
        if !self.dropping.swap(true, Ordering::SeqCst) {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::NoSpaceLeft,
                ("{why}: plate events and alerts are not written to their CSV files until \
                     there is room again"),
                ["alpr_sink_dropped_total counts them; min-free-space sets the room to keep"]
            );
        }
        gst::warning!(CAT, imp = self, "{why}: {n} rows not written");
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AlprCsvSink {
    const NAME: &'static str = "GstAlprCsvSink";
    type Type = super::AlprCsvSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for AlprCsvSink {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_sync(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("CSV file the plate events are appended to (created with its folder)")
                    .default_value(Some(DEFAULT_LOCATION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("sync-writes")
                    .nick("Sync writes")
                    .blurb("fsync the file after each buffer's events (survives power loss)")
                    .default_value(DEFAULT_SYNC_WRITES)
                    .mutable_ready()
                    .build(),
                crate::sink::min_free_space_pspec(
                    "the CSV file",
                    "a buffer's rows are not written (one warning per episode; \
                     alpr_sink_dropped_total counts them)",
                ),
                glib::ParamSpecString::builder("alerts-location")
                    .nick("Alerts location")
                    .blurb(
                        "CSV file the watchlist alerts of the alpr-alerts meta (alprwatch) are \
                         appended to (created with its folder); unset = alerts are not written",
                    )
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "location" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                let v = v.unwrap_or_else(|| DEFAULT_LOCATION.into());
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing location from {} to {v}",
                    s.location
                );
                s.location = v;
            }
            "sync-writes" => {
                s.sync_writes = value.get().expect("type checked upstream");
            }
            "min-free-space" => {
                let v: u64 = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing min-free-space from {} to {v} bytes",
                    s.min_free_space
                );
                s.min_free_space = v;
            }
            "alerts-location" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing alerts-location from {:?} to {v:?}",
                    s.alerts_location
                );
                s.alerts_location = v;
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "location" => s.location.to_value(),
            "sync-writes" => s.sync_writes.to_value(),
            "min-free-space" => s.min_free_space.to_value(),
            "alerts-location" => s.alerts_location.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

crate::sink::sink_element_impl!(
    AlprCsvSink,
    "ALPR event CSV sink",
    "Sink/File",
    "Appends the plate events carried by buffers (alpr-events meta) to a CSV file"
);

impl BaseSinkImpl for AlprCsvSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        let s = lock(&self.settings).clone();
        let (log, report) = CsvLog::open(std::path::Path::new(&s.location), s.sync_writes)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{e}")))?;
        if report.repaired_bytes > 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "{}: cut off a partial last row ({} bytes) left by an interrupted write",
                    s.location,
                    report.repaired_bytes
                )
            );
        }
        gst::info!(
            CAT,
            imp = self,
            "appending to {} ({} rows)",
            s.location,
            report.rows
        );
        *lock(&self.log) = Some(log);
        if let Some(loc) = &s.alerts_location {
            let (alerts, report) = CsvLog::open_with_header(
                std::path::Path::new(loc),
                s.sync_writes,
                super::csv::ALERT_HEADER,
            )
            .map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    ("property `alerts-location`: {e}")
                )
            })?;
            if report.repaired_bytes > 0 {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    (
                        "{loc}: cut off a partial last row ({} bytes) left by an interrupted write",
                        report.repaired_bytes
                    )
                );
            }
            *lock(&self.alerts) = Some(alerts);
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        lock(&self.log).take();
        lock(&self.alerts).take();
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let alerts = if lock(&self.alerts).is_some() {
            crate::meta::read_alerts(buffer).map_err(|e| {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                gst::FlowError::Error
            })?
        } else {
            Vec::new()
        };
        let events: Vec<_> = match event::read(buffer) {
            Ok(ev) => ev.into_iter().map(|(e, _)| e).collect(),
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                return Err(gst::FlowError::Error);
            }
        };
        let min_free = lock(&self.settings).min_free_space;
        let mut full = false;
        if !alerts.is_empty() {
            full |= self.write(&self.alerts, min_free, alerts.len(), |log| {
                log.append_alerts(&alerts)
            })?;
        }
        if !events.is_empty() {
            full |= self.write(&self.log, min_free, events.len(), |log| log.append(&events))?;
        }
        let wrote = !alerts.is_empty() || !events.is_empty();
        if wrote && !full {
            self.dropping.store(false, Ordering::SeqCst);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

impl AlprCsvSink {
    /// Appends `n` rows to `file` unless its disk is (nearly) full: then they are counted as
    /// dropped and true is returned. Any other write failure is an error.
    fn write(
        &self,
        file: &Mutex<Option<CsvLog>>,
        min_free: u64,
        n: usize,
        append: impl FnOnce(&mut CsvLog) -> Result<(), AppendError>,
    ) -> Result<bool, gst::FlowError> {
        let mut guard = lock(file);
        let log = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let low = match disk::free_bytes(&log.path) {
            Ok(free) if free < min_free => Some(format!(
                "{free} bytes free on the filesystem of {}, under min-free-space ({min_free})",
                log.path.display()
            )),
            _ => None,
        };
        let lost = match low {
            Some(why) => Some((n, why)),
            None => match append(log) {
                Ok(()) => None,
                Err(e) if e.disk_full => Some((n - e.written, e.message)),
                Err(e) => {
                    drop(guard);
                    gst::element_imp_error!(self, gst::ResourceError::Write, ("{}", e.message));
                    return Err(gst::FlowError::Error);
                }
            },
        };
        drop(guard);
        Ok(match lost {
            Some((n, why)) => {
                self.dropped(n, &why);
                true
            }
            None => false,
        })
    }
}
