// SPDX-License-Identifier: MIT OR Apache-2.0
//! The durable-sink core that kafkasink and s3sink share: everything about a sink that keeps
//! its work in a local queue and hands it to a service from a worker thread, except what it
//! queues and how it talks to its service.
//!
//! - [`Queue`]: the durable queue (kafkasink's outbox rows, s3sink's crop files), with its own
//!   bound (events, bytes) and the overflow policy [`Overflow`].
//! - [`Shared`]: what the streaming thread and the worker share: the queue, the link state
//!   machine ([`crate::link`]), the wake/stop signal, the observer that turns the worker's
//!   [`Notice`]s into notifications, and the queue-age gauge.
//! - [`SinkCore`]: the element side: state, `status`/`stats`, the link reporter, push (with the
//!   overflow and disk-space policy and its one warning per episode), EOS drain, unlock, stop.
//! - [`Uploader`] and [`run`]: the worker thread's loop around a sink's connect and send steps.
//!   A sink without a service (local mode) runs the same queue without an uploader
//!   ([`run_local`]), so every bound holds in every mode.
//!
//! Disk space is a bound like the others ([`disk`]): below `min-free-space` on the queue's
//! filesystem, and on a write that fails for lack of space (ENOSPC, SQLite's "database or disk
//! is full"), the overflow policy applies to the new items; the pipeline never stops for it.

pub mod disk;
mod element;

pub use element::{
    DEFAULT_MIN_FREE_SPACE, DurableSink, OVERFLOW_APPLIES, SinkCore, any_sink_pad_template,
    min_free_space_pspec, observer, render, set_logged,
};
pub(crate) use element::{durable_base_sink_methods, durable_sink_glue, sink_element_impl};

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use tokio::sync::watch;

use crate::link::{Link, LinkStats, LinkStatus, Signal, Transition};

/// The queue-age gauge is refreshed at least this often, connected or not.
pub const AGE_EVERY: Duration = Duration::from_secs(1);
/// The overflow warning of an episode re-arms once a push drops nothing, the queue is back
/// under this share of its bound,
pub const REARM_FILL: f64 = 0.9;
/// and the disk has this much more than `min-free-space` free (so a nearly full disk that
/// takes one more item now and then stays one episode).
pub const REARM_FREE: u64 = 1 << 20;

/// What a sink's queue gives up when it is full or the disk is low (properties
/// `outbox-overflow`, `queue-overflow`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAlprSinkOverflow")]
pub enum Overflow {
    #[default]
    #[enum_value(
        name = "Delete the oldest waiting items to make room (keep the freshest)",
        nick = "drop-oldest"
    )]
    DropOldest = 0,
    #[enum_value(
        name = "Refuse new items while full (keep the oldest)",
        nick = "drop-newest"
    )]
    DropNewest = 1,
}

/// What one push stored and gave up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushOutcome {
    pub stored: u64,
    /// Items lost to the overflow policy by this push (old ones or new ones).
    pub dropped: u64,
}

/// A push that failed part way: `done` is what it stored and dropped before `error`, and
/// `handled` how many of the new items that covers (the rest were not touched).
#[derive(Debug)]
pub struct PushError<E> {
    pub done: PushOutcome,
    pub handled: usize,
    pub error: E,
}

impl<E> From<E> for PushError<E> {
    /// A push that failed before storing anything (one transaction).
    fn from(error: E) -> Self {
        PushError {
            done: PushOutcome::default(),
            handled: 0,
            error,
        }
    }
}

/// The words a sink's log lines and warnings use for its queue.
pub struct Words {
    /// Element name, also the worker thread's name.
    pub element: &'static str,
    /// "outbox", "upload queue".
    pub queue: &'static str,
    /// "events", "crops".
    pub items: &'static str,
    /// The size-bound property.
    pub bound: &'static str,
    /// The overflow-policy property.
    pub policy: &'static str,
    /// What drop-oldest does, what drop-newest does.
    pub drop_oldest: &'static str,
    pub drop_newest: &'static str,
    /// What happens to pending work while the link is down (the link warning's debug text).
    pub kept: &'static str,
    /// What the service does with an item: "delivered", "uploaded".
    pub delivered: &'static str,
    /// The log line of local mode (no service configured), before the queue's location.
    pub local: &'static str,
}

/// A sink's durable queue: items are committed locally before anything is sent and removed only
/// once the service acknowledged them.
pub trait Queue: Send + 'static {
    /// What a push stores.
    type Item;
    type Error: std::fmt::Display;
    /// The words of this queue's messages.
    const WORDS: Words;

    /// Stores `items` in order, applying the overflow policy to the queue's own bound.
    fn push(&mut self, items: &[Self::Item]) -> Result<PushOutcome, PushError<Self::Error>>;
    /// Removes up to `n` of the oldest waiting items (the disk-space policy); how many it did.
    fn drop_oldest(&mut self, n: u64) -> Result<u64, Self::Error>;
    /// Items waiting.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// How full the queue is against its own bound (1.0 = at the bound).
    fn fill(&self) -> f64;
    /// The queue's size in its own terms, for messages ("5 events", "5 crops, 1000 bytes").
    fn describe(&self) -> String;
    /// When the oldest waiting item was accepted (wall-clock ms), `None` when empty.
    fn oldest_created_ms(&self) -> Result<Option<i64>, Self::Error>;
    /// The directory whose filesystem holds the queue.
    fn dir(&self) -> &Path;
    /// Where the queue is, for log lines.
    fn location(&self) -> &Path;
    /// Whether `e` says the disk (or the database) is full.
    fn disk_full(e: &Self::Error) -> bool;
}

/// What the worker tells the element.
pub enum Notice {
    Transition(Transition, LinkStats),
    /// Stats changed (deliveries): notify `stats`.
    Stats,
    /// Log lines of the worker and its client library, at GStreamer levels.
    Log(gst::DebugLevel, String),
}

pub type Observer = Arc<dyn Fn(Notice) + Send + Sync>;

/// State shared by the element (streaming thread, property getters) and its worker thread.
pub struct Shared<Q: Queue> {
    queue: Mutex<Q>,
    link: Mutex<Link>,
    signal: Signal,
    stop_tx: watch::Sender<bool>,
    observer: Observer,
    age: prometheus::IntGauge,
    last_age: Mutex<Option<Instant>>,
    last_stats_notice: Mutex<Instant>,
}

pub use crate::lock;

impl<Q: Queue> Shared<Q> {
    /// `sink` is the element's name, the `sink` label of its series.
    pub fn new(queue: Q, link: Link, observer: Observer, sink: &str) -> Arc<Shared<Q>> {
        Arc::new(Shared {
            queue: Mutex::new(queue),
            link: Mutex::new(link),
            signal: Signal::default(),
            stop_tx: watch::channel(false).0,
            observer,
            age: crate::metrics::get()
                .sink_queue_oldest_age
                .with_label_values(&[sink]),
            last_age: Mutex::new(None),
            last_stats_notice: Mutex::new(Instant::now()),
        })
    }

    pub fn queue(&self) -> MutexGuard<'_, Q> {
        lock(&self.queue)
    }

    pub fn link(&self) -> MutexGuard<'_, Link> {
        lock(&self.link)
    }

    /// New work in the queue: wakes the worker (a local one has nothing to do with it).
    pub fn wake(&self) {
        if self.link().status() != LinkStatus::Local {
            self.signal.wake();
        }
    }

    /// Stops the worker: its sleep ends, and futures raced against [`Shared::stopped`] end.
    pub fn request_stop(&self) {
        self.stop_tx.send_replace(true);
        self.signal.request_stop();
    }

    pub fn stopping(&self) -> bool {
        self.signal.stopping()
    }

    /// Resolves once the element stops (to race network futures against).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop_tx.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Sleeps until woken (work, stop) or `timeout`.
    pub fn sleep(&self, timeout: Duration) {
        self.signal.sleep(timeout);
    }

    pub fn signal_progress(&self) {
        self.signal.signal_progress();
    }

    /// The element's observer (for a client library's log callbacks).
    pub fn observer(&self) -> Observer {
        self.observer.clone()
    }

    /// Hands `n` to the element.
    pub fn notice(&self, n: Notice) {
        (self.observer)(n);
    }

    /// Tells the element about a link transition (with the stats of the moment).
    pub fn transition(&self, t: Transition) {
        let stats = self.link().stats().clone();
        self.notice(Notice::Transition(t, stats));
        self.signal_progress();
    }

    /// A failed attempt or a lost connection.
    pub fn fail(&self, reason: &str) {
        let t = self.link().failed(Instant::now(), reason);
        self.transition(t);
    }

    /// `n` items acknowledged and removed; `queued` left.
    pub fn delivered(&self, n: u64, queued: u64) {
        {
            let mut link = self.link();
            let st = link.stats_mut();
            st.delivered += n;
            st.queued = queued;
        }
        if n > 0 {
            self.publish_age(true);
        }
    }

    /// Stats changed: notify at most every 100 ms, or now when `idle` (nothing in flight) and
    /// the last notice is older than that.
    pub fn stats_changed(&self) {
        let mut last = lock(&self.last_stats_notice);
        if last.elapsed() >= Duration::from_millis(100) {
            *last = Instant::now();
            drop(last);
            self.notice(Notice::Stats);
            self.signal_progress();
        }
    }

    /// Sets `alpr_sink_queue_oldest_age_seconds` (0 when nothing waits); at most once per
    /// [`AGE_EVERY`] unless `now`.
    pub fn publish_age(&self, now: bool) {
        {
            let mut last = lock(&self.last_age);
            if !now && last.is_some_and(|t| t.elapsed() < AGE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let age = match self.queue().oldest_created_ms() {
            Ok(Some(ms)) => (crate::event::now_ms() - ms).max(0) / 1000,
            Ok(None) => 0,
            Err(_) => return, // reported by the next queue operation that needs it
        };
        self.age.set(age);
    }

    /// Returns once nothing waits, the link stops holding EOS, or the element is `unlocked`.
    pub fn hold_eos(&self, unlocked: &AtomicBool) {
        self.signal
            .hold_eos(&self.link, unlocked, || !self.queue().is_empty());
    }
}

/// The service-specific half of a worker: connecting, and sending while connected.
pub trait Uploader: Send {
    /// The endpoint, for the "connecting to" line.
    fn endpoint(&self) -> String;
    /// One connection attempt: `Ok(Some(detail))` connected (detail for the log line),
    /// `Ok(None)` stopped first, `Err(reason)` failed.
    fn connect(&mut self) -> Result<Option<String>, String>;
    /// One round while connected (settle acknowledgements, send more); an error loses the
    /// connection.
    fn pump(&mut self) -> Result<(), String>;
    /// Forgets the connection after a failure (what was sent and not acknowledged stays
    /// queued and is sent again after the next connect).
    fn disconnect(&mut self);
    /// Called while waiting for the next attempt with nothing pending.
    fn idle(&mut self) {}
    /// Called once when the worker stops.
    fn shutdown(&mut self) {}
}

/// The worker thread of a sink with a service: drives the link state machine (attempts paced
/// by the link, only while work is pending) and the uploader's rounds while connected.
pub fn run<Q: Queue>(shared: Arc<Shared<Q>>, mut up: Box<dyn Uploader>) {
    let fail = |up: &mut Box<dyn Uploader>, reason: String| {
        up.disconnect();
        shared.fail(&reason);
    };
    while !shared.stopping() {
        shared.publish_age(false);
        let status = shared.link().status();
        match status {
            LinkStatus::Local => shared.sleep(AGE_EVERY),
            LinkStatus::Disconnected | LinkStatus::Connecting => {
                let pending = !shared.queue().is_empty();
                let next = shared.link().next_attempt_in(Instant::now(), pending);
                match next {
                    Some(d) if d.is_zero() => {
                        let t = shared.link().begin_attempt(Instant::now(), &up.endpoint());
                        shared.transition(t);
                        match up.connect() {
                            Ok(Some(detail)) => {
                                let t = shared.link().connected(&detail);
                                shared.transition(t);
                            }
                            Ok(None) => {}
                            Err(reason) => fail(&mut up, reason),
                        }
                    }
                    // In steps of AGE_EVERY, so the queue-age gauge keeps growing.
                    Some(d) => shared.sleep(d.min(AGE_EVERY)),
                    None => {
                        up.idle();
                        shared.sleep(AGE_EVERY)
                    }
                }
            }
            LinkStatus::Connected => {
                if let Err(reason) = up.pump() {
                    fail(&mut up, reason);
                }
            }
        }
    }
    up.shutdown();
    shared.publish_age(true);
    shared.notice(Notice::Stats);
    shared.signal_progress();
}

/// The thread of a sink in local mode (no service): keeps the queue-age gauge current.
pub fn run_local<Q: Queue>(shared: Arc<Shared<Q>>) {
    while !shared.stopping() {
        shared.publish_age(false);
        shared.sleep(AGE_EVERY);
    }
    shared.publish_age(true);
    shared.signal_progress();
}

/// Why a push gave items up, for the warning.
#[derive(Debug, Clone, PartialEq)]
pub enum Pressure {
    /// The queue's own bound.
    Bound,
    /// Free space on the queue's filesystem below `min_free` (`free` bytes left).
    LowDisk { free: u64, min_free: u64 },
    /// A write failed for lack of space.
    DiskFull(String),
}

/// Stores `items` in `q` under the overflow policy and the disk-space bound: with less than
/// `min_free` bytes free (or a write failing for lack of space), drop-oldest removes as many of
/// the oldest waiting items as come in (the queue does not grow; what it frees is reused) and
/// refuses what it cannot make room for; drop-newest refuses the new items. Errors other than
/// a full disk are returned.
pub fn store<Q: Queue>(
    q: &mut Q,
    items: &[Q::Item],
    policy: Overflow,
    min_free: u64,
) -> Result<(PushOutcome, Option<Pressure>), Q::Error> {
    let mut out = PushOutcome::default();
    let mut pressure = None;
    let mut items = items;
    if min_free > 0
        && let Ok(free) = disk::free_bytes(q.dir())
        && free < min_free
    {
        pressure = Some(Pressure::LowDisk { free, min_free });
        let room = make_room(q, items.len() as u64, policy, &mut out)?;
        items = &items[items.len() - room..];
    }
    if items.is_empty() {
        return Ok((out, pressure));
    }
    let retry = match q.push(items) {
        Ok(o) => {
            add(&mut out, o);
            None
        }
        Err(e) if Q::disk_full(&e.error) => {
            add(&mut out, e.done);
            pressure = Some(Pressure::DiskFull(e.error.to_string()));
            Some(&items[e.handled..])
        }
        Err(e) => return Err(e.error),
    };
    if let Some(rest) = retry {
        let room = make_room(q, rest.len() as u64, policy, &mut out)?;
        let rest = &rest[rest.len() - room..];
        if !rest.is_empty() {
            match q.push(rest) {
                Ok(o) => add(&mut out, o),
                Err(e) if Q::disk_full(&e.error) => {
                    add(&mut out, e.done);
                    out.dropped += (rest.len() - e.handled) as u64;
                }
                Err(e) => return Err(e.error),
            }
        }
    }
    if pressure.is_none() && out.dropped > 0 {
        pressure = Some(Pressure::Bound);
    }
    Ok((out, pressure))
}

fn add(out: &mut PushOutcome, o: PushOutcome) {
    out.stored += o.stored;
    out.dropped += o.dropped;
}

/// Under disk pressure: how many of `n` new items may be pushed (the newest), after dropping
/// old ones per `policy`; the refused ones are counted in `out`.
fn make_room<Q: Queue>(
    q: &mut Q,
    n: u64,
    policy: Overflow,
    out: &mut PushOutcome,
) -> Result<usize, Q::Error> {
    let room = match policy {
        // Deleting can need room too (SQLite's WAL appends the pages it changes): on a full
        // disk, what cannot be deleted stays, and the new items are refused.
        Overflow::DropOldest => match q.drop_oldest(n) {
            Err(e) if Q::disk_full(&e) => 0,
            r => r?,
        },
        Overflow::DropNewest => 0,
    };
    out.dropped += n;
    Ok(room as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_nicks_stay_what_pipelines_use() {
        use glib::prelude::*;
        let class = glib::EnumClass::with_type(Overflow::static_type()).unwrap();
        assert_eq!(
            class.value_by_nick("drop-oldest").map(|v| v.value()),
            Some(0)
        );
        assert_eq!(
            class.value_by_nick("drop-newest").map(|v| v.value()),
            Some(1)
        );
    }

    fn records(ids: std::ops::Range<u32>) -> Vec<crate::kafkasink::outbox::NewRecord> {
        ids.map(|i| crate::kafkasink::outbox::NewRecord {
            stream: crate::kafkasink::avro::Stream::Plates,
            event_id: format!("e{i}"),
            key: "cam".into(),
            body: vec![i as u8],
            first_seen_ms: None,
        })
        .collect()
    }

    fn ids(o: &crate::kafkasink::outbox::Outbox) -> Vec<String> {
        o.batch_after(0, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.event_id)
            .collect()
    }

    /// The disk-space policy on a real outbox: below `min_free` (here more than any disk has),
    /// drop-oldest replaces as many of the oldest events as come in and refuses what it cannot
    /// make room for; drop-newest refuses; with room again, everything is stored.
    #[test]
    fn low_disk_policy_on_a_real_outbox() {
        use crate::kafkasink::outbox::Outbox;
        let low = u64::MAX;
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100, Overflow::DropOldest, false).unwrap();
        let (out, p) = store(&mut o, &records(0..4), Overflow::DropOldest, 0).unwrap();
        assert_eq!((out.stored, out.dropped, p), (4, 0, None));
        let (out, p) = store(&mut o, &records(4..6), Overflow::DropOldest, low).unwrap();
        assert_eq!((out.stored, out.dropped), (2, 2));
        assert!(matches!(p, Some(Pressure::LowDisk { .. })), "{p:?}");
        assert_eq!(ids(&o), ["e2", "e3", "e4", "e5"]);
        // More new ones than old ones: the newest that fit are kept, the rest refused.
        let (out, _) = store(&mut o, &records(6..12), Overflow::DropOldest, low).unwrap();
        assert_eq!((out.stored, out.dropped), (4, 6));
        assert_eq!(ids(&o), ["e8", "e9", "e10", "e11"]);
        let (out, _) = store(&mut o, &records(12..14), Overflow::DropNewest, low).unwrap();
        assert_eq!((out.stored, out.dropped), (0, 2));
        assert_eq!(ids(&o).len(), 4);

        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100, Overflow::DropOldest, false).unwrap();
        let (out, _) = store(&mut o, &records(0..3), Overflow::DropOldest, low).unwrap();
        assert_eq!(
            (out.stored, out.dropped),
            (0, 3),
            "nothing older to give up"
        );
        // The queue's own bound is reported as such.
        drop(o);
        let mut o = Outbox::open(dir.path(), 2, Overflow::DropOldest, false).unwrap();
        let (out, p) = store(&mut o, &records(3..6), Overflow::DropOldest, 0).unwrap();
        assert_eq!((out.stored, out.dropped, p), (2, 1, Some(Pressure::Bound)));
    }
}
