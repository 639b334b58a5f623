// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::bytetrack::ByteTrackConfig;
use super::tracker::{FrameTracker, PLATE_MOTION_GATE};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "alprtrack",
        gst::DebugColorFlags::empty(),
        Some("ALPR ByteTrack tracker"),
    )
});

const DEFAULT_TRACK_THRESH: f32 = 0.6;
const DEFAULT_LOW_THRESH: f32 = 0.1;
const DEFAULT_NEW_TRACK_THRESH: f32 = 0.7;
const DEFAULT_MATCH_THRESH: f32 = 0.8;
const DEFAULT_TRACK_BUFFER: u32 = 30;
/// Frame rate assumed when the caps do not give one (variable rate, stills).
const FALLBACK_FPS: f32 = 30.0;

#[derive(Debug, Clone, Copy)]
struct Settings {
    track_thresh: f32,
    low_thresh: f32,
    new_track_thresh: f32,
    match_thresh: f32,
    track_buffer: u32,
    plate_motion_gate: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            track_thresh: DEFAULT_TRACK_THRESH,
            low_thresh: DEFAULT_LOW_THRESH,
            new_track_thresh: DEFAULT_NEW_TRACK_THRESH,
            match_thresh: DEFAULT_MATCH_THRESH,
            track_buffer: DEFAULT_TRACK_BUFFER,
            plate_motion_gate: PLATE_MOTION_GATE,
        }
    }
}

impl Settings {
    fn config(&self, fps: f32) -> ByteTrackConfig {
        ByteTrackConfig {
            track_thresh: self.track_thresh,
            low_thresh: self.low_thresh,
            new_track_thresh: self.new_track_thresh,
            match_thresh: self.match_thresh,
            track_buffer: self.track_buffer,
            frame_rate: fps,
            motion_gate: 0.0,
        }
    }
}

struct State {
    tracker: FrameTracker,
    fps: f32,
    frames: u64,
    tracks_started: u64,
    last_track: u64,
    series: crate::metrics::ElementSeries,
}

#[derive(Default)]
pub struct AlprTrack {
    settings: Mutex<Settings>,
    reader: crate::meta::FrameReader,
    state: Mutex<Option<State>>,
}

impl AlprTrack {
    fn new_state(&self, fps: f32) -> State {
        let settings = *crate::lock(&self.settings);
        State {
            tracker: FrameTracker::with_gates(
                settings.config(fps),
                0.0,
                settings.plate_motion_gate,
            ),
            fps,
            frames: 0,
            tracks_started: 0,
            last_track: 0,
            series: crate::metrics::ElementSeries::new(&self.obj().name()),
        }
    }

    /// Ends every open track and tells downstream with a custom event.
    fn end_all_tracks(&self) {
        let ended = match crate::lock(&self.state).as_mut() {
            Some(s) => s.tracker.finish(),
            None => return,
        };
        if ended.is_empty() {
            return;
        }
        gst::debug!(CAT, imp = self, "ending {} open tracks", ended.len());
        self.obj()
            .src_pad()
            .push_event(crate::meta::tracks_ended_event(ended));
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AlprTrack {
    const NAME: &'static str = "GstAlprTrack";
    type Type = super::AlprTrack;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AlprTrack {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let float = |name: &'static str, nick: &'static str, blurb: &'static str, def: f32| {
                glib::ParamSpecFloat::builder(name)
                    .nick(nick)
                    .blurb(blurb)
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(def)
                    .mutable_ready()
                    .build()
            };
            vec![
                float(
                    "track-thresh",
                    "Track threshold",
                    "Detections scoring above this are high-confidence (first association), 0..1",
                    DEFAULT_TRACK_THRESH,
                ),
                float(
                    "low-thresh",
                    "Low threshold",
                    "Detections scoring above this (and not above track-thresh) may continue an \
                     existing track in the second association; lower ones are ignored, 0..1",
                    DEFAULT_LOW_THRESH,
                ),
                float(
                    "new-track-thresh",
                    "New track threshold",
                    "Minimum score of an unmatched detection to start a new track, 0..1",
                    DEFAULT_NEW_TRACK_THRESH,
                ),
                float(
                    "match-thresh",
                    "Match threshold",
                    "Largest association cost (1 - IoU x score) accepted in the first \
                     association, 0..1",
                    DEFAULT_MATCH_THRESH,
                ),
                glib::ParamSpecUInt::builder("track-buffer")
                    .nick("Track buffer")
                    .blurb(
                        "How long a lost track is kept, in frames at 30 fps (scaled to the \
                         stream's frame rate: 30 = one second)",
                    )
                    .minimum(1)
                    .maximum(10_000)
                    .default_value(DEFAULT_TRACK_BUFFER)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecFloat::builder("plate-motion-gate")
                    .nick("Plate motion gate")
                    .blurb(
                        "How far a plate may move between detected frames and keep its track, \
                         in plate sizes from its predicted place (a young track gets all of it, \
                         one with a learnt velocity half, a lost one none); similarity is then (1 - distance / \
                         gate) x sqrt(area ratio) where it beats the IoU. 0 = IoU only",
                    )
                    .minimum(0.0)
                    .maximum(10.0)
                    .default_value(PLATE_MOTION_GATE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Frames processed and vehicle tracks started so far")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = crate::lock(&self.settings);
        macro_rules! set {
            ($field:ident, $ty:ty) => {{
                let new: $ty = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {} from {} to {}",
                    pspec.name(),
                    s.$field,
                    new
                );
                s.$field = new;
            }};
        }
        match pspec.name() {
            "track-thresh" => set!(track_thresh, f32),
            "low-thresh" => set!(low_thresh, f32),
            "new-track-thresh" => set!(new_track_thresh, f32),
            "match-thresh" => set!(match_thresh, f32),
            "track-buffer" => set!(track_buffer, u32),
            "plate-motion-gate" => set!(plate_motion_gate, f32),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = *crate::lock(&self.settings);
        match pspec.name() {
            "track-thresh" => s.track_thresh.to_value(),
            "low-thresh" => s.low_thresh.to_value(),
            "new-track-thresh" => s.new_track_thresh.to_value(),
            "match-thresh" => s.match_thresh.to_value(),
            "track-buffer" => s.track_buffer.to_value(),
            "plate-motion-gate" => s.plate_motion_gate.to_value(),
            "stats" => {
                let state = crate::lock(&self.state);
                let (frames, started) = state
                    .as_ref()
                    .map(|s| (s.frames, s.tracks_started))
                    .unwrap_or_default();
                gst::Structure::builder("alprtrack-stats")
                    .field("frames", frames)
                    .field("tracks-started", started)
                    .build()
                    .to_value()
            }
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AlprTrack {}

impl ElementImpl for AlprTrack {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ALPR tracker",
                "Filter/Analyzer/Video",
                "Gives vehicles and plates found by alprdetect stable track ids (ByteTrack)",
                "gst-alpr developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Any raw video: the tracker reads only metadata.
            crate::video::analyser_pad_templates(&gst::Caps::builder("video/x-raw").build())
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for AlprTrack {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        self.reader.reset();
        *crate::lock(&self.state) = Some(self.new_state(FALLBACK_FPS));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(s) = crate::lock(&self.state).take() {
            gst::info!(
                CAT,
                imp = self,
                "stopped after {} frames, {} tracks",
                s.frames,
                s.tracks_started
            );
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let fps = incaps
            .structure(0)
            .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
            .filter(|f| f.numer() > 0 && f.denom() > 0)
            .map(|f| f.numer() as f32 / f.denom() as f32)
            .unwrap_or(FALLBACK_FPS);
        let mut state = crate::lock(&self.state);
        if let Some(s) = state.as_mut()
            && (s.fps - fps).abs() > 1e-3
        {
            // The lost-track buffer is counted in frames: rescale it. Open tracks carry on (a
            // camera that changes its rate is still looking at the same cars); a new stream or
            // a discontinuity ends them on their own.
            gst::debug!(CAT, imp = self, "frame rate {fps:.2} fps");
            s.fps = fps;
            let settings = *crate::lock(&self.settings);
            s.tracker
                .reconfigure(settings.config(fps), 0.0, settings.plate_motion_gate);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            // A new stream (another file, a reconnected camera) shows other cars: the old
            // stream's tracks end before it starts.
            gst::EventView::Eos(_) | gst::EventView::StreamStart(_) => self.end_all_tracks(),
            gst::EventView::FlushStop(_) => {
                if let Some(s) = crate::lock(&self.state).as_mut() {
                    s.tracker.reset();
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(mut frame) = self.reader.read(self.obj().upcast_ref(), buf)? else {
            return Ok(gst::FlowSuccess::Ok);
        };

        let mut state = crate::lock(&self.state);
        let state = state.as_mut().ok_or(gst::FlowError::Flushing)?;
        if buf.flags().contains(gst::BufferFlags::DISCONT) && state.frames > 0 {
            // A jump in the stream: motion across it means nothing, so end every track here.
            let ended = state.tracker.finish();
            gst::debug!(
                CAT,
                imp = self,
                "discontinuity: ending {} tracks",
                ended.len()
            );
            frame.ended_tracks.extend(ended);
        }
        let started = std::time::Instant::now();
        state.frames += 1;
        state.series.frames.inc();
        state.tracker.process(&mut frame);
        frame.tracked = true;
        if !frame.ended_tracks.is_empty() {
            gst::debug!(
                CAT,
                imp = self,
                "frame {}: tracks {:?} ended, of them {:?} replaced by another car",
                frame.frame_number,
                frame.ended_tracks,
                frame.replaced_tracks
            );
        }
        state
            .series
            .processing
            .observe(started.elapsed().as_secs_f64());
        for o in &frame.objects {
            if o.track_id > state.last_track && o.track_id < super::tracker::PLATE_TRACK_BASE {
                // Ids only grow, so a new highest id is a new vehicle track.
                state.tracks_started += 1;
                state.last_track = o.track_id;
            }
        }
        frame.write(buf).map_err(|e| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("cannot attach meta: {e}"));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
