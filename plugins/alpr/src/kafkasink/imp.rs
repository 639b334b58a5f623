// SPDX-License-Identifier: MIT OR Apache-2.0
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::avro::{self, Stream};
use super::outbox::{NewRecord, Outbox};
use super::worker::{self, Notice, Observer, Shared, Worker};
use super::{OutboxOverflow, is_secret_setting, validate_brokers};
use crate::event;
use crate::link::{Link, LinkStatus};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "kafkasink",
        gst::DebugColorFlags::empty(),
        Some("ALPR events to Kafka"),
    )
});

const DEFAULT_PLATES_TOPIC: &str = "alpr.events.plates";
const DEFAULT_VEHICLES_TOPIC: &str = "alpr.events.vehicles";
const DEFAULT_RETRY_INTERVAL: u32 = 30;
const DEFAULT_OUTBOX_MAX_EVENTS: u64 = 1_000_000;
const DEFAULT_OUTBOX_FSYNC: bool = false;
const SERVICE: &str = "Kafka";
const REDACTED: &str = "*****";

#[derive(Debug, Clone)]
struct Settings {
    brokers: Option<String>,
    schema_registry: Option<String>,
    plates_topic: String,
    vehicles_topic: String,
    kafka_config: Option<gst::Structure>,
    outbox_location: Option<String>,
    outbox_max_events: u64,
    outbox_overflow: OutboxOverflow,
    outbox_fsync: bool,
    retry_interval: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            brokers: None,
            schema_registry: None,
            plates_topic: DEFAULT_PLATES_TOPIC.into(),
            vehicles_topic: DEFAULT_VEHICLES_TOPIC.into(),
            kafka_config: None,
            outbox_location: None,
            outbox_max_events: DEFAULT_OUTBOX_MAX_EVENTS,
            outbox_overflow: OutboxOverflow::default(),
            outbox_fsync: DEFAULT_OUTBOX_FSYNC,
            retry_interval: DEFAULT_RETRY_INTERVAL,
        }
    }
}

impl Settings {
    /// librdkafka settings as strings; errors name the field.
    fn kafka_pairs(&self) -> Result<Vec<(String, String)>, String> {
        let Some(s) = &self.kafka_config else {
            return Ok(Vec::new());
        };
        let mut v = Vec::new();
        for (k, val) in s.iter() {
            let text = match val.get::<String>() {
                Ok(t) => t,
                Err(_) => val
                    .serialize()
                    .map(|g| g.to_string())
                    .map_err(|_| format!("kafka-config: value of {k} is not a string or number"))?,
            };
            v.push((k.to_string(), text));
        }
        Ok(v)
    }

    /// kafka-config with secret values hidden: what reading the property and logs show.
    fn kafka_config_redacted(&self) -> Option<gst::Structure> {
        self.kafka_config.as_ref().map(|s| {
            let mut r = s.clone();
            for (k, _) in s.iter() {
                if is_secret_setting(k) {
                    r.set(k.as_str(), REDACTED);
                }
            }
            r
        })
    }

    fn registry_redacted(&self) -> Option<String> {
        self.schema_registry.as_ref().map(|u| {
            super::registry::split_credentials(u)
                .map(|(base, _)| base)
                .unwrap_or_else(|_| u.clone())
        })
    }
}

struct State {
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
    outbox_path: PathBuf,
}

#[derive(Default)]
pub struct KafkaSink {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Set by unlock(): EOS drain stops waiting.
    unlocked: AtomicBool,
    /// The outbox is past its bound (one warning per overflow episode).
    overflowing: AtomicBool,
    /// The reason of the last warning posted for a failed link (one warning per new reason).
    reporter: crate::link::TransitionReporter,
    last_stats_notify: Mutex<Option<Instant>>,
}

impl KafkaSink {
    fn shared(&self) -> Option<Arc<Shared>> {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.shared.clone())
    }

    fn status(&self) -> LinkStatus {
        match self.shared() {
            Some(sh) => sh.link().status(),
            None if self.settings.lock().unwrap().brokers.is_some() => LinkStatus::Disconnected,
            None => LinkStatus::Local,
        }
    }

    fn stats(&self) -> gst::Structure {
        match self.shared() {
            Some(sh) => {
                let mut st = sh.link().stats().clone();
                st.queued = sh.outbox().len();
                st.to_structure("kafkasink-stats")
            }
            None => crate::link::LinkStats::default().to_structure("kafkasink-stats"),
        }
    }

    fn notify_stats(&self, force: bool) {
        let stats = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .map(|st| st.shared.link().stats().clone());
        if let Some(stats) = stats {
            crate::metrics::link_stats(&self.obj().name(), &stats);
        }
        let now = Instant::now();
        {
            let mut last = self.last_stats_notify.lock().unwrap();
            if !force && last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
                return;
            }
            *last = Some(now);
        }
        self.obj().notify("stats");
    }

    fn on_notice(&self, n: Notice) {
        match n {
            Notice::Transition(t, stats) => {
                self.reporter.report(
                    self.obj().upcast_ref(),
                    *CAT,
                    SERVICE,
                    &t,
                    &stats,
                    "events stay in the outbox and are sent when the link is back",
                );
                self.obj().notify("status");
                self.notify_stats(true);
            }
            Notice::Stats => self.notify_stats(false),
            Notice::Log(level, msg) => match level {
                gst::DebugLevel::Error | gst::DebugLevel::Warning => {
                    gst::warning!(CAT, imp = self, "{msg}")
                }
                gst::DebugLevel::Info => gst::info!(CAT, imp = self, "{msg}"),
                _ => gst::debug!(CAT, imp = self, "{msg}"),
            },
        }
    }

    fn outbox_dir(&self, settings: &Settings) -> PathBuf {
        match &settings.outbox_location {
            Some(p) => PathBuf::from(p),
            None => glib::user_data_dir()
                .join("gst-alpr")
                .join("kafkasink")
                .join(self.obj().name().as_str()),
        }
    }

    /// The events of a buffer, encoded for the outbox.
    fn records(&self, buffer: &gst::BufferRef) -> Result<Vec<NewRecord>, String> {
        let plates = event::read(buffer).map_err(|e| e.to_string())?;
        let vehicles = event::read_vehicles(buffer).map_err(|e| e.to_string())?;
        let mut v = Vec::with_capacity(plates.len() + vehicles.len());
        for (e, _crop) in plates {
            // The crop travels through s3sink; the event names it by image_key.
            let body = avro::encode_plate(&e)
                .map_err(|err| format!("plate event {}: Avro encoding: {err}", e.event_id))?;
            v.push(NewRecord {
                stream: Stream::Plates,
                first_seen_ms: Some(e.first_seen_ms),
                key: e.camera_id,
                event_id: e.event_id,
                body,
            });
        }
        for e in vehicles {
            let body = avro::encode_vehicle(&e)
                .map_err(|err| format!("vehicle event {}: Avro encoding: {err}", e.event_id))?;
            v.push(NewRecord {
                stream: Stream::Vehicles,
                first_seen_ms: None,
                key: e.camera_id,
                event_id: e.event_id,
                body,
            });
        }
        Ok(v)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for KafkaSink {
    const NAME: &'static str = "GstAlprKafkaSink";
    type Type = super::KafkaSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for KafkaSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("brokers")
                    .nick("Brokers")
                    .blurb(
                        "Kafka bootstrap servers, host:port[,host:port...]. Unset (the default): \
                         local mode, events are kept in the outbox only",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("schema-registry")
                    .nick("Schema Registry")
                    .blurb(
                        "Confluent-compatible Schema Registry URL, http[s]://[user:password@]host:port \
                         (required with brokers). Credentials are sent as basic auth and never \
                         shown: reading the property gives the URL without them",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("plates-topic")
                    .nick("Plates topic")
                    .blurb("Topic of plate events (schema subject <topic>-value); it must exist")
                    .default_value(Some(DEFAULT_PLATES_TOPIC))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("vehicles-topic")
                    .nick("Vehicles topic")
                    .blurb(
                        "Topic of vehicle-track events (schema subject <topic>-value); it must \
                         exist once such events are produced",
                    )
                    .default_value(Some(DEFAULT_VEHICLES_TOPIC))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("kafka-config")
                    .nick("Kafka configuration")
                    .blurb(
                        "Extra librdkafka settings, e.g. \"config, security.protocol=SASL_SSL, \
                         sasl.mechanisms=PLAIN, sasl.username=u, sasl.password=p\". Secret values \
                         (passwords, keys, tokens) read back as ***** and are never logged. \
                         enable.idempotence=true and acks=all are always used",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("outbox-location")
                    .nick("Outbox location")
                    .blurb(
                        "Directory of the outbox database (created if missing). Unset: \
                         <user data dir>/gst-alpr/kafkasink/<element name>",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("outbox-max-events")
                    .nick("Outbox size bound")
                    .blurb(
                        "Most events the outbox holds, in events; past it outbox-overflow applies \
                         (a warning, and the stats' dropped counter counts)",
                    )
                    .minimum(1)
                    .maximum(1_000_000_000)
                    .default_value(DEFAULT_OUTBOX_MAX_EVENTS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "outbox-overflow",
                    OutboxOverflow::default(),
                )
                .nick("Outbox overflow policy")
                .blurb("What to give up when the outbox is full")
                .mutable_ready()
                .build(),
                glib::ParamSpecBoolean::builder("outbox-fsync")
                    .nick("Outbox fsync")
                    .blurb(
                        "Sync the outbox to disk on every commit: accepted events also survive \
                         power loss, at one fsync per buffer. Off: they survive a killed process",
                    )
                    .default_value(DEFAULT_OUTBOX_FSYNC)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("retry-interval")
                    .nick("Retry interval")
                    .blurb(
                        "Seconds between connection attempts while events are waiting (one \
                         attempt per interval at most)",
                    )
                    .minimum(1)
                    .maximum(3600)
                    .default_value(DEFAULT_RETRY_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("status", LinkStatus::default())
                    .nick("Status")
                    .blurb("State of the link to Kafka (notified on change)")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "attempts, failures, last-error, queued (events in the outbox), \
                         delivered, dropped (by the overflow policy); notified on change",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let name = pspec.name();
        match name {
            "brokers" | "schema-registry" | "outbox-location" => {
                let new: Option<String> = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|v| !v.is_empty());
                let slot = match name {
                    "brokers" => &mut s.brokers,
                    "schema-registry" => &mut s.schema_registry,
                    _ => &mut s.outbox_location,
                };
                let old = std::mem::replace(slot, new);
                if name == "schema-registry" {
                    gst::info!(
                        CAT,
                        imp = self,
                        "Changing schema-registry to {:?}",
                        s.registry_redacted()
                    );
                } else {
                    gst::info!(
                        CAT,
                        imp = self,
                        "Changing {name} from {old:?} to {:?}",
                        match name {
                            "brokers" => &s.brokers,
                            _ => &s.outbox_location,
                        }
                    );
                }
            }
            "plates-topic" | "vehicles-topic" => {
                let new: String = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                let slot = if name == "plates-topic" {
                    &mut s.plates_topic
                } else {
                    &mut s.vehicles_topic
                };
                gst::info!(CAT, imp = self, "Changing {name} from {slot} to {new}");
                *slot = new;
            }
            "kafka-config" => {
                s.kafka_config = value
                    .get::<Option<gst::Structure>>()
                    .expect("type checked upstream");
                let keys: Vec<String> = s
                    .kafka_config
                    .as_ref()
                    .map(|c| c.iter().map(|(k, _)| k.to_string()).collect())
                    .unwrap_or_default();
                gst::info!(CAT, imp = self, "Changing kafka-config (settings {keys:?})");
            }
            "outbox-max-events" => {
                let new = value.get::<u64>().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {} to {new}",
                    s.outbox_max_events
                );
                s.outbox_max_events = new;
            }
            "outbox-overflow" => {
                let new = value
                    .get::<OutboxOverflow>()
                    .expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {:?} to {new:?}",
                    s.outbox_overflow
                );
                s.outbox_overflow = new;
            }
            "outbox-fsync" => {
                let new = value.get::<bool>().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {} to {new}",
                    s.outbox_fsync
                );
                s.outbox_fsync = new;
            }
            "retry-interval" => {
                let new = value.get::<u32>().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {}s to {new}s",
                    s.retry_interval
                );
                s.retry_interval = new;
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "status" => return self.status().to_value(),
            "stats" => return self.stats().to_value(),
            _ => {}
        }
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "brokers" => s.brokers.to_value(),
            "schema-registry" => s.registry_redacted().to_value(),
            "plates-topic" => s.plates_topic.to_value(),
            "vehicles-topic" => s.vehicles_topic.to_value(),
            "kafka-config" => s.kafka_config_redacted().to_value(),
            "outbox-location" => s.outbox_location.to_value(),
            "outbox-max-events" => s.outbox_max_events.to_value(),
            "outbox-overflow" => s.outbox_overflow.to_value(),
            "outbox-fsync" => s.outbox_fsync.to_value(),
            "retry-interval" => s.retry_interval.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // Events are not timed media: never wait for the clock.
        self.obj().set_sync(false);
    }
}

impl GstObjectImpl for KafkaSink {}

impl ElementImpl for KafkaSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ALPR Kafka sink",
                "Sink/Network",
                "Delivers plate and vehicle-track events to Kafka (Avro, Schema Registry) \
                 through a durable local outbox",
                "gst-alpr developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Any buffers: only their alpr-events / alpr-vehicle-events metas are read.
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

impl BaseSinkImpl for KafkaSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        let settings = self.settings.lock().unwrap().clone();
        if let Some(b) = &settings.brokers {
            validate_brokers(b)
                .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["brokers: {e}"]))?;
            if settings.schema_registry.is_none() {
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    [
                        "brokers is set but schema-registry is not: the Confluent wire format \
                         needs a schema id (set schema-registry=http://host:port)"
                    ]
                ));
            }
        }
        for (name, t) in [
            ("plates-topic", &settings.plates_topic),
            ("vehicles-topic", &settings.vehicles_topic),
        ] {
            let ok = !t.is_empty()
                && t.len() <= 249
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    ["{name}: {t:?} is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"]
                ));
            }
        }
        let kafka_config = settings
            .kafka_pairs()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
        for (k, v) in &kafka_config {
            if let Some((_, want)) = worker::ENFORCED.iter().find(|(ek, _)| ek == k)
                && v != want
            {
                gst::warning!(
                    CAT,
                    imp = self,
                    "kafka-config: {k}={v} ignored: kafkasink always uses {k}={want}"
                );
            }
        }

        let dir = self.outbox_dir(&settings);
        let outbox = Outbox::open(
            &dir,
            settings.outbox_max_events,
            settings.outbox_overflow.into(),
            settings.outbox_fsync,
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ["kafkasink outbox: {e}"]))?;
        let outbox_path = outbox.path().to_path_buf();
        let backlog = outbox.len();
        let mut link = Link::new(
            SERVICE,
            Duration::from_secs(settings.retry_interval.into()),
            settings.brokers.is_some(),
        );
        link.stats_mut().queued = backlog;
        let shared = Shared::new(outbox, link);
        if backlog > 0 {
            gst::info!(
                CAT,
                imp = self,
                "{backlog} events waiting in the outbox {} from an earlier run: replaying them in order",
                outbox_path.display()
            );
        }

        let worker = match (&settings.brokers, &settings.schema_registry) {
            (Some(brokers), Some(registry)) => {
                let cfg = worker::Config {
                    sink: self.obj().name().to_string(),
                    brokers: brokers.clone(),
                    registry: registry.clone(),
                    topics: HashMap::from([
                        (Stream::Plates, settings.plates_topic.clone()),
                        (Stream::Vehicles, settings.vehicles_topic.clone()),
                    ]),
                    kafka_config,
                };
                let weak = self.obj().downgrade();
                let observer: Observer = Arc::new(move |n| {
                    if let Some(obj) = weak.upgrade() {
                        obj.imp().on_notice(n);
                    }
                });
                let w = Worker::new(cfg, shared.clone(), observer)
                    .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
                gst::info!(
                    CAT,
                    imp = self,
                    "outbox {}, Kafka {brokers}, schema registry {}, retry every {}s",
                    outbox_path.display(),
                    settings.registry_redacted().unwrap_or_default(),
                    settings.retry_interval
                );
                Some(
                    std::thread::Builder::new()
                        .name("kafkasink".into())
                        .spawn(move || w.run())
                        .map_err(|e| {
                            gst::error_msg!(
                                gst::CoreError::Failed,
                                ["cannot start the kafkasink worker thread: {e}"]
                            )
                        })?,
                )
            }
            _ => {
                gst::info!(
                    CAT,
                    imp = self,
                    "no brokers set: local mode, events are kept in the outbox {}",
                    outbox_path.display()
                );
                let series = worker::Series::new(self.obj().name().as_str());
                let sh = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("kafkasink".into())
                        .spawn(move || worker::run_local(sh, series))
                        .map_err(|e| {
                            gst::error_msg!(
                                gst::CoreError::Failed,
                                ["cannot start the kafkasink metrics thread: {e}"]
                            )
                        })?,
                )
            }
        };
        self.overflowing.store(false, Ordering::SeqCst);
        self.reporter.reset();
        *self.state.lock().unwrap() = Some(State {
            shared,
            worker,
            outbox_path,
        });
        self.obj().notify("status");
        self.notify_stats(true);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = self.state.lock().unwrap().take();
        if let Some(mut st) = state {
            st.shared.request_stop();
            if let Some(w) = st.worker.take()
                && w.join().is_err()
            {
                gst::warning!(CAT, imp = self, "the kafkasink worker thread panicked");
            }
            let left = st.shared.outbox().len();
            let delivered = st.shared.link().stats().delivered;
            gst::info!(
                CAT,
                imp = self,
                "stopped: {delivered} events delivered, {left} kept in {} for the next run",
                st.outbox_path.display()
            );
        }
        self.obj().notify("status");
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let records = match self.records(buffer) {
            Ok(r) => r,
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                return Err(gst::FlowError::Error);
            }
        };
        if records.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let shared = self.shared().ok_or(gst::FlowError::Flushing)?;
        let pushed = {
            let mut outbox = shared.outbox();
            let r = outbox.push(&records).map(|o| (o, outbox.len()));
            if let Ok((o, len)) = &r {
                let mut link = shared.link();
                link.stats_mut().queued = *len;
                link.stats_mut().dropped += o.dropped;
            }
            r
        };
        let (outcome, len) = match pushed {
            Ok(v) => v,
            Err(e) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("cannot store {} events in the outbox: {e}", records.len())
                );
                return Err(gst::FlowError::Error);
            }
        };
        shared.wake();
        gst::trace!(
            CAT,
            imp = self,
            "stored {} events, {len} queued",
            outcome.stored
        );
        if outcome.dropped > 0 {
            if !self.overflowing.swap(true, Ordering::SeqCst) {
                let policy = self.settings.lock().unwrap().outbox_overflow;
                let what = match policy {
                    OutboxOverflow::DropOldest => "the oldest stored events are deleted",
                    OutboxOverflow::DropNewest => "new events are refused",
                };
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    ("outbox full ({len} events): {what} (outbox-overflow); the stats' dropped field counts them"),
                    [
                        "outbox-max-events bounds the outbox; Kafka is {}",
                        shared.link().status().nick()
                    ]
                );
            }
            gst::warning!(
                CAT,
                imp = self,
                "outbox full: {} events dropped by the overflow policy",
                outcome.dropped
            );
        } else if len < self.settings.lock().unwrap().outbox_max_events {
            self.overflowing.store(false, Ordering::SeqCst);
        }
        self.notify_stats(false);
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view()
            && let Some(shared) = self.shared()
        {
            // Drain: wait while the link is up (or about to try) and events are waiting. A down
            // link does not hold EOS: the outbox keeps the events for the next run.
            shared.hold_eos(&self.unlocked);
            gst::debug!(
                CAT,
                imp = self,
                "EOS: {} events left in the outbox",
                shared.outbox().len()
            );
        }
        self.parent_event(event)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(false, Ordering::SeqCst);
        Ok(())
    }
}
