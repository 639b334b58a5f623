// SPDX-License-Identifier: MIT OR Apache-2.0
//! The reconnect state machine shared by the network sinks (kafkasink, s3sink).
//!
//! ```text
//! Disconnected --(work pending, retry timer due)--> Connecting --ok--> Connected
//!       ^                                              |                  |
//!       +------------- failure (logs reason) ----------+---- error -------+
//! ```
//!
//! It knows nothing about the service it guards: a sink names the service ("Kafka") and
//! describes its endpoint for the logs; the sink's worker thread drives the machine and turns each
//! [`Transition`] into a log line, an element message and property notifications. Attempts are
//! paced: at most one per `retry_interval`, and only while work is pending, so a sink with an
//! unreachable service and nothing to send stays quiet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

/// The `status` property of a network sink.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAlprLinkStatus")]
pub enum LinkStatus {
    /// No service configured: everything stays in the local outbox.
    #[default]
    #[enum_value(name = "Local only (no service configured)", nick = "local")]
    Local = 0,
    #[enum_value(
        name = "Disconnected (will retry while work is pending)",
        nick = "disconnected"
    )]
    Disconnected = 1,
    #[enum_value(name = "Connecting", nick = "connecting")]
    Connecting = 2,
    #[enum_value(name = "Connected", nick = "connected")]
    Connected = 3,
}

impl LinkStatus {
    pub fn nick(self) -> &'static str {
        match self {
            LinkStatus::Local => "local",
            LinkStatus::Disconnected => "disconnected",
            LinkStatus::Connecting => "connecting",
            LinkStatus::Connected => "connected",
        }
    }
}

/// Counters of a sink, shown by its `stats` property.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Connection attempts so far.
    pub attempts: u64,
    /// Failed attempts plus losses of an established connection.
    pub failures: u64,
    /// Reason of the last failure, empty when none.
    pub last_error: String,
    /// Work accepted but not yet acknowledged by the service (the outbox depth).
    pub queued: u64,
    /// Work acknowledged by the service since start.
    pub delivered: u64,
    /// Work the outbox dropped by its overflow policy since start.
    pub dropped: u64,
}

impl LinkStats {
    pub fn to_structure(&self, name: &str) -> gst::Structure {
        gst::Structure::builder(name)
            .field("attempts", self.attempts)
            .field("failures", self.failures)
            .field("last-error", self.last_error.as_str())
            .field("queued", self.queued)
            .field("delivered", self.delivered)
            .field("dropped", self.dropped)
            .build()
    }
}

/// One change of status, with the line a user reads in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: LinkStatus,
    pub to: LinkStatus,
    /// The failure reason, for transitions to `Disconnected`.
    pub reason: Option<String>,
    /// Human-readable line for the log, e.g. "Connected to Kafka (bootstrap ...)".
    pub message: String,
}

impl Transition {
    /// The element message posted on the bus for this transition.
    pub fn to_structure(&self, service: &str, stats: &LinkStats) -> gst::Structure {
        gst::Structure::builder("alpr-link-status")
            .field("service", service)
            .field("status", self.to)
            .field("previous", self.from)
            .field("reason", self.reason.as_deref().unwrap_or(""))
            .field("message", self.message.as_str())
            .field("attempts", stats.attempts)
            .field("failures", stats.failures)
            .build()
    }
}

/// The state machine. Pure logic: the caller passes the clock.
#[derive(Debug)]
pub struct Link {
    service: String,
    retry_interval: Duration,
    status: LinkStatus,
    last_attempt: Option<Instant>,
    stats: LinkStats,
}

impl Link {
    /// `configured = false` puts the link in `Local` for good (no service to talk to).
    pub fn new(service: &str, retry_interval: Duration, configured: bool) -> Self {
        Link {
            service: service.to_string(),
            retry_interval,
            status: if configured {
                LinkStatus::Disconnected
            } else {
                LinkStatus::Local
            },
            last_attempt: None,
            stats: LinkStats::default(),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn status(&self) -> LinkStatus {
        self.status
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    pub fn stats_mut(&mut self) -> &mut LinkStats {
        &mut self.stats
    }

    pub fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    /// How long until an attempt may start: `None` when none is wanted (not disconnected, or
    /// nothing pending), zero when one is due now.
    pub fn next_attempt_in(&self, now: Instant, pending: bool) -> Option<Duration> {
        if self.status != LinkStatus::Disconnected || !pending {
            return None;
        }
        Some(match self.last_attempt {
            None => Duration::ZERO,
            Some(t) => (t + self.retry_interval).saturating_duration_since(now),
        })
    }

    /// Whether an attempt should start now.
    pub fn attempt_due(&self, now: Instant, pending: bool) -> bool {
        self.next_attempt_in(now, pending) == Some(Duration::ZERO)
    }

    fn go(&mut self, to: LinkStatus, reason: Option<String>, message: String) -> Transition {
        let from = self.status;
        self.status = to;
        Transition {
            from,
            to,
            reason,
            message,
        }
    }

    /// Disconnected -> Connecting. `endpoint` describes where (no secrets).
    pub fn begin_attempt(&mut self, now: Instant, endpoint: &str) -> Transition {
        self.last_attempt = Some(now);
        self.stats.attempts += 1;
        let msg = format!("Attempting to connect to {} ({endpoint})...", self.service);
        self.go(LinkStatus::Connecting, None, msg)
    }

    /// Connecting -> Connected; `detail` names the endpoints (and topics or bucket).
    pub fn connected(&mut self, detail: &str) -> Transition {
        let msg = format!("Connected to {} ({detail})", self.service);
        self.go(LinkStatus::Connected, None, msg)
    }

    /// Connecting or Connected -> Disconnected. The next attempt comes one retry interval
    /// after the last one started (a lost connection waits a full interval from now, so a
    /// flapping service does not cause a tight loop).
    pub fn failed(&mut self, now: Instant, reason: &str) -> Transition {
        if self.status == LinkStatus::Connected {
            self.last_attempt = Some(now);
        }
        self.stats.failures += 1;
        self.stats.last_error = reason.to_string();
        let wait = self
            .last_attempt
            .map(|t| (t + self.retry_interval).saturating_duration_since(now))
            .unwrap_or(Duration::ZERO);
        let what = if self.status == LinkStatus::Connected {
            "connection lost"
        } else {
            "connection failed"
        };
        let msg = format!(
            "{} {what} (will retry in {}): {reason}",
            self.service,
            human(wait.max(Duration::from_secs(1)))
        );
        self.go(LinkStatus::Disconnected, Some(reason.to_string()), msg)
    }
}

#[derive(Default)]
struct Flags {
    stop: bool,
    work: bool,
    /// The worker waits in `sleep`: only then is a wake-up (a system call) needed.
    sleeping: bool,
}

/// How a sink's streaming thread and its worker thread wake each other: "work queued",
/// "stop", and "progress" (deliveries, transitions) for an EOS drain to wait on.
#[derive(Default)]
pub struct Signal {
    flags: Mutex<Flags>,
    wake: Condvar,
    progress: Condvar,
    progress_lock: Mutex<()>,
}

impl Signal {
    fn flags(&self) -> MutexGuard<'_, Flags> {
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New work queued. Cheap when the worker is busy (it finds the flag on its next round):
    /// a sink calls this for every buffer.
    pub fn wake(&self) {
        let mut f = self.flags();
        f.work = true;
        if f.sleeping {
            self.wake.notify_all();
        }
    }

    pub fn request_stop(&self) {
        self.flags().stop = true;
        self.wake.notify_all();
        self.signal_progress();
    }

    pub fn stopping(&self) -> bool {
        self.flags().stop
    }

    /// Sleeps until woken (work, stop) or `timeout`.
    pub fn sleep(&self, timeout: Duration) {
        let mut f = self.flags();
        if !f.work && !f.stop {
            f.sleeping = true;
            f = self
                .wake
                .wait_timeout(f, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            f.sleeping = false;
        }
        f.work = false;
    }

    pub fn signal_progress(&self) {
        let _g = self.progress_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.progress.notify_all();
    }

    /// Waits until `done()` or `timeout`; re-checked on every progress signal.
    /// Holds a sink's EOS while work is `pending` and the link holds EOS
    /// ([`Link::holds_eos`]: up, or about to try), until the sink is `unlocked` (flush or
    /// shutdown). A down link does not hold EOS: the work stays stored for the next run.
    pub fn hold_eos(&self, link: &Mutex<Link>, unlocked: &AtomicBool, pending: impl Fn() -> bool) {
        let drained = || {
            unlocked.load(Ordering::SeqCst)
                || !pending()
                || !link
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .holds_eos(Instant::now())
        };
        while !self.wait_progress(Duration::from_secs(1), drained) {}
    }

    pub fn wait_progress(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.progress_lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if done() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Short waits: `done` may depend on state signalled without this lock.
            g = self
                .progress
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(100)))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

/// `30s`, `2m`, `1m30s`: short and unambiguous for logs.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_link_never_attempts() {
        let l = Link::new("Kafka", Duration::from_secs(30), false);
        assert_eq!(l.status(), LinkStatus::Local);
        assert_eq!(l.next_attempt_in(Instant::now(), true), None);
    }

    #[test]
    fn attempts_are_driven_by_pending_work_and_paced() {
        let t0 = Instant::now();
        let mut l = Link::new("Kafka", Duration::from_secs(30), true);
        assert!(!l.attempt_due(t0, false), "no work, no attempt");
        assert!(l.attempt_due(t0, true), "first attempt at once");
        let t = l.begin_attempt(t0, "bootstrap 127.0.0.1:9");
        assert_eq!(
            t.message,
            "Attempting to connect to Kafka (bootstrap 127.0.0.1:9)..."
        );
        assert_eq!(
            l.next_attempt_in(t0, true),
            None,
            "no attempt while connecting"
        );
        let t = l.failed(t0 + Duration::from_secs(2), "Connection refused");
        assert_eq!(t.to, LinkStatus::Disconnected);
        assert_eq!(
            t.message,
            "Kafka connection failed (will retry in 28s): Connection refused"
        );
        assert!(!l.attempt_due(t0 + Duration::from_secs(29), true));
        assert_eq!(
            l.next_attempt_in(t0 + Duration::from_secs(10), true),
            Some(Duration::from_secs(20))
        );
        assert!(l.attempt_due(t0 + Duration::from_secs(30), true));
        l.begin_attempt(t0 + Duration::from_secs(30), "x");
        let t = l.connected("bootstrap 127.0.0.1:9, schema registry http://r");
        assert_eq!(t.from, LinkStatus::Connecting);
        assert_eq!(
            t.message,
            "Connected to Kafka (bootstrap 127.0.0.1:9, schema registry http://r)"
        );
        // A lost connection waits a whole interval from the loss.
        let lost = t0 + Duration::from_secs(100);
        let t = l.failed(lost, "all brokers down");
        assert!(
            t.message
                .starts_with("Kafka connection lost (will retry in 30s)")
        );
        assert!(!l.attempt_due(lost + Duration::from_secs(29), true));
        assert!(l.attempt_due(lost + Duration::from_secs(30), true));
        assert_eq!(l.stats().attempts, 2);
        assert_eq!(l.stats().failures, 2);
        assert_eq!(l.stats().last_error, "all brokers down");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(30)), "30s");
        assert_eq!(human(Duration::from_secs(120)), "2m");
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
    }
}

/// What a network sink does on each link transition, in one place for every sink: a log line,
/// a bus warning once per distinct failure (and on every loss of an established connection, so
/// a flapping link is visible but a dead one does not flood the bus), the `alpr-link-status`
/// element message, and the Prometheus series.
#[derive(Debug, Default)]
pub struct TransitionReporter {
    last_warning: Mutex<Option<String>>,
}

impl TransitionReporter {
    /// Forgets the last warning (a new start warns again).
    pub fn reset(&self) {
        *self.last_warning.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `kept` says, for the warning's debug text, what happens to the sink's pending work.
    pub fn report(
        &self,
        element: &gst::Element,
        cat: gst::DebugCategory,
        service: &str,
        t: &Transition,
        stats: &LinkStats,
        kept: &str,
    ) {
        self.log(element, cat, t, gst::ResourceError::Write, kept);
        crate::metrics::link_transition(&element.name(), t);
        let s = t.to_structure(service, stats);
        let _ = element.post_message(gst::message::Element::builder(s).src(element).build());
    }

    /// The log line and the bus warning of [`TransitionReporter::report`], for a link that
    /// publishes its status its own way (alprsrc). `error` is the warning's domain and `kept`
    /// its debug text.
    pub fn log(
        &self,
        element: &gst::Element,
        cat: gst::DebugCategory,
        t: &Transition,
        error: gst::ResourceError,
        kept: &str,
    ) {
        match t.to {
            LinkStatus::Disconnected => {
                gst::warning!(cat, obj = element, "{}", t.message);
                let reason = t.reason.clone().unwrap_or_default();
                let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
                if t.from == LinkStatus::Connected || last.as_deref() != Some(&reason) {
                    *last = Some(reason);
                    drop(last);
                    gst::element_warning!(element, error, ("{}", t.message), ["{kept}"]);
                }
            }
            LinkStatus::Connected => {
                self.reset();
                gst::info!(cat, obj = element, "{}", t.message);
            }
            _ => gst::info!(cat, obj = element, "{}", t.message),
        }
    }
}

impl Link {
    /// Whether a sink's EOS should wait for its pending work: while the link is up or about to
    /// try. A down link does not hold EOS: the work stays stored for the next run.
    pub fn holds_eos(&self, now: Instant) -> bool {
        match self.status() {
            LinkStatus::Local => false,
            LinkStatus::Disconnected => self.attempt_due(now, true),
            LinkStatus::Connecting | LinkStatus::Connected => true,
        }
    }
}
