// SPDX-License-Identifier: MIT OR Apache-2.0
//! The element half of the durable-sink core: what kafkasink's and s3sink's `BaseSink`
//! methods and read-only properties do, apart from building their items and their clients.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{
    Notice, Observer, Overflow, Pressure, PushOutcome, Queue, REARM_FILL, REARM_FREE, Shared,
    Uploader, lock, run, run_local, store,
};
use crate::link::{LinkStats, LinkStatus, TransitionReporter};

/// Default of the sinks' `min-free-space` property, bytes.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 64 << 20;

/// The `min-free-space` property of a sink that writes under `place`; `then` says what
/// happens below it.
pub fn min_free_space_pspec(place: &str, then: &str) -> glib::ParamSpec {
    let blurb = format!(
        "Bytes to keep free on the filesystem of {place}: below it, and when a write fails for \
         lack of space, {then}; the pipeline goes on. 0: only a failed write does"
    );
    glib::ParamSpecUInt64::builder("min-free-space")
        .nick("Minimum free space")
        .blurb(&blurb)
        .default_value(DEFAULT_MIN_FREE_SPACE)
        .mutable_playing()
        .build()
}

/// What the durable sinks do below `min-free-space`.
pub const OVERFLOW_APPLIES: &str = "the overflow policy applies to new items (one warning per \
    episode; the stats' dropped field and alpr_sink_dropped_total count them)";

/// A `set_property` arm: takes the new value of property `name` into `slot`, logging the change
/// (old and new value) at info level.
pub fn set_logged<T>(
    el: &gst::Element,
    cat: gst::DebugCategory,
    name: &str,
    slot: &mut T,
    value: &glib::Value,
) where
    T: for<'a> glib::value::FromValue<'a> + std::fmt::Debug,
{
    let new: T = value.get().expect("type checked upstream");
    gst::info!(cat, obj = el, "Changing {name} from {slot:?} to {new:?}");
    *slot = new;
}

/// The sink pad of the ALPR sinks: any buffers, only their metas are read.
pub fn any_sink_pad_template() -> gst::PadTemplate {
    gst::PadTemplate::new(
        "sink",
        gst::PadDirection::Sink,
        gst::PadPresence::Always,
        &gst::Caps::new_any(),
    )
    .expect("a valid pad template")
}

/// Whether the disk under `shared`'s queue has room again: [`REARM_FREE`] more than `min_free`
/// (an unreadable filesystem does not hold the episode open).
fn room_again<Q: Queue>(shared: &Shared<Q>, min_free: u64) -> bool {
    let dir = shared.queue().dir().to_path_buf();
    super::disk::free_bytes(&dir).map_or(true, |f| f >= min_free.saturating_add(REARM_FREE))
}

/// A `BaseSink` built on [`SinkCore`].
pub trait DurableSink: ObjectSubclass
where
    <Self as ObjectSubclass>::Type: IsA<gst::Element> + Send + Sync,
{
    type Queue: Queue;
    fn core(&self) -> &SinkCore<Self::Queue>;
    fn cat() -> gst::DebugCategory;
    /// The items a buffer brings (its events' records, crops); an error names what is wrong.
    fn items(&self, buffer: &gst::BufferRef) -> Result<Vec<<Self::Queue as Queue>::Item>, String>;
    /// Called after each push that stored or dropped something.
    fn pushed(&self, _outcome: &PushOutcome) {}
}

/// A durable sink's `render`: the buffer's items, stored by [`SinkCore::push`].
pub fn render<S>(imp: &S, buffer: &gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError>
where
    S: DurableSink,
    <S as ObjectSubclass>::Type: IsA<gst::Element> + Send + Sync,
{
    let obj = imp.obj();
    let el: &gst::Element = obj.upcast_ref();
    let items = imp.items(buffer).map_err(|e| {
        gst::element_error!(el, gst::StreamError::Format, ("{e}"));
        gst::FlowError::Error
    })?;
    if !items.is_empty() {
        let outcome = imp.core().push(el, S::cat(), &items)?;
        imp.pushed(&outcome);
    }
    Ok(gst::FlowSuccess::Ok)
}

/// The glue of `impl DurableSink`: the queue type, and the `core` field and debug category of
/// the sink's imp struct.
macro_rules! durable_sink_glue {
    ($queue:ty, $cat:expr) => {
        type Queue = $queue;

        fn core(&self) -> &$crate::sink::SinkCore<$queue> {
            &self.core
        }

        fn cat() -> gst::DebugCategory {
            *$cat
        }
    };
}
pub(crate) use durable_sink_glue;

/// `GstObjectImpl` and `ElementImpl` of an ALPR sink: its metadata, and a sink pad for any
/// buffers (only their metas are read).
macro_rules! sink_element_impl {
    ($imp:ty, $long:expr, $klass:expr, $description:expr) => {
        impl GstObjectImpl for $imp {}

        impl ElementImpl for $imp {
            fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
                static META: std::sync::LazyLock<gst::subclass::ElementMetadata> =
                    std::sync::LazyLock::new(|| {
                        gst::subclass::ElementMetadata::new(
                            $long,
                            $klass,
                            $description,
                            "gst-alpr developers",
                        )
                    });
                Some(&*META)
            }

            fn pad_templates() -> &'static [gst::PadTemplate] {
                static TEMPLATES: std::sync::LazyLock<Vec<gst::PadTemplate>> =
                    std::sync::LazyLock::new(|| vec![$crate::sink::any_sink_pad_template()]);
                TEMPLATES.as_ref()
            }
        }
    };
}
pub(crate) use sink_element_impl;

/// The `BaseSinkImpl` methods every durable sink has the same way (all but `start`): render,
/// stop, the EOS drain, unlock. For use inside `impl BaseSinkImpl for ...`.
macro_rules! durable_base_sink_methods {
    () => {
        fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
            $crate::sink::render(self, buffer)
        }

        fn stop(&self) -> Result<(), gst::ErrorMessage> {
            use $crate::sink::DurableSink;
            self.core().stop(self.obj().upcast_ref(), Self::cat());
            Ok(())
        }

        fn event(&self, event: gst::Event) -> bool {
            use $crate::sink::DurableSink;
            if let gst::EventView::Eos(_) = event.view() {
                self.core().eos(self.obj().upcast_ref(), Self::cat());
            }
            self.parent_event(event)
        }

        fn unlock(&self) -> Result<(), gst::ErrorMessage> {
            use $crate::sink::DurableSink;
            self.core().unlock();
            Ok(())
        }

        fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
            use $crate::sink::DurableSink;
            self.core().unlock_stop();
            Ok(())
        }
    };
}
pub(crate) use durable_base_sink_methods;

/// The observer a sink's worker reports to: the element's [`SinkCore::on_notice`], as long as
/// the element lives.
pub fn observer<S>(imp: &S) -> Observer
where
    S: DurableSink,
    <S as ObjectSubclass>::Type: IsA<gst::Element> + Send + Sync,
{
    let weak = imp.obj().downgrade();
    Arc::new(move |n| {
        if let Some(obj) = weak.upgrade() {
            obj.imp().core().on_notice(obj.upcast_ref(), S::cat(), n);
        }
    })
}

struct Running<Q: Queue> {
    shared: Arc<Shared<Q>>,
    worker: Option<std::thread::JoinHandle<()>>,
    policy: Overflow,
}

/// State and behaviour of a durable sink, owned by its `imp` struct.
pub struct SinkCore<Q: Queue> {
    state: Mutex<Option<Running<Q>>>,
    /// Set by unlock(): EOS drain stops waiting.
    unlocked: AtomicBool,
    /// An overflow episode is on (one warning per episode).
    overflowing: AtomicBool,
    /// Bytes to keep free on the queue's filesystem (`min-free-space`, changeable while
    /// playing).
    min_free: AtomicU64,
    /// One warning per new link failure reason.
    reporter: TransitionReporter,
    /// The service's name, for the link reports (kept after stop for the last ones).
    service: Mutex<String>,
    last_stats_notify: Mutex<Option<Instant>>,
}

impl<Q: Queue> Default for SinkCore<Q> {
    fn default() -> Self {
        SinkCore {
            state: Mutex::new(None),
            unlocked: AtomicBool::new(false),
            overflowing: AtomicBool::new(false),
            min_free: AtomicU64::new(0),
            reporter: TransitionReporter::default(),
            service: Mutex::new(String::new()),
            last_stats_notify: Mutex::new(None),
        }
    }
}

impl<Q: Queue> SinkCore<Q> {
    pub fn shared(&self) -> Option<Arc<Shared<Q>>> {
        lock(&self.state).as_ref().map(|s| s.shared.clone())
    }

    pub fn set_min_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::SeqCst);
    }

    /// The `status` property: the link's, or before start `Disconnected` when a service is
    /// `configured` and `Local` when not.
    pub fn status(&self, configured: bool) -> LinkStatus {
        match self.shared() {
            Some(sh) => sh.link().status(),
            None if configured => LinkStatus::Disconnected,
            None => LinkStatus::Local,
        }
    }

    /// The counters of the `stats` property, `queued` from the queue itself.
    pub fn stats(&self) -> LinkStats {
        match self.shared() {
            Some(sh) => {
                let mut st = sh.link().stats().clone();
                st.queued = sh.queue().len();
                st
            }
            None => LinkStats::default(),
        }
    }

    /// Runs `f` on the queue while the sink runs.
    pub fn with_queue<T>(&self, f: impl FnOnce(&Q) -> T) -> Option<T> {
        self.shared().map(|sh| f(&sh.queue()))
    }

    /// Updates the sink's series, and notifies `stats` (at most every 100 ms unless `force`).
    pub fn notify_stats(&self, el: &gst::Element, force: bool) {
        if self.shared().is_some() {
            crate::metrics::link_stats(&el.name(), &self.stats());
        }
        let now = Instant::now();
        {
            let mut last = lock(&self.last_stats_notify);
            if !force && last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
                return;
            }
            *last = Some(now);
        }
        el.notify("stats");
    }

    pub fn on_notice(&self, el: &gst::Element, cat: gst::DebugCategory, n: Notice) {
        match n {
            Notice::Transition(t, stats) => {
                let service = lock(&self.service).clone();
                self.reporter
                    .report(el, cat, &service, &t, &stats, Q::WORDS.kept);
                el.notify("status");
                self.notify_stats(el, true);
            }
            Notice::Stats => self.notify_stats(el, false),
            Notice::Log(level, msg) => match level {
                gst::DebugLevel::Error | gst::DebugLevel::Warning => {
                    gst::warning!(cat, obj = el, "{msg}")
                }
                gst::DebugLevel::Info => gst::info!(cat, obj = el, "{msg}"),
                _ => gst::debug!(cat, obj = el, "{msg}"),
            },
        }
    }

    /// The end of a sink's `start`: runs `shared` with `uploader` on a worker thread (or the
    /// local thread without one) under the overflow `policy` and `min_free` bytes to keep free.
    pub fn begin(
        &self,
        el: &gst::Element,
        cat: gst::DebugCategory,
        shared: Arc<Shared<Q>>,
        uploader: Option<Box<dyn Uploader>>,
        (policy, min_free): (Overflow, u64),
    ) -> Result<(), gst::ErrorMessage> {
        let w = &Q::WORDS;
        self.set_min_free(min_free);
        let (backlog, size, location) = {
            let q = shared.queue();
            (q.len(), q.describe(), q.location().display().to_string())
        };
        let service = shared.link().service().to_string();
        if uploader.is_none() {
            gst::info!(cat, obj = el, "{} {location}", w.local);
        }
        {
            let mut link = shared.link();
            link.stats_mut().queued = backlog;
        }
        if backlog > 0 {
            let next = match uploader {
                Some(_) => format!("sending them to {service} first, in order"),
                None => "kept (local mode)".to_string(),
            };
            gst::info!(
                cat,
                obj = el,
                "{size} waiting in {location} from an earlier run: {next}"
            );
        }
        let sh = shared.clone();
        let worker = std::thread::Builder::new()
            .name(w.element.into())
            .spawn(move || match uploader {
                Some(up) => run(sh, up),
                None => run_local(sh),
            })
            .map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Failed,
                    ["cannot start the {} worker thread: {e}", w.element]
                )
            })?;
        *lock(&self.service) = service;
        self.overflowing.store(false, Ordering::SeqCst);
        self.reporter.reset();
        *lock(&self.state) = Some(Running {
            shared,
            worker: Some(worker),
            policy,
        });
        el.notify("status");
        self.notify_stats(el, true);
        Ok(())
    }

    pub fn stop(&self, el: &gst::Element, cat: gst::DebugCategory) {
        let w = &Q::WORDS;
        let state = lock(&self.state).take();
        if let Some(mut st) = state {
            st.shared.request_stop();
            if let Some(t) = st.worker.take()
                && t.join().is_err()
            {
                gst::warning!(cat, obj = el, "the {} worker thread panicked", w.element);
            }
            let (left, location) = {
                let q = st.shared.queue();
                (q.len(), q.location().display().to_string())
            };
            let delivered = st.shared.link().stats().delivered;
            gst::info!(
                cat,
                obj = el,
                "stopped: {delivered} {} {}, {left} kept in {location} for the next run",
                w.items,
                w.delivered
            );
        }
        el.notify("status");
    }

    /// Render's part: stores `items` durably under the overflow and disk-space policy, then
    /// wakes the worker and updates the stats. Only an error that is not a full disk fails.
    pub fn push(
        &self,
        el: &gst::Element,
        cat: gst::DebugCategory,
        items: &[Q::Item],
    ) -> Result<PushOutcome, gst::FlowError> {
        let w = &Q::WORDS;
        let (shared, policy) = {
            let st = lock(&self.state);
            let st = st.as_ref().ok_or(gst::FlowError::Flushing)?;
            (st.shared.clone(), st.policy)
        };
        let min_free = self.min_free.load(Ordering::SeqCst);
        let stored = {
            let mut q = shared.queue();
            store(&mut *q, items, policy, min_free).map(|(o, p)| (o, p, q.len(), q.fill()))
        };
        let (outcome, pressure, len, fill) = match stored {
            Ok(v) => v,
            Err(e) => {
                gst::element_error!(
                    el,
                    gst::ResourceError::Write,
                    (
                        "cannot store {} {} in the {}: {e}",
                        items.len(),
                        w.items,
                        w.queue
                    )
                );
                return Err(gst::FlowError::Error);
            }
        };
        {
            let mut link = shared.link();
            link.stats_mut().queued = len;
            link.stats_mut().dropped += outcome.dropped;
        }
        shared.wake();
        gst::trace!(
            cat,
            obj = el,
            "stored {} {}, {len} queued",
            outcome.stored,
            w.items
        );
        match pressure {
            Some(p) if outcome.dropped > 0 => {
                self.warn_overflow(el, cat, &shared, policy, &p, outcome.dropped)
            }
            None if fill < REARM_FILL
                && self.overflowing.load(Ordering::SeqCst)
                && room_again(&shared, min_free) =>
            {
                self.overflowing.store(false, Ordering::SeqCst)
            }
            _ => {}
        }
        self.notify_stats(el, false);
        Ok(outcome)
    }

    /// One bus warning per overflow episode, a log line per push that dropped.
    fn warn_overflow(
        &self,
        el: &gst::Element,
        cat: gst::DebugCategory,
        shared: &Shared<Q>,
        policy: Overflow,
        pressure: &Pressure,
        dropped: u64,
    ) {
        let w = &Q::WORDS;
        let (size, dir) = {
            let q = shared.queue();
            (q.describe(), q.dir().display().to_string())
        };
        let why = match pressure {
            Pressure::Bound => format!("{} full ({size})", w.queue),
            Pressure::LowDisk { free, min_free } => format!(
                "{} full: {free} bytes free on the filesystem of {dir}, under min-free-space \
                 ({min_free})",
                w.queue
            ),
            Pressure::DiskFull(e) => format!("{} full: the disk is full ({e})", w.queue),
        };
        if !self.overflowing.swap(true, Ordering::SeqCst) {
            let what = match (policy, pressure) {
                (Overflow::DropOldest, Pressure::Bound) => w.drop_oldest.to_string(),
                // The disk does not grow by deleting as many as come in; with nothing older
                // left, the new ones are refused.
                (Overflow::DropOldest, _) => format!(
                    "{} to make room, and new {} are refused when none are left",
                    w.drop_oldest, w.items
                ),
                (Overflow::DropNewest, _) => w.drop_newest.to_string(),
            };
            let service = shared.link().service().to_string();
            let status = shared.link().status().nick();
            gst::element_warning!(
                el,
                gst::ResourceError::NoSpaceLeft,
                (
                    "{why}: {what} ({}); the stats' dropped field counts them",
                    w.policy
                ),
                [
                    "{} and min-free-space bound the {}; {size} waiting; {service} is {status}",
                    w.bound,
                    w.queue
                ]
            );
        }
        gst::warning!(
            cat,
            obj = el,
            "{why}: {dropped} {} dropped by the overflow policy",
            w.items
        );
    }

    /// EOS: waits while the link is up (or about to try) and items are waiting. A down link
    /// does not hold EOS: the queue keeps the items for the next run.
    pub fn eos(&self, el: &gst::Element, cat: gst::DebugCategory) {
        if let Some(shared) = self.shared() {
            shared.hold_eos(&self.unlocked);
            gst::debug!(
                cat,
                obj = el,
                "EOS: {} left in the {}",
                shared.queue().describe(),
                Q::WORDS.queue
            );
        }
    }

    pub fn unlock(&self) {
        self.unlocked.store(true, Ordering::SeqCst);
    }

    pub fn unlock_stop(&self) {
        self.unlocked.store(false, Ordering::SeqCst);
    }
}
