// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::csv::CsvLog;
use crate::event;

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
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: DEFAULT_LOCATION.into(),
            sync_writes: DEFAULT_SYNC_WRITES,
        }
    }
}

#[derive(Default)]
pub struct AlprCsvSink {
    settings: Mutex<Settings>,
    log: Mutex<Option<CsvLog>>,
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
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
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
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "location" => s.location.to_value(),
            "sync-writes" => s.sync_writes.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AlprCsvSink {}

impl ElementImpl for AlprCsvSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ALPR event CSV sink",
                "Sink/File",
                "Appends the plate events carried by buffers (alpr-events meta) to a CSV file",
                "gst-alpr developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for AlprCsvSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        let s = self.settings.lock().unwrap().clone();
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
        *self.log.lock().unwrap() = Some(log);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.log.lock().unwrap().take();
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let events = match event::read(buffer) {
            Ok(ev) => ev,
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                return Err(gst::FlowError::Error);
            }
        };
        if events.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let events: Vec<_> = events.into_iter().map(|(e, _)| e).collect();
        let mut log = self.log.lock().unwrap();
        let log = log.as_mut().ok_or(gst::FlowError::Flushing)?;
        log.append(&events).map_err(|e| {
            gst::element_imp_error!(self, gst::ResourceError::Write, ("{e}"));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
