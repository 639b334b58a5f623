// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{Condvar, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::RtspTransport;
use super::session::{self, Config};
use super::supervisor::{Params, Shown, Supervisor};
use crate::link::LinkStatus;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "alprsrc",
        gst::DebugColorFlags::empty(),
        Some("ALPR reconnecting camera source"),
    )
});

const DEFAULT_RETRY_INTERVAL: u32 = 5;
const DEFAULT_TIMEOUT: u32 = 10;
const DEFAULT_MAX_RETRIES: u32 = 0;
const DEFAULT_RESTART_ON_EOS: bool = true;
const DEFAULT_LATENCY: u32 = 200;

#[derive(Debug, Clone)]
struct Settings {
    uri: Option<String>,
    retry_interval: u32,
    timeout: u32,
    max_retries: u32,
    restart_on_eos: bool,
    latency: u32,
    transport: RtspTransport,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            uri: None,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            restart_on_eos: DEFAULT_RESTART_ON_EOS,
            latency: DEFAULT_LATENCY,
            transport: RtspTransport::default(),
        }
    }
}

/// What the streaming threads and the bus tell the supervisor about a session.
#[derive(Debug)]
pub(super) enum Report {
    /// The session's first frame went downstream (its caps).
    Flowing { caps: Option<gst::Caps> },
    /// The inner source ended (EOS).
    Ended,
    /// An error inside the session. Fatal ones (no video, no decoder) are not retried.
    Failed { reason: String, fatal: bool },
}

/// Supervisor <-> streaming threads, bus and state changes.
#[derive(Default)]
struct Control {
    stop: bool,
    final_eos: bool,
    playing: bool,
    /// The session whose reports count, and its bin (to recognise its bus messages).
    current: Option<(u64, gst::Bin)>,
    /// The current session exposed its video stream.
    video_linked: bool,
    /// Streams of the current session that are not raw video (for the "no video" error).
    other_streams: Vec<String>,
    reports: Vec<(u64, Report)>,
}

/// What the supervisor's wait returns.
pub(super) struct Wake {
    pub stop: bool,
    pub final_eos: bool,
    pub playing: bool,
    pub reports: Vec<(u64, Report)>,
}

/// The streaming side: state of the data going out of the src pad.
#[derive(Default)]
struct Flow {
    /// Session whose data goes out; 0 while none (data of a session being removed is dropped).
    session: u64,
    /// The first buffer of `session` went out.
    flowing: bool,
    /// Sessions whose data went out so far.
    sessions_flowed: u64,
    live: bool,
    restart_on_eos: bool,
    /// EOS from the application went out: nothing more.
    final_eos: bool,
    /// Sent again instead of every later session's own: downstream sees one stream.
    stream_start: Option<gst::Event>,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    caps: Option<gst::Caps>,
    /// Running time (with the pad offset) at the end of the last buffer that went out.
    last_end: Option<gst::ClockTime>,
    in_push: bool,
    last_activity: Option<Instant>,
    frames: u64,
    /// Last latency answered by a session, answered again between sessions.
    latency: Option<(gst::ClockTime, Option<gst::ClockTime>)>,
}

pub struct AlprSrc {
    srcpad: gst::GhostPad,
    settings: Mutex<Settings>,
    control: Mutex<Control>,
    wake: Condvar,
    flow: Mutex<Flow>,
    shown: Mutex<Shown>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

use crate::lock;

/// Errors a new attempt would hit again: no decoder, not a media file, no video.
fn is_fatal(err: &glib::Error) -> bool {
    err.matches(gst::CoreError::MissingPlugin)
        || err.matches(gst::StreamError::CodecNotFound)
        || err.matches(gst::StreamError::TypeNotFound)
}

impl AlprSrc {
    fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    pub(super) fn report(&self, id: u64, r: Report) {
        lock(&self.control).reports.push((id, r));
        self.wake.notify_all();
    }

    pub(super) fn wait_control(&self, timeout: Duration) -> Wake {
        let mut c = lock(&self.control);
        if c.reports.is_empty() && !c.stop {
            c = self
                .wake
                .wait_timeout(c, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        Wake {
            stop: c.stop,
            final_eos: c.final_eos,
            playing: c.playing,
            reports: std::mem::take(&mut c.reports),
        }
    }

    /// A new session is about to start: its reports and data count from now on.
    pub(super) fn begin_session(&self, id: u64, bin: &gst::Bin) {
        {
            let mut c = lock(&self.control);
            c.current = Some((id, bin.clone()));
            c.video_linked = false;
            c.other_streams.clear();
        }
        let mut f = lock(&self.flow);
        f.session = id;
        f.flowing = false;
        f.segment = None;
        f.last_activity = Some(Instant::now());
    }

    /// The session is being removed: its late reports and data are ignored.
    pub(super) fn end_session(&self, id: u64) {
        {
            let mut c = lock(&self.control);
            if c.current.as_ref().is_some_and(|(cur, _)| *cur == id) {
                c.current = None;
            }
            c.reports.retain(|(r, _)| *r != id);
        }
        let mut f = lock(&self.flow);
        if f.session == id {
            f.session = 0;
        }
    }

    /// Unlinks the src pad from a stopped session.
    pub(super) fn unlink_session(&self, bin: &gst::Bin) {
        let linked = self
            .srcpad
            .target()
            .and_then(|t| t.parent())
            .is_some_and(|p| &p == bin.upcast_ref::<gst::Object>());
        if linked {
            let _ = self.srcpad.set_target(None::<&gst::Pad>);
        }
    }

    /// The error reported by session `id` while it started, if any.
    pub(super) fn take_failure(&self, id: u64) -> Option<String> {
        let mut c = lock(&self.control);
        let i = c
            .reports
            .iter()
            .position(|(r, rep)| *r == id && matches!(rep, Report::Failed { .. }))?;
        match c.reports.remove(i).1 {
            Report::Failed { reason, .. } => Some(reason),
            _ => None,
        }
    }

    pub(super) fn activity(&self) -> (bool, Option<Instant>) {
        let f = lock(&self.flow);
        (f.in_push, f.last_activity)
    }

    /// Restarts the no-data clock (on going to PLAYING).
    pub(super) fn touch(&self) {
        lock(&self.flow).last_activity = Some(Instant::now());
    }

    pub(super) fn set_shown(&self, s: Shown) {
        let changed = {
            let mut shown = lock(&self.shown);
            let changed = shown.status != s.status;
            *shown = s;
            changed
        };
        if changed {
            self.obj().notify("status");
        }
        self.obj().notify("stats");
    }

    /// A stream of session `id` appeared: the first raw video one becomes the output.
    pub(super) fn session_pad_added(&self, id: u64, bin: &gst::Bin, pad: &gst::Pad) {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let raw_video = caps.structure(0).is_some_and(|s| s.name() == "video/x-raw");
        let mut c = lock(&self.control);
        if c.current.as_ref().map(|(cur, _)| *cur) != Some(id) {
            return;
        }
        if !raw_video || c.video_linked {
            let kind = session::stream_kind(&caps);
            gst::debug!(CAT, imp = self, "session {id}: not using stream {kind}");
            c.other_streams.push(kind);
            session::discard(pad);
            return;
        }
        let weak = self.obj().downgrade();
        let exposed = session::expose(bin, pad, move |info| match weak.upgrade() {
            Some(el) => el.imp().session_event(id, info),
            None => gst::PadProbeReturn::Ok,
        });
        match exposed {
            Ok(ghost) => {
                c.video_linked = true;
                if let Err(e) = self.srcpad.set_target(Some(&ghost)) {
                    drop(c);
                    self.report(
                        id,
                        Report::Failed {
                            reason: format!("cannot link the video stream: {e}"),
                            fatal: false,
                        },
                    );
                    return;
                }
                gst::debug!(CAT, imp = self, "session {id}: video stream {caps}");
            }
            Err(e) => {
                drop(c);
                self.report(
                    id,
                    Report::Failed {
                        reason: format!("cannot expose the video stream: {e}"),
                        fatal: false,
                    },
                );
            }
        }
    }

    /// All streams of session `id` are known: no raw video among them is fatal.
    pub(super) fn session_no_more_pads(&self, id: u64) {
        let c = lock(&self.control);
        if c.current.as_ref().map(|(cur, _)| *cur) != Some(id) || c.video_linked {
            return;
        }
        let found = if c.other_streams.is_empty() {
            "none".to_string()
        } else {
            c.other_streams.join(", ")
        };
        drop(c);
        self.report(
            id,
            Report::Failed {
                reason: format!("no video stream (streams found: {found})"),
                fatal: true,
            },
        );
    }

    /// Downstream events of session `id` on their way out: its EOS ends the session, not the
    /// stream; its stream-start becomes the first session's.
    fn session_event(&self, id: u64, info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
        let Some(gst::PadProbeData::Event(ev)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        // Handled, not Drop: GStreamer 1.22 unrefs a NULL event after a probe drops a sticky
        // event that gstreamer-rs already consumed (a critical); Handled means the same here.
        const DROP: gst::PadProbeReturn = gst::PadProbeReturn::Handled;
        let mut f = lock(&self.flow);
        match ev.type_() {
            gst::EventType::StreamStart => {
                match &f.stream_start {
                    Some(first) => info.data = Some(gst::PadProbeData::Event(first.clone())),
                    None => f.stream_start = Some(ev.clone()),
                }
                gst::PadProbeReturn::Ok
            }
            gst::EventType::Eos => {
                if f.final_eos || f.session != id {
                    return DROP;
                }
                if f.restart_on_eos {
                    drop(f);
                    gst::debug!(CAT, imp = self, "session {id}: end of stream");
                    self.report(id, Report::Ended);
                    DROP
                } else {
                    drop(f);
                    self.report(id, Report::Ended);
                    gst::PadProbeReturn::Ok
                }
            }
            // A live session never flushes the stream downstream (it cannot seek).
            gst::EventType::FlushStart | gst::EventType::FlushStop if f.live => DROP,
            _ => gst::PadProbeReturn::Ok,
        }
    }

    fn proxy_event(
        &self,
        pad: &gst::ProxyPad,
        parent: Option<&gst::Object>,
        ev: gst::Event,
    ) -> bool {
        {
            let mut f = lock(&self.flow);
            match ev.view() {
                gst::EventView::Segment(s) => {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "session {} segment {:?}",
                        f.session,
                        s.segment()
                    );
                    f.segment = s.segment().downcast_ref::<gst::ClockTime>().cloned();
                }
                gst::EventView::Caps(c) => f.caps = Some(c.caps_owned()),
                _ => {}
            }
        }
        gst::Pad::event_default(pad, parent, ev)
    }

    fn proxy_chain(
        &self,
        pad: &gst::ProxyPad,
        parent: Option<&gst::Object>,
        mut buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut first = None;
        let end = {
            let mut f = lock(&self.flow);
            if f.final_eos {
                return Err(gst::FlowError::Eos);
            }
            if f.session == 0 {
                // The last frames of a session being removed.
                return Ok(gst::FlowSuccess::Ok);
            }
            let running = |f: &Flow, t: Option<gst::ClockTime>| {
                f.segment.as_ref().and_then(|s| s.to_running_time(t))
            };
            if !f.flowing {
                f.flowing = true;
                f.sessions_flowed += 1;
                if f.sessions_flowed > 1 {
                    // A new connection: motion across it means nothing (alprtrack ends its
                    // tracks on DISCONT).
                    buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
                    if !f.live {
                        // A restarted file or stream starts at its own zero: continue from
                        // where the last one stopped. (A live session is already on the
                        // pipeline's running time.)
                        if let (Some(rt), Some(end)) = (running(&f, buffer.pts()), f.last_end) {
                            let offset = end.nseconds() as i64 - rt.nseconds() as i64;
                            self.srcpad.set_offset(offset);
                            gst::debug!(CAT, imp = self, "pad offset {offset} ns");
                        }
                    }
                }
                first = Some((f.session, f.caps.clone()));
            }
            f.in_push = true;
            f.last_activity = Some(Instant::now());
            let pts_end = buffer
                .pts()
                .map(|p| p + buffer.duration().unwrap_or(gst::ClockTime::ZERO));
            running(&f, pts_end).map(|rt| {
                gst::ClockTime::from_nseconds(
                    (rt.nseconds() as i64 + self.srcpad.offset()).max(0) as u64
                )
            })
        };
        if let Some((id, caps)) = first {
            self.report(id, Report::Flowing { caps });
        }
        gst::trace!(
            CAT,
            imp = self,
            "push {:?} pts {:?} ends at running time {end:?}",
            buffer.flags(),
            buffer.pts()
        );
        let res = gst::ProxyPad::chain_default(pad, parent, buffer);
        gst::trace!(CAT, imp = self, "pushed: {res:?}");
        let mut f = lock(&self.flow);
        f.in_push = false;
        f.last_activity = Some(Instant::now());
        match res {
            Ok(_) => {
                f.frames += 1;
                if end.is_some() {
                    f.last_end = end;
                }
            }
            // Downstream ended the stream: a new connection would end the same way.
            Err(gst::FlowError::Eos) if !f.final_eos => {
                f.final_eos = true;
                drop(f);
                gst::info!(CAT, imp = self, "downstream is at EOS: no more reconnects");
                lock(&self.control).final_eos = true;
                self.wake.notify_all();
            }
            Err(_) => {}
        }
        res
    }

    fn src_query(
        &self,
        pad: &gst::GhostPad,
        parent: Option<&gst::Object>,
        q: &mut gst::QueryRef,
    ) -> bool {
        if gst::Pad::query_default(pad, parent, q) {
            if let gst::QueryViewMut::Latency(l) = q.view_mut() {
                let (live, min, max) = l.result();
                if live {
                    lock(&self.flow).latency = Some((min, max));
                }
            }
            return true;
        }
        // Between sessions (no source linked): answer as the source does when it runs.
        match q.view_mut() {
            gst::QueryViewMut::Latency(l) => {
                let f = lock(&self.flow);
                if !f.live {
                    return false;
                }
                let (min, max) = f.latency.unwrap_or((gst::ClockTime::ZERO, None));
                l.set(true, min, max);
                true
            }
            gst::QueryViewMut::Caps(c) => {
                let templ = pad.pad_template_caps();
                let caps = match c.filter() {
                    Some(filter) => {
                        filter.intersect_with_mode(&templ, gst::CapsIntersectMode::First)
                    }
                    None => templ,
                };
                c.set_result(&caps);
                true
            }
            _ => false,
        }
    }

    /// EOS from the application: goes out at once, whatever the session is doing, and ends
    /// the reconnecting.
    fn final_eos(&self, event: gst::Event) -> bool {
        let needs_start = {
            let mut f = lock(&self.flow);
            if f.final_eos {
                return true;
            }
            f.final_eos = true;
            f.stream_start.is_none()
        };
        {
            lock(&self.control).final_eos = true;
            self.wake.notify_all();
        }
        gst::info!(CAT, imp = self, "end of stream requested");
        if needs_start {
            // Nothing ever flowed: downstream gets a stream to end.
            let id = format!("alprsrc-{}", self.obj().name());
            let _ = self
                .srcpad
                .push_event(gst::event::StreamStart::builder(&id).build());
        }
        self.srcpad.push_event(event)
    }

    fn start(&self) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        let s = self.settings();
        let uri = s.uri.clone().unwrap_or_default();
        let params = Params {
            config: Config {
                uri: uri.clone(),
                latency_ms: s.latency,
                transport: s.transport,
                timeout_s: s.timeout,
            },
            retry_interval: Duration::from_secs(s.retry_interval.into()),
            timeout: Duration::from_secs(s.timeout.into()),
            max_retries: s.max_retries,
            restart_on_eos: s.restart_on_eos,
        };
        *lock(&self.control) = Control::default();
        *lock(&self.flow) = Flow {
            restart_on_eos: s.restart_on_eos,
            ..Flow::default()
        };
        *lock(&self.shown) = Shown::default();
        self.srcpad.set_offset(0);

        let mut sup = Supervisor::new(&self.obj(), params);
        let live = match sup.attempt(&self.obj(), false) {
            Ok(res) => res == gst::StateChangeSuccess::NoPreroll,
            Err(reason) => {
                sup.first_attempt_failed(&self.obj(), &reason);
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::OpenRead,
                    (
                        "alprsrc uri={}: cannot start: {reason}",
                        super::redact_uri(&uri)
                    ),
                    ["check the uri property: the source did not even start"]
                );
                return Err(gst::StateChangeError);
            }
        };
        lock(&self.flow).live = live;
        gst::info!(
            CAT,
            imp = self,
            "{} source {}",
            if live { "live" } else { "non-live" },
            super::redact_uri(&uri)
        );
        let thread = std::thread::Builder::new()
            .name(format!("alprsrc-{}", self.obj().name()))
            .spawn(move || sup.run())
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ["cannot start the supervisor thread: {e}"]
                );
                gst::StateChangeError
            })?;
        *lock(&self.thread) = Some(thread);
        Ok(if live {
            gst::StateChangeSuccess::NoPreroll
        } else {
            gst::StateChangeSuccess::Success
        })
    }

    fn stop(&self) {
        {
            lock(&self.control).stop = true;
            self.wake.notify_all();
        }
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        // A session the thread never got to (it stops them itself otherwise).
        for child in self.obj().children() {
            if let Ok(bin) = child.downcast::<gst::Bin>() {
                let _ = bin.set_state(gst::State::Null);
                self.unlink_session(&bin);
                let _ = self.obj().remove(&bin);
            }
        }
        *lock(&self.control) = Control::default();
        let shown = Shown {
            status: LinkStatus::Disconnected,
            ..lock(&self.shown).clone()
        };
        self.set_shown(shown);
    }

    fn is_live(&self) -> bool {
        lock(&self.flow).live
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AlprSrc {
    const NAME: &'static str = "GstAlprSrc";
    type Type = super::AlprSrc;
    type ParentType = gst::Bin;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("src").expect("src pad template");
        let srcpad = gst::GhostPad::builder_from_template(&templ)
            .name("src")
            .proxy_pad_chain_function(|pad, parent, buffer| {
                let element = parent.and_then(|p| p.parent());
                AlprSrc::catch_panic_pad_function(
                    element.as_ref(),
                    || Err(gst::FlowError::Error),
                    |imp| imp.proxy_chain(pad, parent, buffer),
                )
            })
            .proxy_pad_chain_list_function(|pad, parent, list| {
                let element = parent.and_then(|p| p.parent());
                AlprSrc::catch_panic_pad_function(
                    element.as_ref(),
                    || Err(gst::FlowError::Error),
                    |imp| {
                        for buffer in list.iter_owned() {
                            imp.proxy_chain(pad, parent, buffer)?;
                        }
                        Ok(gst::FlowSuccess::Ok)
                    },
                )
            })
            .proxy_pad_event_function(|pad, parent, event| {
                let element = parent.and_then(|p| p.parent());
                AlprSrc::catch_panic_pad_function(
                    element.as_ref(),
                    || false,
                    |imp| imp.proxy_event(pad, parent, event),
                )
            })
            .query_function(|pad, parent, query| {
                AlprSrc::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, parent, query),
                )
            })
            .build();
        AlprSrc {
            srcpad,
            settings: Mutex::new(Settings::default()),
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            flow: Mutex::new(Flow::default()),
            shown: Mutex::new(Shown {
                status: LinkStatus::Disconnected,
                ..Shown::default()
            }),
            thread: Mutex::new(None),
        }
    }
}

impl ObjectImpl for AlprSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("uri")
                    .nick("URI")
                    .blurb(
                        "Camera or video URI: rtsp://[user:password@]host[:port]/path, \
                         http(s)://..., file:///absolute/path (anything uridecodebin reads). \
                         The password is never logged and reads back as *****",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("retry-interval")
                    .nick("Retry interval")
                    .blurb(
                        "Seconds between connection attempts: after a lost connection the next \
                         attempt comes this long after the loss, after a failed attempt this \
                         long after the attempt started",
                    )
                    .minimum(1)
                    .maximum(3600)
                    .default_value(DEFAULT_RETRY_INTERVAL)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("No-data timeout")
                    .blurb(
                        "Seconds without a frame (while PLAYING, not counting time blocked \
                         downstream) after which the source counts as stalled and is \
                         reconnected; also bounds connecting and RTSP requests",
                    )
                    .minimum(1)
                    .maximum(3600)
                    .default_value(DEFAULT_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-retries")
                    .nick("Maximum retries")
                    .blurb(
                        "Failed attempts in a row after which the element posts an error and \
                         gives up (0 = retry forever)",
                    )
                    .maximum(1_000_000)
                    .default_value(DEFAULT_MAX_RETRIES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("restart-on-eos")
                    .nick("Restart on EOS")
                    .blurb(
                        "Reconnect when the source ends (a camera's stream never ends by itself; \
                         a file then loops with its timestamps continued). Off: the source's \
                         EOS ends the stream",
                    )
                    .default_value(DEFAULT_RESTART_ON_EOS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("RTSP latency")
                    .blurb(
                        "RTSP jitter buffer in ms (rtspsrc latency; its default 2000 adds 2 s of \
                         delay, 200 is plenty on a LAN)",
                    )
                    .maximum(60_000)
                    .default_value(DEFAULT_LATENCY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "rtsp-transport",
                    RtspTransport::default(),
                )
                .nick("RTSP transport")
                .blurb("How RTP packets travel from an RTSP camera (rtspsrc protocols)")
                .mutable_ready()
                .build(),
                glib::ParamSpecEnum::builder_with_default("status", LinkStatus::Disconnected)
                    .nick("Status")
                    .blurb(
                        "disconnected (waiting for the next attempt), connecting (until the \
                         first frame), connected; notified on change",
                    )
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "attempts, failures (failed attempts and lost connections), \
                         connections (sessions that delivered frames), frames, last-error",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                glib::subclass::Signal::builder("source-setup")
                    .param_types([gst::Element::static_type()])
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        let name = pspec.name();
        match name {
            "uri" => {
                let new = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|u| !u.is_empty());
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing uri from {:?} to {:?}",
                    s.uri.as_deref().map(super::redact_uri),
                    new.as_deref().map(super::redact_uri)
                );
                s.uri = new;
            }
            "retry-interval" | "timeout" | "max-retries" | "latency" => {
                let new = value.get::<u32>().expect("type checked upstream");
                let slot = match name {
                    "retry-interval" => &mut s.retry_interval,
                    "timeout" => &mut s.timeout,
                    "max-retries" => &mut s.max_retries,
                    _ => &mut s.latency,
                };
                gst::info!(CAT, imp = self, "Changing {name} from {slot} to {new}");
                *slot = new;
            }
            "restart-on-eos" => {
                let new = value.get::<bool>().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {} to {new}",
                    s.restart_on_eos
                );
                s.restart_on_eos = new;
            }
            "rtsp-transport" => {
                let new = value.get::<RtspTransport>().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {name} from {:?} to {new:?}",
                    s.transport
                );
                s.transport = new;
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "status" => return lock(&self.shown).status.to_value(),
            "stats" => {
                let shown = lock(&self.shown).clone();
                let frames = lock(&self.flow).frames;
                return gst::Structure::builder("alprsrc-stats")
                    .field("attempts", shown.attempts)
                    .field("failures", shown.failures)
                    .field("connections", shown.connections)
                    .field("frames", frames)
                    .field("last-error", shown.last_error)
                    .build()
                    .to_value();
            }
            _ => {}
        }
        let s = lock(&self.settings);
        match pspec.name() {
            "uri" => s.uri.as_deref().map(super::redact_uri).to_value(),
            "retry-interval" => s.retry_interval.to_value(),
            "timeout" => s.timeout.to_value(),
            "max-retries" => s.max_retries.to_value(),
            "restart-on-eos" => s.restart_on_eos.to_value(),
            "latency" => s.latency.to_value(),
            "rtsp-transport" => s.transport.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.srcpad).expect("add the src pad");
        obj.set_element_flags(gst::ElementFlags::SOURCE);
    }
}

impl GstObjectImpl for AlprSrc {}

impl ElementImpl for AlprSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ALPR camera source",
                "Source/Video/Network",
                "Raw video from a camera or video URI (RTSP, HTTP, file) that reconnects inside \
                 the running pipeline when the stream fails, ends or stalls",
                "gst-alpr developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &gst::Caps::builder("video/x-raw").build(),
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        use gst::StateChange as T;
        if transition == T::NullToReady {
            let uri = lock(&self.settings).uri.clone();
            if let Err(e) = super::validate_uri(uri.as_deref()) {
                gst::element_imp_error!(self, gst::ResourceError::NotFound, ["alprsrc: {e}"]);
                return Err(gst::StateChangeError);
            }
        }
        if transition == T::PlayingToPaused {
            lock(&self.control).playing = false;
            self.wake.notify_all();
        }
        // The locked session's last result (NO_PREROLL of a live one) would otherwise become
        // ours in every transition: a live source answers NO_PREROLL only when going to PAUSED.
        let ret = match self.parent_change_state(transition)? {
            gst::StateChangeSuccess::NoPreroll => gst::StateChangeSuccess::Success,
            other => other,
        };
        match transition {
            // After the parent: the src pad is active before any data can come.
            T::ReadyToPaused => self.start(),
            T::PausedToPlaying => {
                lock(&self.control).playing = true;
                self.wake.notify_all();
                Ok(ret)
            }
            T::PlayingToPaused if self.is_live() => Ok(gst::StateChangeSuccess::NoPreroll),
            T::PausedToReady => {
                self.stop();
                Ok(ret)
            }
            _ => Ok(ret),
        }
    }

    fn send_event(&self, event: gst::Event) -> bool {
        if event.type_() == gst::EventType::Eos {
            return self.final_eos(event);
        }
        self.parent_send_event(event)
    }
}

impl BinImpl for AlprSrc {
    fn handle_message(&self, msg: gst::Message) {
        // A session's own state changes (a file prerolling) are its business: the element
        // starts and replaces sessions without the pipeline waiting on them.
        if matches!(
            msg.type_(),
            gst::MessageType::AsyncStart | gst::MessageType::AsyncDone
        ) && msg
            .src()
            .is_some_and(|s| s != self.obj().upcast_ref::<gst::Object>())
        {
            gst::log!(
                CAT,
                imp = self,
                "session message {:?} kept inside",
                msg.type_()
            );
            return;
        }
        if let gst::MessageView::Error(e) = msg.view()
            && let Some(src) = msg.src()
        {
            let inside =
                src.has_as_ancestor(&*self.obj()) && src != self.obj().upcast_ref::<gst::Object>();
            if inside {
                let current = lock(&self.control)
                    .current
                    .as_ref()
                    .filter(|(_, bin)| {
                        src == bin.upcast_ref::<gst::Object>() || src.has_as_ancestor(bin)
                    })
                    .map(|(id, _)| *id);
                let err = e.error();
                let mut reason = err.message().to_string();
                if let Some(d) = e.debug() {
                    // The last line is the human part (the first names the C source file).
                    let detail = d.lines().last().unwrap_or_default().trim();
                    if !detail.is_empty() {
                        reason.push_str(&format!(" ({detail})"));
                    }
                }
                match current {
                    Some(id) => {
                        gst::debug!(
                            CAT,
                            imp = self,
                            "session {id} error from {}: {reason}",
                            src.name()
                        );
                        self.report(
                            id,
                            Report::Failed {
                                reason,
                                fatal: is_fatal(&err),
                            },
                        );
                    }
                    None => gst::debug!(CAT, imp = self, "error of an old session: {reason}"),
                }
                return;
            }
        }
        self.parent_handle_message(msg)
    }
}
