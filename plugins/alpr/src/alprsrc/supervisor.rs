// SPDX-License-Identifier: MIT OR Apache-2.0
//! The thread that owns the sessions of one `alprsrc`: it starts one, watches it (reports from
//! the streaming threads and the bus, the no-data timeout), tears it down when it fails and
//! starts the next one `retry-interval` later, following the link state machine of `link.rs`:
//!
//! ```text
//! Disconnected --(retry-interval since the last attempt)--> Connecting --first frame--> Connected
//!       ^                                                        |                         |
//!       +------ error, end of stream, no frame within timeout ---+-------------------------+
//! ```
//!
//! Only this thread builds, starts, stops and removes sessions, so they never overlap: the old
//! session is stopped (its streaming threads joined) before the next one is made.

use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, Report};
use super::session::{self, Config};
use crate::link::{Link, LinkStatus, Transition, TransitionReporter};

/// How often the thread looks at the clock when nothing is reported (the no-data timeout and
/// the retry timer are checked at this resolution).
const TICK: Duration = Duration::from_millis(100);

struct Session {
    id: u64,
    bin: gst::Bin,
    started: Instant,
    playing: bool,
}

pub struct Supervisor {
    element: glib::WeakRef<super::AlprSrc>,
    config: Config,
    /// The URI as logs show it (password redacted).
    shown: String,
    service: String,
    timeout: Duration,
    max_retries: u32,
    restart_on_eos: bool,
    link: Link,
    session: Option<Session>,
    next_id: u64,
    /// Failures since the last frame: a lost connection counts 1, every failed attempt 1 more.
    failed_in_a_row: u32,
    connections: u64,
    /// Log lines and bus warnings, one warning per new reason.
    reporter: TransitionReporter,
    /// No more attempts: final EOS, a fatal error, max-retries reached or the end of a stream
    /// that is not restarted.
    done: bool,
}

/// What the element shows in its `status` and `stats` properties.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    pub status: LinkStatus,
    pub attempts: u64,
    pub failures: u64,
    pub connections: u64,
    pub last_error: String,
}

/// The settings one supervisor runs with.
pub struct Params {
    pub config: Config,
    pub retry_interval: Duration,
    pub timeout: Duration,
    pub max_retries: u32,
    pub restart_on_eos: bool,
}

impl Supervisor {
    pub fn new(element: &super::AlprSrc, p: Params) -> Self {
        let service = super::service_name(&p.config.uri);
        Supervisor {
            element: element.downgrade(),
            shown: super::redact_uri(&p.config.uri),
            link: Link::new(&service, p.retry_interval, true),
            service,
            config: p.config,
            timeout: p.timeout,
            max_retries: p.max_retries,
            restart_on_eos: p.restart_on_eos,
            session: None,
            next_id: 1,
            failed_in_a_row: 0,
            connections: 0,
            reporter: TransitionReporter::default(),
            done: false,
        }
    }

    /// Starts a session now, in PAUSED or PLAYING. The state change result tells whether the
    /// source is live (`NoPreroll`); an error is the reason the session could not start (it is
    /// torn down again).
    pub fn attempt(
        &mut self,
        element: &super::AlprSrc,
        playing: bool,
    ) -> Result<gst::StateChangeSuccess, String> {
        let now = Instant::now();
        let id = self.next_id;
        self.next_id += 1;
        let t = self.link.begin_attempt(now, &self.shown);
        self.report(element, &t);

        let bin = session::build(element, id, &self.config)?;
        element.imp().begin_session(id, &bin);
        if let Err(e) = element.add(&bin) {
            element.imp().end_session(id);
            return Err(format!("cannot add the session: {e}"));
        }
        if playing {
            Self::sync_clock(element, &bin);
        }
        self.session = Some(Session {
            id,
            bin: bin.clone(),
            started: now,
            playing,
        });
        let target = if playing {
            gst::State::Playing
        } else {
            gst::State::Paused
        };
        match bin.set_state(target) {
            Ok(s) => Ok(s),
            Err(_) => {
                let reason = element
                    .imp()
                    .take_failure(id)
                    .unwrap_or_else(|| format!("{} refused to start", self.shown));
                self.teardown(element);
                Err(reason)
            }
        }
    }

    /// The session runs on the pipeline's clock and base time (it was added while the element
    /// was paused, or the pipeline paused and resumed since).
    fn sync_clock(element: &super::AlprSrc, bin: &gst::Bin) {
        let _ = bin.set_clock(element.clock().as_ref());
        if let Some(base) = element.base_time() {
            bin.set_base_time(base);
        }
        bin.set_start_time(gst::ClockTime::NONE);
    }

    /// Records a failed first attempt (the element's start fails with it): status and stats.
    pub fn first_attempt_failed(&mut self, element: &super::AlprSrc, reason: &str) {
        let t = self.link.failed(Instant::now(), reason);
        self.publish(element, &t);
    }

    /// The thread's body: until the element stops it.
    pub fn run(mut self) {
        loop {
            let Some(element) = self.element.upgrade() else {
                break;
            };
            let imp = element.imp();
            let w = imp.wait_control(TICK);
            if w.stop {
                self.teardown(&element);
                break;
            }
            for (id, r) in w.reports {
                if self.session.as_ref().map(|s| s.id) == Some(id) {
                    self.handle(&element, r);
                } else {
                    gst::debug!(CAT, obj = element, "ignoring {r:?} of old session {id}");
                }
            }
            if w.final_eos && !self.done {
                gst::info!(
                    CAT,
                    obj = element,
                    "end of stream requested: no more reconnects"
                );
                self.done = true;
            }
            self.apply_playing(&element, w.playing);
            self.check_stall(&element, w.playing);
            let now = Instant::now();
            if !self.done
                && self.session.is_none()
                && self.link.attempt_due(now, true)
                && let Err(reason) = self.attempt(&element, w.playing)
            {
                self.fail(&element, &reason);
            }
        }
    }

    fn handle(&mut self, element: &super::AlprSrc, r: Report) {
        match r {
            Report::Flowing { caps } => {
                if self.link.status() == LinkStatus::Connecting {
                    self.failed_in_a_row = 0;
                    self.connections += 1;
                    let what = caps
                        .as_ref()
                        .map(|c| session::describe(c))
                        .unwrap_or_else(|| "video".into());
                    let t = self.link.connected(&format!("{}, {what}", self.shown));
                    self.report(element, &t);
                }
            }
            Report::Ended => {
                if self.restart_on_eos {
                    self.fail(element, "the stream ended (end of stream)");
                } else {
                    gst::info!(
                        CAT,
                        obj = element,
                        "{} ended; restart-on-eos is off: end of stream",
                        self.shown
                    );
                    self.done = true;
                }
            }
            Report::Failed { reason, fatal } => {
                if fatal {
                    self.teardown(element);
                    self.done = true;
                    gst::error!(CAT, obj = element, "{}: {reason}", self.shown);
                    gst::element_error!(
                        element,
                        gst::StreamError::Failed,
                        ("alprsrc uri={}: {reason}", self.shown),
                        ["not retried: the same source would fail the same way"]
                    );
                } else {
                    self.fail(element, &reason);
                }
            }
        }
    }

    /// The session failed: tear it down, go Disconnected (next attempt one retry interval
    /// later), or give up after max-retries.
    fn fail(&mut self, element: &super::AlprSrc, reason: &str) {
        self.teardown(element);
        self.failed_in_a_row += 1;
        let mut t = self.link.failed(Instant::now(), reason);
        let give_up = self.max_retries > 0 && self.failed_in_a_row > self.max_retries;
        if give_up {
            self.done = true;
            t.message = format!(
                "{} connection failed, giving up after {} attempts (max-retries={}): {reason}",
                self.service, self.failed_in_a_row, self.max_retries
            );
        }
        self.report(element, &t);
        if give_up {
            gst::element_error!(
                element,
                gst::ResourceError::OpenRead,
                (
                    "alprsrc uri={}: no stream after {} retries (max-retries={}): {reason}",
                    self.shown,
                    self.max_retries,
                    self.max_retries
                ),
                ["raise max-retries (0 = retry forever) or check the camera"]
            );
        }
    }

    fn apply_playing(&mut self, element: &super::AlprSrc, playing: bool) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.playing == playing {
            return;
        }
        s.playing = playing;
        let bin = s.bin.clone();
        if playing {
            Self::sync_clock(element, &bin);
            element.imp().touch();
        }
        let target = if playing {
            gst::State::Playing
        } else {
            gst::State::Paused
        };
        if bin.set_state(target).is_err() {
            let id = s.id;
            let reason = element
                .imp()
                .take_failure(id)
                .unwrap_or_else(|| format!("{} refused to go to {target:?}", self.shown));
            self.fail(element, &reason);
        }
    }

    /// No frame for `timeout` while playing (a push blocked downstream does not count): the
    /// camera stopped sending without closing the connection.
    fn check_stall(&mut self, element: &super::AlprSrc, playing: bool) {
        let Some(s) = self.session.as_ref() else {
            return;
        };
        if !playing {
            return;
        }
        let (in_push, last) = element.imp().activity();
        if in_push {
            return;
        }
        let connected = self.link.status() == LinkStatus::Connected;
        let since = match last {
            Some(t) if connected || t > s.started => t,
            _ => s.started,
        };
        if since.elapsed() < self.timeout {
            return;
        }
        let secs = self.timeout.as_secs();
        let reason = if connected {
            format!("no frame for {secs}s (timeout)")
        } else {
            format!("no video within {secs}s of connecting (timeout)")
        };
        self.fail(element, &reason);
    }

    /// Stops and removes the session: its streaming threads are joined before this returns.
    fn teardown(&mut self, element: &super::AlprSrc) {
        let Some(s) = self.session.take() else {
            return;
        };
        element.imp().end_session(s.id);
        let _ = s.bin.set_state(gst::State::Null);
        element.imp().unlink_session(&s.bin);
        let _ = element.remove(&s.bin);
        gst::debug!(CAT, obj = element, "session {} removed", s.id);
    }

    /// Log line, bus warning (once per new reason, and on every lost connection), status.
    fn report(&mut self, element: &super::AlprSrc, t: &Transition) {
        self.reporter.log(
            element.upcast_ref(),
            *CAT,
            t,
            gst::ResourceError::Read,
            "the pipeline keeps running; downstream sees no EOS",
        );
        self.publish(element, t);
    }

    /// Status and stats properties (notified) and the `alpr-link-status` element message.
    fn publish(&self, element: &super::AlprSrc, t: &Transition) {
        let stats = self.link.stats();
        element.imp().set_shown(Shown {
            status: t.to,
            attempts: stats.attempts,
            failures: stats.failures,
            connections: self.connections,
            last_error: stats.last_error.clone(),
        });
        let mut s = t.to_structure(&self.service, stats);
        s.set("uri", self.shown.as_str());
        let _ = element.post_message(gst::message::Element::builder(s).src(element).build());
    }
}
