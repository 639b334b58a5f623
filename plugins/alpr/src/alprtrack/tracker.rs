// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tracking the objects of an [`AlprFrame`]: vehicles and plates, each with its own ByteTrack.
//!
//! A plate that lies in a tracked vehicle takes the vehicle's track id, so that everything about
//! one car (its reads, its best crop, its event) is keyed by one id. Plates are also tracked on
//! their own: a plate track remembers the vehicle track it was last seen in, so a plate whose car
//! was missed on a frame keeps the car's id. A plate never seen inside a tracked vehicle (its car
//! is cut off or undetected) gets an id from its own space, starting at [`PLATE_TRACK_BASE`].

use std::collections::{HashMap, HashSet};

use super::bytetrack::{ByteTrackConfig, ByteTracker, Detection, TrackId};
use crate::meta::{AlprFrame, AlprObject, BBox, ObjectKind};

/// Ids of plate-only tracks start here, far above any vehicle track id.
pub const PLATE_TRACK_BASE: u64 = 1 << 40;

#[derive(Debug, Default)]
pub struct FrameTracker {
    vehicles: ByteTracker,
    plates: ByteTracker,
    /// Plate track -> the vehicle track it belongs to.
    plate_owner: HashMap<TrackId, TrackId>,
    /// Plate-only tracks that were reported downstream under their own id.
    plate_only_seen: HashSet<TrackId>,
    /// Vehicle tracks reported downstream and not yet ended.
    live_vehicles: HashSet<TrackId>,
    dets: Vec<Detection>,
    class_names: HashMap<i32, String>,
}

impl FrameTracker {
    pub fn new(config: ByteTrackConfig) -> Self {
        FrameTracker {
            vehicles: ByteTracker::new(config),
            plates: ByteTracker::new(config),
            ..Default::default()
        }
    }

    fn class_id(&mut self, name: &str) -> i32 {
        if let Some((id, _)) = self.class_names.iter().find(|(_, n)| n.as_str() == name) {
            return *id;
        }
        let id = self.class_names.len() as i32;
        self.class_names.insert(id, name.to_string());
        id
    }

    /// Assigns track ids to the objects of `frame` (or, on a frame the detector skipped, adds
    /// the predicted boxes of the live tracks) and fills `frame.ended_tracks`.
    pub fn process(&mut self, frame: &mut AlprFrame) {
        let mut ended = Vec::new();
        if frame.detected {
            self.track_detections(frame, &mut ended);
        } else {
            self.predict(frame, &mut ended);
        }
        frame.ended_tracks.extend(ended);
    }

    fn detections_of(&mut self, frame: &AlprFrame, kind: ObjectKind) -> Vec<Detection> {
        let mut dets = std::mem::take(&mut self.dets);
        dets.clear();
        for (i, o) in frame.objects.iter().enumerate() {
            if o.kind == Some(kind) {
                let class_id = self.class_id(&o.class);
                dets.push(Detection {
                    x: o.bbox.x,
                    y: o.bbox.y,
                    w: o.bbox.w,
                    h: o.bbox.h,
                    score: o.confidence,
                    class_id,
                    user: i as u32,
                });
            }
        }
        dets
    }

    fn track_detections(&mut self, frame: &mut AlprFrame, ended: &mut Vec<u64>) {
        // Vehicles first: plates need their owners' ids.
        let dets = self.detections_of(frame, ObjectKind::Vehicle);
        let out = self.vehicles.update(&dets);
        for (d, tid) in dets.iter().zip(&out.assignments) {
            let obj = &mut frame.objects[d.user as usize];
            obj.track_id = tid.unwrap_or(0);
            obj.predicted = false;
        }
        let removed = out.removed.clone();
        self.end_vehicles(&removed, ended);
        self.dets = dets;
        for o in frame.vehicles() {
            if o.track_id != 0 {
                self.live_vehicles.insert(o.track_id);
            }
        }

        let dets = self.detections_of(frame, ObjectKind::Plate);
        let out = self.plates.update(&dets);
        let assignments = out.assignments.clone();
        let removed = out.removed.clone();
        self.dets = dets;
        let vehicle_track: HashMap<u32, u64> = frame
            .vehicles()
            .filter(|v| v.track_id != 0)
            .map(|v| (v.id, v.track_id))
            .collect();
        for (k, ptid) in assignments.iter().enumerate() {
            let idx = self.dets[k].user as usize;
            let parent_track = frame.objects[idx]
                .parent_id
                .and_then(|p| vehicle_track.get(&p).copied());
            let track_id = match (ptid, parent_track) {
                (Some(p), Some(v)) => {
                    self.plate_owner.insert(*p, v);
                    v
                }
                (Some(p), None) => match self.plate_owner.get(p) {
                    Some(v) if self.live_vehicles.contains(v) => *v,
                    _ => {
                        self.plate_only_seen.insert(*p);
                        PLATE_TRACK_BASE + p
                    }
                },
                (None, Some(v)) => v,
                (None, None) => 0,
            };
            let obj = &mut frame.objects[idx];
            obj.track_id = track_id;
            obj.predicted = false;
        }
        self.end_plates(&removed, ended);
    }

    fn predict(&mut self, frame: &mut AlprFrame, ended: &mut Vec<u64>) {
        frame.objects.clear();
        let out = self.vehicles.predict_only();
        let mut next_id = 1u32;
        let mut by_track: HashMap<u64, u32> = HashMap::new();
        for t in &out.tracks {
            by_track.insert(t.id, next_id);
            frame.objects.push(AlprObject {
                id: next_id,
                kind: Some(ObjectKind::Vehicle),
                class: self
                    .class_names
                    .get(&t.class_id)
                    .cloned()
                    .unwrap_or_default(),
                confidence: t.score,
                bbox: BBox::new(t.x, t.y, t.w, t.h),
                track_id: t.id,
                predicted: true,
                ..Default::default()
            });
            next_id += 1;
        }
        let removed = out.removed.clone();
        self.end_vehicles(&removed, ended);

        let out = self.plates.predict_only();
        for t in &out.tracks {
            let owner = self
                .plate_owner
                .get(&t.id)
                .copied()
                .filter(|v| self.live_vehicles.contains(v));
            let track_id = owner.unwrap_or(PLATE_TRACK_BASE + t.id);
            frame.objects.push(AlprObject {
                id: next_id,
                kind: Some(ObjectKind::Plate),
                class: self
                    .class_names
                    .get(&t.class_id)
                    .cloned()
                    .unwrap_or_default(),
                confidence: t.score,
                bbox: BBox::new(t.x, t.y, t.w, t.h),
                parent_id: owner.and_then(|v| by_track.get(&v).copied()),
                track_id,
                predicted: true,
                ..Default::default()
            });
            next_id += 1;
        }
        let removed = out.removed.clone();
        self.end_plates(&removed, ended);
    }

    fn end_vehicles(&mut self, removed: &[TrackId], ended: &mut Vec<u64>) {
        for id in removed {
            if self.live_vehicles.remove(id) {
                ended.push(*id);
            }
        }
    }

    fn end_plates(&mut self, removed: &[TrackId], ended: &mut Vec<u64>) {
        for id in removed {
            self.plate_owner.remove(id);
            if self.plate_only_seen.remove(id) {
                ended.push(PLATE_TRACK_BASE + id);
            }
        }
    }

    /// Ends every live track (end of stream, discontinuity): returns their ids and starts over.
    pub fn finish(&mut self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.live_vehicles.drain().collect();
        ids.extend(self.plate_only_seen.drain().map(|p| PLATE_TRACK_BASE + p));
        ids.sort_unstable();
        self.reset();
        ids
    }

    /// Forgets everything without reporting (after a flush).
    pub fn reset(&mut self) {
        self.vehicles.reset();
        self.plates.reset();
        self.plate_owner.clear();
        self.plate_only_seen.clear();
        self.live_vehicles.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(id: u32, kind: ObjectKind, b: BBox, parent: Option<u32>) -> AlprObject {
        AlprObject {
            id,
            kind: Some(kind),
            class: if kind == ObjectKind::Vehicle {
                "car"
            } else {
                "license-plate"
            }
            .into(),
            confidence: 0.9,
            bbox: b,
            parent_id: parent,
            ..Default::default()
        }
    }

    /// A car moving right at 5 px/frame with its plate; the car is missed on frames in `gap`.
    fn scene(n: u64, gap: std::ops::Range<u64>) -> Vec<AlprFrame> {
        (0..n)
            .map(|f| {
                let x = 100.0 + 5.0 * f as f32;
                let mut objects = Vec::new();
                let car_visible = !gap.contains(&f);
                if car_visible {
                    objects.push(obj(
                        1,
                        ObjectKind::Vehicle,
                        BBox::new(x, 100.0, 200.0, 120.0),
                        None,
                    ));
                }
                objects.push(obj(
                    2,
                    ObjectKind::Plate,
                    BBox::new(x + 70.0, 190.0, 60.0, 20.0),
                    car_visible.then_some(1),
                ));
                AlprFrame {
                    frame_number: f,
                    detected: true,
                    width: 1280,
                    height: 720,
                    objects,
                    ended_tracks: vec![],
                }
            })
            .collect()
    }

    #[test]
    fn plate_keeps_its_vehicles_id_when_the_car_is_missed() {
        let mut t = FrameTracker::new(ByteTrackConfig::default());
        let mut ids = Vec::new();
        for mut f in scene(12, 5..8) {
            t.process(&mut f);
            let car = f.vehicles().next().map(|v| v.track_id);
            let plate = f.plates().next().unwrap().track_id;
            if let Some(c) = car {
                assert_eq!(plate, c, "frame {}: plate follows its car", f.frame_number);
            }
            ids.push(plate);
        }
        assert!(ids.iter().all(|&i| i == ids[0] && i != 0), "{ids:?}");
        assert_eq!(t.finish(), vec![ids[0]]);
    }

    #[test]
    fn plate_without_vehicle_gets_its_own_id_space_and_ends() {
        let cfg = ByteTrackConfig {
            track_buffer: 3,
            ..Default::default()
        };
        let mut t = FrameTracker::new(cfg);
        let mut plate_id = 0;
        let mut ended = Vec::new();
        for f in 0..12u64 {
            let mut frame = AlprFrame {
                frame_number: f,
                detected: true,
                width: 640,
                height: 480,
                objects: if f < 5 {
                    vec![obj(
                        1,
                        ObjectKind::Plate,
                        BBox::new(10.0 + f as f32, 10.0, 60.0, 20.0),
                        None,
                    )]
                } else {
                    vec![]
                },
                ended_tracks: vec![],
            };
            t.process(&mut frame);
            if let Some(p) = frame.plates().next() {
                plate_id = p.track_id;
            }
            ended.extend(frame.ended_tracks);
        }
        assert!(plate_id > PLATE_TRACK_BASE, "{plate_id}");
        assert_eq!(ended, vec![plate_id], "ended once, after the lost buffer");
        assert!(t.finish().is_empty());
    }

    #[test]
    fn skipped_frames_carry_predicted_boxes() {
        let mut t = FrameTracker::new(ByteTrackConfig::default());
        let frames = scene(12, 0..0);
        let mut last_x = 0.0;
        let mut id = 0;
        for (i, mut f) in frames.into_iter().enumerate() {
            if i >= 10 {
                f.detected = false;
                f.objects.clear();
            }
            t.process(&mut f);
            let car = f.vehicles().next().expect("car present or predicted");
            if i < 10 {
                assert!(!car.predicted);
                id = car.track_id;
                last_x = car.bbox.x;
            } else {
                assert!(car.predicted);
                assert_eq!(car.track_id, id);
                // Kalman velocity learnt from the 5 px/frame motion.
                assert!(car.bbox.x > last_x + 2.0, "{} vs {last_x}", car.bbox.x);
                last_x = car.bbox.x;
                let plate = f.plates().next().expect("plate predicted");
                assert_eq!(plate.track_id, id);
                assert_eq!(plate.parent_id, Some(car.id));
            }
        }
    }
}
