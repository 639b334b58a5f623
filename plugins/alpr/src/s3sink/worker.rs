// SPDX-License-Identifier: MIT OR Apache-2.0
//! The s3sink worker thread: drives the link state machine, uploads the queued crops in order
//! and applies the retention of uploaded files.
//!
//! Threading: the streaming thread only writes crops to the local directory and commits their
//! rows to the queue (local disk), then wakes this thread. Everything that touches the network
//! runs here, as futures on the plugin's one tokio runtime ([`crate::tokio_runtime`]) that this
//! thread blocks on; each is raced against the stop signal, so `stop()` never waits for the
//! network. The queue (SQLite, bounded by bytes) is the channel between the two threads.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use tokio::sync::watch;

use super::client::{self, Target};
use super::queue::{Queue, QueueError, Upload};
use crate::link::{Link, LinkStats, LinkStatus, Signal, Transition};

/// Queue rows read per batch.
const BATCH: usize = 64;
/// The retention sweep runs at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The queue-age gauge is refreshed at least this often, connected or not.
const AGE_EVERY: Duration = Duration::from_secs(1);

pub struct Config {
    /// The element's name: the `sink` label of its metrics.
    pub sink: String,
    pub target: Target,
    /// Seconds to keep uploaded files: -1 forever, 0 delete at once.
    pub retention_s: i64,
    /// The plugin's tokio runtime, that the network futures run on.
    pub runtime: &'static tokio::runtime::Runtime,
}

/// What the worker tells the element.
pub enum Notice {
    Transition(Transition, LinkStats),
    /// Stats changed (uploads): notify `stats`.
    Stats,
    Log(gst::DebugLevel, String),
}

pub type Observer = Arc<dyn Fn(Notice) + Send + Sync>;

/// State shared by the element (streaming thread, property getters) and the worker.
pub struct Shared {
    queue: Mutex<Queue>,
    link: Mutex<Link>,
    signal: Signal,
    stop_tx: watch::Sender<bool>,
}

impl Shared {
    pub fn new(queue: Queue, link: Link) -> Arc<Shared> {
        Arc::new(Shared {
            queue: Mutex::new(queue),
            link: Mutex::new(link),
            signal: Signal::default(),
            stop_tx: watch::channel(false).0,
        })
    }

    pub fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn wake(&self) {
        self.signal.wake();
    }

    /// Stops the worker: its sleep ends and any request in flight is abandoned.
    pub fn request_stop(&self) {
        self.stop_tx.send_replace(true);
        self.signal.request_stop();
    }

    /// Returns once no crops wait, the link stops holding EOS, or the element is `unlocked`.
    pub fn hold_eos(&self, unlocked: &std::sync::atomic::AtomicBool) {
        self.signal
            .hold_eos(&self.link, unlocked, || !self.queue().is_empty());
    }
}

pub struct Worker {
    cfg: Config,
    shared: Arc<Shared>,
    observer: Observer,
    store: Option<Arc<dyn ObjectStore>>,
    /// Highest seq uploaded in this connection (rows after it are next).
    cursor: i64,
    last_sweep: Option<Instant>,
    last_stats_notice: Instant,
    last_age: Option<Instant>,
}

fn queue_reason(e: QueueError) -> String {
    format!("upload queue: {e}")
}

impl Worker {
    pub fn new(cfg: Config, shared: Arc<Shared>, observer: Observer) -> Worker {
        Worker {
            cfg,
            shared,
            observer,
            store: None,
            cursor: 0,
            last_sweep: None,
            last_stats_notice: Instant::now(),
            last_age: None,
        }
    }

    /// Runs `f` on the plugin runtime; `None` when the element stops first.
    fn block<F: std::future::Future>(&self, f: F) -> Option<F::Output> {
        let mut stop = self.shared.stop_tx.subscribe();
        self.cfg.runtime.block_on(async move {
            tokio::select! {
                r = f => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            }
        })
    }

    fn transition(&self, t: Transition) {
        let stats = self.shared.link().stats().clone();
        (self.observer)(Notice::Transition(t, stats));
        self.shared.signal.signal_progress();
    }

    fn fail(&mut self, reason: String) {
        self.store = None;
        let t = self.shared.link().failed(Instant::now(), &reason);
        self.transition(t);
    }

    fn stopping(&self) -> bool {
        self.shared.signal.stopping()
    }

    pub fn run(mut self) {
        while !self.stopping() {
            self.publish_age(false);
            let status = self.shared.link().status();
            match status {
                LinkStatus::Local => self.shared.signal.sleep(Duration::from_secs(1)),
                LinkStatus::Disconnected | LinkStatus::Connecting => {
                    let pending = !self.shared.queue().is_empty();
                    let next = self.shared.link().next_attempt_in(Instant::now(), pending);
                    match next {
                        Some(d) if d.is_zero() => self.attempt(),
                        // In steps of AGE_EVERY, so the queue-age gauge keeps growing.
                        Some(d) => self.shared.signal.sleep(d.min(AGE_EVERY)),
                        None => {
                            self.sweep();
                            self.shared.signal.sleep(Duration::from_secs(1))
                        }
                    }
                }
                LinkStatus::Connected => self.pump(),
            }
        }
        self.publish_age(true);
        (self.observer)(Notice::Stats);
        self.shared.signal.signal_progress();
    }

    /// Sets `alpr_sink_queue_oldest_age_seconds` (0 when nothing waits); at most once per
    /// [`AGE_EVERY`] unless `now`.
    fn publish_age(&mut self, now: bool) {
        if !now && self.last_age.is_some_and(|t| t.elapsed() < AGE_EVERY) {
            return;
        }
        self.last_age = Some(Instant::now());
        let oldest = self.shared.queue().oldest_created_ms();
        let age = match oldest {
            Ok(Some(ms)) => (crate::event::now_ms() - ms).max(0) / 1000,
            Ok(None) => 0,
            Err(_) => return, // reported by the next queue operation that needs it
        };
        crate::metrics::get()
            .sink_queue_oldest_age
            .with_label_values(&[self.cfg.sink.as_str()])
            .set(age);
    }

    fn attempt(&mut self) {
        let t = self
            .shared
            .link()
            .begin_attempt(Instant::now(), &self.cfg.target.describe());
        self.transition(t);
        match self.connect() {
            Ok(Some(store)) => {
                self.store = Some(store);
                self.cursor = 0;
                let t = self.shared.link().connected(&self.cfg.target.describe());
                self.transition(t);
            }
            Ok(None) => {} // stopping
            Err(reason) => self.fail(reason),
        }
    }

    fn connect(&mut self) -> Result<Option<Arc<dyn ObjectStore>>, String> {
        let target = self.cfg.target.clone();
        let store = target.build()?;
        if let Target::S3 {
            create_bucket: true,
            ..
        } = &target
        {
            let t2 = target.clone();
            // A blocking HTTP call with a short timeout: off the runtime's workers.
            let created = self.block(async move {
                tokio::task::spawn_blocking(move || t2.create_bucket_if_asked()).await
            });
            match created {
                None => return Ok(None),
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(e)) => return Err(format!("create-bucket: {e}")),
            }
        }
        let s2 = store.clone();
        match self.block(async move { client::probe(s2.as_ref()).await }) {
            None => Ok(None),
            Some(Ok(())) => Ok(Some(store)),
            Some(Err(e)) => Err(client::reason(&target, &e)),
        }
    }

    /// One round while connected: the next batch of uploads, in order.
    fn pump(&mut self) {
        let Some(store) = self.store.clone() else {
            self.fail("no object store client".into());
            return;
        };
        let batch = self.shared.queue().batch_after(self.cursor, BATCH);
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                self.fail(queue_reason(e));
                return;
            }
        };
        self.sweep();
        if batch.is_empty() {
            self.stats_changed(true);
            self.shared.signal.sleep(Duration::from_millis(200));
            return;
        }
        for u in batch {
            if self.stopping() {
                return;
            }
            match self.upload(store.as_ref(), &u) {
                Ok(true) => {}
                Ok(false) => return, // stopping
                Err(reason) => {
                    self.fail(reason);
                    return;
                }
            }
        }
    }

    /// Uploads one queued crop; `Ok(false)` when stopped before the store answered.
    fn upload(&mut self, store: &dyn ObjectStore, u: &Upload) -> Result<bool, String> {
        let path = self.shared.queue().dir().join(&u.key);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                // Deleted by hand (or by a user's cleanup job): nothing to upload any more.
                (self.observer)(Notice::Log(
                    gst::DebugLevel::Warning,
                    format!(
                        "queued crop {} is unreadable ({e}): dropped from the upload queue",
                        path.display()
                    ),
                ));
                self.shared.queue().forget(u).map_err(queue_reason)?;
                self.shared.link().stats_mut().dropped += 1;
                self.cursor = u.seq;
                return Ok(true);
            }
        };
        let meta = self.cfg.target.supports_attributes().then_some((
            u.event_id.as_str(),
            u.camera.as_str(),
            u.plate.as_str(),
        ));
        match self.block(client::put(store, &u.key, data, meta)) {
            None => Ok(false),
            Some(Err(e)) => Err(format!(
                "upload of {}: {}",
                u.key,
                client::reason(&self.cfg.target, &e)
            )),
            Some(Ok(())) => {
                let (queued, bytes) = {
                    let mut q = self.shared.queue();
                    q.done(u, self.cfg.retention_s).map_err(queue_reason)?;
                    (q.len(), q.bytes())
                };
                self.cursor = u.seq;
                let latency_ms = (crate::event::now_ms() - u.created_ms).max(0);
                crate::metrics::get()
                    .sink_latency
                    .with_label_values(&[self.cfg.sink.as_str()])
                    .observe(latency_ms as f64 / 1000.0);
                if queued == 0 {
                    self.publish_age(true);
                }
                {
                    let mut link = self.shared.link();
                    let st = link.stats_mut();
                    st.delivered += 1;
                    st.queued = queued;
                }
                (self.observer)(Notice::Log(
                    gst::DebugLevel::Debug,
                    format!(
                        "uploaded {} ({} bytes, {queued} left, {bytes} bytes)",
                        u.key, u.bytes
                    ),
                ));
                self.stats_changed(false);
                Ok(true)
            }
        }
    }

    /// Deletes uploaded files past their retention.
    fn sweep(&mut self) {
        if self.cfg.retention_s <= 0 || self.last_sweep.is_some_and(|t| t.elapsed() < SWEEP_EVERY) {
            return;
        }
        self.last_sweep = Some(Instant::now());
        let r = self
            .shared
            .queue()
            .sweep(self.cfg.retention_s, crate::event::now_ms());
        match r {
            Ok(0) => {}
            Ok(n) => (self.observer)(Notice::Log(
                gst::DebugLevel::Debug,
                format!("retention: deleted {n} uploaded crops"),
            )),
            Err(e) => (self.observer)(Notice::Log(
                gst::DebugLevel::Warning,
                format!("retention sweep: {e}"),
            )),
        }
    }

    fn stats_changed(&mut self, idle: bool) {
        if self.last_stats_notice.elapsed() >= Duration::from_millis(100) || idle {
            if idle && self.last_stats_notice.elapsed() < Duration::from_millis(100) {
                return;
            }
            self.last_stats_notice = Instant::now();
            (self.observer)(Notice::Stats);
            self.shared.signal.signal_progress();
        }
    }
}
