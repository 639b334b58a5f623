// SPDX-License-Identifier: MIT OR Apache-2.0
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::client::Target;
use super::queue::{self, NewUpload, Queue};
use super::validate_bucket;
use super::worker::{self, Notice, Observer, Shared, Worker};
use crate::event;
use crate::kafkasink::OutboxOverflow;
use crate::link::{Link, LinkStats, LinkStatus};

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
    queue_overflow: OutboxOverflow,
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
            queue_overflow: OutboxOverflow::default(),
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

struct State {
    location: PathBuf,
    /// `None` in local mode (crops are only saved).
    shared: Option<Arc<Shared>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
pub struct S3Sink {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Set by unlock(): EOS drain stops waiting.
    unlocked: AtomicBool,
    /// The queue is past its bound (one warning per overflow episode).
    overflowing: AtomicBool,
    /// The reason of the last warning posted for a failed link (one warning per new reason).
    reporter: crate::link::TransitionReporter,
    last_stats_notify: Mutex<Option<Instant>>,
    /// Crops saved locally since start (local mode included).
    saved: Mutex<u64>,
}

impl S3Sink {
    fn shared(&self) -> Option<Arc<Shared>> {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.shared.clone())
    }

    fn status(&self) -> LinkStatus {
        match self.shared() {
            Some(sh) => sh.link().status(),
            None if self.state.lock().unwrap().is_none()
                && matches!(self.settings.lock().unwrap().target(), Ok(Some(_))) =>
            {
                LinkStatus::Disconnected
            }
            None => LinkStatus::Local,
        }
    }

    fn stats(&self) -> gst::Structure {
        let (st, bytes) = match self.shared() {
            Some(sh) => {
                let mut st = sh.link().stats().clone();
                let q = sh.queue();
                st.queued = q.len();
                (st, q.bytes())
            }
            None => (LinkStats::default(), 0),
        };
        let mut s = st.to_structure("s3sink-stats");
        s.set("queued-bytes", bytes);
        s.set("saved", *self.saved.lock().unwrap());
        s
    }

    fn notify_stats(&self, force: bool) {
        if let Some(sh) = self.shared() {
            let mut st = sh.link().stats().clone();
            st.queued = sh.queue().len();
            crate::metrics::link_stats(&self.obj().name(), &st);
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

    fn on_notice(&self, service: &str, n: Notice) {
        match n {
            Notice::Transition(t, stats) => {
                self.reporter.report(
                    self.obj().upcast_ref(),
                    *CAT,
                    service,
                    &t,
                    &stats,
                    "crops stay in the local upload queue and are uploaded when the link is back",
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

    /// The images of a buffer's events: the plate crop, and the vehicle crop and whole frame
    /// when alprocr made them (events without images have nothing to upload).
    fn uploads(&self, buffer: &gst::BufferRef) -> Result<Vec<NewUpload>, String> {
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

    fn warn_overflow(&self, shared: &Shared, dropped: u64) {
        let (len, bytes) = {
            let q = shared.queue();
            (q.len(), q.bytes())
        };
        if dropped > 0 {
            if !self.overflowing.swap(true, Ordering::SeqCst) {
                let policy = self.settings.lock().unwrap().queue_overflow;
                let what = match policy {
                    OutboxOverflow::DropOldest => {
                        "the oldest waiting crops are deleted (queue and local file)"
                    }
                    OutboxOverflow::DropNewest => "new crops are refused (not saved)",
                };
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    ("upload queue full ({len} crops, {bytes} bytes): {what} (queue-overflow); the stats' dropped field counts them"),
                    [
                        "queue-max-bytes bounds the queue; the object store is {}",
                        shared.link().status().nick()
                    ]
                );
            }
            gst::warning!(
                CAT,
                imp = self,
                "upload queue full: {dropped} crops dropped by the overflow policy"
            );
        } else if bytes < self.settings.lock().unwrap().queue_max_bytes / 10 * 9 {
            self.overflowing.store(false, Ordering::SeqCst);
        }
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
                        "Bytes of crops waiting for upload, at most; past it queue-overflow \
                         applies",
                    )
                    .minimum(1)
                    .default_value(DEFAULT_QUEUE_MAX_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "queue-overflow",
                    OutboxOverflow::default(),
                )
                .nick("Queue overflow policy")
                .blurb(
                    "What happens when the upload queue is full: drop-oldest deletes the \
                         oldest waiting crops (queue entry and local file), drop-newest refuses \
                         new crops (not saved). Counted in stats.dropped, with a warning",
                )
                .mutable_ready()
                .build(),
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
        let mut s = self.settings.lock().unwrap();
        let name = pspec.name();
        let opt_string = || {
            value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .filter(|v| !v.is_empty())
        };
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
            "force-path-style" | "create-bucket" => {
                let new = value.get::<bool>().expect("type checked upstream");
                let slot = if name == "force-path-style" {
                    &mut s.force_path_style
                } else {
                    &mut s.create_bucket
                };
                gst::info!(CAT, imp = self, "Changing {name} from {slot} to {new}");
                *slot = new;
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
            "queue-max-bytes" => {
                let new = value.get::<u64>().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {} to {new}",
                    s.queue_max_bytes
                );
                s.queue_max_bytes = new;
            }
            "queue-overflow" => {
                let new = value
                    .get::<OutboxOverflow>()
                    .expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {:?} to {new:?}",
                    s.queue_overflow
                );
                s.queue_overflow = new;
            }
            "local-retention" => {
                let new = value.get::<i64>().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {}s to {new}s",
                    s.local_retention
                );
                s.local_retention = new;
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

impl GstObjectImpl for S3Sink {}

impl ElementImpl for S3Sink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ALPR S3 sink",
                "Sink/Network",
                "Saves plate crops locally and uploads them to S3 / MinIO or any object store \
                 through a durable upload queue",
                "gst-alpr developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Any buffers: only their alpr-events metas (with the crops) are read.
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

impl BaseSinkImpl for S3Sink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        let settings = self.settings.lock().unwrap().clone();
        let target = settings
            .target()
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
        if let Some(t) = &target {
            // Settings errors (unknown scheme, bad URL) now, not as retried link failures.
            t.build()
                .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
        }
        let location = PathBuf::from(&settings.location);
        *self.saved.lock().unwrap() = 0;
        self.overflowing.store(false, Ordering::SeqCst);
        self.reporter.reset();

        let Some(target) = target else {
            std::fs::create_dir_all(&location).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    [
                        "s3sink location: cannot create local directory {}: {e}",
                        location.display()
                    ]
                )
            })?;
            gst::info!(
                CAT,
                imp = self,
                "no bucket or url set: local mode, crops are saved under {}",
                location.display()
            );
            *self.state.lock().unwrap() = Some(State {
                location,
                shared: None,
                worker: None,
            });
            self.obj().notify("status");
            return Ok(());
        };

        let runtime = crate::tokio_runtime()
            .map_err(|e| gst::error_msg!(gst::CoreError::Failed, ["s3sink: {e}"]))?;
        let queue = Queue::open(
            &location,
            settings.queue_max_bytes,
            settings.queue_overflow.into(),
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ["s3sink location: {e}"]))?;
        let (backlog, backlog_bytes) = (queue.len(), queue.bytes());
        let db_path = queue.db_path().to_path_buf();
        let service = target.service();
        let mut link = Link::new(
            service,
            Duration::from_secs(settings.retry_interval.into()),
            true,
        );
        link.stats_mut().queued = backlog;
        let shared = Shared::new(queue, link);
        if backlog > 0 {
            gst::info!(
                CAT,
                imp = self,
                "{backlog} crops ({backlog_bytes} bytes) waiting in {} from an earlier run: \
                 uploading them first, in order",
                db_path.display()
            );
        }
        let weak = self.obj().downgrade();
        let observer: Observer = Arc::new(move |n| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().on_notice(service, n);
            }
        });
        gst::info!(
            CAT,
            imp = self,
            "crops under {}, uploads to {service} ({}), retry every {}s",
            location.display(),
            target.describe(),
            settings.retry_interval
        );
        let w = Worker::new(
            worker::Config {
                sink: self.obj().name().to_string(),
                target,
                retention_s: settings.local_retention,
                runtime,
            },
            shared.clone(),
            observer,
        );
        let handle = std::thread::Builder::new()
            .name("s3sink".into())
            .spawn(move || w.run())
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Failed,
                    ["cannot start the s3sink worker thread: {e}"]
                )
            })?;
        *self.state.lock().unwrap() = Some(State {
            location,
            shared: Some(shared),
            worker: Some(handle),
        });
        self.obj().notify("status");
        self.notify_stats(true);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let state = self.state.lock().unwrap().take();
        if let Some(mut st) = state {
            if let Some(sh) = &st.shared {
                sh.request_stop();
            }
            if let Some(w) = st.worker.take()
                && w.join().is_err()
            {
                gst::warning!(CAT, imp = self, "the s3sink worker thread panicked");
            }
            if let Some(sh) = &st.shared {
                let left = sh.queue().len();
                let delivered = sh.link().stats().delivered;
                gst::info!(
                    CAT,
                    imp = self,
                    "stopped: {delivered} crops uploaded, {left} waiting under {} for the next run",
                    st.location.display()
                );
            }
        }
        self.obj().notify("status");
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let uploads = match self.uploads(buffer) {
            Ok(u) => u,
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                return Err(gst::FlowError::Error);
            }
        };
        if uploads.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let (location, shared) = {
            let st = self.state.lock().unwrap();
            let st = st.as_ref().ok_or(gst::FlowError::Flushing)?;
            (st.location.clone(), st.shared.clone())
        };
        let Some(shared) = shared else {
            // Local mode: save only.
            for u in &uploads {
                if let Err(e) = queue::write_file(&location, &u.key, &u.data) {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Write,
                        ("cannot save the crop of event {}: {e}", u.event_id)
                    );
                    return Err(gst::FlowError::Error);
                }
            }
            *self.saved.lock().unwrap() += uploads.len() as u64;
            self.notify_stats(false);
            return Ok(gst::FlowSuccess::Ok);
        };
        let pushed = {
            let mut q = shared.queue();
            let r = q.push(&uploads).map(|o| (o, q.len()));
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
                    ("cannot save {} crops for upload: {e}", uploads.len())
                );
                return Err(gst::FlowError::Error);
            }
        };
        shared.wake();
        *self.saved.lock().unwrap() += outcome.stored;
        gst::trace!(
            CAT,
            imp = self,
            "saved {} crops, {len} queued",
            outcome.stored
        );
        self.warn_overflow(&shared, outcome.dropped);
        self.notify_stats(false);
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view()
            && let Some(shared) = self.shared()
        {
            // Drain while the link is up (or about to try); a down link does not hold EOS:
            // the queue keeps the crops for the next run.
            shared.hold_eos(&self.unlocked);
            gst::debug!(
                CAT,
                imp = self,
                "EOS: {} crops left in the upload queue",
                shared.queue().len()
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
