// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-track reading state: the voter, when the track was seen, and the best few crops, turned
//! into [`PlateEvent`]s when the voter decides. No GStreamer here.

use std::collections::{HashMap, VecDeque};

use super::ocrmodel::QUALITY_FULL_HEIGHT_PX;
use super::places::{Places, continuity};
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
    /// Event id of the track's first emission, kept by every later one (updates, a continuing
    /// track): downstream stores keep one row per event id.
    event_id: String,
    /// Confident reads that disagree with the decision, held back until they prove a new car
    /// (then they start a new segment) or turn out to be outliers (then the voter gets them).
    doubtful: Vec<Observation>,
    voter: TrackVoter,
    /// The last [`HISTORY`] reads, replayed into another track that this one merges into.
    history: VecDeque<(VoteRead, BBox)>,
    pushed: usize,
    first_seen_ms: i64,
    last_seen_ms: i64,
    /// Where and when the plate was read.
    places: Places,
    best_confidence: f32,
    /// Last frame the track's vehicle box was detected.
    vehicle_frame: u64,
    candidates: Vec<Candidate>,
    revision: Option<u32>,
    /// The plate is read: at least `settle_reads` reads agree exactly with the current decision
    /// and they are most of its cluster (see [`Tracks::is_settled`]).
    settled: bool,
    /// Plate and vehicle box heights of the track's own latest reads (see `approaching`).
    sizes: VecDeque<(f32, Option<f32>)>,
}

/// Reads a track keeps for replaying into a track it merges into.
const HISTORY: usize = 64;
/// Box sizes a track keeps of its latest reads: the growth before settling is measured over at
/// most this many.
const SIZES: usize = 16;
/// How ended tracks of one car are put back together (see [`Tracks`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergeConfig {
    /// Frames an ended track waits for a track that continues it before its event is
    /// emitted; 0 = never merge (every track is its own event, as before).
    pub linger_frames: u64,
    /// A fragment (a track of at most [`FRAGMENT_READS`] reads) that no other track continues
    /// is emitted only if its best read is at least this confident (0 = always).
    pub fragment_confidence: f32,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            linger_frames: 5,
            fragment_confidence: DEFAULT_FRAGMENT_CONFIDENCE,
        }
    }
}

/// Default of [`MergeConfig::fragment_confidence`].
pub const DEFAULT_FRAGMENT_CONFIDENCE: f32 = 0.9;
/// Tracks with at most this many reads are fragments.
pub const FRAGMENT_READS: usize = 2;
/// A plate whose box grew by more than this factor over the reads that would settle it is
/// still coming closer: it is not settled while it is smaller than
/// [`QUALITY_FULL_HEIGHT_PX`], since its next reads will be larger and better (an approaching
/// car's first agreeing reads come from its smallest views).
pub const SETTLE_GROWTH: f32 = 1.05;

/// Where an ended track's reads go.
#[derive(Debug, Clone, Copy)]
enum Target {
    Open(u64),
    /// Index in [`Tracks::ended`].
    Waiting(usize),
}

/// An ended track waiting [`MergeConfig::linger_frames`] for a continuation.
#[derive(Debug)]
struct Ended {
    track_id: u64,
    state: TrackState,
    frame: u64,
    /// The tracker saw another plate take this one's place in its vehicle box: a new car (a
    /// camera cut, a queue) or its own plate re-found; merged only into the same text.
    replaced: bool,
}

/// A decided event (without id and key, which the element assigns) and its crop.
#[derive(Debug, Clone)]
pub struct Emission {
    pub event: PlateEvent,
    pub crop: Option<Crop>,
    pub extras: Extras,
}

/// What [`Tracks`] did with ended tracks, for the element's `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Ended tracks whose reads went into a track that continued them.
    pub merged: u64,
    /// Fragments not emitted: too few reads, none confident enough, nothing to merge into.
    pub fragments_dropped: u64,
}

/// The reading state of every open track, and the ended ones that wait for a continuation.
///
/// One car can reach this module as several tracks: its plate tracked on its own before its
/// car was, a track lost for a frame and found again under a new id. A track that ends waits
/// [`MergeConfig::linger_frames`]; if meanwhile an open track saw the same plate (the same
/// text up to OCR confusions, or only near it when the ended one is a fragment) where and when
/// the ended one left off, the ended one's reads and crops go into it and only that track's
/// event comes out, with all the evidence. Otherwise the ended track's event is emitted then
/// (a fragment only when confident, see [`MergeConfig::fragment_confidence`]). A track the
/// tracker ended because another plate took its place (a new car, or the plate lost and
/// found again) merges only into the same text: a new car in the old car's place is a new
/// event even with a similar plate.
#[derive(Debug, Default)]
pub struct Tracks {
    cfg: VoterConfig,
    merge: MergeConfig,
    /// Agreeing reads after which a track counts as settled; 0 = never.
    settle_reads: usize,
    tracks: HashMap<u64, TrackState>,
    ended: Vec<Ended>,
    /// Segments started per tracker id by splits.
    segments: HashMap<u64, u64>,
    /// Tracker ids whose reading is over, each with the track it merged into (if it did):
    /// see [`Tracks::take_released`].
    released: Vec<(u64, Option<u64>)>,
    stats: MergeStats,
}

impl Tracks {
    pub fn new(cfg: VoterConfig) -> Self {
        Self::with_merge(cfg, MergeConfig::default())
    }

    pub fn with_merge(cfg: VoterConfig, merge: MergeConfig) -> Self {
        Tracks {
            cfg,
            merge,
            ..Default::default()
        }
    }

    pub fn stats(&self) -> MergeStats {
        self.stats
    }

    /// Tracker ids ended since the last call whose reading is over (emitted, dropped, or never
    /// read), each with the open track it was merged into, if any. What else is kept per
    /// track (vehicle-track events) can be finished or handed on then.
    pub fn take_released(&mut self) -> Vec<(u64, Option<u64>)> {
        std::mem::take(&mut self.released)
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

    /// The vehicle box of track `track_id` was detected on frame `frame` (whether or not its
    /// plate was searched there).
    pub fn vehicle_seen(&mut self, track_id: u64, frame: u64) {
        if let Some(s) = self.tracks.get_mut(&track_id) {
            s.vehicle_frame = s.vehicle_frame.max(frame);
        }
    }

    /// Ended tracks still waiting for a continuation.
    pub fn waiting_tracks(&self) -> usize {
        self.ended.len()
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
        let out = self.observe_read(track_id, obs);
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

    /// Ends track `track_id` on frame `frame`. Its event waits for a continuation (see
    /// [`Tracks`]) unless merging is off; `replaced`: the tracker saw another plate take this
    /// one's place in its vehicle box. Events due now are returned.
    pub fn end(&mut self, track_id: u64, frame: u64, replaced: bool) -> Vec<Emission> {
        let Some(mut state) = self.tracks.remove(&track_id) else {
            self.released.push((track_id, None));
            return Vec::new();
        };
        self.segments.remove(&track_id);
        for held in std::mem::take(&mut state.doubtful) {
            state.add(held);
        }
        let ended = Ended {
            track_id,
            state,
            frame,
            replaced,
        };
        if self.merge.linger_frames == 0 {
            return self.emit_ended(ended).into_iter().collect();
        }
        self.ended.push(ended);
        Vec::new()
    }

    /// Advances to frame `frame`: ended tracks that waited long enough are merged into the
    /// track that continues them or emitted.
    pub fn tick(&mut self, frame: u64) -> Vec<Emission> {
        let linger = self.merge.linger_frames;
        let mut out = Vec::new();
        let mut k = 0;
        while k < self.ended.len() {
            if frame >= self.ended[k].frame.saturating_add(linger) {
                let e = self.ended.remove(k);
                out.extend(self.resolve(e));
            } else {
                k += 1;
            }
        }
        out
    }

    /// Merges `e` into the track that continues it (open, or itself ended and waiting), or
    /// emits it.
    fn resolve(&mut self, e: Ended) -> Option<Emission> {
        let target = match self.continuation(&e) {
            Some(t) => t,
            None => return self.emit_ended(e),
        };
        self.stats.merged += 1;
        let (reads, cfg) = (self.settle_reads, &self.cfg);
        match target {
            Target::Open(id) => {
                self.released.push((e.track_id, Some(id)));
                let state = self.tracks.get_mut(&id).expect("continuation is open");
                let out = state.absorb(e.state);
                state.settled = state.is_settled(reads, cfg);
                out
            }
            Target::Waiting(k) => {
                let into = self.ended[k].track_id;
                self.released.push((e.track_id, Some(into)));
                self.ended[k].state.absorb(e.state)
            }
        }
    }

    /// The track that saw `e`'s plate where and when `e` left off, reading the same plate:
    /// an open one, or one that started after `e` and has ended too (a chain of tracks of one
    /// car); the closest one if several.
    fn continuation(&self, e: &Ended) -> Option<Target> {
        let mine = e.state.voter.current()?;
        // Near texts only for fragments, and never across a replacement: a new car in the old
        // one's place may well have a similar plate.
        let near_ok = e.state.pushed <= FRAGMENT_READS && !e.replaced;
        let last = e.state.places.last(&mine.text)?;
        let motion = e.state.places.velocity(&mine.text);
        // A settled track's plate is not searched any more (alprdetect skip-settled): the car
        // was there as long as its vehicle box was detected.
        let since = last.frame.max(e.state.vehicle_frame);
        let open = self.tracks.iter().map(|(&id, t)| (Target::Open(id), t));
        let waiting = self
            .ended
            .iter()
            .enumerate()
            .filter(|(_, w)| w.state.places.first_frame() > e.state.places.first_frame())
            .map(|(k, w)| (Target::Waiting(k), &w.state));
        let mut best: Option<(f32, Target)> = None;
        for (target, t) in open.chain(waiting) {
            let Some(theirs) = t.voter.current() else {
                continue;
            };
            let ok = match plate_match(&mine.text, &theirs.text) {
                PlateMatch::Same => true,
                PlateMatch::Near => near_ok,
                PlateMatch::Different => false,
            };
            if !ok {
                continue;
            }
            let Some(d) = t
                .places
                .near(since, &mine.text)
                .and_then(|place| continuity(last, motion, since, place))
            else {
                continue;
            };
            if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
                best = Some((d, target));
            }
        }
        best.map(|(_, t)| t)
    }

    /// The final event of an ended track, unless already emitted unchanged, or a fragment not
    /// confident enough to stand alone.
    fn emit_ended(&mut self, mut e: Ended) -> Option<Emission> {
        self.released.push((e.track_id, None));
        if e.state.revision.is_none()
            && e.state.pushed <= FRAGMENT_READS
            && e.state.best_confidence < self.merge.fragment_confidence
        {
            self.stats.fragments_dropped += 1;
            return None;
        }
        let decision = e.state.voter.finish()?;
        Some(e.state.emission(decision))
    }

    /// Ends every open track and emits every waiting one (EOS), in track order. Waiting tracks
    /// still merge into open tracks that continue them.
    pub fn end_all(&mut self) -> Vec<Emission> {
        let mut out = Vec::new();
        while !self.ended.is_empty() {
            let e = self.ended.remove(0);
            out.extend(self.resolve(e));
        }
        let mut ids: Vec<u64> = self.tracks.keys().copied().collect();
        ids.sort_unstable();
        let mut ended: Vec<Ended> = ids
            .into_iter()
            .filter_map(|id| {
                let mut state = self.tracks.remove(&id)?;
                for held in std::mem::take(&mut state.doubtful) {
                    state.add(held);
                }
                Some(Ended {
                    track_id: id,
                    frame: state.places.last_frame(),
                    state,
                    replaced: false,
                })
            })
            .collect();
        ended.sort_by_key(|e| e.track_id);
        for e in ended {
            out.extend(self.emit_ended(e));
        }
        self.segments.clear();
        out
    }

    /// Ends `ids` at once (a discontinuity: nothing will continue them) and emits every waiting
    /// track.
    pub fn end_now(&mut self, ids: &[u64]) -> Vec<Emission> {
        let mut out = Vec::new();
        while !self.ended.is_empty() {
            let e = self.ended.remove(0);
            out.extend(self.resolve(e));
        }
        for &id in ids {
            let Some(mut state) = self.tracks.remove(&id) else {
                self.released.push((id, None));
                continue;
            };
            self.segments.remove(&id);
            for held in std::mem::take(&mut state.doubtful) {
                state.add(held);
            }
            out.extend(self.emit_ended(Ended {
                track_id: id,
                frame: 0,
                state,
                replaced: true,
            }));
        }
        out
    }

    /// Forgets everything (flush).
    pub fn clear(&mut self) {
        self.tracks.clear();
        self.ended.clear();
        self.segments.clear();
        self.released.clear();
    }
}

impl TrackState {
    fn new(voter: TrackVoter, now_ms: i64, event_track: u64) -> Self {
        TrackState {
            event_track,
            event_id: String::new(),
            doubtful: Vec::new(),
            voter,
            history: VecDeque::new(),
            pushed: 0,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            places: Places::default(),
            best_confidence: 0.0,
            vehicle_frame: 0,
            candidates: Vec::new(),
            revision: None,
            settled: false,
            sizes: VecDeque::new(),
        }
    }

    fn is_settled(&self, settle_reads: usize, cfg: &VoterConfig) -> bool {
        settle_reads > 0
            && self.doubtful.is_empty()
            && !self.approaching(settle_reads)
            && self.voter.current().is_some_and(|d| {
                d.reads >= settle_reads
                    && 2 * d.reads > d.cluster_reads
                    && d.cluster_reads >= cfg.min_reads
                    && d.confidence >= cfg.min_confidence
            })
    }

    /// Whether the plate grew by more than [`SETTLE_GROWTH`] over its last `reads` reads
    /// while still smaller than [`QUALITY_FULL_HEIGHT_PX`].
    /// The vehicle boxes measure it when both ends have one (a plate box of 20 px moves by
    /// a pixel or two between detections; a car's box is ten times as tall).
    fn approaching(&self, reads: usize) -> bool {
        let mut window = self.sizes.iter().rev().take(reads.max(2));
        let Some(&(last_plate, last_vehicle)) = window.next() else {
            return false;
        };
        let (first_plate, first_vehicle) = window.next_back().copied().unwrap_or_default();
        let growth = match (first_vehicle, last_vehicle) {
            (Some(a), Some(b)) if a > 0.0 => b / a,
            _ if first_plate > 0.0 => last_plate / first_plate,
            _ => 1.0,
        };
        last_plate < QUALITY_FULL_HEIGHT_PX && growth > SETTLE_GROWTH
    }

    fn add(&mut self, obs: Observation) -> Option<Decision> {
        self.last_seen_ms = self.last_seen_ms.max(obs.seen_ms);
        self.first_seen_ms = self.first_seen_ms.min(obs.seen_ms);
        self.places
            .note(obs.read.frame, obs.plate_bbox, &obs.read.text);
        self.best_confidence = self.best_confidence.max(obs.read.confidence);
        if self.sizes.len() == SIZES {
            self.sizes.pop_front();
        }
        self.sizes
            .push_back((obs.plate_bbox.h, obs.vehicle.as_ref().map(|v| v.bbox.h)));
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((obs.read.clone(), obs.plate_bbox));
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
        self.keep(cand);
        self.voter.push(obs.read)
    }

    /// Keeps the best crops only: memory stays bounded for a car parked in view for hours.
    fn keep(&mut self, cand: Candidate) {
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
    }

    /// Takes in the reads, crops and times of `other`, an ended track of the same car. If
    /// `other` already emitted and this track did not, this track continues `other`'s event
    /// (its id, track and revision). Returns an event when the emit policy decides now.
    fn absorb(&mut self, mut other: TrackState) -> Option<Emission> {
        self.first_seen_ms = self.first_seen_ms.min(other.first_seen_ms);
        self.last_seen_ms = self.last_seen_ms.max(other.last_seen_ms);
        self.vehicle_frame = self.vehicle_frame.max(other.vehicle_frame);
        self.best_confidence = self.best_confidence.max(other.best_confidence);
        if self.revision.is_none()
            && let Some(rev) = other.revision
        {
            self.revision = Some(rev);
            self.event_id = std::mem::take(&mut other.event_id);
            self.event_track = other.event_track;
            if let Some(text) = other.voter.last_emitted() {
                self.voter.set_emitted(text);
            }
        }
        let mut out = None;
        for (read, bbox) in other.history {
            self.places.note(read.frame, bbox, &read.text);
            // The other track's kept crop of this read, renumbered as this track's read.
            if let Some(pos) = other
                .candidates
                .iter()
                .position(|c| c.frame == read.frame && c.text == read.text)
            {
                let mut cand = other.candidates.swap_remove(pos);
                cand.index = self.pushed;
                self.keep(cand);
            }
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back((read.clone(), bbox));
            self.pushed += 1;
            out = self.voter.push(read).or(out);
        }
        out.map(|d| self.emission(d))
    }

    fn emission(&mut self, d: Decision) -> Emission {
        let track_id = self.event_track;
        let revision = match (self.revision, d.kind) {
            (None, _) => 0,
            (Some(r), DecisionKind::Update) => r + 1,
            (Some(r), _) => r,
        };
        self.revision = Some(revision);
        if self.event_id.is_empty() {
            self.event_id = crate::event::new_event_id();
        }
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
        Emission {
            event: PlateEvent {
                event_id: self.event_id.clone(),
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

    /// Without merging: every track is its own event at its end (as before merging existed).
    fn plain(cfg: VoterConfig) -> Tracks {
        Tracks::with_merge(
            cfg,
            MergeConfig {
                linger_frames: 0,
                fragment_confidence: 0.0,
            },
        )
    }

    fn end1(t: &mut Tracks, id: u64) -> Option<Emission> {
        let mut v = t.end(id, 0, false);
        assert!(v.len() <= 1);
        v.pop()
    }

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
        let mut t = plain(VoterConfig::default());
        assert!(t.observe(5, obs("AB123", 0.9, 0.5, 1)).is_none());
        assert!(t.observe(5, obs("AB128", 0.6, 0.95, 2)).is_none());
        assert!(t.observe(5, obs("AB123", 0.9, 0.7, 3)).is_none());
        let e = end1(&mut t, 5).expect("an event at track end");
        assert_eq!(e.event.plate_text, "AB123");
        assert_eq!(e.event.track_id, 5);
        assert_eq!(e.event.reads, 2);
        // The best crop among reads that agree with the decision, not the sharpest wrong one.
        assert_eq!(e.event.frame_number, 3);
        assert_eq!(e.crop.unwrap().rgb[0], 3);
        assert_eq!((e.event.first_seen_ms, e.event.last_seen_ms), (1040, 1120));
        assert_eq!(e.event.vehicle_class.as_deref(), Some("car"));
        assert!(end1(&mut t, 5).is_none(), "ended once");
    }

    #[test]
    fn extra_images_travel_with_their_candidate_and_admission_is_bounded() {
        let mut t = plain(VoterConfig::default());
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
        let e = end1(&mut t, 5).unwrap();
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
        let mut t = plain(VoterConfig::default());
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
        let new = end1(&mut t, 9).expect("new car at track end");
        assert_eq!(new.event.plate_text, "RK891AU");
        assert_eq!(new.event.track_id, 9 + SEGMENT_STRIDE);
        assert_eq!(new.event.frame_number, 5);
    }

    #[test]
    fn untracked_reads_are_one_event_each() {
        let mut t = plain(VoterConfig::default());
        let e = t.observe(0, obs("XYZ1", 0.8, 0.6, 7)).unwrap();
        assert_eq!(e.event.plate_text, "XYZ1");
        assert_eq!(t.open_tracks(), 0);
    }

    #[test]
    fn end_all_finishes_every_open_track() {
        let mut t = plain(VoterConfig::default());
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
        let mut t = plain(VoterConfig::default());
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
        end1(&mut t, 3);
        assert!(!t.is_settled(3), "ended track");
    }

    #[test]
    fn an_approaching_plate_settles_once_it_stops_growing_or_is_large() {
        let mut t = plain(VoterConfig::default());
        t.set_settle_reads(3);
        let at = |frame: u64, plate_h: f32, vehicle_h: Option<f32>| {
            let mut o = obs("AB123", 0.9, 0.5, frame);
            o.plate_bbox.h = plate_h;
            match vehicle_h {
                Some(h) => o.vehicle.as_mut().unwrap().bbox.h = h,
                None => o.vehicle = None,
            }
            o
        };
        // A plate on its own, 15 -> 18 px over the three agreeing reads: still coming closer.
        for (f, h) in [(1, 15.0), (2, 16.5), (3, 18.0)] {
            t.observe(3, at(f, h, None));
        }
        assert!(!t.is_settled(3), "still coming closer");
        t.observe(3, at(4, 18.5, None));
        assert!(
            !t.is_settled(3),
            "18.5 px is 12% more than 16.5 px three reads ago"
        );
        t.observe(3, at(5, 18.5, None));
        assert!(
            t.is_settled(3),
            "stopped: within 5% over the last three reads"
        );
        // With a vehicle, its box measures the approach (the plate box's jitter aside).
        for (f, h) in [(1, 200.0), (2, 208.0), (3, 217.0)] {
            t.observe(5, at(f, 18.0, Some(h)));
        }
        assert!(
            !t.is_settled(5),
            "the car grew 8.5% while its plate box did not"
        );
        for (f, h) in [(4, 218.0), (5, 219.0)] {
            t.observe(5, at(f, 21.0, Some(h)));
        }
        assert!(
            t.is_settled(5),
            "the car stopped though its plate box jumped"
        );
        // A plate read at full size settles even while it grows.
        let full = QUALITY_FULL_HEIGHT_PX;
        for (f, h) in [(1, full), (2, 1.2 * full), (3, 1.4 * full)] {
            t.observe(4, at(f, h, None));
        }
        assert!(t.is_settled(4));
    }

    #[test]
    fn a_track_never_settles_before_it_can_emit() {
        let cfg = VoterConfig {
            min_reads: 5,
            ..VoterConfig::default()
        };
        let mut t = plain(cfg);
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
        let mut t = plain(early);
        t.set_settle_reads(3);
        for f in 0..3 {
            t.observe(1, obs("AB123", 0.9, 0.5, f));
        }
        assert!(!t.is_settled(1), "early-agree 4 needs a fourth read");
        let strict = VoterConfig {
            min_confidence: 0.95,
            ..VoterConfig::default()
        };
        let mut t = plain(strict);
        t.set_settle_reads(3);
        for f in 0..5 {
            t.observe(1, obs("AB123", 0.9, 0.5, f));
        }
        assert!(
            !t.is_settled(1),
            "below min-confidence no event would follow"
        );
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

    fn merging() -> Tracks {
        Tracks::with_merge(VoterConfig::default(), MergeConfig::default())
    }

    /// A plate tracked on its own for a frame, then under its car's id: one event with all the
    /// reads, the earlier track's sightings handed to the later one.
    #[test]
    fn a_fragment_continued_by_another_track_is_merged_into_it() {
        let mut t = merging();
        assert!(t.observe(7, obs("RK605AB", 0.6, 0.5, 0)).is_none());
        assert!(t.end(7, 0, false).is_empty(), "waits for a continuation");
        for f in 1..4 {
            t.observe(8, obs("RK6O5AB", 0.9, 0.6, f));
        }
        assert!(t.tick(4).is_empty());
        assert_eq!(t.waiting_tracks(), 1);
        assert!(t.tick(5).is_empty(), "merged, not emitted");
        assert_eq!(t.waiting_tracks(), 0);
        assert_eq!(t.take_released(), vec![(7, Some(8))]);
        assert_eq!(t.stats().merged, 1);
        assert!(t.end(8, 4, false).is_empty());
        let e = t.tick(9).pop().expect("the car's event");
        assert_eq!(e.event.track_id, 8);
        assert_eq!(e.event.reads, 3, "exact reads of the decided text");
        assert_eq!(e.event.plate_text, "RK6O5AB");
        assert_eq!(e.event.first_seen_ms, 1000, "from the merged fragment");
        assert_eq!(t.take_released(), vec![(8, None)]);
    }

    #[test]
    fn fragments_nobody_continues_need_a_confident_read() {
        let mut t = merging();
        t.observe(1, obs("361AO", 0.7, 0.5, 0));
        t.observe(2, obs("RK605AB", 0.95, 0.5, 0));
        t.end(1, 0, false);
        t.end(2, 0, false);
        let ev = t.tick(5);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].event.plate_text, "RK605AB");
        assert_eq!(t.stats().fragments_dropped, 1);
        // Three reads are not a fragment, however unsure.
        for f in 10..13 {
            t.observe(3, obs("ZZ999", 0.3, 0.5, f));
        }
        t.end(3, 12, false);
        assert_eq!(t.tick(17).len(), 1);
    }

    /// Hard cut: the tracker says another plate took the place. A near text (a misread, or
    /// a similar plate of the next car) is a new event even for a fragment; only the same
    /// text (the car's own plate found again) continues.
    #[test]
    fn a_replaced_track_merges_only_into_the_same_text() {
        let mut t = merging();
        t.observe(1, obs("AB123CD", 0.95, 0.5, 0));
        t.end(1, 0, true);
        for f in 1..4 {
            t.observe(2, obs("AB123CE", 0.9, 0.5, f));
        }
        assert_eq!(t.tick(5).len(), 1, "the replaced fragment's own event");
        assert_eq!(t.stats().merged, 0);
        t.end(2, 3, true);
        for f in 4..7 {
            t.observe(3, obs("A8I23CE", 0.9, 0.5, f));
        }
        assert!(
            t.tick(8).is_empty(),
            "the same plate up to OCR confusions: merged"
        );
        assert_eq!(t.stats().merged, 1);
    }

    #[test]
    fn different_plates_or_far_places_are_not_merged() {
        let mut t = merging();
        for f in 0..3 {
            t.observe(1, obs("AB123CD", 0.9, 0.5, f));
        }
        t.end(1, 2, false);
        for f in 3..6 {
            t.observe(2, obs("XY987ZZ", 0.9, 0.5, f));
        }
        // Same text, but 10 plate widths away.
        let mut far = obs("AB123CD", 0.9, 0.5, 3);
        far.plate_bbox.x += 500.0;
        t.observe(3, far);
        t.observe(3, obs("AB123CD", 0.9, 0.5, 4).tap_x(500.0));
        assert_eq!(t.tick(7).len(), 1);
        assert_eq!(t.stats().merged, 0);
        // Too late: seen again 4 frames after the end.
        t.observe(4, obs("AB123CD", 0.9, 0.5, 20));
        t.end(4, 20, false);
        t.observe(5, obs("AB123CD", 0.9, 0.5, 24));
        t.observe(5, obs("AB123CD", 0.9, 0.5, 25));
        assert_eq!(t.tick(25).len(), 1);
        assert_eq!(t.stats().merged, 0);
    }

    /// emit=early: a merged track's event continues (same event id, next revision), never a
    /// second revision 0.
    #[test]
    fn early_events_keep_their_id_across_a_merge() {
        let cfg = VoterConfig {
            emit: EmitMode::Early { agree: 2 },
            ..VoterConfig::default()
        };
        let mut t = Tracks::with_merge(cfg, MergeConfig::default());
        t.observe(1, obs("AB123CD", 0.9, 0.5, 0));
        let first = t.observe(1, obs("AB123CD", 0.9, 0.5, 1)).expect("early");
        assert_eq!(first.event.revision, 0);
        assert!(!first.event.event_id.is_empty());
        t.end(1, 1, false);
        t.observe(2, obs("AB123CD", 0.9, 0.5, 2));
        t.observe(2, obs("AB128CD", 0.9, 0.5, 3));
        assert!(t.tick(6).is_empty(), "merged, same text: nothing new");
        let upd = (4..8)
            .find_map(|f| t.observe(2, obs("AB128CD", 0.9, 0.5, f)))
            .expect("an update");
        assert_eq!(upd.event.event_id, first.event.event_id);
        assert_eq!(upd.event.track_id, 1);
        assert_eq!(upd.event.revision, 1);
    }

    /// A car whose plate track is replaced every few frames (a standing car searched now and
    /// then): each track ends while the next is still being read; the chain is one event.
    #[test]
    fn a_chain_of_tracks_of_one_car_is_one_event() {
        let mut t = merging();
        let mut out = Vec::new();
        for (id, frames) in [(1u64, 0..4u64), (2, 4..8), (3, 8..12)] {
            for f in frames.clone() {
                out.extend(t.observe(id, obs("FZRULZ", 0.9, 0.5, f)));
                out.extend(t.tick(f));
            }
            out.extend(t.end(id, frames.end, true));
        }
        for f in 12..30 {
            out.extend(t.tick(f));
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].event.reads, 12);
        assert_eq!(t.stats().merged, 2);
    }

    /// Detection on every other frame of a passing car: each read under a new track, the
    /// plate 2.5 widths further each time. Tracks of one read have no velocity: any plausible
    /// motion continues them, and the car is one event.
    #[test]
    fn one_read_tracks_of_a_passing_car_chain_into_one_event() {
        let mut t = merging();
        let mut out = Vec::new();
        for k in 0..5u64 {
            let f = 2 * k;
            out.extend(t.observe(k + 1, obs("WA56660", 0.95, 0.5, f).tap_x(125.0 * k as f32)));
            out.extend(t.tick(f));
            out.extend(t.end(k + 1, f + 2, false));
        }
        for f in 10..30 {
            out.extend(t.tick(f));
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].event.reads, 5);
    }

    trait TapX {
        fn tap_x(self, dx: f32) -> Self;
    }

    impl TapX for Observation {
        fn tap_x(mut self, dx: f32) -> Self {
            self.plate_bbox.x += dx;
            self
        }
    }
}
