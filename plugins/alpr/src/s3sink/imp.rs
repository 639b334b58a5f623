// SPDX-License-Identifier: MIT OR Apache-2.0
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::client::Target;
use super::queue::{self, NewUpload, Queue};
use super::validate_bucket;
use super::worker::{self, Shared, Worker};
use crate::event;
use crate::link::{Link, LinkStatus};
use crate::sink::{
    DEFAULT_MIN_FREE_SPACE, DurableSink, Overflow, PushOutcome, SinkCore, lock, set_logged,
};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "s3sink",
        gst::DebugColorFlags::empty(),
        Some("ALPR crops to S3 / object stores"),
    )
});

const DEFAULT_LOCATION: &str = "output/crops";
const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_FORCE_PATH_STYLE: bool = true;
const DEFAULT_CREATE_BUCKET: bool = false;
const DEFAULT_RETRY_INTERVAL: u32 = 30;
const DEFAULT_QUEUE_MAX_BYTES: u64 = 1 << 30;
const DEFAULT_LOCAL_RETENTION: i64 = -1;
const REDACTED: &str = "*****";

#[derive(Debug, Clone)]
struct Settings {
    location: String,
    bucket: Option<String>,
    url: Option<String>,
    endpoint: Option<String>,
    region: String,
    force_path_style: bool,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
    create_bucket: bool,
    retry_interval: u32,
    queue_max_bytes: u64,
    queue_overflow: Overflow,
    min_free_space: u64,
    local_retention: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            location: DEFAULT_LOCATION.into(),
            bucket: None,
            url: None,
            endpoint: None,
            region: DEFAULT_REGION.into(),
            force_path_style: DEFAULT_FORCE_PATH_STYLE,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            create_bucket: DEFAULT_CREATE_BUCKET,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            queue_overflow: Overflow::default(),
            min_free_space: DEFAULT_MIN_FREE_SPACE,
            local_retention: DEFAULT_LOCAL_RETENTION,
        }
    }
}

impl Settings {
    /// The upload target, `None` in local mode. Errors name the property.
    fn target(&self) -> Result<Option<Target>, String> {
        match (&self.bucket, &self.url) {
            (Some(_), Some(_)) => {
                Err("set either bucket (S3) or url (any object store), not both".into())
            }
            (Some(bucket), None) => {
                validate_bucket(bucket).map_err(|e| format!("bucket: {e}"))?;
                if let Some(e) = &self.endpoint {
                    let u = url::Url::parse(e).map_err(|err| {
                        format!(
                            "endpoint: {e:?} is not a URL ({err}); expected http[s]://host:port"
                        )
                    })?;
                    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                        return Err(format!("endpoint: {e:?}: expected http[s]://host:port"));
                    }
                }
                Ok(Some(Target::S3 {
                    bucket: bucket.clone(),
                    endpoint: self
                        .endpoint
                        .clone()
                        .map(|e| e.trim_end_matches('/').to_string()),
                    region: self.region.clone(),
                    path_style: self.force_path_style,
                    access_key_id: self.access_key_id.clone(),
                    secret_access_key: self.secret_access_key.clone(),
                    session_token: self.session_token.clone(),
                    create_bucket: self.create_bucket,
                }))
            }
            (None, Some(u)) => {
                let parsed = url::Url::parse(u).map_err(|e| {
                    format!("url: {u:?} is not a URL ({e}); expected e.g. file:///srv/crops or s3://bucket/prefix")
                })?;
                Ok(Some(Target::Url(parsed)))
            }
            (None, None) => Ok(None),
        }
    }
}

#[derive(Default)]
pub struct S3Sink {
    settings: Mutex<Settings>,
    core: SinkCore<Queue>,
    /// Crops saved locally since start (local mode included).
    saved: Mutex<u64>,
}

impl DurableSink for S3Sink {
    crate::sink::durable_sink_glue!(Queue, CAT);

    /// The images of a buffer's events: the plate crop, and the vehicle crop and whole frame
    /// when alprocr made them (events without images have nothing to upload).
    fn items(&self, buffer: &gst::BufferRef) -> Result<Vec<NewUpload>, String> {
        let events = event::read_with_images(buffer).map_err(|e| e.to_string())?;
        let mut v = Vec::with_capacity(events.len());
        for (e, images) in &events {
            let keyed = images.keyed(e);
            if keyed.is_empty() {
                gst::debug!(CAT, imp = self, "event {} has no crop", e.event_id);
                continue;
            }
            for (key, image) in keyed {
                queue::check_key(key).map_err(|err| format!("event {}: {err}", e.event_id))?;
                let map = image
                    .map_readable()
                    .map_err(|_| format!("event {}: image {key} not readable", e.event_id))?;
                v.push(NewUpload {
                    key: key.to_string(),
                    event_id: e.event_id.clone(),
                    camera: e.camera_id.clone(),
                    plate: e.plate_text.clone(),
                    data: map.as_slice().to_vec(),
                });
            }
        }
        Ok(v)
    }

    fn pushed(&self, outcome: &PushOutcome) {
        *lock(&self.saved) += outcome.stored;
    }
}

#[glib::object_subclass]
impl ObjectSubclass for S3Sink {
    const NAME: &'static str = "GstAlprS3Sink";
    type Type = super::S3Sink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for S3Sink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Local directory")
                    .blurb(
                        "Directory every crop is saved under first, as <location>/<image-key> \
                         (also holds the upload queue index .s3sink-queue.sqlite)",
                    )
                    .default_value(Some(DEFAULT_LOCATION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("bucket")
                    .nick("Bucket")
                    .blurb(
                        "S3 bucket to upload crops to (object key = the event's image-key). \
                         Unset, with url unset too (the default): local mode, crops are only \
                         saved under location",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("url")
                    .nick("Object store URL")
                    .blurb(
                        "Instead of bucket: any object_store URL, e.g. file:///srv/crops or \
                         s3://bucket/prefix (S3 settings from the AWS_* environment). Object \
                         key = URL path + image-key",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("endpoint")
                    .nick("Endpoint")
                    .blurb(
                        "S3 endpoint for MinIO and other S3-compatible servers, \
                         http[s]://host:port. Unset: AWS (or AWS_ENDPOINT_URL)",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("region")
                    .nick("Region")
                    .blurb("S3 region (signing region for MinIO)")
                    .default_value(Some(DEFAULT_REGION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("force-path-style")
                    .nick("Path-style requests")
                    .blurb(
                        "Address the bucket as endpoint/bucket/key (MinIO) instead of \
                         bucket.endpoint/key (virtual-hosted)",
                    )
                    .default_value(DEFAULT_FORCE_PATH_STYLE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("access-key-id")
                    .nick("Access key id")
                    .blurb("S3 access key id. Unset: AWS_ACCESS_KEY_ID or the AWS credential chain")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("secret-access-key")
                    .nick("Secret access key")
                    .blurb(
                        "S3 secret access key. Unset: AWS_SECRET_ACCESS_KEY or the AWS \
                         credential chain. Never logged; reads back as *****",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("session-token")
                    .nick("Session token")
                    .blurb(
                        "S3 session token of temporary credentials. Unset: AWS_SESSION_TOKEN. \
                         Never logged; reads back as *****",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("create-bucket")
                    .nick("Create bucket")
                    .blurb(
                        "Create the bucket (S3 CreateBucket, signed with the static \
                         credentials) before the first upload when it does not exist; meant \
                         for MinIO-style set-ups with an endpoint",
                    )
                    .default_value(DEFAULT_CREATE_BUCKET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("retry-interval")
                    .nick("Retry interval")
                    .blurb(
                        "Seconds between connection attempts while crops are waiting and the \
                         object store is unreachable",
                    )
                    .minimum(1)
                    .maximum(3600)
                    .default_value(DEFAULT_RETRY_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("queue-max-bytes")
                    .nick("Upload queue bound")
                    .blurb(
                        "Bytes of crops waiting for upload (in local mode: of the crops kept), \
                         at most; past it queue-overflow applies",
                    )
                    .minimum(1)
                    .default_value(DEFAULT_QUEUE_MAX_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("queue-overflow", Overflow::default())
                    .nick("Queue overflow policy")
                    .blurb(
                        "What happens when the upload queue is full or the disk is low \
                     (min-free-space): drop-oldest deletes the oldest waiting crops (queue \
                     entry and local file), drop-newest refuses new crops (not saved). \
                     Counted in stats.dropped, with a warning",
                    )
                    .mutable_ready()
                    .build(),
                crate::sink::min_free_space_pspec("location", crate::sink::OVERFLOW_APPLIES),
                glib::ParamSpecInt64::builder("local-retention")
                    .nick("Local retention")
                    .blurb(
                        "Seconds to keep a crop's local file after its upload: -1 = keep \
                         forever (the local directory is also an archive), 0 = delete right \
                         after the upload. Crops not yet uploaded are always kept",
                    )
                    .minimum(-1)
                    .maximum(i64::MAX / 1000)
                    .default_value(DEFAULT_LOCAL_RETENTION)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("status", LinkStatus::default())
                    .nick("Status")
                    .blurb("State of the link to the object store")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "attempts, failures, last-error, queued (crops waiting), queued-bytes, \
                         delivered (uploaded since start), dropped (overflow policy or file \
                         gone), saved (crops saved locally since start)",
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
        let opt_string = || {
            value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|v| !v.is_empty())
        };
        let obj = self.obj();
        let el = obj.upcast_ref();
        match name {
            "location" | "region" => {
                let new = opt_string().unwrap_or_else(|| {
                    if name == "location" {
                        DEFAULT_LOCATION.into()
                    } else {
                        DEFAULT_REGION.into()
                    }
                });
                let slot = if name == "location" {
                    &mut s.location
                } else {
                    &mut s.region
                };
                gst::info!(CAT, imp = self, "Changing {name} from {slot} to {new}");
                *slot = new;
            }
            "bucket" | "url" | "endpoint" | "access-key-id" => {
                let new = opt_string();
                let slot = match name {
                    "bucket" => &mut s.bucket,
                    "url" => &mut s.url,
                    "endpoint" => &mut s.endpoint,
                    _ => &mut s.access_key_id,
                };
                gst::info!(CAT, imp = self, "Changing {name} from {slot:?} to {new:?}");
                *slot = new;
            }
            "secret-access-key" | "session-token" => {
                let new = opt_string();
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} ({})",
                    if new.is_some() { "set" } else { "unset" }
                );
                if name == "secret-access-key" {
                    s.secret_access_key = new;
                } else {
                    s.session_token = new;
                }
            }
            "force-path-style" => set_logged(el, *CAT, name, &mut s.force_path_style, value),
            "create-bucket" => set_logged(el, *CAT, name, &mut s.create_bucket, value),
            "retry-interval" => set_logged(el, *CAT, name, &mut s.retry_interval, value),
            "queue-max-bytes" => set_logged(el, *CAT, name, &mut s.queue_max_bytes, value),
            "min-free-space" => {
                set_logged(el, *CAT, name, &mut s.min_free_space, value);
                self.core.set_min_free(s.min_free_space);
            }
            "queue-overflow" => set_logged(el, *CAT, name, &mut s.queue_overflow, value),
            "local-retention" => set_logged(el, *CAT, name, &mut s.local_retention, value),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "status" => {
                let configured = matches!(lock(&self.settings).target(), Ok(Some(_)));
                return self.core.status(configured).to_value();
            }
            "stats" => {
                let mut st = self.core.stats().to_structure("s3sink-stats");
                st.set(
                    "queued-bytes",
                    self.core.with_queue(Queue::bytes).unwrap_or(0),
                );
                st.set("saved", *lock(&self.saved));
                return st.to_value();
            }
            _ => {}
        }
        let s = lock(&self.settings);
        let redact = |v: &Option<String>| v.as_ref().map(|_| REDACTED.to_string());
        match pspec.name() {
            "location" => s.location.to_value(),
            "bucket" => s.bucket.to_value(),
            "url" => s.url.to_value(),
            "endpoint" => s.endpoint.to_value(),
            "region" => s.region.to_value(),
            "force-path-style" => s.force_path_style.to_value(),
            "access-key-id" => s.access_key_id.to_value(),
            "secret-access-key" => redact(&s.secret_access_key).to_value(),
            "session-token" => redact(&s.session_token).to_value(),
            "create-bucket" => s.create_bucket.to_value(),
            "retry-interval" => s.retry_interval.to_value(),
            "queue-max-bytes" => s.queue_max_bytes.to_value(),
            "queue-overflow" => s.queue_overflow.to_value(),
            "min-free-space" => s.min_free_space.to_value(),
            "local-retention" => s.local_retention.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // Crops are not timed media: never wait for the clock.
        self.obj().set_sync(false);
    }
}

crate::sink::sink_element_impl!(
    S3Sink,
    "ALPR S3 sink",
    "Sink/Network",
    "Saves plate crops locally and uploads them to S3 / MinIO or any object store \
     through a durable upload queue"
);

impl BaseSinkImpl for S3Sink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        let settings = lock(&self.settings).clone();
        let target = settings
            .target()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
        if let Some(t) = &target {
            // Settings errors (unknown scheme, bad URL) now, not as retried link failures.
            t.build()
                .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
        }
        let location = PathBuf::from(&settings.location);
        *lock(&self.saved) = 0;
        let queue = Queue::open(&location, settings.queue_max_bytes, settings.queue_overflow)
            .map_err(|e| {
                gst::error_msg!(gst::ResourceError::OpenWrite, ["s3sink location: {e}"])
            })?;
        let service = target.as_ref().map_or("object store", |t| t.service());
        let link = Link::new(
            service,
            Duration::from_secs(settings.retry_interval.into()),
            target.is_some(),
        );
        let name = self.obj().name();
        let shared = Shared::new(queue, link, crate::sink::observer(self), &name);
        let uploader: Option<Box<dyn crate::sink::Uploader>> = match target {
            Some(target) => {
                let runtime = crate::tokio_runtime()
                    .map_err(|e| gst::error_msg!(gst::CoreError::Failed, ["s3sink: {e}"]))?;
                gst::info!(
                    CAT,
                    imp = self,
                    "crops under {}, uploads to {service} ({}), retry every {}s",
                    location.display(),
                    target.describe(),
                    settings.retry_interval
                );
                let cfg = worker::Config {
                    sink: name.to_string(),
                    target,
                    retention_s: settings.local_retention,
                    runtime,
                };
                Some(Box::new(Worker::new(cfg, shared.clone())))
            }
            _ => None,
        };
        let bounds = (settings.queue_overflow, settings.min_free_space);
        let el = self.obj();
        (self.core).begin(el.upcast_ref(), *CAT, shared, uploader, bounds)
    }

    crate::sink::durable_base_sink_methods!();
}
