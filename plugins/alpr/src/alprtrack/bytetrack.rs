// SPDX-License-Identifier: MIT OR Apache-2.0
//! ByteTrack multi-object tracker (Zhang et al., "ByteTrack: Multi-Object Tracking by
//! Associating Every Detection Box", ECCV 2022), ported from the reference implementation
//! `ifzhang/ByteTrack` (`yolox/tracker/byte_tracker.py`, `kalman_filter.py`, `matching.py`).
//! Plain Rust, std only, no GStreamer: the element wraps this.
//!
//! # Public API
//!
//! ```text
//! pub type TrackId = u64;
//! pub struct Detection { x, y, w, h: f32 /* top-left + size, px */, score: f32, class_id: i32, user: u32 }
//! pub struct ByteTrackConfig { track_thresh, low_thresh, new_track_thresh, match_thresh: f32,
//!                              track_buffer: u32, frame_rate: f32,
//!                              motion_gate: f32 }                       // Default = reference
//! impl ByteTrackConfig { pub fn max_time_lost(&self) -> u32 }
//! pub struct TrackInfo { id, x, y, w, h, score, class_id, detection: Option<usize>, age, hits }
//! impl TrackInfo { pub fn matched(&self) -> bool }
//! pub struct FrameOutput { assignments: Vec<Option<TrackId>>, tracks: Vec<TrackInfo>, removed: Vec<TrackId>,
//!                         tentative: Vec<Option<TrackId>>, dropped: Vec<TrackId> }
//! pub struct ByteTracker;                               // also `Default`
//! impl ByteTracker {
//!     pub fn new(config: ByteTrackConfig) -> Self;      // non-finite thresholds -> defaults
//!     pub fn config(&self) -> &ByteTrackConfig;
//!     pub fn set_config(&mut self, config: ByteTrackConfig); // e.g. new frame rate: tracks carry on
//!     pub fn update(&mut self, detections: &[Detection]) -> &FrameOutput; // detector ran
//!     pub fn predict_only(&mut self) -> &FrameOutput;                     // detector skipped
//!     pub fn reset(&mut self);
//! }
//! ```
//!
//! Every call to [`ByteTracker::update`] or [`ByteTracker::predict_only`] is one video frame.
//! The returned [`FrameOutput`] lives in the tracker (its buffers are reused, so a steady stream
//! does not allocate) and is valid until the next call.
//!
//! # Algorithm (per reference `BYTETracker.update`)
//!
//! 1. Detections with `score > track_thresh` are "high", those with
//!    `low_thresh < score <= track_thresh` are "low"; the rest are ignored.
//! 2. Confirmed tracks and lost tracks are Kalman-predicted; lost tracks with their height
//!    velocity zeroed, as the reference does.
//! 3. First association: that pool against the high detections, cost
//!    `1 - IoU * det_score` (reference `fuse_score`, the non-MOT20 path), limit `match_thresh`.
//!    A matched lost track is re-activated with its old id.
//! 4. Second association: still-unmatched *tracked* (not lost) tracks against the low
//!    detections, cost `1 - IoU`, limit 0.5. This is the "BYTE" part: a partly occluded object
//!    whose score dropped keeps its track. Tracks still unmatched become lost.
//! 5. Unconfirmed tracks (born on the previous detection frame) against the remaining high
//!    detections, fused cost, limit 0.7; unmatched unconfirmed tracks are dropped.
//! 6. Remaining high detections with `score >= new_track_thresh` start tracks. On the very first
//!    frame they are confirmed at once (reference behaviour); later they need a second hit.
//! 7. Lost tracks not seen for more than `max_time_lost` frames are removed.
//! 8. `remove_duplicate_stracks`: a tracked and a lost track with IoU > 0.85 are duplicates; the
//!    one tracked for longer survives.
//!
//! Only confirmed tracks in the tracked state are reported, as in the reference.
//!
//! # Deviations from the reference (and why)
//!
//! * IoU is the continuous-coordinate one (`(x2-x1)*(y2-y1)`), not `cython_bbox`'s legacy
//!   `+1` pixel convention, so results do not depend on the image scale; for plates a few
//!   pixels high the `+1` would noticeably inflate IoU.
//! * A score exactly equal to `track_thresh` counts as low; the reference (`>` for high, `<` for
//!   low) silently drops it.
//! * A lost track is removed in the same frame its time runs out. The reference marks it
//!   removed but leaves it in `lost_stracks` for one more frame, where it can still be
//!   "re-found" after having been declared removed. Here: a track unseen for `N` consecutive
//!   frames keeps its id iff `N <= max_time_lost`. (The expiry check also covers tracks that
//!   became lost in the current frame, which only matters with `max_time_lost == 0` or after
//!   `predict_only` frames.)
//! * Tracks dropped as duplicates vanish silently in the reference; here they are listed in
//!   [`FrameOutput::removed`] like expired ones (if they were ever confirmed). Removed tracks are
//!   not kept around (the reference's `removed_stracks` list grows without bound).
//! * `max_time_lost = floor(track_buffer * frame_rate / 30)` with a tiny epsilon so that e.g.
//!   `frame_rate = 10` gives exactly 10, whatever the float rounding.
//! * Ids come from the tracker instance (the reference uses a process-wide counter), start at 1
//!   and only ever increase, also across [`ByteTracker::reset`] so that downstream consumers
//!   never see an id reused for a different object. As in the reference, an id is taken when a
//!   track is born, so ids of tracks that never got confirmed leave gaps.
//! * Association is class-agnostic like the reference; a track reports the class of its latest
//!   detection. Run one tracker per class if classes must not mix.
//! * Invalid detections (non-finite numbers, non-positive size, NaN score) are skipped (their
//!   assignment is `None`) instead of poisoning the filter; a Kalman update that fails numerically
//!   re-initialises the track's filter from the detection instead of panicking.
//! * [`ByteTracker::predict_only`] is new (see there). The assignment solver is exact but may
//!   break ties between equally good matchings differently from `lap.lapjv`.

use super::lap::LinearAssignment;

/// Track identifier; unique within one [`ByteTracker`], starting at 1.
pub type TrackId = u64;

/// One detector output box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Left edge, pixels.
    pub x: f32,
    /// Top edge, pixels.
    pub y: f32,
    /// Width, pixels.
    pub w: f32,
    /// Height, pixels.
    pub h: f32,
    /// Detector confidence, expected in `[0, 1]`.
    pub score: f32,
    /// Detector class; carried to the track, not used for association.
    pub class_id: i32,
    /// Caller's own tag (e.g. an index into its metadata); not interpreted by the tracker.
    pub user: u32,
}

impl Detection {
    /// Whether the tracker can use this box at all.
    fn is_valid(&self) -> bool {
        [self.x, self.y, self.w, self.h, self.score]
            .iter()
            .all(|v| v.is_finite())
            && self.w > 0.0
            && self.h > 0.0
    }

    fn tlbr(&self) -> [f64; 4] {
        let (x, y) = (f64::from(self.x), f64::from(self.y));
        [x, y, x + f64::from(self.w), y + f64::from(self.h)]
    }

    /// Measurement space of the Kalman filter: centre x, centre y, aspect w/h, height.
    fn xyah(&self) -> [f64; 4] {
        let (w, h) = (f64::from(self.w), f64::from(self.h));
        [
            f64::from(self.x) + w / 2.0,
            f64::from(self.y) + h / 2.0,
            w / h,
            h,
        ]
    }
}

/// Tracker parameters. `Default` gives the reference defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ByteTrackConfig {
    /// Detections above this score are "high" (first association, may start tracks).
    pub track_thresh: f32,
    /// Detections above this and not above `track_thresh` are "low": they can only keep an
    /// existing track alive (second association), never start one.
    pub low_thresh: f32,
    /// Minimum score of an unmatched high detection to start a track (reference:
    /// `track_thresh + 0.1`).
    pub new_track_thresh: f32,
    /// Cost limit of the first association (cost = `1 - IoU * score`).
    pub match_thresh: f32,
    /// How long a lost track is kept, in frames at 30 fps (scaled by `frame_rate`).
    pub track_buffer: u32,
    /// Video frame rate; one `update`/`predict_only` call is one frame.
    pub frame_rate: f32,
    /// Motion gate, in box sizes (0 = off: IoU only, as the reference). Small boxes that move
    /// more than their own size between frames (a distant plate at 10 fps) have no IoU with
    /// their prediction; with a gate `g`, a detection whose centre lies `d` box sizes (the
    /// distance measured per axis in the boxes' mean width and height) from a
    /// track's predicted centre also scores `(1 - d / g) * sqrt(area ratio)`, and the higher of
    /// that and the IoU is the similarity. A young track (fewer than [`YOUNG_HITS`] hits: no
    /// velocity learnt yet) gets the whole gate per frame since it was last seen (up to 4), an established one half of it (its Kalman
    /// prediction already follows steady motion), a lost one none: a lost box is re-found by
    /// IoU with its prediction only, so that a new car's plate appearing near where an old one
    /// was lost (a scene cut, a queue) does not continue the old track.
    pub motion_gate: f32,
}

/// Tracks with fewer hits than this get the whole motion gate.
pub const YOUNG_HITS: u32 = 3;

impl Default for ByteTrackConfig {
    fn default() -> Self {
        Self {
            track_thresh: 0.6,
            low_thresh: 0.1,
            new_track_thresh: 0.7,
            match_thresh: 0.8,
            track_buffer: 30,
            frame_rate: 30.0,
            motion_gate: 0.0,
        }
    }
}

impl ByteTrackConfig {
    /// Frames a track may go unseen and still be re-found:
    /// `floor(track_buffer * frame_rate / 30)`. A non-finite or non-positive frame rate is
    /// treated as 30 fps.
    pub fn max_time_lost(&self) -> u32 {
        let fps = if self.frame_rate.is_finite() && self.frame_rate > 0.0 {
            f64::from(self.frame_rate)
        } else {
            30.0
        };
        let frames = (fps / 30.0 * f64::from(self.track_buffer) + 1e-6).floor();
        // Float-to-int `as` saturates, which is what we want for absurd frame rates.
        frames as u32
    }

    /// Replaces non-finite thresholds by the defaults; a NaN threshold would silently turn
    /// every comparison false and the tracker would see no detections at all.
    fn sanitized(mut self) -> Self {
        let d = Self::default();
        for (v, dv) in [
            (&mut self.track_thresh, d.track_thresh),
            (&mut self.low_thresh, d.low_thresh),
            (&mut self.new_track_thresh, d.new_track_thresh),
            (&mut self.match_thresh, d.match_thresh),
            (&mut self.motion_gate, d.motion_gate),
        ] {
            if !v.is_finite() {
                *v = dv;
            }
        }
        self
    }
}

/// A confirmed track as reported for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackInfo {
    /// Stable id of the track.
    pub id: TrackId,
    /// Kalman estimate of the box (top-left + size, pixels): the filtered box when matched
    /// this frame, the prediction otherwise.
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    /// Score of the latest associated detection.
    pub score: f32,
    /// Class of the latest associated detection.
    pub class_id: i32,
    /// Index into this frame's `detections` slice of the detection associated with the track;
    /// `None` when the track was only predicted (`predict_only` frames).
    pub detection: Option<usize>,
    /// Frames since the track was born (0 on its first frame).
    pub age: u32,
    /// Number of detections associated with the track so far, including the first one.
    pub hits: u32,
}

impl TrackInfo {
    /// Whether a detection was associated with this track in this frame.
    pub fn matched(&self) -> bool {
        self.detection.is_some()
    }
}

/// Result of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameOutput {
    /// One entry per input detection: the confirmed track it was associated with, if any.
    /// `None` for ignored, invalid and unmatched detections, and for a detection that only
    /// started a not-yet-confirmed track. Empty after `predict_only`.
    pub assignments: Vec<Option<TrackId>>,
    /// Confirmed tracks currently in the tracked state, in order of creation.
    pub tracks: Vec<TrackInfo>,
    /// Confirmed tracks that ended in this frame (lost for too long, or duplicates). Their ids
    /// will never be reported again. Tracks that were never confirmed are not listed.
    pub removed: Vec<TrackId>,
    /// One entry per input detection: the id of the not-yet-confirmed track it started on this
    /// frame, if any. The reference reports such a track only from its second hit; callers that
    /// must key data by track from the first sighting (per-vehicle reads) use this id and learn
    /// from [`FrameOutput::dropped`] when the track dies unconfirmed.
    pub tentative: Vec<Option<TrackId>>,
    /// Tracks that died on this frame without ever being confirmed.
    pub dropped: Vec<TrackId>,
}

impl FrameOutput {
    fn clear(&mut self, detections: usize) {
        self.assignments.clear();
        self.assignments.resize(detections, None);
        self.tentative.clear();
        self.tentative.resize(detections, None);
        self.tracks.clear();
        self.removed.clear();
        self.dropped.clear();
    }
}

/// ByteTrack state for one video stream.
#[derive(Debug, Clone)]
pub struct ByteTracker {
    config: ByteTrackConfig,
    max_time_lost: u64,
    /// Frames seen since creation or `reset`; the first frame is 1.
    frame_id: u64,
    next_id: TrackId,
    /// All live tracks (tracked, unconfirmed and lost), in order of creation.
    tracks: Vec<Track>,
    out: FrameOutput,
    scratch: Scratch,
}

impl Default for ByteTracker {
    fn default() -> Self {
        Self::new(ByteTrackConfig::default())
    }
}

impl ByteTracker {
    pub fn new(config: ByteTrackConfig) -> Self {
        let config = config.sanitized();
        Self {
            max_time_lost: u64::from(config.max_time_lost()),
            config,
            frame_id: 0,
            next_id: 1,
            tracks: Vec::new(),
            out: FrameOutput::default(),
            scratch: Scratch::default(),
        }
    }

    pub fn config(&self) -> &ByteTrackConfig {
        &self.config
    }

    /// Changes the settings (e.g. the stream's frame rate changed): the lost-track buffer is
    /// rescaled; tracks, their state and the id counter carry on. Non-finite thresholds become
    /// the defaults, as in [`ByteTracker::new`].
    pub fn set_config(&mut self, config: ByteTrackConfig) {
        self.config = config.sanitized();
        self.max_time_lost = u64::from(self.config.max_time_lost());
    }

    /// Forgets all tracks and restarts frame counting, e.g. after a seek or flush; the next
    /// `update` is treated as a first frame again (tracks confirmed at once). Ids are *not*
    /// reused: numbering continues so that downstream state keyed by id cannot mix objects.
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.frame_id = 0;
        self.out.clear(0);
    }

    /// Runs one frame on which the detector produced `detections`.
    pub fn update(&mut self, detections: &[Detection]) -> &FrameOutput {
        self.frame_id += 1;
        let frame = self.frame_id;
        let cfg = self.config;
        let Self {
            tracks,
            scratch: s,
            out,
            next_id,
            max_time_lost,
            ..
        } = self;
        out.clear(detections.len());
        for t in tracks.iter_mut() {
            t.det = None;
        }

        // Step 1: split by score. Boxes are converted once.
        s.high.clear();
        s.low.clear();
        s.det_boxes.clear();
        for (i, d) in detections.iter().enumerate() {
            s.det_boxes.push(d.tlbr());
            if !d.is_valid() {
                continue;
            }
            if d.score > cfg.track_thresh {
                s.high.push(i);
            } else if d.score > cfg.low_thresh {
                s.low.push(i);
            }
        }
        s.high_used.clear();
        s.high_used.resize(s.high.len(), false);

        // Step 2: predict confirmed and lost tracks; they form the first-association pool.
        s.pool.clear();
        for (k, t) in tracks.iter_mut().enumerate() {
            if t.in_pool() {
                t.kf.predict(t.state == TrackState::Lost);
                s.pool.push(k);
            }
        }

        // Step 3: first association, high detections, score-fused IoU cost.
        fill_cost(
            &mut s.cost,
            tracks,
            &s.pool,
            &s.det_boxes,
            detections,
            &s.high,
            Metric::fused(cfg.motion_gate, frame),
        );
        s.row_matched.clear();
        s.row_matched.resize(s.pool.len(), false);
        let limit = f64::from(cfg.match_thresh);
        for &(r, c) in s.lap.solve(&s.cost, s.pool.len(), s.high.len(), limit) {
            let di = s.high[c];
            tracks[s.pool[r]].apply(&detections[di], di, frame);
            s.row_matched[r] = true;
            s.high_used[c] = true;
        }

        // Step 4: second association of the remaining *tracked* tracks with low detections.
        s.rows.clear();
        s.rows.extend(
            s.pool
                .iter()
                .zip(&s.row_matched)
                .filter(|&(&k, &m)| !m && tracks[k].state == TrackState::Tracked)
                .map(|(&k, _)| k),
        );
        fill_cost(
            &mut s.cost,
            tracks,
            &s.rows,
            &s.det_boxes,
            detections,
            &s.low,
            Metric::plain(cfg.motion_gate, frame),
        );
        s.row_matched.clear();
        s.row_matched.resize(s.rows.len(), false);
        for &(r, c) in s.lap.solve(&s.cost, s.rows.len(), s.low.len(), 0.5) {
            let di = s.low[c];
            tracks[s.rows[r]].apply(&detections[di], di, frame);
            s.row_matched[r] = true;
        }
        for (&k, &m) in s.rows.iter().zip(&s.row_matched) {
            if !m {
                tracks[k].state = TrackState::Lost;
            }
        }

        // Step 5: unconfirmed tracks against the high detections left over.
        s.rows.clear();
        s.rows.extend(
            tracks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.state == TrackState::Tracked && !t.activated)
                .map(|(k, _)| k),
        );
        s.cols.clear();
        s.cols.extend(
            s.high
                .iter()
                .zip(&s.high_used)
                .filter(|&(_, &used)| !used)
                .map(|(&di, _)| di),
        );
        fill_cost(
            &mut s.cost,
            tracks,
            &s.rows,
            &s.det_boxes,
            detections,
            &s.cols,
            Metric::fused(cfg.motion_gate, frame),
        );
        s.row_matched.clear();
        s.row_matched.resize(s.rows.len(), false);
        s.col_used.clear();
        s.col_used.resize(s.cols.len(), false);
        for &(r, c) in s.lap.solve(&s.cost, s.rows.len(), s.cols.len(), 0.7) {
            let di = s.cols[c];
            tracks[s.rows[r]].apply(&detections[di], di, frame);
            s.row_matched[r] = true;
            s.col_used[c] = true;
        }
        for (&k, &m) in s.rows.iter().zip(&s.row_matched) {
            if !m {
                // Never confirmed: not in `removed` (as the reference), but in `dropped`.
                tracks[k].dead = true;
                out.dropped.push(tracks[k].id);
            }
        }

        // Step 6: new tracks from confident leftovers.
        for (&di, &used) in s.cols.iter().zip(&s.col_used) {
            let d = &detections[di];
            if !used && d.score >= cfg.new_track_thresh {
                tracks.push(Track::new(*next_id, d, di, frame));
                if let Some(slot) = out.tentative.get_mut(di) {
                    *slot = Some(*next_id);
                }
                *next_id += 1;
            }
        }

        // Step 7: expire lost tracks.
        expire_lost(tracks, frame, *max_time_lost, &mut out.removed);

        // Step 8: tracked/lost duplicates.
        remove_duplicates(tracks, s, &mut out.removed);

        tracks.retain(|t| !t.dead);
        report(tracks, frame, out);
        out
    }

    /// Advances one frame on which the detector did not run: confirmed and lost tracks are
    /// Kalman-predicted (as `update` would before associating) and the confirmed tracked ones
    /// are reported with their predicted boxes and `detection: None`.
    ///
    /// Such a frame counts as a frame for the lost buffer: `frame_rate` is the video rate and
    /// the buffer is meant as wall-clock time, so a lost object is dropped after the same time
    /// whether or not the detector runs on every frame (not counting these frames would keep
    /// lost tracks alive 3x longer when detecting every third frame). Lost tracks whose time
    /// runs out here are removed here, so no expired track can be re-found by the next
    /// `update`. Tracks in the tracked state stay tracked: no detector output is no evidence
    /// that they are gone.
    pub fn predict_only(&mut self) -> &FrameOutput {
        self.skip_frame(true)
    }

    /// A frame the detector skipped because nothing moved in it: like [`predict_only`], but
    /// every track keeps its box (no Kalman motion): a car that stopped stays where it stopped
    /// instead of drifting with the speed it had.
    ///
    /// [`predict_only`]: ByteTracker::predict_only
    pub fn hold_only(&mut self) -> &FrameOutput {
        self.skip_frame(false)
    }

    fn skip_frame(&mut self, motion: bool) -> &FrameOutput {
        self.frame_id += 1;
        let frame = self.frame_id;
        let Self {
            tracks,
            out,
            max_time_lost,
            ..
        } = self;
        out.clear(0);
        for t in tracks.iter_mut() {
            t.det = None;
            if motion && t.in_pool() {
                t.kf.predict(t.state == TrackState::Lost);
            }
        }
        expire_lost(tracks, frame, *max_time_lost, &mut out.removed);
        tracks.retain(|t| !t.dead);
        report(tracks, frame, out);
        out
    }
}

/// Per-frame work buffers, kept to avoid allocating on every frame.
#[derive(Debug, Clone, Default)]
struct Scratch {
    det_boxes: Vec<[f64; 4]>,
    high: Vec<usize>,
    high_used: Vec<bool>,
    low: Vec<usize>,
    pool: Vec<usize>,
    rows: Vec<usize>,
    row_matched: Vec<bool>,
    cols: Vec<usize>,
    col_used: Vec<bool>,
    row_boxes: Vec<[f64; 4]>,
    col_boxes: Vec<[f64; 4]>,
    kill: Vec<usize>,
    cost: Vec<f64>,
    lap: LinearAssignment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackState {
    Tracked,
    Lost,
}

#[derive(Debug, Clone)]
struct Track {
    id: TrackId,
    kf: KalmanBox,
    state: TrackState,
    /// Confirmed (reference `is_activated`).
    activated: bool,
    score: f32,
    class_id: i32,
    start_frame: u64,
    /// Last frame with an associated detection (reference `frame_id` / `end_frame`).
    last_frame: u64,
    hits: u32,
    /// Detection associated in the current frame.
    det: Option<usize>,
    /// Scheduled for removal at the end of the current frame.
    dead: bool,
}

impl Track {
    /// Reference `STrack.activate`: confirmed immediately only on the first frame.
    fn new(id: TrackId, d: &Detection, det_index: usize, frame: u64) -> Self {
        Self {
            id,
            kf: KalmanBox::new(d.xyah()),
            state: TrackState::Tracked,
            activated: frame == 1,
            score: d.score,
            class_id: d.class_id,
            start_frame: frame,
            last_frame: frame,
            hits: 1,
            det: Some(det_index),
            dead: false,
        }
    }

    /// Tracks predicted every frame and offered to the first association: confirmed tracked
    /// ones and lost ones. Unconfirmed tracks are not predicted, as in the reference (their
    /// velocity is zero, only their covariance would change).
    fn in_pool(&self) -> bool {
        !self.dead && (self.state == TrackState::Lost || self.activated)
    }

    /// Reference `STrack.update` / `re_activate` (they differ only in bookkeeping we do not
    /// need: `tracklet_len`).
    fn apply(&mut self, d: &Detection, det_index: usize, frame: u64) {
        let z = d.xyah();
        if !self.kf.update(z) {
            self.kf = KalmanBox::new(z);
        }
        self.state = TrackState::Tracked;
        self.activated = true;
        self.score = d.score;
        self.class_id = d.class_id;
        self.last_frame = frame;
        self.hits = self.hits.saturating_add(1);
        self.det = Some(det_index);
    }

    fn info(&self, frame: u64) -> TrackInfo {
        let [x, y, w, h] = self.kf.tlwh();
        TrackInfo {
            id: self.id,
            x: x as f32,
            y: y as f32,
            w: w as f32,
            h: h as f32,
            score: self.score,
            class_id: self.class_id,
            detection: self.det,
            age: u32::try_from(frame.saturating_sub(self.start_frame)).unwrap_or(u32::MAX),
            hits: self.hits,
        }
    }
}

/// How a cost matrix is filled: score fusion and the motion gate (see
/// [`ByteTrackConfig::motion_gate`]).
#[derive(Debug, Clone, Copy)]
struct Metric {
    fuse_score: bool,
    gate: f64,
    /// The current frame: a young track's gate grows with the frames since it was last seen
    /// (detection on every n-th frame moves a plate n times as far between detections).
    frame: u64,
}

impl Metric {
    fn fused(gate: f32, frame: u64) -> Self {
        Metric {
            fuse_score: true,
            gate: f64::from(gate.max(0.0)),
            frame,
        }
    }

    fn plain(gate: f32, frame: u64) -> Self {
        Metric {
            fuse_score: false,
            gate: f64::from(gate.max(0.0)),
            frame,
        }
    }
}

/// Similarity of a track's predicted box and a detection: IoU, or the motion-gated centre
/// distance when that is higher (see [`ByteTrackConfig::motion_gate`]). 0..=1, 0 for degenerate
/// or non-finite boxes.
fn similarity(track: &[f64; 4], det: &[f64; 4], gate: f64) -> f64 {
    let overlap = iou(track, det);
    if gate <= 0.0 {
        return overlap;
    }
    let (tw, th) = (track[2] - track[0], track[3] - track[1]);
    let (dw, dh) = (det[2] - det[0], det[3] - det[1]);
    if !(tw > 0.0 && th > 0.0 && dw > 0.0 && dh > 0.0) {
        return overlap;
    }
    let dx = (track[0] + track[2] - det[0] - det[2]) / 2.0;
    let dy = (track[1] + track[3] - det[1] - det[3]) / 2.0;
    // Per axis in the boxes' own width and height: a plate (4:1) that moves by its height
    // vertically has moved as far as one that moves by its width sideways.
    let (ex, ey) = (2.0 * dx / (tw + dw), 2.0 * dy / (th + dh));
    let d = (ex * ex + ey * ey).sqrt();
    let (a, b) = (tw * th, dw * dh);
    let scale = (a.min(b) / a.max(b)).sqrt();
    let motion = (1.0 - d / gate).max(0.0) * scale;
    if motion.is_finite() {
        overlap.max(motion.min(1.0))
    } else {
        overlap
    }
}

/// Row-major `rows x cols` cost `1 - similarity` (times the detection score when fused).
fn fill_cost(
    cost: &mut Vec<f64>,
    tracks: &[Track],
    rows: &[usize],
    det_boxes: &[[f64; 4]],
    dets: &[Detection],
    cols: &[usize],
    metric: Metric,
) {
    cost.clear();
    for &k in rows {
        let t = &tracks[k];
        let tb = t.kf.tlbr();
        let gate = if t.state == TrackState::Lost {
            0.0
        } else if t.hits < YOUNG_HITS {
            metric.gate * metric.frame.saturating_sub(t.last_frame).clamp(1, 4) as f64
        } else {
            metric.gate / 2.0
        };
        cost.extend(cols.iter().map(|&di| {
            let sim = similarity(&tb, &det_boxes[di], gate);
            1.0 - if metric.fuse_score {
                sim * f64::from(dets[di].score)
            } else {
                sim
            }
        }));
    }
}

/// Marks lost tracks unseen for more than `max_time_lost` frames as dead.
fn expire_lost(tracks: &mut [Track], frame: u64, max_time_lost: u64, removed: &mut Vec<TrackId>) {
    for t in tracks.iter_mut() {
        if t.state == TrackState::Lost
            && !t.dead
            && frame.saturating_sub(t.last_frame) > max_time_lost
        {
            t.dead = true;
            removed.push(t.id);
        }
    }
}

/// Reference `remove_duplicate_stracks`: for every tracked/lost pair with IoU distance below
/// 0.15, drop the one with the shorter history (`last_frame - start_frame`); ties drop the
/// tracked one.
fn remove_duplicates(tracks: &mut [Track], s: &mut Scratch, removed: &mut Vec<TrackId>) {
    s.rows.clear();
    s.cols.clear();
    for (k, t) in tracks.iter().enumerate() {
        if !t.dead {
            match t.state {
                TrackState::Tracked => s.rows.push(k),
                TrackState::Lost => s.cols.push(k),
            }
        }
    }
    if s.rows.is_empty() || s.cols.is_empty() {
        return;
    }
    s.row_boxes.clear();
    s.row_boxes
        .extend(s.rows.iter().map(|&k| tracks[k].kf.tlbr()));
    s.col_boxes.clear();
    s.col_boxes
        .extend(s.cols.iter().map(|&k| tracks[k].kf.tlbr()));
    s.kill.clear();
    for (&p, pb) in s.rows.iter().zip(&s.row_boxes) {
        for (&q, qb) in s.cols.iter().zip(&s.col_boxes) {
            if 1.0 - iou(pb, qb) < 0.15 {
                let (tp, tq) = (&tracks[p], &tracks[q]);
                let time_p = tp.last_frame - tp.start_frame;
                let time_q = tq.last_frame - tq.start_frame;
                s.kill.push(if time_p > time_q { q } else { p });
            }
        }
    }
    for &k in &s.kill {
        let t = &mut tracks[k];
        if !t.dead {
            t.dead = true;
            if t.activated {
                removed.push(t.id);
            }
        }
    }
}

/// Fills the reported tracks and the detection -> track assignments.
fn report(tracks: &[Track], frame: u64, out: &mut FrameOutput) {
    for t in tracks {
        if t.state == TrackState::Tracked && t.activated {
            out.tracks.push(t.info(frame));
            if let Some(slot) = t.det.and_then(|di| out.assignments.get_mut(di)) {
                *slot = Some(t.id);
            }
        }
    }
}

/// IoU of two `[x1, y1, x2, y2]` boxes; 0 for empty, degenerate or non-finite input.
fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = a[2].min(b[2]) - a[0].max(b[0]);
    let ih = a[3].min(b[3]) - a[1].max(b[1]);
    if !(iw > 0.0 && ih > 0.0) {
        return 0.0;
    }
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    let v = inter / union;
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

const STD_WEIGHT_POSITION: f64 = 1.0 / 20.0;
const STD_WEIGHT_VELOCITY: f64 = 1.0 / 160.0;

/// Constant-velocity Kalman filter on `(cx, cy, a, h, vcx, vcy, va, vh)`, reference
/// `kalman_filter.py` (noise proportional to the box height, so it is scale invariant).
#[derive(Debug, Clone)]
struct KalmanBox {
    mean: [f64; 8],
    cov: [[f64; 8]; 8],
}

impl KalmanBox {
    /// Reference `initiate`: zero velocity, generous velocity uncertainty.
    fn new(z: [f64; 4]) -> Self {
        let h = z[3];
        let sp = 2.0 * STD_WEIGHT_POSITION * h;
        let sv = 10.0 * STD_WEIGHT_VELOCITY * h;
        let std = [sp, sp, 1e-2, sp, sv, sv, 1e-5, sv];
        let mut cov = [[0.0; 8]; 8];
        for (i, s) in std.iter().enumerate() {
            cov[i][i] = s * s;
        }
        let mut mean = [0.0; 8];
        mean[..4].copy_from_slice(&z);
        Self { mean, cov }
    }

    /// Reference `predict` (dt = 1 frame). `freeze_height_velocity` is the reference's
    /// `mean[7] = 0` for tracks that are not in the tracked state: a lost box should not keep
    /// growing or shrinking while nobody sees it.
    #[allow(clippy::needless_range_loop)] // index arithmetic mirrors F P F^T
    fn predict(&mut self, freeze_height_velocity: bool) {
        let mut mean = self.mean;
        if freeze_height_velocity {
            mean[7] = 0.0;
        }
        let sp = STD_WEIGHT_POSITION * mean[3];
        let sv = STD_WEIGHT_VELOCITY * mean[3];
        let q = [
            sp * sp,
            sp * sp,
            1e-4,
            sp * sp,
            sv * sv,
            sv * sv,
            1e-10,
            sv * sv,
        ];
        for i in 0..4 {
            mean[i] += mean[i + 4];
        }
        // F = [[I, I], [0, I]], so F P F^T only adds the velocity blocks onto the position ones.
        let p = &self.cov;
        let mut np = [[0.0; 8]; 8];
        for i in 0..8 {
            for j in 0..8 {
                let mut x = p[i][j];
                if i < 4 {
                    x += p[i + 4][j];
                }
                if j < 4 {
                    x += p[i][j + 4];
                }
                if i < 4 && j < 4 {
                    x += p[i + 4][j + 4];
                }
                np[i][j] = x;
            }
            np[i][i] += q[i];
        }
        // Keep the last good state rather than propagate overflow.
        if mean
            .iter()
            .chain(np.iter().flatten())
            .all(|v| v.is_finite())
        {
            self.mean = mean;
            self.cov = np;
        }
    }

    /// Reference `update` (with `project`). Returns `false`, leaving the state untouched, if the
    /// innovation covariance is not positive definite or the result is not finite.
    #[allow(clippy::needless_range_loop)] // small fixed-size matrix algebra
    fn update(&mut self, z: [f64; 4]) -> bool {
        let sp = STD_WEIGHT_POSITION * self.mean[3];
        let r = [sp * sp, sp * sp, 1e-2, sp * sp];
        let p = &self.cov;
        // S = H P H^T + R, the top-left 4x4 block of P plus measurement noise.
        let mut s = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = p[i][j];
            }
            s[i][i] += r[i];
        }
        let Some(l) = cholesky4(&s) else {
            return false;
        };
        // K = P H^T S^-1; row i of K solves S k = (P H^T)[i]^T, and (P H^T)[i] = P[i][0..4].
        let mut k = [[0.0; 4]; 8];
        for i in 0..8 {
            k[i] = chol_solve4(&l, [p[i][0], p[i][1], p[i][2], p[i][3]]);
        }
        let y = [
            z[0] - self.mean[0],
            z[1] - self.mean[1],
            z[2] - self.mean[2],
            z[3] - self.mean[3],
        ];
        let mut mean = self.mean;
        for i in 0..8 {
            mean[i] += (0..4).map(|m| k[i][m] * y[m]).sum::<f64>();
        }
        // P - K S K^T, as the reference writes it.
        let mut ks = [[0.0; 4]; 8];
        for i in 0..8 {
            for m in 0..4 {
                ks[i][m] = (0..4).map(|n| k[i][n] * s[n][m]).sum();
            }
        }
        let mut np = *p;
        for i in 0..8 {
            for j in 0..8 {
                np[i][j] -= (0..4).map(|m| ks[i][m] * k[j][m]).sum::<f64>();
            }
        }
        if !mean
            .iter()
            .chain(np.iter().flatten())
            .all(|v| v.is_finite())
        {
            return false;
        }
        self.mean = mean;
        self.cov = np;
        true
    }

    fn tlwh(&self) -> [f64; 4] {
        let h = self.mean[3];
        let w = self.mean[2] * h;
        [self.mean[0] - w / 2.0, self.mean[1] - h / 2.0, w, h]
    }

    fn tlbr(&self) -> [f64; 4] {
        let [x, y, w, h] = self.tlwh();
        [x, y, x + w, y + h]
    }
}

/// Lower Cholesky factor of a symmetric 4x4 matrix, `None` unless positive definite.
#[allow(clippy::needless_range_loop)]
fn cholesky4(a: &[[f64; 4]; 4]) -> Option<[[f64; 4]; 4]> {
    let mut l = [[0.0; 4]; 4];
    for j in 0..4 {
        let d = a[j][j] - (0..j).map(|k| l[j][k] * l[j][k]).sum::<f64>();
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        let djj = d.sqrt();
        l[j][j] = djj;
        for i in j + 1..4 {
            l[i][j] = (a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>()) / djj;
        }
    }
    Some(l)
}

/// Solves `L L^T x = b`.
#[allow(clippy::needless_range_loop)]
fn chol_solve4(l: &[[f64; 4]; 4], b: [f64; 4]) -> [f64; 4] {
    let mut y = [0.0; 4];
    for i in 0..4 {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; 4];
    for i in (0..4).rev() {
        x[i] = (y[i] - (i + 1..4).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// `[x, y, w, h]`, pixels.
    type Tlwh = [f64; 4];

    fn to_tlbr(b: &Tlwh) -> [f64; 4] {
        [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    }

    fn iou_tlwh(a: &Tlwh, b: &Tlwh) -> f64 {
        iou(&to_tlbr(a), &to_tlbr(b))
    }

    /// SplitMix64: deterministic, seeded scene noise without the `rand` crate.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.unit()
        }
    }

    /// Ground-truth object moving at constant velocity.
    #[derive(Debug, Clone, Copy)]
    struct Mover {
        id: u32,
        x: f64,
        y: f64,
        vx: f64,
        vy: f64,
        w: f64,
        h: f64,
    }

    impl Mover {
        fn new(id: u32, x: f64, y: f64, vx: f64, vy: f64, w: f64, h: f64) -> Self {
            Self {
                id,
                x,
                y,
                vx,
                vy,
                w,
                h,
            }
        }

        fn at(&self, f: usize) -> Tlwh {
            let t = f as f64;
            [self.x + self.vx * t, self.y + self.vy * t, self.w, self.h]
        }
    }

    /// Detection of ground-truth object `gt` (the id travels in `user`).
    fn det(b: Tlwh, score: f32, gt: u32) -> Detection {
        Detection {
            x: b[0] as f32,
            y: b[1] as f32,
            w: b[2] as f32,
            h: b[3] as f32,
            score,
            class_id: 0,
            user: gt,
        }
    }

    fn jitter(b: Tlwh, rng: &mut Rng, pos: f64, size: f64) -> Tlwh {
        [
            b[0] + rng.range(-pos, pos),
            b[1] + rng.range(-pos, pos),
            b[2] + rng.range(-size, size),
            b[3] + rng.range(-size, size),
        ]
    }

    /// CLEAR-MOT and identity metrics at IoU >= 0.5.
    #[derive(Debug, Default, Clone, Copy)]
    struct Metrics {
        gt: usize,
        pred: usize,
        fp: usize,
        fneg: usize,
        idsw: usize,
        idtp: usize,
    }

    impl Metrics {
        fn mota(&self) -> f64 {
            1.0 - (self.fneg + self.fp + self.idsw) as f64 / self.gt as f64
        }

        fn idf1(&self) -> f64 {
            2.0 * self.idtp as f64 / (self.gt + self.pred) as f64
        }
    }

    /// MOTA (Bernardin & Stiefelhagen 2008: previous correspondences are kept while IoU >= 0.5,
    /// the rest matched optimally, an ID switch is a ground-truth object matched to a different
    /// track than the last time) and IDF1 (Ristani et al. 2016: one global ground-truth-id to
    /// track-id matching maximising the frames where the pair overlaps with IoU >= 0.5).
    fn evaluate(gt: &[Vec<(u32, Tlwh)>], pred: &[Vec<(TrackId, Tlwh)>]) -> Metrics {
        assert_eq!(gt.len(), pred.len());
        let mut m = Metrics::default();
        let mut last: HashMap<u32, TrackId> = HashMap::new();
        let mut pairs: HashMap<(u32, TrackId), usize> = HashMap::new();
        let mut lap = LinearAssignment::default();
        for (g, p) in gt.iter().zip(pred) {
            m.gt += g.len();
            m.pred += p.len();
            for (gid, gb) in g {
                for (pid, pb) in p {
                    if iou_tlwh(gb, pb) >= 0.5 {
                        *pairs.entry((*gid, *pid)).or_default() += 1;
                    }
                }
            }
            let mut g_match: Vec<Option<usize>> = vec![None; g.len()];
            let mut p_used = vec![false; p.len()];
            for (a, (gid, gb)) in g.iter().enumerate() {
                let Some(&pid) = last.get(gid) else { continue };
                if let Some(b) = p.iter().position(|(q, _)| *q == pid)
                    && !p_used[b]
                    && iou_tlwh(gb, &p[b].1) >= 0.5
                {
                    g_match[a] = Some(b);
                    p_used[b] = true;
                }
            }
            let rows: Vec<usize> = (0..g.len()).filter(|&a| g_match[a].is_none()).collect();
            let cols: Vec<usize> = (0..p.len()).filter(|&b| !p_used[b]).collect();
            let cost: Vec<f64> = rows
                .iter()
                .flat_map(|&a| cols.iter().map(move |&b| 1.0 - iou_tlwh(&g[a].1, &p[b].1)))
                .collect();
            for &(r, c) in lap.solve(&cost, rows.len(), cols.len(), 0.5) {
                let (a, b) = (rows[r], cols[c]);
                g_match[a] = Some(b);
                p_used[b] = true;
                if last.get(&g[a].0).is_some_and(|&prev| prev != p[b].0) {
                    m.idsw += 1;
                }
            }
            for (a, mb) in g_match.iter().enumerate() {
                match mb {
                    Some(b) => {
                        last.insert(g[a].0, p[*b].0);
                    }
                    None => m.fneg += 1,
                }
            }
            m.fp += p_used.iter().filter(|&&u| !u).count();
        }
        let mut gids: Vec<u32> = gt.iter().flatten().map(|(id, _)| *id).collect();
        gids.sort_unstable();
        gids.dedup();
        let mut pids: Vec<TrackId> = pred.iter().flatten().map(|(id, _)| *id).collect();
        pids.sort_unstable();
        pids.dedup();
        let cost: Vec<f64> = gids
            .iter()
            .flat_map(|g| {
                let pairs = &pairs;
                pids.iter()
                    .map(move |p| -(pairs.get(&(*g, *p)).copied().unwrap_or(0) as f64))
            })
            .collect();
        m.idtp = lap
            .solve(&cost, gids.len(), pids.len(), 0.0)
            .iter()
            .map(|&(r, c)| (-cost[r * pids.len() + c]) as usize)
            .sum();
        m
    }

    /// Record of a tracker run over a synthetic scene.
    #[derive(Default)]
    struct Run {
        gt: Vec<Vec<(u32, Tlwh)>>,
        pred: Vec<Vec<(TrackId, Tlwh)>>,
        /// Per frame: ground-truth id -> track id assigned to its detection.
        assigned: Vec<HashMap<u32, Option<TrackId>>>,
        removed: Vec<Vec<TrackId>>,
    }

    impl Run {
        /// One frame: `dets` is `None` for a frame on which the detector did not run.
        fn step(&mut self, tr: &mut ByteTracker, gt: Vec<(u32, Tlwh)>, dets: Option<&[Detection]>) {
            let out = match dets {
                Some(d) => tr.update(d),
                None => tr.predict_only(),
            };
            let mut assigned = HashMap::new();
            if let Some(d) = dets {
                assert_eq!(out.assignments.len(), d.len());
                for (det, a) in d.iter().zip(&out.assignments) {
                    assigned.insert(det.user, *a);
                }
            }
            for t in &out.tracks {
                assert_eq!(
                    t.matched(),
                    dets.is_some(),
                    "matched flag vs frame kind: {t:?}"
                );
                if let (Some(i), Some(d)) = (t.detection, dets) {
                    assert_eq!(out.assignments[i], Some(t.id));
                    assert!(i < d.len());
                }
            }
            self.pred.push(
                out.tracks
                    .iter()
                    .map(|t| (t.id, [t.x, t.y, t.w, t.h].map(f64::from)))
                    .collect(),
            );
            self.removed.push(out.removed.clone());
            self.assigned.push(assigned);
            self.gt.push(gt);
        }

        /// Distinct track ids given to the detections of one object, in order of appearance.
        fn ids_of(&self, gt: u32) -> Vec<TrackId> {
            let mut ids = Vec::new();
            for id in self
                .assigned
                .iter()
                .filter_map(|a| a.get(&gt).copied().flatten())
            {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        }

        /// 0-based frame index at which `id` was reported removed.
        fn removed_at(&self, id: TrackId) -> Option<usize> {
            self.removed.iter().position(|r| r.contains(&id))
        }

        fn metrics(&self) -> Metrics {
            evaluate(&self.gt, &self.pred)
        }
    }

    #[test]
    fn evaluation_helper_detects_errors() {
        let a = |x: f64| [x, 0.0, 10.0, 10.0];
        let gt: Vec<_> = (0..4)
            .map(|f| vec![(1, a(0.0)), (2, a(100.0 + f as f64))])
            .collect();
        let perfect: Vec<_> = gt
            .iter()
            .map(|g| g.iter().map(|(id, b)| (u64::from(*id) + 10, *b)).collect())
            .collect();
        let m = evaluate(&gt, &perfect);
        assert_eq!((m.fneg, m.fp, m.idsw, m.idtp), (0, 0, 0, 8));
        assert_eq!((m.mota(), m.idf1()), (1.0, 1.0));
        // Object 2 changes track id half-way, one frame misses object 1, one false positive.
        let mut bad = perfect.clone();
        bad[2][1].0 = 99;
        bad[3][1].0 = 99;
        bad[1].remove(0);
        bad[0].push((50, a(500.0)));
        let m = evaluate(&gt, &bad);
        assert_eq!((m.fneg, m.fp, m.idsw), (1, 1, 1));
        assert!((m.mota() - (1.0 - 3.0 / 8.0)).abs() < 1e-12);
        // IDTP: 3 (object 1) + 2 (object 2, either half) over 8 gt + 8 pred boxes.
        assert_eq!(m.idtp, 5);
        assert!((m.idf1() - 10.0 / 16.0).abs() < 1e-12);
    }

    #[test]
    fn crossing_objects_keep_their_ids() {
        // Same size, same lane, opposite directions: the boxes overlap for ~15 frames and come
        // within 2 px of each other at frame 50, so only the motion model can tell them apart.
        let a = Mover::new(1, 100.0, 200.0, 4.0, 0.0, 60.0, 120.0);
        let b = Mover::new(2, 502.0, 200.0, -4.0, 0.0, 60.0, 120.0);
        assert!(
            iou_tlwh(&a.at(50), &b.at(50)) > 0.9,
            "scene must really cross"
        );
        let mut tr = ByteTracker::default();
        let mut rng = Rng(1);
        let mut run = Run::default();
        for f in 0..100 {
            let gt = vec![(1, a.at(f)), (2, b.at(f))];
            let dets: Vec<_> = gt
                .iter()
                .map(|&(id, bx)| det(jitter(bx, &mut rng, 0.5, 0.5), 0.9, id))
                .collect();
            run.step(&mut tr, gt, Some(&dets));
        }
        let m = run.metrics();
        println!("crossing: {m:?} MOTA {:.4} IDF1 {:.4}", m.mota(), m.idf1());
        // Every single detection of each object carries the same id.
        assert_eq!(run.ids_of(1), vec![1]);
        assert_eq!(run.ids_of(2), vec![2]);
        assert_eq!(m.idsw, 0);
        assert!(m.mota() >= 0.99 && m.idf1() >= 0.99, "{m:?}");
    }

    #[test]
    fn first_association_fuses_iou_with_score() {
        // Reference `fuse_score`: cost = 1 - IoU * score against match_thresh 0.8. A box shifted
        // so that IoU = 0.2987 matches with score 0.95 (cost 0.716) but not with score 0.61
        // (cost 0.818), although both are "high" detections.
        let p = [100.0, 100.0, 100.0, 100.0];
        let shifted = [154.0, 100.0, 100.0, 100.0];
        assert!((iou_tlwh(&p, &shifted) - 0.2987).abs() < 1e-3);
        for (score, expect) in [(0.95, Some(1)), (0.61, None)] {
            let mut tr = ByteTracker::default();
            for _ in 0..3 {
                tr.update(&[det(p, 0.9, 0)]);
            }
            let out = tr.update(&[det(shifted, score, 0)]);
            assert_eq!(out.assignments, vec![expect], "score {score}");
            assert_eq!(
                out.tracks.len(),
                usize::from(expect.is_some()),
                "score {score}"
            );
        }
    }

    /// One object visible for 30 frames, hidden for `gap` frames, visible for 30 more.
    fn occlusion_run(config: ByteTrackConfig, mover: Mover, gap: usize) -> Run {
        let mut tr = ByteTracker::new(config);
        let mut rng = Rng(3);
        let mut run = Run::default();
        for f in 0..60 + gap {
            let b = mover.at(f);
            let visible = !(30..30 + gap).contains(&f);
            let dets: Vec<_> = if visible {
                vec![det(jitter(b, &mut rng, 0.5, 0.5), 0.9, mover.id)]
            } else {
                Vec::new()
            };
            run.step(&mut tr, vec![(mover.id, b)], Some(&dets));
        }
        run
    }

    #[test]
    fn occlusion_shorter_than_buffer_keeps_id() {
        // Moving object: the lost track has to coast on its velocity estimate for 20 frames.
        let mover = Mover::new(1, 50.0, 80.0, 1.5, 0.5, 50.0, 100.0);
        let run = occlusion_run(ByteTrackConfig::default(), mover, 20);
        assert_eq!(run.ids_of(1), vec![1]);
        assert!(run.removed.iter().all(Vec::is_empty));
        // It is reported again (matched) on the very first frame it reappears.
        assert_eq!(run.assigned[50][&1], Some(1));
    }

    #[test]
    fn occlusion_longer_than_buffer_gets_new_id() {
        let mover = Mover::new(1, 50.0, 80.0, 1.5, 0.5, 50.0, 100.0);
        let run = occlusion_run(ByteTrackConfig::default(), mover, 40);
        let ids = run.ids_of(1);
        assert_eq!(ids.len(), 2, "{ids:?}");
        // Last seen at index 29 (tracker frame 30); removed once unseen for 31 frames.
        assert_eq!(run.removed_at(ids[0]), Some(29 + 31));
        // The new track needs two hits (not the first frame), then gets the next id.
        assert_eq!(run.assigned[70][&1], None);
        assert_eq!(run.assigned[71][&1], Some(ids[1]));
        assert!(ids[1] > ids[0]);
    }

    #[test]
    fn occlusion_boundary_is_exactly_max_time_lost() {
        let cfg = ByteTrackConfig::default();
        let max = cfg.max_time_lost() as usize;
        assert_eq!(max, 30);
        let still = Mover::new(7, 300.0, 300.0, 0.0, 0.0, 40.0, 80.0);
        assert_eq!(occlusion_run(cfg, still, max).ids_of(7).len(), 1);
        assert_eq!(occlusion_run(cfg, still, max + 1).ids_of(7).len(), 2);
    }

    #[test]
    fn random_dropouts_keep_tracking_quality() {
        // Six objects in lanes plus one crossing them all diagonally; each detection is dropped
        // with probability 0.15 and 10 % of the rest come with a low score (0.2..0.55).
        let mut movers: Vec<_> = (0..6)
            .map(|k| {
                let dir = if k % 2 == 0 { 1.0 } else { -1.0 };
                let x = if dir > 0.0 { 0.0 } else { 900.0 };
                Mover::new(
                    k + 1,
                    x,
                    50.0 + 150.0 * f64::from(k),
                    dir * (1.0 + 0.4 * f64::from(k)),
                    0.0,
                    50.0,
                    100.0,
                )
            })
            .collect();
        movers.push(Mover::new(7, 100.0, 0.0, 1.5, 3.0, 50.0, 100.0));
        let mut rng = Rng(0xB17E);
        let mut tr = ByteTracker::default();
        let mut run = Run::default();
        let (mut dropped, mut low) = (0, 0);
        for f in 0..300 {
            let gt: Vec<_> = movers.iter().map(|m| (m.id, m.at(f))).collect();
            let mut dets = Vec::new();
            for &(id, b) in &gt {
                if f > 0 && rng.unit() < 0.15 {
                    dropped += 1;
                    continue;
                }
                let score = if rng.unit() < 0.1 {
                    low += 1;
                    rng.range(0.2, 0.55) as f32
                } else {
                    rng.range(0.7, 0.95) as f32
                };
                dets.push(det(jitter(b, &mut rng, 2.0, 2.0), score, id));
            }
            run.step(&mut tr, gt, Some(&dets));
        }
        let m = run.metrics();
        println!(
            "dropouts: dropped {dropped} low {low} {m:?} MOTA {:.4} IDF1 {:.4}",
            m.mota(),
            m.idf1()
        );
        assert!(m.mota() >= 0.80, "MOTA {}", m.mota());
        assert!(m.idf1() >= 0.88, "IDF1 {}", m.idf1());
        assert!(m.idsw <= 1, "ID switches {}", m.idsw);
        assert_eq!(m.fp, 0);
    }

    #[test]
    fn low_score_detections_rescue_a_tracked_object() {
        let mover = Mover::new(1, 100.0, 100.0, 2.0, 0.0, 60.0, 120.0);
        let mut tr = ByteTracker::default();
        let mut run = Run::default();
        for f in 0..30 {
            // Frames 10..20: partly occluded, the detector is unsure. A score of exactly
            // `track_thresh` (frame 20) also counts as low rather than being dropped.
            let score = match f {
                10..20 => 0.3,
                20 => 0.6,
                _ => 0.9,
            };
            let dets = [det(mover.at(f), score, 1)];
            run.step(&mut tr, vec![(1, mover.at(f))], Some(&dets));
            assert_eq!(run.assigned[f][&1], Some(1), "frame {f}");
            assert_eq!(
                run.pred[f].len(),
                1,
                "reported (tracked, not lost) on frame {f}"
            );
        }
        assert_eq!(tr.tracks.len(), 1);
        assert_eq!(tr.tracks[0].hits, 30);
    }

    #[test]
    fn low_score_detections_never_start_tracks() {
        let low = Mover::new(1, 100.0, 100.0, 1.0, 0.0, 60.0, 120.0);
        let mid = Mover::new(2, 400.0, 100.0, 1.0, 0.0, 60.0, 120.0); // high, below new_track_thresh
        let high = Mover::new(3, 700.0, 100.0, 1.0, 0.0, 60.0, 120.0);
        let mut tr = ByteTracker::default();
        let mut run = Run::default();
        for f in 0..20 {
            let mut dets = vec![det(low.at(f), 0.3, 1), det(mid.at(f), 0.65, 2)];
            if f >= 5 {
                dets.push(det(high.at(f), 0.9, 3));
            }
            run.step(&mut tr, Vec::new(), Some(&dets));
        }
        assert!(run.ids_of(1).is_empty());
        assert!(run.ids_of(2).is_empty());
        // Not the first frame: born unconfirmed on index 5, confirmed on index 6.
        assert_eq!(run.assigned[5][&3], None);
        assert!(run.pred[5].is_empty());
        assert_eq!(run.ids_of(3), vec![1]);
        assert_eq!(run.assigned[6][&3], Some(1));
        assert!(run.pred.iter().all(|p| p.len() <= 1));
    }

    #[test]
    fn buffer_scales_with_frame_rate() {
        let at = |frame_rate: f32| ByteTrackConfig {
            frame_rate,
            ..Default::default()
        };
        assert_eq!(at(10.0).max_time_lost(), 10);
        assert_eq!(at(25.0).max_time_lost(), 25);
        assert_eq!(at(29.97).max_time_lost(), 29);
        assert_eq!(at(60.0).max_time_lost(), 60);
        assert_eq!(at(f32::NAN).max_time_lost(), 30);
        let buf = ByteTrackConfig {
            track_buffer: 90,
            ..at(10.0)
        };
        assert_eq!(buf.max_time_lost(), 30);

        let still = Mover::new(1, 200.0, 200.0, 0.0, 0.0, 40.0, 80.0);
        assert_eq!(occlusion_run(at(10.0), still, 10).ids_of(1).len(), 1);
        assert_eq!(occlusion_run(at(10.0), still, 11).ids_of(1).len(), 2);
        // 45 frames is 1.5 s at 30 fps (too long) but 0.75 s at 60 fps (kept).
        assert_eq!(occlusion_run(at(30.0), still, 45).ids_of(1).len(), 2);
        assert_eq!(occlusion_run(at(60.0), still, 45).ids_of(1).len(), 1);
    }

    #[test]
    fn predict_only_between_detection_frames_keeps_ids() {
        // Detector on every third frame. Two objects cross; a third moves diagonally.
        let movers = [
            Mover::new(1, 100.0, 200.0, 4.0, 0.0, 60.0, 60.0),
            Mover::new(2, 580.0, 205.0, -4.0, 0.0, 60.0, 60.0),
            Mover::new(3, 100.0, 400.0, 3.0, -1.5, 60.0, 60.0),
        ];
        let mut rng = Rng(11);
        let mut tr = ByteTracker::default();
        let mut run = Run::default();
        let (mut err_sum, mut err_n) = (0.0, 0);
        for f in 0..120 {
            let gt: Vec<_> = movers.iter().map(|m| (m.id, m.at(f))).collect();
            if f % 3 == 0 {
                let dets: Vec<_> = gt
                    .iter()
                    .map(|&(id, b)| det(jitter(b, &mut rng, 1.0, 1.0), 0.9, id))
                    .collect();
                run.step(&mut tr, gt, Some(&dets));
            } else {
                run.step(&mut tr, gt.clone(), None);
                if f > 30 {
                    // Predicted boxes must follow the motion (standing still would be 4-8 px off).
                    for (id, b) in &run.pred[f] {
                        let g = gt
                            .iter()
                            .find(|(gid, _)| u64::from(*gid) == *id)
                            .map(|(_, b)| b);
                        if let Some(g) = g {
                            err_sum += ((b[0] - g[0]).powi(2) + (b[1] - g[1]).powi(2)).sqrt();
                            err_n += 1;
                        }
                    }
                }
            }
        }
        let m = run.metrics();
        let mean_err = err_sum / f64::from(err_n);
        println!(
            "predict_only: {m:?} MOTA {:.4} IDF1 {:.4} mean predicted-box error {mean_err:.3} px",
            m.mota(),
            m.idf1()
        );
        for id in 1..=3 {
            assert_eq!(run.ids_of(id), vec![u64::from(id)]);
        }
        assert_eq!(m.idsw, 0);
        assert!(m.mota() >= 0.99 && m.idf1() >= 0.99, "{m:?}");
        assert!(
            err_n > 100 && mean_err < 2.0,
            "mean error {mean_err} over {err_n}"
        );
    }

    #[test]
    fn hold_only_keeps_a_moving_track_where_it_was() {
        // A car moving 5 px a frame stops: predicted frames would carry it on, held ones not.
        let mut tr = ByteTracker::default();
        for f in 0..10 {
            let b = [100.0 + 5.0 * f as f64, 200.0, 80.0, 60.0];
            tr.update(&[det(b, 0.9, 1)]);
        }
        let last = tr.update(&[det([150.0, 200.0, 80.0, 60.0], 0.9, 1)]).tracks[0].x;
        let held: Vec<f32> = (0..5).map(|_| tr.hold_only().tracks[0].x).collect();
        assert!(held.iter().all(|x| (x - held[0]).abs() < 1e-3), "{held:?}");
        assert!((held[0] - last).abs() < 6.0, "{held:?} vs {last}");
        let moved = tr.predict_only().tracks[0].x;
        assert!(moved > held[0] + 2.0, "{moved} after {held:?}");
    }

    #[test]
    fn predict_only_frames_count_as_real_time_for_the_lost_buffer() {
        let still = Mover::new(1, 200.0, 200.0, 0.0, 0.0, 40.0, 80.0);
        let mut tr = ByteTracker::default();
        let max = tr.config().max_time_lost() as usize;
        let mut run = Run::default();
        let last_seen = 30; // detection frames are multiples of 3
        for f in 0..200 {
            let visible = f <= last_seen;
            let gt = vec![(1, still.at(f))];
            if f % 3 == 0 {
                let dets: Vec<_> = if visible {
                    vec![det(still.at(f), 0.9, 1)]
                } else {
                    vec![]
                };
                run.step(&mut tr, gt, Some(&dets));
            } else {
                run.step(&mut tr, gt, None);
            }
            // Between detection frames a tracked object stays reported (predicted).
            if f < last_seen {
                assert_eq!(run.pred[f].len(), 1, "frame {f}");
            }
        }
        // Removed on the first frame (here a predict-only one) unseen for more than `max`.
        assert_eq!(run.removed_at(1), Some(last_seen + max + 1));
        assert_ne!((last_seen + max + 1) % 3, 0);
        assert!(tr.tracks.is_empty());
    }

    #[test]
    fn predict_only_does_not_resurrect_or_age_confirmed_tracks_wrongly() {
        let mut tr = ByteTracker::default();
        let d = [det([10.0, 10.0, 20.0, 40.0], 0.9, 0)];
        tr.update(&d);
        for _ in 0..5 {
            let out = tr.predict_only();
            assert!(out.assignments.is_empty());
            assert_eq!(out.tracks.len(), 1);
            assert!(!out.tracks[0].matched());
        }
        let out = tr.update(&d);
        assert_eq!(out.assignments, vec![Some(1)]);
        assert_eq!((out.tracks[0].age, out.tracks[0].hits), (6, 2));
    }

    #[test]
    fn first_frame_confirms_immediately_later_tracks_need_two_hits() {
        let mut tr = ByteTracker::default();
        let a = det([0.0, 0.0, 30.0, 60.0], 0.9, 0);
        let b = det([300.0, 0.0, 30.0, 60.0], 0.9, 1);
        assert_eq!(tr.update(&[a]).assignments, vec![Some(1)]);
        let out = tr.update(&[a, b]);
        assert_eq!(out.assignments, vec![Some(1), None]);
        assert_eq!(out.tracks.len(), 1);
        assert_eq!(tr.update(&[a, b]).assignments, vec![Some(1), Some(2)]);
        // A one-frame flicker never surfaces, but it consumes an id (as in the reference).
        let c = det([600.0, 0.0, 30.0, 60.0], 0.9, 2);
        assert_eq!(tr.update(&[a, b, c]).assignments[2], None);
        let out = tr.update(&[a, b]);
        assert!(
            out.removed.is_empty(),
            "unconfirmed tracks are not reported as removed"
        );
        let d = det([900.0, 0.0, 30.0, 60.0], 0.9, 3);
        tr.update(&[a, b, d]);
        assert_eq!(tr.update(&[a, b, d]).assignments[2], Some(4));
    }

    #[test]
    fn invalid_detections_are_skipped_without_panicking() {
        let ok = det([10.0, 10.0, 20.0, 40.0], 0.9, 0);
        let bad = [
            Detection {
                score: f32::NAN,
                ..ok
            },
            Detection { x: f32::NAN, ..ok },
            Detection {
                w: f32::INFINITY,
                ..ok
            },
            Detection { w: 0.0, ..ok },
            Detection { h: -5.0, ..ok },
            Detection {
                y: f32::NEG_INFINITY,
                ..ok
            },
        ];
        let mut tr = ByteTracker::default();
        let mut dets = bad.to_vec();
        dets.push(ok);
        for _ in 0..3 {
            let out = tr.update(&dets);
            assert_eq!(out.assignments[..6], [None; 6]);
            assert_eq!(out.assignments[6], Some(1));
            assert_eq!(out.tracks.len(), 1);
            assert!(
                out.tracks
                    .iter()
                    .all(|t| t.x.is_finite() && t.h.is_finite())
            );
        }
        // Absurd but finite values must not panic either.
        let huge = Detection {
            x: 1e30,
            y: -1e30,
            w: 3e38,
            h: 1e-30,
            score: 1e9,
            ..ok
        };
        for _ in 0..5 {
            tr.update(&[huge, ok]);
            tr.predict_only();
        }
        let out = tr.update(&[ok]);
        assert_eq!(out.assignments, vec![Some(1)]);
        // A NaN-laden config falls back to defaults instead of ignoring every detection.
        let cfg = ByteTrackConfig {
            track_thresh: f32::NAN,
            ..Default::default()
        };
        assert_eq!(
            ByteTracker::new(cfg).update(&[ok]).assignments,
            vec![Some(1)]
        );
    }

    #[test]
    fn reset_clears_state_and_ids_are_per_instance_and_monotonic() {
        let d = det([10.0, 10.0, 20.0, 40.0], 0.9, 0);
        let mut a = ByteTracker::default();
        let mut b = ByteTracker::default();
        assert_eq!(a.update(&[d]).assignments, vec![Some(1)]);
        assert_eq!(b.update(&[d]).assignments, vec![Some(1)]);
        a.reset();
        assert!(a.predict_only().tracks.is_empty());
        a.reset();
        // Treated as a first frame again (immediate confirmation), with a fresh id.
        assert_eq!(a.update(&[d]).assignments, vec![Some(2)]);
        assert_eq!(b.update(&[d]).assignments, vec![Some(1)]);
    }

    #[test]
    fn duplicate_of_an_older_lost_track_is_removed() {
        // Object 1 sits at P for 40 frames and vanishes. Object 2 appears 100 px to the left,
        // walks onto P and stays. Reference `remove_duplicate_stracks`: the younger track is
        // dropped at once and the spot is handed back to the older id.
        let p = [400.0, 200.0, 60.0, 120.0];
        let mut tr = ByteTracker::default();
        let mut run = Run::default();
        for f in 0..100 {
            let mut dets = Vec::new();
            if f < 40 {
                dets.push(det(p, 0.9, 1));
            }
            if f >= 45 {
                let x = (p[0] - 100.0 + 5.0 * (f - 45) as f64).min(p[0]);
                dets.push(det([x, p[1], p[2], p[3]], 0.9, 2));
            }
            run.step(&mut tr, Vec::new(), Some(&dets));
        }
        let ids = run.ids_of(2);
        assert_eq!(ids.len(), 2, "{ids:?}");
        let (young, old) = (ids[0], 1);
        assert_eq!(ids[1], old);
        let removed_at = run.removed_at(young).expect("younger duplicate removed");
        // Object 2 reaches P at index 65; without de-duplication the young track would only go
        // after the 30-frame lost buffer.
        assert!((60..=70).contains(&removed_at), "removed at {removed_at}");
        assert_eq!(run.assigned[99][&2], Some(old));
        assert!(run.removed_at(old).is_none());
    }

    #[test]
    fn kalman_learns_constant_velocity() {
        let mut kf = KalmanBox::new([100.0, 50.0, 0.5, 80.0]);
        for f in 1..=40 {
            kf.predict(false);
            let t = f64::from(f);
            assert!(kf.update([100.0 + 3.0 * t, 50.0 - 1.0 * t, 0.5, 80.0 + 0.2 * t]));
        }
        let v = &kf.mean[4..];
        assert!(
            (v[0] - 3.0).abs() < 0.05 && (v[1] + 1.0).abs() < 0.05,
            "{v:?}"
        );
        assert!((v[3] - 0.2).abs() < 0.05, "{v:?}");
        // Lost tracks coast without changing size.
        let h = kf.mean[3];
        kf.predict(true);
        assert!((kf.mean[3] - h).abs() < 1e-12 && (kf.mean[0] - 223.0).abs() < 0.2);
        // Covariance stays symmetric positive definite.
        for i in 0..8 {
            assert!(kf.cov[i][i] > 0.0);
            for j in 0..8 {
                assert!((kf.cov[i][j] - kf.cov[j][i]).abs() < 1e-9 * (1.0 + kf.cov[i][j].abs()));
            }
        }
    }

    #[test]
    fn lost_tracks_coast_without_changing_size() {
        // Reference: a lost track is predicted with its height velocity zeroed.
        let grow = |f: usize| [100.0 + 2.0 * f as f64, 100.0, 40.0, 80.0 + f as f64];
        let mut tr = ByteTracker::default();
        for f in 0..20 {
            tr.update(&[det(grow(f), 0.9, 0)]);
        }
        let h_tracked = tr.tracks[0].kf.mean[3];
        for _ in 0..10 {
            tr.update(&[]);
        }
        let t = &tr.tracks[0];
        assert_eq!(t.state, TrackState::Lost);
        // Still moving sideways at ~2 px/frame, but the height is frozen.
        assert!(
            (t.kf.mean[3] - h_tracked).abs() < 1.5,
            "{} vs {h_tracked}",
            t.kf.mean[3]
        );
        assert!(t.kf.mean[0] > grow(19)[0] + 20.0 + 15.0, "{}", t.kf.mean[0]);
    }

    #[test]
    fn motion_gate_scores_near_boxes_without_overlap() {
        let a = [0.0, 0.0, 30.0, 10.0];
        let apart = [45.0, 0.0, 75.0, 10.0]; // 1.5 widths to the right, no overlap
        assert_eq!(similarity(&a, &apart, 0.0), 0.0, "gate off: IoU only");
        let s = similarity(&a, &apart, 3.0);
        assert!((s - 0.5).abs() < 1e-9, "{s}");
        // Twice the size at the same place: scaled by sqrt(area ratio) unless IoU is higher.
        let big = [-15.0, -5.0, 45.0, 15.0];
        let s = similarity(&a, &big, 3.0);
        assert!((s - 0.5).abs() < 1e-9, "{s}");
        assert_eq!(
            similarity(&a, &[300.0, 0.0, 330.0, 10.0], 3.0),
            0.0,
            "beyond the gate"
        );
        assert_eq!(similarity(&a, &[f64::NAN, 0.0, 1.0, 1.0], 3.0), 0.0);
        assert_eq!(similarity(&a, &a, 3.0), 1.0);
    }
}
