// SPDX-License-Identifier: MIT OR Apache-2.0
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::avro::{self, Stream};
use super::outbox::{NewRecord, Outbox};
use super::worker::{self, Shared, Worker};
use super::{is_secret_setting, validate_brokers};
use crate::event;
use crate::link::{Link, LinkStatus};
use crate::sink::{DEFAULT_MIN_FREE_SPACE, DurableSink, Overflow, SinkCore, lock, set_logged};

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
    alerts_topic: String,
    kafka_config: Option<gst::Structure>,
    outbox_location: Option<String>,
    outbox_max_events: u64,
    outbox_overflow: Overflow,
    outbox_fsync: bool,
    min_free_space: u64,
    retry_interval: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            brokers: None,
            schema_registry: None,
            plates_topic: DEFAULT_PLATES_TOPIC.into(),
            vehicles_topic: DEFAULT_VEHICLES_TOPIC.into(),
            alerts_topic: super::alerts::DEFAULT_ALERTS_TOPIC.into(),
            kafka_config: None,
            outbox_location: None,
            outbox_max_events: DEFAULT_OUTBOX_MAX_EVENTS,
            outbox_overflow: Overflow::default(),
            outbox_fsync: DEFAULT_OUTBOX_FSYNC,
            min_free_space: DEFAULT_MIN_FREE_SPACE,
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

#[derive(Default)]
pub struct KafkaSink {
    settings: Mutex<Settings>,
    core: SinkCore<Outbox>,
}

impl KafkaSink {
    fn outbox_dir(&self, settings: &Settings) -> PathBuf {
        match &settings.outbox_location {
            Some(p) => PathBuf::from(p),
            None => glib::user_data_dir()
                .join("gst-alpr")
                .join("kafkasink")
                .join(self.obj().name().as_str()),
        }
    }
}

impl DurableSink for KafkaSink {
    crate::sink::durable_sink_glue!(Outbox, CAT);

    /// The events of a buffer, encoded for the outbox.
    fn items(&self, buffer: &gst::BufferRef) -> Result<Vec<NewRecord>, String> {
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
        v.extend(super::alerts::records(buffer)?);
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
    fn constructed(&self) {
        self.parent_constructed();
        // Events are not timed media: never wait for the clock.
        self.obj().set_sync(false);
    }

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
                glib::ParamSpecString::builder("alerts-topic")
                    .nick("Alerts topic")
                    .blurb(
                        "Topic of alprwatch's watchlist alerts (alpr-alerts meta; schema subject \
                         <topic>-value); it must exist once alerts are produced",
                    )
                    .default_value(Some(super::alerts::DEFAULT_ALERTS_TOPIC))
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
                glib::ParamSpecEnum::builder_with_default("outbox-overflow", Overflow::default())
                .nick("Outbox overflow policy")
                .blurb(
                    "What to give up when the outbox is full or the disk is low \
                     (min-free-space): drop-oldest deletes the oldest stored events, \
                     drop-newest refuses new ones",
                )
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
                crate::sink::min_free_space_pspec("the outbox", crate::sink::OVERFLOW_APPLIES),
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
        let mut s = lock(&self.settings);
        let name = pspec.name();
        let obj = self.obj();
        let el = obj.upcast_ref();
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
            "plates-topic" | "vehicles-topic" | "alerts-topic" => {
                let new: String = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                let slot = match name {
                    "plates-topic" => &mut s.plates_topic,
                    "alerts-topic" => &mut s.alerts_topic,
                    _ => &mut s.vehicles_topic,
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
            "outbox-max-events" => set_logged(el, *CAT, name, &mut s.outbox_max_events, value),
            "outbox-overflow" => set_logged(el, *CAT, name, &mut s.outbox_overflow, value),
            "outbox-fsync" => set_logged(el, *CAT, name, &mut s.outbox_fsync, value),
            "min-free-space" => {
                set_logged(el, *CAT, name, &mut s.min_free_space, value);
                self.core.set_min_free(s.min_free_space);
            }
            "retry-interval" => set_logged(el, *CAT, name, &mut s.retry_interval, value),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "status" => {
                let configured = lock(&self.settings).brokers.is_some();
                return self.core.status(configured).to_value();
            }
            "stats" => return self.core.stats().to_structure("kafkasink-stats").to_value(),
            _ => {}
        }
        let s = lock(&self.settings);
        match pspec.name() {
            "brokers" => s.brokers.to_value(),
            "schema-registry" => s.registry_redacted().to_value(),
            "plates-topic" => s.plates_topic.to_value(),
            "vehicles-topic" => s.vehicles_topic.to_value(),
            "alerts-topic" => s.alerts_topic.to_value(),
            "kafka-config" => s.kafka_config_redacted().to_value(),
            "outbox-location" => s.outbox_location.to_value(),
            "outbox-max-events" => s.outbox_max_events.to_value(),
            "outbox-overflow" => s.outbox_overflow.to_value(),
            "outbox-fsync" => s.outbox_fsync.to_value(),
            "min-free-space" => s.min_free_space.to_value(),
            "retry-interval" => s.retry_interval.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

crate::sink::sink_element_impl!(
    KafkaSink,
    "ALPR Kafka sink",
    "Sink/Network",
    "Delivers plate and vehicle-track events to Kafka (Avro, Schema Registry) \
     through a durable local outbox"
);

impl BaseSinkImpl for KafkaSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        let settings = lock(&self.settings).clone();
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
            ("alerts-topic", &settings.alerts_topic),
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
            settings.outbox_overflow,
            settings.outbox_fsync,
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ["kafkasink outbox: {e}"]))?;
        let outbox_path = outbox.path().to_path_buf();
        let link = Link::new(
            SERVICE,
            Duration::from_secs(settings.retry_interval.into()),
            settings.brokers.is_some(),
        );
        let name = self.obj().name();
        let shared = Shared::new(outbox, link, crate::sink::observer(self), &name);
        let uploader: Option<Box<dyn crate::sink::Uploader>> =
            match (&settings.brokers, &settings.schema_registry) {
                (Some(brokers), Some(registry)) => {
                    let cfg = worker::Config {
                        sink: name.to_string(),
                        brokers: brokers.clone(),
                        registry: registry.clone(),
                        topics: HashMap::from([
                            (Stream::Plates, settings.plates_topic.clone()),
                            (Stream::Vehicles, settings.vehicles_topic.clone()),
                            (Stream::Alerts, settings.alerts_topic.clone()),
                        ]),
                        kafka_config,
                    };
                    let w = Worker::new(cfg, shared.clone())
                        .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
                    gst::info!(
                        CAT,
                        imp = self,
                        "outbox {}, Kafka {brokers}, schema registry {}, retry every {}s",
                        outbox_path.display(),
                        settings.registry_redacted().unwrap_or_default(),
                        settings.retry_interval
                    );
                    Some(Box::new(w))
                }
                _ => None,
            };
        let bounds = (settings.outbox_overflow, settings.min_free_space);
        let el = self.obj();
        (self.core).begin(el.upcast_ref(), *CAT, shared, uploader, bounds)
    }

    crate::sink::durable_base_sink_methods!();
}
