// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-track reading state: the voter, when the track was seen, and the best few crops, turned
//! into [`PlateEvent`]s when the voter decides. No GStreamer here.

use std::collections::HashMap;

use super::vote::{
    Decision, DecisionKind, EmitMode, TrackVoter, VoteRead, VoterConfig, levenshtein, normalize_o0,
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
}

#[derive(Debug, Default)]
pub struct Tracks {
    cfg: VoterConfig,
    /// Agreeing reads after which a track counts as settled; 0 = never.
    settle_reads: usize,
    tracks: HashMap<u64, TrackState>,
    /// Segments started per tracker id by splits.
    segments: HashMap<u64, u64>,
}

impl Tracks {
    pub fn new(cfg: VoterConfig) -> Self {
        Tracks {
            cfg,
            settle_reads: 0,
            tracks: HashMap::new(),
            segments: HashMap::new(),
        }
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

    /// Ends a track: its final decision, unless already emitted unchanged.
    pub fn end(&mut self, track_id: u64) -> Option<Emission> {
        let mut state = self.tracks.remove(&track_id)?;
        self.segments.remove(&track_id);
        for held in std::mem::take(&mut state.doubtful) {
            state.add(held);
        }
        let decision = state.voter.finish()?;
        Some(state.emission(decision))
    }

    /// Ends every open track (EOS), in track order.
    pub fn end_all(&mut self) -> Vec<Emission> {
        let mut ids: Vec<u64> = self.tracks.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.end(id)).collect()
    }

    /// Forgets everything (flush).
    pub fn clear(&mut self) {
        self.tracks.clear();
    }
}

impl TrackState {
    fn new(voter: TrackVoter, now_ms: i64, event_track: u64) -> Self {
        TrackState {
            event_track,
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
        Emission {
            event: PlateEvent {
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
