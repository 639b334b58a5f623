// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-track reading state: the voter, when the track was seen, and the best few crops, turned
//! into [`PlateEvent`]s when the voter decides. No GStreamer here.

use std::collections::HashMap;

use super::vote::{Decision, DecisionKind, TrackVoter, VoteRead, VoterConfig};
use crate::event::PlateEvent;
use crate::meta::BBox;

/// How many of a track's crops are kept (best quality first) to pick the published one from.
const KEPT_CROPS: usize = 6;

/// A plate crop as packed RGB.
#[derive(Debug, Clone, PartialEq)]
pub struct Crop {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
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
}

#[derive(Debug)]
struct TrackState {
    voter: TrackVoter,
    pushed: usize,
    first_seen_ms: i64,
    last_seen_ms: i64,
    candidates: Vec<Candidate>,
    revision: Option<u32>,
}

/// A decided event (without id and key, which the element assigns) and its crop.
#[derive(Debug, Clone)]
pub struct Emission {
    pub event: PlateEvent,
    pub crop: Option<Crop>,
}

#[derive(Debug, Default)]
pub struct Tracks {
    cfg: VoterConfig,
    tracks: HashMap<u64, TrackState>,
}

impl Tracks {
    pub fn new(cfg: VoterConfig) -> Self {
        Tracks {
            cfg,
            tracks: HashMap::new(),
        }
    }

    pub fn open_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// Adds a read to track `track_id`; returns an event when the emit policy decides now.
    /// Track 0 (no tracker upstream) is one event per read.
    pub fn observe(&mut self, track_id: u64, obs: Observation) -> Option<Emission> {
        if track_id == 0 {
            let mut state = TrackState::new(TrackVoter::new(self.cfg.clone()), obs.seen_ms);
            let decision = match state.add(obs) {
                Some(d) => d,
                None => state.voter.finish()?,
            };
            return Some(state.emission(0, decision));
        }
        let cfg = &self.cfg;
        let state = self
            .tracks
            .entry(track_id)
            .or_insert_with(|| TrackState::new(TrackVoter::new(cfg.clone()), obs.seen_ms));
        let decision = state.add(obs)?;
        Some(state.emission(track_id, decision))
    }

    /// Ends a track: its final decision, unless already emitted unchanged.
    pub fn end(&mut self, track_id: u64) -> Option<Emission> {
        let mut state = self.tracks.remove(&track_id)?;
        let decision = state.voter.finish()?;
        Some(state.emission(track_id, decision))
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
    fn new(voter: TrackVoter, now_ms: i64) -> Self {
        TrackState {
            voter,
            pushed: 0,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            candidates: Vec::new(),
            revision: None,
        }
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

    fn emission(&mut self, track_id: u64, d: Decision) -> Emission {
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
        let (frame, plate_bbox, quality, vehicle, crop) = match best {
            Some(c) => (c.frame, c.plate_bbox, c.quality, c.vehicle, c.crop),
            None => (d.best_frame, BBox::default(), 0.0, None, None),
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
        }
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
}
