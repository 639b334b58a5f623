// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::alerts::AlertTracker;
use super::lists::{MaxDefaults, Watchlists};
use super::reload::{self, ListFiles};
use crate::event;
use crate::lock;
use crate::meta::{self, Alert, AlertStatus};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "alprwatch",
        gst::DebugColorFlags::empty(),
        Some("ALPR watchlist alerts"),
    )
});

/// Up to two OCR confusions and no other edit. One ordinary substitution (1.0) is not forgiven
/// by default: on the drive-by clip, whose plates are a dense series (RK###A?), 1.0 made
/// wildcard entries alert 16 other cars.
const DEFAULT_MAX_DISTANCE: f64 = 0.6;
const DEFAULT_RELOAD_INTERVAL: u32 = 1000;

#[derive(Debug, Clone)]
struct Settings {
    lists: Option<String>,
    max_distance: f64,
    list_max_distance: Option<String>,
    reload_interval: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lists: None,
            max_distance: DEFAULT_MAX_DISTANCE,
            list_max_distance: None,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    events: u64,
    alerts: u64,
    updates: u64,
    retractions: u64,
    reloads: u64,
    reload_failures: u64,
}

struct State {
    lists: Arc<Watchlists>,
    files: ListFiles,
    defaults: MaxDefaults,
    tracker: AlertTracker,
    counters: Counters,
}

#[derive(Default)]
pub struct AlprWatch {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for AlprWatch {
    const NAME: &'static str = "GstAlprWatch";
    type Type = super::AlprWatch;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AlprWatch {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("lists")
                    .nick("Lists")
                    .blurb(
                        "Watchlist CSV files, `,`-separated (header list,pattern,label,\
                         max_distance,expires[,kind]); required. Reloaded when they change \
                         while playing",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("max-distance")
                    .nick("Maximum distance")
                    .blurb(
                        "Largest weighted distance at which an entry with an empty max_distance \
                         matches (an OCR confusion such as 0/O costs 0.3, another edit 1)",
                    )
                    .minimum(0.0)
                    .maximum(super::lists::MAX_DISTANCE_LIMIT as f64)
                    .default_value(DEFAULT_MAX_DISTANCE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("list-max-distance")
                    .nick("Maximum distance per list")
                    .blurb(
                        "Per-list defaults for entries with an empty max_distance, \
                         `list=distance,...` (e.g. gate=0,hot=1.2); lists not named use \
                         max-distance",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("reload-interval")
                    .nick("Reload interval")
                    .blurb(
                        "Milliseconds between checks of the list files for changes (modification \
                         time and size); 0 = never reload",
                    )
                    .maximum(3_600_000)
                    .default_value(DEFAULT_RELOAD_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Lists and entries loaded, events matched, alerts (new, updated, \
                         retracted), reloads and failed reloads",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "lists" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing lists from {:?} to {v:?}",
                    s.lists
                );
                s.lists = v;
            }
            "max-distance" => {
                let v: f64 = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing max-distance from {} to {v}",
                    s.max_distance
                );
                s.max_distance = v;
            }
            "list-max-distance" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing list-max-distance from {:?} to {v:?}",
                    s.list_max_distance
                );
                s.list_max_distance = v;
            }
            "reload-interval" => {
                let v: u32 = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing reload-interval from {} to {v}",
                    s.reload_interval
                );
                s.reload_interval = v;
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.stats().to_value();
        }
        let s = lock(&self.settings);
        match pspec.name() {
            "lists" => s.lists.to_value(),
            "max-distance" => s.max_distance.to_value(),
            "list-max-distance" => s.list_max_distance.to_value(),
            "reload-interval" => s.reload_interval.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AlprWatch {}

impl ElementImpl for AlprWatch {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ALPR watchlist alerts",
                "Filter/Analyzer/Video",
                "Matches plate events (alpr-events meta) against watchlists, OCR confusions \
                 forgiven, and raises alerts (alpr-alerts meta, alpr-alert messages)",
                "gst-alpr developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::video::analyser_pad_templates(&gst::Caps::new_any()));
        TEMPLATES.as_ref()
    }
}

impl AlprWatch {
    fn stats(&self) -> gst::Structure {
        let state = lock(&self.state);
        let (c, lists, entries) = state
            .as_ref()
            .map(|s| {
                (
                    s.counters,
                    s.lists.lists().len() as u64,
                    s.lists.entry_count() as u64,
                )
            })
            .unwrap_or_default();
        gst::Structure::builder("alprwatch-stats")
            .field("lists", lists)
            .field("entries", entries)
            .field("events", c.events)
            .field("alerts", c.alerts)
            .field("updates", c.updates)
            .field("retractions", c.retractions)
            .field("reloads", c.reloads)
            .field("reload-failures", c.reload_failures)
            .build()
    }

    /// Reloads the lists when a file changed: the new lists replace the old ones whole, or, if
    /// a file is bad, the old ones stay and a warning names file and line.
    fn maybe_reload(&self, state: &mut State) {
        if !state.files.changed(Instant::now()) {
            return;
        }
        let started = Instant::now();
        match Watchlists::load(state.files.paths(), &state.defaults) {
            Ok(wl) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "reloaded {} entries in {} lists ({:.1} ms)",
                    wl.entry_count(),
                    wl.lists().len(),
                    started.elapsed().as_secs_f64() * 1000.0
                );
                state.lists = Arc::new(wl);
                state.counters.reloads += 1;
            }
            Err(e) => {
                state.counters.reload_failures += 1;
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Read,
                    ("watchlist reload failed, the previous lists stay in force: {e}")
                );
            }
        }
    }
}

impl BaseTransformImpl for AlprWatch {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        let s = lock(&self.settings).clone();
        let paths = reload::parse_property(s.lists.as_deref().unwrap_or(""))
            .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("{e}")))?;
        let interval =
            (s.reload_interval > 0).then(|| Duration::from_millis(u64::from(s.reload_interval)));
        let files = ListFiles::new(paths, interval);
        let defaults = MaxDefaults::parse(
            s.max_distance as f32,
            s.list_max_distance.as_deref().unwrap_or(""),
        )
        .map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ("property `list-max-distance`: {e}")
            )
        })?;
        let lists = Watchlists::load(files.paths(), &defaults).map_err(|e| {
            gst::error_msg!(gst::ResourceError::OpenRead, ("property `lists`: {e}"))
        })?;
        gst::info!(
            CAT,
            imp = self,
            "{} entries in {} lists",
            lists.entry_count(),
            lists.lists().len()
        );
        *lock(&self.state) = Some(State {
            lists: Arc::new(lists),
            files,
            defaults,
            tracker: AlertTracker::default(),
            counters: Counters::default(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        lock(&self.state).take();
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let events = match event::read(buf) {
            Ok(ev) => ev,
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                return Err(gst::FlowError::Error);
            }
        };
        let alerts = {
            let mut guard = lock(&self.state);
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            self.maybe_reload(state);
            if events.is_empty() {
                return Ok(gst::FlowSuccess::Ok);
            }
            let now = event::now_ms();
            let mut alerts: Vec<Alert> = Vec::new();
            for (ev, _) in &events {
                state.counters.events += 1;
                let hits = state.lists.hits(&ev.plate_text, now);
                alerts.extend(state.tracker.on_event(ev, hits, now));
            }
            for a in &alerts {
                match a.status {
                    AlertStatus::New => {
                        state.counters.alerts += 1;
                        crate::metrics::get()
                            .alerts
                            .with_label_values(&[a.list.as_str(), a.camera_id.as_str()])
                            .inc();
                    }
                    AlertStatus::Updated => state.counters.updates += 1,
                    AlertStatus::Retracted => state.counters.retractions += 1,
                }
            }
            alerts
        };
        if alerts.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        if let Err(e) = meta::attach_alerts(buf, &alerts) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("cannot attach the alpr-alerts meta: {e}")
            );
            return Err(gst::FlowError::Error);
        }
        for a in &alerts {
            gst::info!(
                CAT,
                imp = self,
                "{} alert: plate {} (event {} revision {}) list {} entry {:?} distance {:.2}",
                a.status.as_str(),
                a.plate_text,
                a.event_id,
                a.revision,
                a.list,
                a.entry,
                a.distance
            );
            let msg = gst::message::Element::builder(a.to_structure())
                .src(&*self.obj())
                .build();
            let _ = self.obj().post_message(msg);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
