// SPDX-License-Identifier: MIT OR Apache-2.0
//! The s3sink worker thread: drives the link state machine, uploads the queued crops in order
//! and applies the retention of uploaded files.
//!
//! Threading: the streaming thread only writes crops to the local directory and commits their
//! rows to the queue (local disk), then wakes this thread. Everything that touches the network
//! runs here, as futures on the plugin's one tokio runtime ([`crate::tokio_runtime`]) that this
//! thread blocks on; each is raced against the stop signal, so `stop()` never waits for the
//! network. The queue (SQLite, bounded by bytes) is the channel between the two threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;

use super::client::{self, Target};
use super::queue::{Queue, QueueError, Upload};
use crate::sink::{Notice, Uploader};

/// What the element and the worker share: the upload queue and the link.
pub type Shared = crate::sink::Shared<Queue>;

/// Queue rows read per batch.
const BATCH: usize = 64;
/// The retention sweep runs at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Config {
    /// The element's name: the `sink` label of its metrics.
    pub sink: String,
    pub target: Target,
    /// Seconds to keep uploaded files: -1 forever, 0 delete at once.
    pub retention_s: i64,
    /// The plugin's tokio runtime, that the network futures run on.
    pub runtime: &'static tokio::runtime::Runtime,
}

pub struct Worker {
    cfg: Config,
    shared: Arc<Shared>,
    store: Option<Arc<dyn ObjectStore>>,
    /// Highest seq uploaded in this connection (rows after it are next).
    cursor: i64,
    last_sweep: Option<Instant>,
}

fn queue_reason(e: QueueError) -> String {
    format!("upload queue: {e}")
}

impl Worker {
    pub fn new(cfg: Config, shared: Arc<Shared>) -> Worker {
        Worker {
            cfg,
            shared,
            store: None,
            cursor: 0,
            last_sweep: None,
        }
    }

    /// Runs `f` on the plugin runtime; `None` when the element stops first.
    fn block<F: std::future::Future>(&self, f: F) -> Option<F::Output> {
        let stopped = self.shared.stopped();
        self.cfg.runtime.block_on(async move {
            tokio::select! {
                r = f => Some(r),
                _ = stopped => None,
            }
        })
    }

    fn open_store(&mut self) -> Result<Option<Arc<dyn ObjectStore>>, String> {
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
    fn round(&mut self) -> Result<(), String> {
        let Some(store) = self.store.clone() else {
            return Err("no object store client".into());
        };
        let batch = self
            .shared
            .queue()
            .batch_after(self.cursor, BATCH)
            .map_err(queue_reason)?;
        self.sweep();
        if batch.is_empty() {
            self.shared.stats_changed();
            self.shared.sleep(Duration::from_millis(200));
            return Ok(());
        }
        for u in batch {
            if self.shared.stopping() || !self.upload(store.as_ref(), &u)? {
                break;
            }
        }
        Ok(())
    }

    /// Uploads one queued crop; `Ok(false)` when stopped before the store answered.
    fn upload(&mut self, store: &dyn ObjectStore, u: &Upload) -> Result<bool, String> {
        let path = self.shared.queue().dir().join(&u.key);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                // Deleted by hand (or by a user's cleanup job): nothing to upload any more.
                self.shared.notice(Notice::Log(
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
                self.shared.delivered(1, queued);
                self.shared.notice(Notice::Log(
                    gst::DebugLevel::Debug,
                    format!(
                        "uploaded {} ({} bytes, {queued} left, {bytes} bytes)",
                        u.key, u.bytes
                    ),
                ));
                self.shared.stats_changed();
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
            Ok(n) => self.shared.notice(Notice::Log(
                gst::DebugLevel::Debug,
                format!("retention: deleted {n} uploaded crops"),
            )),
            Err(e) => self.shared.notice(Notice::Log(
                gst::DebugLevel::Warning,
                format!("retention sweep: {e}"),
            )),
        }
    }
}

impl Uploader for Worker {
    fn endpoint(&self) -> String {
        self.cfg.target.describe()
    }

    fn connect(&mut self) -> Result<Option<String>, String> {
        let Some(store) = self.open_store()? else {
            return Ok(None);
        };
        self.store = Some(store);
        self.cursor = 0;
        Ok(Some(self.cfg.target.describe()))
    }

    fn pump(&mut self) -> Result<(), String> {
        self.round()
    }

    fn disconnect(&mut self) {
        self.store = None;
    }

    fn idle(&mut self) {
        self.sweep();
    }
}
