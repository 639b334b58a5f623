// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tracking the objects of an [`AlprFrame`]: vehicles and plates, each with its own ByteTrack.
//!
//! A plate that lies in a tracked vehicle takes the vehicle's track id, so that everything about
//! one car (its reads, its best crop, its event) is keyed by one id. Plates are also tracked on
//! their own: a plate track remembers the vehicle track it was last seen in, so a plate whose car
//! was missed on a frame keeps the car's id. A plate never seen inside a tracked vehicle (its car
//! is cut off or undetected) gets an id from its own space, starting at [`PLATE_TRACK_BASE`].
//! When the plate inside a vehicle track is replaced by another plate, the vehicle track has
//! jumped to another car: its id ends and a new one starts. A car whose plate was tracked on its
//! own first takes over the plate's id, so a car's reads stay under one id.

use std::collections::{HashMap, HashSet};

use super::bytetrack::{ByteTrackConfig, ByteTracker, Detection, TrackId};
use crate::meta::{AlprFrame, AlprObject, BBox, ObjectKind};

/// Ids of plate-only tracks start here, far above any vehicle track id.
pub const PLATE_TRACK_BASE: u64 = 1 << 40;

/// A vehicle as downstream sees it: ByteTrack's track plus the plate it carries. The public id
/// changes when the plate inside the box changes (see [`FrameTracker`]): IoU alone cannot tell
/// two cars apart when one replaces the other at the same place (queues, slideshows, a camera
/// cut), but their plates can.
#[derive(Debug, Clone, Copy)]
struct Vehicle {
    public: u64,
    plate: Option<TrackId>,
}

/// Tracks vehicles and plates of successive frames.
///
/// Vehicle ids seen downstream are this struct's own ("public") ids, not ByteTrack's: when a
/// vehicle track's plate track is replaced by another one while the old plate is no longer seen,
/// the vehicle track has switched to another car, so the old id ends (listed in `ended-tracks`)
/// and the box continues under a new id.
#[derive(Debug, Default)]
pub struct FrameTracker {
    vehicles: ByteTracker,
    plates: ByteTracker,
    /// ByteTrack vehicle track -> public id and plate.
    vehicle: HashMap<TrackId, Vehicle>,
    next_public: u64,
    /// Plate track -> the ByteTrack vehicle track it belongs to.
    plate_owner: HashMap<TrackId, TrackId>,
    /// Plate-only tracks that were reported downstream under their own id.
    plate_only_seen: HashSet<TrackId>,
    dets: Vec<Detection>,
    class_names: HashMap<i32, String>,
}

impl FrameTracker {
    pub fn new(config: ByteTrackConfig) -> Self {
        FrameTracker {
            vehicles: ByteTracker::new(config),
            plates: ByteTracker::new(config),
            next_public: 1,
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

    fn public_of(&mut self, vt: TrackId) -> u64 {
        if let Some(v) = self.vehicle.get(&vt) {
            return v.public;
        }
        let public = self.next_public;
        self.next_public += 1;
        self.vehicle.insert(
            vt,
            Vehicle {
                public,
                plate: None,
            },
        );
        public
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
        let confirmed = out.assignments.clone();
        let tentative = out.tentative.clone();
        let mut removed = out.removed.clone();
        removed.extend(&out.dropped);
        // Object id -> ByteTrack vehicle track, for the plates' parents. A vehicle born on this
        // frame (not yet confirmed) already lends its id to its plate, so the plate's first read
        // is filed with the car; the vehicle box itself shows a track only once confirmed.
        let mut vehicle_of_object: HashMap<u32, TrackId> = HashMap::new();
        for (k, d) in dets.iter().enumerate() {
            let idx = d.user as usize;
            let public = match (confirmed[k], tentative[k]) {
                (Some(t), _) => {
                    vehicle_of_object.insert(frame.objects[idx].id, t);
                    self.public_of(t)
                }
                (None, Some(t)) => {
                    vehicle_of_object.insert(frame.objects[idx].id, t);
                    self.public_of(t);
                    0
                }
                (None, None) => 0,
            };
            let obj = &mut frame.objects[idx];
            obj.track_id = public;
            obj.predicted = false;
        }
        self.dets = dets;
        self.end_vehicles(&removed, ended);

        let dets = self.detections_of(frame, ObjectKind::Plate);
        let out = self.plates.update(&dets);
        let confirmed = out.assignments.clone();
        let assignments: Vec<Option<TrackId>> = out
            .assignments
            .iter()
            .zip(&out.tentative)
            .map(|(a, t)| a.or(*t))
            .collect();
        let mut removed = out.removed.clone();
        removed.extend(&out.dropped);
        self.dets = dets;
        let seen_plates: HashSet<TrackId> = assignments.iter().flatten().copied().collect();
        for (k, ptid) in assignments.iter().enumerate() {
            let idx = self.dets[k].user as usize;
            let parent = frame.objects[idx]
                .parent_id
                .and_then(|p| vehicle_of_object.get(&p).copied());
            let track_id = match (ptid, parent) {
                (Some(p), Some(v)) => {
                    self.plate_owner.insert(*p, v);
                    if confirmed[k].is_some() {
                        self.note_plate(v, *p, &seen_plates, frame, ended)
                    } else {
                        self.public_of(v)
                    }
                }
                (Some(p), None) => {
                    match self.plate_owner.get(p).and_then(|v| self.vehicle.get(v)) {
                        Some(v) => v.public,
                        None => {
                            self.plate_only_seen.insert(*p);
                            PLATE_TRACK_BASE + p
                        }
                    }
                }
                (None, Some(v)) => self.public_of(v),
                (None, None) => 0,
            };
            let obj = &mut frame.objects[idx];
            obj.track_id = track_id;
            obj.predicted = false;
        }
        self.end_plates(&removed, ended);
    }

    /// Records that vehicle track `v` carries the confirmed plate track `p`; if it carried another
    /// confirmed plate that is gone now, the vehicle track has switched cars: the old id ends and
    /// a new one starts (objects of this frame already labelled with the old id are relabelled).
    /// Only confirmed plate tracks count: a flickering false plate (born and dropped again and
    /// again) must not split a car.
    fn note_plate(
        &mut self,
        v: TrackId,
        p: TrackId,
        seen_plates: &HashSet<TrackId>,
        frame: &mut AlprFrame,
        ended: &mut Vec<u64>,
    ) -> u64 {
        let public = self.public_of(v);
        let Some(entry) = self.vehicle.get(&v).copied() else {
            return public;
        };
        let switched = matches!(entry.plate, Some(old) if old != p && !seen_plates.contains(&old));
        // A plate tracked on its own before its car was tracked keeps its id: its reads so far
        // are filed under it, and the car takes it over.
        let adopted = (entry.plate.is_none() && self.plate_only_seen.remove(&p))
            .then_some(PLATE_TRACK_BASE + p);
        let new_id = if switched {
            Some(self.next_public)
        } else {
            adopted
        };
        let public = match new_id {
            Some(new) => {
                if switched {
                    self.next_public += 1;
                }
                ended.push(entry.public);
                for o in &mut frame.objects {
                    if o.track_id == entry.public {
                        o.track_id = new;
                    }
                }
                new
            }
            None => entry.public,
        };
        self.vehicle.insert(
            v,
            Vehicle {
                public,
                plate: Some(p),
            },
        );
        public
    }

    fn predict(&mut self, frame: &mut AlprFrame, ended: &mut Vec<u64>) {
        frame.objects.clear();
        let out = self.vehicles.predict_only();
        let tracks = out.tracks.clone();
        let removed = out.removed.clone();
        let mut next_id = 1u32;
        let mut by_track: HashMap<TrackId, u32> = HashMap::new();
        for t in &tracks {
            by_track.insert(t.id, next_id);
            let public = self.public_of(t.id);
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
                track_id: public,
                predicted: true,
                ..Default::default()
            });
            next_id += 1;
        }
        self.end_vehicles(&removed, ended);

        let out = self.plates.predict_only();
        let tracks = out.tracks.clone();
        let removed = out.removed.clone();
        for t in &tracks {
            let owner = self
                .plate_owner
                .get(&t.id)
                .copied()
                .filter(|v| self.vehicle.contains_key(v));
            let track_id = match owner {
                Some(v) => self.vehicle[&v].public,
                None => PLATE_TRACK_BASE + t.id,
            };
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
        self.end_plates(&removed, ended);
    }

    fn end_vehicles(&mut self, removed: &[TrackId], ended: &mut Vec<u64>) {
        for id in removed {
            if let Some(v) = self.vehicle.remove(id) {
                ended.push(v.public);
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
        let mut ids: Vec<u64> = self.vehicle.drain().map(|(_, v)| v.public).collect();
        ids.extend(self.plate_only_seen.drain().map(|p| PLATE_TRACK_BASE + p));
        ids.sort_unstable();
        self.reset();
        ids
    }

    /// Forgets everything without reporting (after a flush). Public ids keep counting up so an
    /// id is never reused for another vehicle.
    pub fn reset(&mut self) {
        self.vehicles.reset();
        self.plates.reset();
        self.vehicle.clear();
        self.plate_owner.clear();
        self.plate_only_seen.clear();
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
                    tracked: false,
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
                tracked: false,
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

    /// One car replaces another at the same place (a queue at a barrier, a slideshow): the
    /// vehicle box matches by IoU, but the plate inside changes, so the id must change.
    #[test]
    fn a_new_plate_in_the_same_box_is_a_new_vehicle() {
        let mut t = FrameTracker::new(ByteTrackConfig::default());
        let mut ids = Vec::new();
        let mut ended = Vec::new();
        for f in 0..10u64 {
            let plate_x = if f < 5 { 150.0 } else { 260.0 };
            let mut frame = AlprFrame {
                frame_number: f,
                detected: true,
                tracked: false,
                width: 640,
                height: 480,
                objects: vec![
                    obj(
                        1,
                        ObjectKind::Vehicle,
                        BBox::new(100.0, 100.0, 300.0, 200.0),
                        None,
                    ),
                    obj(
                        2,
                        ObjectKind::Plate,
                        BBox::new(plate_x, 250.0, 60.0, 20.0),
                        Some(1),
                    ),
                ],
                ended_tracks: vec![],
            };
            t.process(&mut frame);
            let car = frame.vehicles().next().unwrap().track_id;
            assert_eq!(frame.plates().next().unwrap().track_id, car);
            ids.push(car);
            ended.extend(frame.ended_tracks.iter().map(|e| (f, *e)));
        }
        // The new plate's track is confirmed on its second frame (6): the split happens there.
        assert!(ids[..6].iter().all(|&i| i == ids[0]), "{ids:?}");
        assert!(ids[6..].iter().all(|&i| i == ids[6]), "{ids:?}");
        assert_ne!(ids[0], ids[6]);
        assert_eq!(ended, vec![(6, ids[0])]);
        assert_eq!(t.finish(), vec![ids[6]]);
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
