// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-track reading state: the voter, when the track was seen, and the best few crops, turned
//! into [`PlateEvent`]s when the voter decides. No GStreamer here.

use std::collections::HashMap;

use super::vote::{
    Decision, DecisionKind, EmitMode, PlateMatch, TrackVoter, VoteRead, VoterConfig, levenshtein,
    normalize_o0, plate_match,
};
use crate::event::PlateEvent;
use crate::meta::BBox;

/// How many of a track's crops are kept (best quality first) to pick the published one from.
const KEPT_CROPS: usize = 6;
/// A track is split when this many confident reads in a row agree with each other but differ
/// from the track's decision by at least [`SPLIT_DISTANCE`] characters: the tracker has followed
/// a new car into the place of the old one (a queue at a barrier, a camera cut).
const SPLIT_READS: usize = 2;
const SPLIT_DISTANCE: usize = 3;
const SPLIT_MIN_CONFIDENCE: f32 = 0.5;
/// Two tracks of one plate that do not overlap in time continue each other only if the later
/// starts within this many frames of the earlier's last read (a plate missed for a frame or
/// two, or read only every other frame with `interval=2`); a plate gone for longer has left the
/// view, and seen again it is another passage.
const MAX_GAP_FRAMES: u64 = 3;
/// ... and only if the later starts near where the earlier was last read: within this many of
/// the plate's widths.
const MAX_JUMP_WIDTHS: f32 = 3.0;

/// Whether a track seen on frames `first..=last` (plate boxes `first_box`, `last_box` there)
/// and track `other` can be one car: they overlap in time, or one starts right where and when
/// the other stopped (see [`MAX_GAP_FRAMES`], [`MAX_JUMP_WIDTHS`]).
fn continuous(
    (first, last, first_box, last_box): (u64, u64, BBox, BBox),
    other: &TrackState,
) -> bool {
    if first > last || other.first_frame > other.last_frame {
        return false;
    }
    if first <= other.last_frame && other.first_frame <= last {
        return true;
    }
    let (gap, from, to) = if last < other.first_frame {
        (other.first_frame - last, last_box, other.first_box)
    } else {
        (first - other.last_frame, other.last_box, first_box)
    };
    gap <= MAX_GAP_FRAMES && centre_distance(&from, &to) <= MAX_JUMP_WIDTHS * from.w.max(to.w)
}

fn centre_distance(a: &BBox, b: &BBox) -> f32 {
    let dx = (a.x + a.w / 2.0) - (b.x + b.w / 2.0);
    let dy = (a.y + a.h / 2.0) - (b.y + b.h / 2.0);
    (dx * dx + dy * dy).sqrt()
}

/// Whether a plate first seen at `now` is where a plate last seen at `before` stood: it did not
/// leave (a parked or stopped car whose track broke). Boxes overlap, or the centres are less
/// than one and a half plate widths apart.
fn stayed(before: &BBox, now: &BBox) -> bool {
    before.iou(now) >= 0.2 || centre_distance(before, now) <= 1.5 * before.w.max(now.w)
}

/// Tracks with at most this many reads are fragments: they emit only with a very confident read
/// ([`MergeConfig::fragment_confidence`]).
pub const FRAGMENT_READS: usize = 2;

/// Most decided plates remembered for [`MergeConfig::repeat_frames`] (a bound for busy roads;
/// the oldest is forgotten first).
const MAX_RECENT: usize = 1024;
/// Split segments of track `t` are published as `t + k * SEGMENT_STRIDE`, k = 1, 2, ...
pub const SEGMENT_STRIDE: u64 = 1 << 48;

fn plate_distance(a: &str, b: &str) -> usize {
    levenshtein(&normalize_o0(a), &normalize_o0(b))
}

/// A plate crop as packed RGB.
#[derive(Debug, Clone, PartialEq)]
pub struct Crop {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
}

/// The images besides the plate crop that alprocr was asked to keep for a read (its
/// `vehicle-image` and `frame-image` properties): only made when the read can become one of the
/// track's kept candidates ([`Tracks::admits`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    pub vehicle: Option<Crop>,
    pub frame: Option<Crop>,
}

/// The vehicle a read's plate was in.
#[derive(Debug, Clone, PartialEq)]
pub struct VehicleInfo {
    pub class: String,
    pub confidence: f32,
    pub bbox: BBox,
}

/// One read with what the event needs besides the text.
#[derive(Debug, Clone)]
pub struct Observation {
    pub read: VoteRead,
    pub plate_bbox: BBox,
    pub vehicle: Option<VehicleInfo>,
    pub crop: Option<Crop>,
    pub extras: Extras,
    pub seen_ms: i64,
}

#[derive(Debug, Clone)]
struct Candidate {
    index: usize,
    text: String,
    quality: f32,
    frame: u64,
    plate_bbox: BBox,
    vehicle: Option<VehicleInfo>,
    crop: Option<Crop>,
    extras: Extras,
}

#[derive(Debug)]
struct TrackState {
    /// Track id published in events (the tracker's id, or a split segment of it).
    event_track: u64,
    /// The event id, fixed by the first emission: updates (`emit=early`) keep it, so a consumer
    /// that stores by id keeps the highest revision.
    event_id: Option<String>,
    /// First and last frame with a read, and the plate's box on them.
    first_frame: u64,
    last_frame: u64,
    first_box: BBox,
    last_box: BBox,
    /// Confident reads that disagree with the decision, held back until they prove a new car
    /// (then they start a new segment) or turn out to be outliers (then the voter gets them).
    doubtful: Vec<Observation>,
    voter: TrackVoter,
    pushed: usize,
    first_seen_ms: i64,
    last_seen_ms: i64,
    candidates: Vec<Candidate>,
    revision: Option<u32>,
    /// The plate is read: at least `settle_reads` reads agree exactly with the current decision
    /// and they are most of its cluster (see [`Tracks::is_settled`]).
    settled: bool,
}

/// A decided event (without id and key, which the element assigns) and its crop.
#[derive(Debug, Clone)]
pub struct Emission {
    pub event: PlateEvent,
    pub crop: Option<Crop>,
    pub extras: Extras,
    /// The plate's box at the track's last read (where a repeat of this plate would be).
    pub last_box: BBox,
    /// The track's first read: frame and plate box.
    pub first_frame: u64,
    pub first_box: BBox,
}

/// How the tracks of one car are kept to one event (see [`Tracks`]). Windows are in frames.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeConfig {
    /// Frames an ended track waits for an agreeing track to take it in before it is decided
    /// (0: decided when it ends, still merged into an agreeing open track).
    pub linger_frames: u64,
    /// A decided plate seen again within this many frames of its last read is the same car:
    /// the later track's event is not emitted (parked cars, stops, broken tracks).
    pub repeat_frames: u64,
    /// A track with at most [`FRAGMENT_READS`] reads makes an event only if one of them has at
    /// least this confidence (a plate seen for a moment is most often a part of a car already
    /// read, or a misread).
    pub fragment_confidence: f32,
}

impl MergeConfig {
    pub const DEFAULT_FRAGMENT_CONFIDENCE: f32 = 0.9;
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            linger_frames: 0,
            repeat_frames: 0,
            fragment_confidence: Self::DEFAULT_FRAGMENT_CONFIDENCE,
        }
    }
}

/// A decided event kept for [`MergeConfig::repeat_frames`]: later tracks of the same plate
/// continue it instead of making another.
#[derive(Debug, Clone)]
struct Recent {
    text: String,
    last_frame: u64,
    /// The plate's box at its last read.
    last_box: BBox,
    /// The event's first read (frame and box).
    first_frame: u64,
    first_box: BBox,
    event_track: u64,
    event_id: Option<String>,
    revision: u32,
}

/// An ended track waiting [`MergeConfig::linger_frames`] for an agreeing track.
#[derive(Debug)]
struct Pending {
    state: TrackState,
    ended: u64,
}

/// Counters of the merging, for the element's `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Tracks whose reads went into another track of the same plate.
    pub merged: u64,
    /// Tracks not emitted because their plate was decided moments before (same car).
    pub repeats: u64,
    /// Tracks of one or two reads, none very confident: not emitted.
    pub fragments: u64,
}

/// The reading state of every open track, and the decisions that keep one event per car.
///
/// A car's reads can arrive under several track ids: its plate is tracked on its own before its
/// car is detected, a track breaks when the plate moves too far or is missed, a stopped car's
/// track ends and starts again. The rules, in the order they apply:
/// - A track that ends is not decided at once: it waits [`MergeConfig::linger_frames`] for
///   another track of the same plate ([`plate_match`]: the same text up to the OCR's usual
///   confusions, or a near/partial read when one of the two is a fragment). An open track of the
///   same plate takes its reads (and, if it was emitted already, its event id and revision).
/// - A track decided within [`MergeConfig::repeat_frames`] of an event of the same plate
///   continues that event: it emits nothing, or an update when it reads the plate differently.
/// - A track of one or two reads emits only if one of them is very confident
///   ([`MergeConfig::fragment_confidence`]).
///
/// A different plate never merges, so a new car in the old car's place (a cut, a queue) stays a
/// new event.
#[derive(Debug, Default)]
pub struct Tracks {
    cfg: VoterConfig,
    merge: MergeConfig,
    /// Agreeing reads after which a track counts as settled; 0 = never.
    settle_reads: usize,
    tracks: HashMap<u64, TrackState>,
    /// Segments started per tracker id by splits.
    segments: HashMap<u64, u64>,
    pending: Vec<Pending>,
    recent: Vec<Recent>,
    /// The latest frame number seen.
    now: u64,
    stats: MergeStats,
}

impl Tracks {
    pub fn new(cfg: VoterConfig) -> Self {
        Tracks {
            cfg,
            ..Default::default()
        }
    }

    /// Sets the merging rules (see [`MergeConfig`]).
    pub fn set_merge(&mut self, merge: MergeConfig) {
        self.merge = merge;
    }

    pub fn merge_stats(&self) -> MergeStats {
        self.stats
    }

    /// Reads that must agree before a track counts as settled (0: never). Never fewer than an
    /// event needs (`min_reads`, and `agree` for early emission): the search must go on until
    /// the track can emit.
    pub fn set_settle_reads(&mut self, reads: usize) {
        let needed = match self.cfg.emit {
            EmitMode::Early { agree } => agree,
            _ => 0,
        }
        .max(self.cfg.min_reads);
        self.settle_reads = if reads == 0 { 0 } else { reads.max(needed) };
        let (reads, cfg) = (self.settle_reads, &self.cfg);
        for s in self.tracks.values_mut() {
            s.settled = s.is_settled(reads, cfg);
        }
    }

    /// Whether track `track_id`'s plate is read well enough that more reads would not change
    /// it: at least `settle_reads` reads agree exactly with the current decision and they are
    /// more than half of its length cluster. Detection can stop searching that vehicle.
    pub fn is_settled(&self, track_id: u64) -> bool {
        self.tracks.get(&track_id).is_some_and(|s| s.settled)
    }

    pub fn open_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// Whether a read of `quality` on track `track_id` would be kept among the track's best
    /// candidates now: the images an event may publish are only worth making for those.
    pub fn admits(&self, track_id: u64, quality: f32) -> bool {
        if track_id == 0 {
            return true;
        }
        self.tracks.get(&track_id).is_none_or(|s| {
            s.candidates.len() < KEPT_CROPS || s.candidates.iter().any(|c| c.quality < quality)
        })
    }

    /// Adds a read to track `track_id`; returns an event when the emit policy decides now.
    /// Track 0 (no tracker upstream) is one event per read.
    pub fn observe(&mut self, track_id: u64, obs: Observation) -> Option<Emission> {
        self.now = self.now.max(obs.read.frame);
        let out = self.observe_read(track_id, obs);
        // A first decision of a plate that was just decided under another track continues
        // that event.
        let out = match out {
            Some(e) if e.event.revision == 0 && track_id != 0 => self.continue_recent(track_id, e),
            other => other,
        };
        if let Some(e) = &out
            && track_id != 0
        {
            self.remember(e);
        }
        let (reads, cfg) = (self.settle_reads, &self.cfg);
        if let Some(s) = self.tracks.get_mut(&track_id) {
            s.settled = s.is_settled(reads, cfg);
        }
        out
    }

    fn observe_read(&mut self, track_id: u64, obs: Observation) -> Option<Emission> {
        if track_id == 0 {
            let mut state = TrackState::new(TrackVoter::new(self.cfg.clone()), obs.seen_ms, 0);
            let decision = match state.add(obs) {
                Some(d) => d,
                None => state.voter.finish()?,
            };
            return Some(state.emission(decision));
        }
        let cfg = &self.cfg;
        let state = self.tracks.entry(track_id).or_insert_with(|| {
            TrackState::new(TrackVoter::new(cfg.clone()), obs.seen_ms, track_id)
        });
        let current = state.voter.current().filter(|d| d.reads >= SPLIT_READS);
        let doubtful = current.as_ref().is_some_and(|d| {
            obs.read.confidence >= SPLIT_MIN_CONFIDENCE
                && plate_distance(&obs.read.text, &d.text) >= SPLIT_DISTANCE
        });
        if !doubtful {
            // Held-back reads were outliers after all: they count for this car.
            let mut out = None;
            for held in std::mem::take(&mut state.doubtful) {
                out = state.add(held).or(out);
            }
            let decision = state.add(obs).map(|d| state.emission(d));
            return decision.or_else(|| out.map(|d| state.emission(d)));
        }
        state.doubtful.push(obs);
        let held = &state.doubtful;
        let agree = held.len() >= SPLIT_READS
            && held
                .iter()
                .all(|o| plate_distance(&o.read.text, &held[0].read.text) < SPLIT_DISTANCE);
        if !agree {
            return None;
        }
        // A new car: finish the old one, start a segment with the held-back reads.
        let held = std::mem::take(&mut state.doubtful);
        let old = state.voter.finish().map(|d| state.emission(d));
        let seg = self.segments.entry(track_id).or_default();
        *seg += 1;
        let mut fresh = TrackState::new(
            TrackVoter::new(self.cfg.clone()),
            held[0].seen_ms,
            track_id + *seg * SEGMENT_STRIDE,
        );
        let mut early = None;
        for o in held {
            early = fresh.add(o).or(early);
        }
        let early = early.map(|d| fresh.emission(d));
        self.tracks.insert(track_id, fresh);
        // The old car's final event first; an early event of the new one is rare here and
        // would come again at its track end, so only one is returned.
        old.or(early)
    }

    /// An emission about to leave track `track_id` for the first time: if the same plate was
    /// decided moments ago under another track, this track continues that event (its id,
    /// revision and track): nothing is emitted for the same text, an update for a different one.
    fn continue_recent(&mut self, track_id: u64, e: Emission) -> Option<Emission> {
        let now = self.now;
        let window = self.merge.repeat_frames;
        let Some(first_box) = self.tracks.get(&track_id).map(|s| s.first_box) else {
            return Some(e);
        };
        let Some(r) = self.recent.iter_mut().find(|r| {
            now.saturating_sub(r.last_frame) <= window
                && plate_match(&r.text, &e.event.plate_text) == PlateMatch::Same
                && stayed(&r.last_box, &first_box)
        }) else {
            return Some(e);
        };
        let Some(state) = self
            .tracks
            .get_mut(&track_id)
            .filter(|s| s.event_id.as_deref() == Some(e.event.event_id.as_str()))
        else {
            // Not this track's own first event (the finished part of a split track).
            return Some(e);
        };
        r.last_frame = now;
        let r = r.clone();
        state.event_track = r.event_track;
        state.event_id = r.event_id.clone();
        state.revision = Some(r.revision);
        state.voter.set_emitted(&r.text);
        self.stats.repeats += 1;
        if r.text == e.event.plate_text {
            return None;
        }
        let mut e = e;
        e.event.track_id = r.event_track;
        e.event.revision = r.revision + 1;
        e.event.event_id = r.event_id.unwrap_or_default();
        state.revision = Some(r.revision + 1);
        state.voter.set_emitted(&e.event.plate_text);
        Some(e)
    }

    /// Ends a track. It is merged into an open track of the same plate if there is one;
    /// otherwise decided now (with [`MergeConfig::linger_frames`] 0) or after its wait (see
    /// [`Self::tick`]). Returns the decision made now, if any.
    pub fn end(&mut self, track_id: u64) -> Option<Emission> {
        let mut state = self.tracks.remove(&track_id)?;
        self.segments.remove(&track_id);
        for held in std::mem::take(&mut state.doubtful) {
            state.add(held);
        }
        let state = self.merge_into_open(state)?;
        if self.merge.linger_frames == 0 {
            return self.decide(state);
        }
        self.pending.push(Pending {
            state,
            ended: self.now,
        });
        None
    }

    /// Advances to frame `frame`: waiting tracks that an open track of the same plate can take
    /// in are merged, those whose wait is over are decided. Call once per frame.
    pub fn tick(&mut self, frame: u64) -> Vec<Emission> {
        self.now = self.now.max(frame);
        let mut out = Vec::new();
        let pending = std::mem::take(&mut self.pending);
        let mut waiting = Vec::new();
        for p in pending {
            let Some(state) = self.merge_into_open(p.state) else {
                continue;
            };
            if self.now.saturating_sub(p.ended) >= self.merge.linger_frames {
                out.extend(self.decide(state));
            } else {
                waiting.push(Pending {
                    state,
                    ended: p.ended,
                });
            }
        }
        self.pending = waiting;
        let (now, window) = (self.now, self.merge.repeat_frames);
        self.recent
            .retain(|r| now.saturating_sub(r.last_frame) <= window);
        out
    }

    /// Merges `state` into an open (or waiting) track of the same plate, returning it if there
    /// is none. The same text merges whatever the sizes; a near or partial read only when one
    /// of the two is a fragment (at most two reads, or at most half of the other's).
    fn merge_into_open(&mut self, state: TrackState) -> Option<TrackState> {
        let Some(text) = state.voter.current().map(|d| d.text) else {
            // No read at all: nothing to merge, nothing to emit.
            return Some(state);
        };
        let reads = state.pushed;
        let span = (
            state.first_frame,
            state.last_frame,
            state.first_box,
            state.last_box,
        );
        let fits = |other: &TrackState| -> bool {
            if !continuous(span, other) {
                return false;
            }
            let Some(d) = other.voter.current() else {
                return false;
            };
            match plate_match(&text, &d.text) {
                PlateMatch::Same => true,
                PlateMatch::Near => {
                    let (a, b) = (reads.min(other.pushed), reads.max(other.pushed));
                    a <= 2 || 2 * a <= b
                }
                PlateMatch::Different => false,
            }
        };
        // Prefer the open track with the most reads.
        let target = self
            .tracks
            .iter()
            .filter(|(_, t)| fits(t))
            .max_by_key(|(id, t)| (t.pushed, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id);
        if let Some(id) = target {
            let into = self.tracks.get_mut(&id).expect("found above");
            into.absorb(state);
            self.stats.merged += 1;
            return None;
        }
        if let Some(p) = self.pending.iter_mut().find(|p| fits(&p.state)) {
            p.state.absorb(state);
            p.ended = p.ended.max(self.now);
            self.stats.merged += 1;
            return None;
        }
        Some(state)
    }

    /// Decides an ended track: its final decision, unless already emitted unchanged, a repeat
    /// of a plate just decided, or a single unconfident read.
    fn decide(&mut self, mut state: TrackState) -> Option<Emission> {
        if state.pushed <= FRAGMENT_READS
            && state.revision.is_none()
            && state.voter.best_read_confidence() < self.merge.fragment_confidence
        {
            self.stats.fragments += 1;
            return None;
        }
        let current = state.voter.current()?;
        let window = self.merge.repeat_frames;
        if state.revision.is_none()
            && let Some(r) = self.recent.iter_mut().find(|r| {
                plate_match(&r.text, &current.text) == PlateMatch::Same
                    && (continuous(
                        (r.first_frame, r.last_frame, r.first_box, r.last_box),
                        &state,
                    ) || (state.first_frame.saturating_sub(r.last_frame) <= window
                        && stayed(&r.last_box, &state.first_box)))
            })
        {
            r.last_frame = r.last_frame.max(state.last_frame);
            self.stats.repeats += 1;
            return None;
        }
        let decision = state.voter.finish()?;
        let e = state.emission(decision);
        self.remember(&e);
        Some(e)
    }

    fn remember(&mut self, e: &Emission) {
        if self.merge.repeat_frames == 0 {
            return;
        }
        let last = e.event.frame_number.max(self.now);
        match self
            .recent
            .iter_mut()
            .find(|r| r.event_id.as_deref() == Some(e.event.event_id.as_str()))
        {
            Some(r) => {
                r.text = e.event.plate_text.clone();
                r.revision = e.event.revision;
                r.last_frame = last;
                r.last_box = e.last_box;
            }
            None => {
                if self.recent.len() >= MAX_RECENT {
                    self.recent.remove(0);
                }
                self.recent.push(Recent {
                    text: e.event.plate_text.clone(),
                    last_frame: last,
                    last_box: e.last_box,
                    first_frame: e.first_frame,
                    first_box: e.first_box,
                    event_track: e.event.track_id,
                    event_id: Some(e.event.event_id.clone()),
                    revision: e.event.revision,
                })
            }
        }
    }

    /// Ends every open track and decides every waiting one (EOS), in track order.
    pub fn end_all(&mut self) -> Vec<Emission> {
        let mut ids: Vec<u64> = self.tracks.keys().copied().collect();
        ids.sort_unstable();
        let mut out: Vec<Emission> = ids.into_iter().filter_map(|id| self.end(id)).collect();
        let linger = std::mem::replace(&mut self.merge.linger_frames, 0);
        out.extend(self.tick(self.now));
        self.merge.linger_frames = linger;
        out
    }

    /// Forgets everything (flush).
    pub fn clear(&mut self) {
        self.tracks.clear();
        self.pending.clear();
        self.recent.clear();
    }
}

impl TrackState {
    fn new(voter: TrackVoter, now_ms: i64, event_track: u64) -> Self {
        TrackState {
            event_track,
            event_id: None,
            first_frame: u64::MAX,
            last_frame: 0,
            first_box: BBox::default(),
            last_box: BBox::default(),
            doubtful: Vec::new(),
            voter,
            pushed: 0,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            candidates: Vec::new(),
            revision: None,
            settled: false,
        }
    }

    fn is_settled(&self, settle_reads: usize, cfg: &VoterConfig) -> bool {
        settle_reads > 0
            && self.doubtful.is_empty()
            && self.voter.current().is_some_and(|d| {
                d.reads >= settle_reads
                    && 2 * d.reads > d.cluster_reads
                    && d.cluster_reads >= cfg.min_reads
                    && d.confidence >= cfg.min_confidence
            })
    }

    fn add(&mut self, obs: Observation) -> Option<Decision> {
        self.last_seen_ms = self.last_seen_ms.max(obs.seen_ms);
        self.first_seen_ms = self.first_seen_ms.min(obs.seen_ms);
        if obs.read.frame < self.first_frame {
            self.first_frame = obs.read.frame;
            self.first_box = obs.plate_bbox;
        }
        if obs.read.frame >= self.last_frame {
            self.last_frame = obs.read.frame;
            self.last_box = obs.plate_bbox;
        }
        let cand = Candidate {
            index: self.pushed,
            text: obs.read.text.clone(),
            quality: obs.read.quality,
            frame: obs.read.frame,
            plate_bbox: obs.plate_bbox,
            vehicle: obs.vehicle,
            crop: obs.crop,
            extras: obs.extras,
        };
        self.pushed += 1;
        // Keep the best crops only: memory stays bounded for a car parked in view for hours.
        if self.candidates.len() < KEPT_CROPS {
            self.candidates.push(cand);
        } else if let Some(worst) = self
            .candidates
            .iter_mut()
            .min_by(|a, b| a.quality.total_cmp(&b.quality))
            .filter(|w| w.quality < cand.quality)
        {
            *worst = cand;
        }
        self.voter.push(obs.read)
    }

    /// Takes over the reads, crops and emitted state of `other`, another track of the same
    /// plate (see [`Tracks`]).
    fn absorb(&mut self, mut other: TrackState) {
        for held in std::mem::take(&mut other.doubtful) {
            other.add(held);
        }
        let offset = self.pushed;
        self.pushed += other.pushed;
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        if other.first_frame < self.first_frame {
            self.first_frame = other.first_frame;
            self.first_box = other.first_box;
        }
        if other.last_frame > self.last_frame {
            self.last_frame = other.last_frame;
            self.last_box = other.last_box;
        }
        if self.revision.is_none() && other.revision.is_some() {
            // The other track's event is out already: this one continues it.
            self.revision = other.revision;
            self.event_id = other.event_id.take();
            self.event_track = other.event_track;
        }
        self.voter.absorb(other.voter, offset);
        for mut c in other.candidates {
            c.index += offset;
            if self.candidates.len() < KEPT_CROPS {
                self.candidates.push(c);
            } else if let Some(worst) = self
                .candidates
                .iter_mut()
                .min_by(|a, b| a.quality.total_cmp(&b.quality))
                .filter(|w| w.quality < c.quality)
            {
                *worst = c;
            }
        }
    }

    fn emission(&mut self, d: Decision) -> Emission {
        let track_id = self.event_track;
        let revision = match (self.revision, d.kind) {
            (None, _) => 0,
            (Some(r), DecisionKind::Update) => r + 1,
            (Some(r), _) => r,
        };
        self.revision = Some(revision);
        let best = self
            .candidates
            .iter()
            .find(|c| c.index == d.best_read_index)
            .or_else(|| {
                self.candidates
                    .iter()
                    .filter(|c| c.text == d.text)
                    .max_by(|a, b| a.quality.total_cmp(&b.quality))
            })
            .or_else(|| {
                self.candidates
                    .iter()
                    .max_by(|a, b| a.quality.total_cmp(&b.quality))
            })
            .cloned();
        let (frame, plate_bbox, quality, vehicle, crop, extras) = match best {
            Some(c) => (
                c.frame,
                c.plate_bbox,
                c.quality,
                c.vehicle,
                c.crop,
                c.extras,
            ),
            None => (
                d.best_frame,
                BBox::default(),
                0.0,
                None,
                None,
                Extras::default(),
            ),
        };
        let event_id = self
            .event_id
            .get_or_insert_with(crate::event::new_event_id)
            .clone();
        Emission {
            event: PlateEvent {
                event_id,
                track_id,
                revision,
                plate_text: d.text,
                plate_confidence: d.confidence,
                char_confidences: d.char_confidences,
                reads: d.reads as u32,
                region: d.region.map(|r| r.0),
                vehicle_class: vehicle.as_ref().map(|v| v.class.clone()),
                vehicle_confidence: vehicle.as_ref().map(|v| v.confidence),
                first_seen_ms: self.first_seen_ms,
                last_seen_ms: self.last_seen_ms,
                frame_number: frame,
                plate_bbox,
                vehicle_bbox: vehicle.map(|v| v.bbox),
                quality,
                ..Default::default()
            },
            crop,
            extras,
            last_box: self.last_box,
            first_frame: self.first_frame,
            first_box: self.first_box,
        }
    }
}

/// Vehicles searched in vain (alprocr `settle-unread`): per vehicle track, the detected frames
/// without a promising read since its box last grew by [`Unread::REGROWTH`].
#[derive(Debug, Default)]
pub struct Unread {
    tracks: HashMap<u64, (u32, f32)>,
}

impl Unread {
    /// A vehicle whose box has grown by this factor since counting began is coming closer: its
    /// count starts again.
    pub const REGROWTH: f32 = 1.3;

    pub fn clear(&mut self) {
        self.tracks.clear();
    }

    /// Counts one detected frame. `searched` gives each detected vehicle's track, box area and
    /// whether it was read (a promising read, or its plate settled): a read vehicle's count is
    /// dropped. Tracks for which `in_view` is false are forgotten.
    pub fn update(
        &mut self,
        searched: impl Iterator<Item = (u64, f32, bool)>,
        in_view: impl Fn(u64) -> bool,
    ) {
        let mut counted = 0;
        for (track, area, read) in searched {
            if read {
                self.tracks.remove(&track);
                continue;
            }
            counted += 1;
            let e = self.tracks.entry(track).or_insert((0, area));
            if area > e.1 * Self::REGROWTH {
                *e = (0, area);
            }
            e.0 += 1;
        }
        if self.tracks.len() > counted {
            self.tracks.retain(|&id, _| in_view(id));
        }
    }

    /// Detected frames track `track` has been searched in vain.
    pub fn frames(&self, track: u64) -> u32 {
        self.tracks.get(&track).map_or(0, |e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(text: &str, conf: f32, quality: f32, frame: u64) -> Observation {
        Observation {
            read: VoteRead {
                text: text.into(),
                confidence: conf,
                char_confidences: vec![conf; text.len()],
                quality,
                detector_confidence: 0.9,
                frame,
                ..Default::default()
            },
            plate_bbox: BBox::new(frame as f32, 0.0, 50.0, 15.0),
            vehicle: Some(VehicleInfo {
                class: "car".into(),
                confidence: 0.8,
                bbox: BBox::new(0.0, 0.0, 200.0, 100.0),
            }),
            crop: Some(Crop {
                rgb: vec![frame as u8; 3],
                width: 1,
                height: 1,
            }),
            extras: Extras::default(),
            seen_ms: 1000 + frame as i64 * 40,
        }
    }

    #[test]
    fn one_event_per_track_with_the_best_matching_crop() {
        let mut t = Tracks::new(VoterConfig::default());
        assert!(t.observe(5, obs("AB123", 0.9, 0.5, 1)).is_none());
        assert!(t.observe(5, obs("AB128", 0.6, 0.95, 2)).is_none());
        assert!(t.observe(5, obs("AB123", 0.9, 0.7, 3)).is_none());
        let e = t.end(5).expect("an event at track end");
        assert_eq!(e.event.plate_text, "AB123");
        assert_eq!(e.event.track_id, 5);
        assert_eq!(e.event.reads, 2);
        // The best crop among reads that agree with the decision, not the sharpest wrong one.
        assert_eq!(e.event.frame_number, 3);
        assert_eq!(e.crop.unwrap().rgb[0], 3);
        assert_eq!((e.event.first_seen_ms, e.event.last_seen_ms), (1040, 1120));
        assert_eq!(e.event.vehicle_class.as_deref(), Some("car"));
        assert!(t.end(5).is_none(), "ended once");
    }

    #[test]
    fn extra_images_travel_with_their_candidate_and_admission_is_bounded() {
        let mut t = Tracks::new(VoterConfig::default());
        assert!(t.admits(5, 0.1), "a new track admits anything");
        for f in 0..KEPT_CROPS as u64 {
            let mut o = obs("AB123", 0.9, 0.5 + f as f32 / 100.0, f);
            o.extras.frame = Some(Crop {
                rgb: vec![f as u8; 3],
                width: 1,
                height: 1,
            });
            t.observe(5, o);
        }
        // Full: only a read better than the worst kept one gets images made.
        assert!(!t.admits(5, 0.4));
        assert!(t.admits(5, 0.6));
        assert!(t.admits(0, 0.0), "untracked reads are their own event");
        let e = t.end(5).unwrap();
        // The published crop and the extras come from the same read.
        let best = e.crop.unwrap().rgb[0];
        assert_eq!(e.extras.frame.unwrap().rgb[0], best);
        assert_eq!(best as u64, e.event.frame_number);
    }

    /// The tracker follows a new car into the old one's place: after two confident reads of a
    /// clearly different plate the old car's event comes out and the new car gets a segment id;
    /// a single deviating read is just an outlier.
    #[test]
    fn a_different_plate_in_one_track_splits_it() {
        let mut t = Tracks::new(VoterConfig::default());
        for f in 0..3 {
            assert!(t.observe(9, obs("RK641AL", 0.9, 0.6, f)).is_none());
        }
        assert!(
            t.observe(9, obs("XY999ZZ", 0.9, 0.6, 3)).is_none(),
            "one outlier"
        );
        assert!(t.observe(9, obs("RK641AL", 0.9, 0.6, 4)).is_none());
        assert!(t.observe(9, obs("RK891AU", 0.9, 0.6, 5)).is_none());
        let old = t.observe(9, obs("RK891AU", 0.9, 0.6, 6)).expect("split");
        assert_eq!(old.event.plate_text, "RK641AL");
        assert_eq!(old.event.track_id, 9);
        assert_eq!(old.event.reads, 4);
        // A 1-character misread does not split.
        assert!(t.observe(9, obs("RK891AV", 0.9, 0.6, 7)).is_none());
        let new = t.end(9).expect("new car at track end");
        assert_eq!(new.event.plate_text, "RK891AU");
        assert_eq!(new.event.track_id, 9 + SEGMENT_STRIDE);
        assert_eq!(new.event.frame_number, 5);
    }

    #[test]
    fn untracked_reads_are_one_event_each() {
        let mut t = Tracks::new(VoterConfig::default());
        let e = t.observe(0, obs("XYZ1", 0.8, 0.6, 7)).unwrap();
        assert_eq!(e.event.plate_text, "XYZ1");
        assert_eq!(t.open_tracks(), 0);
    }

    #[test]
    fn end_all_finishes_every_open_track() {
        let mut t = Tracks::new(VoterConfig::default());
        t.observe(2, obs("B2", 0.9, 0.5, 1));
        t.observe(1, obs("A1", 0.9, 0.5, 1));
        let ev: Vec<String> = t
            .end_all()
            .into_iter()
            .map(|e| e.event.plate_text)
            .collect();
        assert_eq!(ev, ["A1", "B2"]);
        assert_eq!(t.open_tracks(), 0);
    }

    #[test]
    fn a_track_settles_after_agreeing_reads_and_unsettles_on_disagreement() {
        let mut t = Tracks::new(VoterConfig::default());
        t.observe(3, obs("AB123", 0.9, 0.5, 1));
        t.observe(3, obs("AB123", 0.9, 0.5, 2));
        assert!(!t.is_settled(3), "off by default");
        t.set_settle_reads(3);
        assert!(!t.is_settled(3), "two reads are not three");
        t.observe(3, obs("AB128", 0.9, 0.5, 3));
        assert!(!t.is_settled(3), "two of three agree");
        t.observe(3, obs("AB123", 0.9, 0.5, 4));
        assert!(t.is_settled(3), "three of four agree");
        // As many disagreeing reads as agreeing ones: no clear majority, not settled.
        for f in 5..7 {
            t.observe(3, obs("AB128", 0.9, 0.5, f));
        }
        assert!(!t.is_settled(3));
        assert!(!t.is_settled(4), "unknown track");
        t.end(3);
        assert!(!t.is_settled(3), "ended track");
    }

    #[test]
    fn a_track_never_settles_before_it_can_emit() {
        let cfg = VoterConfig {
            min_reads: 5,
            ..VoterConfig::default()
        };
        let mut t = Tracks::new(cfg);
        t.set_settle_reads(3);
        for f in 0..4 {
            t.observe(1, obs("AB123", 0.9, 0.5, f));
        }
        assert!(!t.is_settled(1), "min-reads 5 needs a fifth read");
        t.observe(1, obs("AB123", 0.9, 0.5, 4));
        assert!(t.is_settled(1));
        let early = VoterConfig {
            emit: EmitMode::Early { agree: 4 },
            ..VoterConfig::default()
        };
        let mut t = Tracks::new(early);
        t.set_settle_reads(3);
        for f in 0..3 {
            t.observe(1, obs("AB123", 0.9, 0.5, f));
        }
        assert!(!t.is_settled(1), "early-agree 4 needs a fourth read");
        let strict = VoterConfig {
            min_confidence: 0.95,
            ..VoterConfig::default()
        };
        let mut t = Tracks::new(strict);
        t.set_settle_reads(3);
        for f in 0..5 {
            t.observe(1, obs("AB123", 0.9, 0.5, f));
        }
        assert!(
            !t.is_settled(1),
            "below min-confidence no event would follow"
        );
    }

    fn merging(linger: u64, repeat: u64) -> Tracks {
        let mut t = Tracks::new(VoterConfig::default());
        t.set_merge(MergeConfig {
            linger_frames: linger,
            repeat_frames: repeat,
            ..MergeConfig::default()
        });
        t
    }

    /// Runs frames `frames` of `reads` (frame, track, text), ending the tracks listed at
    /// their frame, and returns every emission.
    fn play(t: &mut Tracks, reads: &[(u64, u64, &str)], ends: &[(u64, u64)]) -> Vec<Emission> {
        let last = reads
            .iter()
            .map(|r| r.0)
            .chain(ends.iter().map(|e| e.0))
            .max()
            .unwrap_or(0);
        let mut out = Vec::new();
        for f in 0..=last {
            for &(_, id, text) in reads.iter().filter(|r| r.0 == f) {
                out.extend(t.observe(id, obs(text, 0.8, 0.6, f)));
            }
            for &(_, id) in ends.iter().filter(|e| e.0 == f) {
                out.extend(t.end(id));
            }
            out.extend(t.tick(f));
        }
        out.extend(t.end_all());
        out
    }

    /// A plate tracked on its own while the car approaches (a new one-frame track on each
    /// frame), then the car's track: one event, with every read.
    #[test]
    fn fragments_before_the_car_merge_into_its_track() {
        let mut t = merging(10, 100);
        let reads = [
            (0, 101, "PP587AO"),
            (1, 102, "PP587A0"),
            (2, 103, "PP587AO"),
            (3, 7, "PP587AO"),
            (4, 7, "PP587AO"),
            (5, 7, "PP581AO"),
            (6, 7, "PP587AO"),
        ];
        let out = play(&mut t, &reads, &[(2, 101), (3, 102), (4, 103), (12, 7)]);
        assert_eq!(out.len(), 1, "{out:?}");
        let e = &out[0].event;
        assert_eq!(e.plate_text, "PP587AO");
        assert_eq!(e.track_id, 7);
        assert_eq!(
            e.reads, 5,
            "four of the car's own reads and the fragments' agree"
        );
        assert_eq!(t.merge_stats().merged, 3);
        // Without the wait, the fragments that ended before the car was tracked come out alone
        // (the third one still merges: the car's track was open when it ended). Fragments of
        // confidence 0.8 are not emitted either way: let them count here.
        let mut t = merging(0, 0);
        t.merge.fragment_confidence = 0.0;
        let reads = [
            (0, 101, "PP587AO"),
            (1, 101, "PP587AO"),
            (3, 7, "PP587AO"),
            (4, 7, "PP587AO"),
        ];
        let out = play(&mut t, &reads, &[(2, 101), (6, 7)]);
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn a_single_read_emits_only_when_very_confident() {
        let mut t = merging(0, 0);
        t.observe(1, obs("AB123CD", 0.8, 0.6, 0));
        assert!(t.end(1).is_none());
        t.observe(2, obs("XY987ZW", 0.95, 0.6, 1));
        assert_eq!(t.end(2).unwrap().event.plate_text, "XY987ZW");
        assert_eq!(t.merge_stats().fragments, 1);
    }

    /// A stopped or parked car whose track breaks: the plate read again within the repeat
    /// window is the same car; after it, a new event.
    #[test]
    fn the_same_plate_again_within_the_repeat_window_is_the_same_car() {
        let mut t = merging(0, 20);
        let mut reads = Vec::new();
        for f in 0..4 {
            reads.push((f, 1, "RK605AB"));
        }
        for f in 10..13 {
            reads.push((f, 2, "RK6O5AB"));
        }
        for f in 40..43 {
            reads.push((f, 3, "RK605AB"));
        }
        let out = play(&mut t, &reads, &[(5, 1), (14, 2), (44, 3)]);
        let ids: Vec<u64> = out.iter().map(|e| e.event.track_id).collect();
        assert_eq!(ids, [1, 3], "{out:?}");
        assert_eq!(t.merge_stats().repeats, 1);
    }

    /// A partial read merges as a fragment; two well-read plates one character apart (two cars
    /// of a fleet) and a different plate in the old one's place (a cut) never merge.
    #[test]
    fn only_fragments_merge_on_a_near_read_and_different_plates_never() {
        let mut t = merging(5, 0);
        let mut reads = Vec::new();
        for f in 0..8 {
            reads.push((f, 1, "RK605AB"));
        }
        reads.push((3, 2, "K605AB"));
        reads.push((4, 2, "K605AB"));
        let out = play(&mut t, &reads, &[(6, 2), (10, 1)]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].event.plate_text, "RK605AB");

        let mut t = merging(5, 0);
        let mut reads = Vec::new();
        for f in 0..6 {
            reads.push((f, 1, "AB123CD"));
            reads.push((f, 2, "AB124CD"));
        }
        for f in 6..9 {
            reads.push((f, 3, "XY999ZZ"));
        }
        let out = play(&mut t, &reads, &[(7, 1), (7, 2), (12, 3)]);
        let mut texts: Vec<&str> = out.iter().map(|e| e.event.plate_text.as_str()).collect();
        texts.sort_unstable();
        assert_eq!(texts, ["AB123CD", "AB124CD", "XY999ZZ"]);
        assert_eq!(t.merge_stats().merged, 0);
    }

    /// With emit=early a fragment may be announced before the car's own track agrees: the
    /// car's track continues that event (same id) instead of announcing the plate again.
    #[test]
    fn early_events_are_announced_once_per_car() {
        let cfg = VoterConfig {
            emit: EmitMode::Early { agree: 2 },
            ..VoterConfig::default()
        };
        let mut t = Tracks::new(cfg);
        t.set_merge(MergeConfig {
            linger_frames: 3,
            repeat_frames: 50,
            ..MergeConfig::default()
        });
        let reads = [
            (0, 101, "GWAGEN"),
            (1, 101, "GWAGEN"),
            (4, 5, "GWAGEN"),
            (5, 5, "GWAGEN"),
            (6, 5, "GWAGEN"),
        ];
        let out = play(&mut t, &reads, &[(2, 101), (9, 5)]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].event.revision, 0);
        // A different final reading of the same car is an update of that event.
        let mut t = Tracks::new(VoterConfig {
            emit: EmitMode::Early { agree: 2 },
            ..VoterConfig::default()
        });
        t.set_merge(MergeConfig {
            linger_frames: 0,
            repeat_frames: 50,
            ..MergeConfig::default()
        });
        // The car's track reads it as a confusable text (G/6): an update of the same event.
        let reads = [
            (0, 101, "GWAGEN"),
            (1, 101, "GWAGEN"),
            (4, 5, "6WAGEN"),
            (5, 5, "6WAGEN"),
            (6, 5, "6WAGEN"),
        ];
        let out = play(&mut t, &reads, &[(2, 101), (9, 5)]);
        let revs: Vec<(u32, &str, u64)> = out
            .iter()
            .map(|e| {
                (
                    e.event.revision,
                    e.event.plate_text.as_str(),
                    e.event.track_id,
                )
            })
            .collect();
        assert_eq!(revs, [(0, "GWAGEN", 101), (1, "6WAGEN", 101)]);
        assert_eq!(out[0].event.event_id, out[1].event.event_id);
        assert!(!out[0].event.event_id.is_empty());
    }

    #[test]
    fn unread_vehicles_count_until_read_grown_or_gone() {
        let mut u = Unread::default();
        let all = |_| true;
        for _ in 0..3 {
            u.update([(1, 100.0, false), (2, 100.0, false)].into_iter(), all);
        }
        assert_eq!((u.frames(1), u.frames(2)), (3, 3));
        // Slow growth below the factor keeps counting; 1.3x over the first box restarts.
        u.update([(1, 125.0, false), (2, 131.0, false)].into_iter(), all);
        assert_eq!((u.frames(1), u.frames(2)), (4, 1));
        // A read drops the count.
        u.update([(1, 125.0, true), (2, 131.0, false)].into_iter(), all);
        assert_eq!((u.frames(1), u.frames(2)), (0, 2));
        // Gone from view: forgotten; merely undetected (still in view): kept.
        u.update([(3, 50.0, false)].into_iter(), |id| id != 2);
        assert_eq!((u.frames(2), u.frames(3)), (0, 1));
        u.update([(3, 50.0, false)].into_iter(), |id| id == 3 || id == 5);
        u.update(std::iter::empty(), |id| id == 3);
        assert_eq!(u.frames(3), 2);
    }
}
