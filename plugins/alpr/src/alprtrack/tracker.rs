// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tracking the objects of an [`AlprFrame`]: vehicles and plates, each with its own ByteTrack.
//!
//! Downstream sees public ids, not ByteTrack's: everything about one car (its reads, its best
//! crop, its event) is keyed by one public id.
//! - A plate that lies in a tracked vehicle takes the vehicle's id. A plate track remembers the
//!   id it was given, so a plate whose car is missed on some frames (or whose car track ends
//!   first) keeps the car's id.
//! - A plate never seen inside a tracked vehicle (its car is cut off, too far or undetected)
//!   gets an id from its own space, starting at [`PLATE_TRACK_BASE`]. When a car that has not
//!   been reported yet picks up such a plate, the car takes over the plate's id, so a plate seen
//!   before its car stays in one event.
//! - When the plate inside a vehicle track is replaced by another one (the old one no longer
//!   seen), the vehicle track has jumped to another car (a queue at a barrier, a camera cut):
//!   the box continues under a new id, and the old id is listed as replaced.
//! - An id ends (it is listed in `ended-tracks`) once no live vehicle or plate track carries it,
//!   exactly once, and is never given out again.
//!
//! Plates are associated with a motion gate (see [`ByteTrackConfig::motion_gate`]): a distant
//! plate of 20-40 px moves more than its own width between frames at 10 fps, so IoU alone would
//! start a new track on every frame.

use std::collections::{HashMap, HashSet};

use super::bytetrack::{ByteTrackConfig, ByteTracker, Detection, TrackId};
use crate::meta::{AlprFrame, AlprObject, BBox, ObjectKind};

/// Ids of plate-only tracks start here, far above any vehicle track id.
pub const PLATE_TRACK_BASE: u64 = 1 << 40;

/// Default motion gate of plate tracks, in plate sizes (see [`ByteTrackConfig::motion_gate`]).
pub const PLATE_MOTION_GATE: f32 = 3.0;

/// A vehicle as downstream sees it: ByteTrack's track, its public id and the plate it carries.
#[derive(Debug, Clone, Copy)]
struct Vehicle {
    public: u64,
    plate: Option<TrackId>,
}

/// Tracks vehicles and plates of successive frames and gives them public ids.
#[derive(Debug, Default)]
pub struct FrameTracker {
    vehicles: ByteTracker,
    plates: ByteTracker,
    /// ByteTrack vehicle track -> public id and plate.
    vehicle: HashMap<TrackId, Vehicle>,
    /// Plate track -> the public id it was reported with.
    plate_public: HashMap<TrackId, u64>,
    next_public: u64,
    next_plate_public: u64,
    /// Public ids reported downstream and not ended yet.
    open: HashSet<u64>,
    /// Ids whose vehicle track switched to another car on the current frame.
    replaced: Vec<u64>,
    /// Detected frames so far, and per plate track the last one it was seen on.
    detected: u64,
    plate_seen: HashMap<TrackId, u64>,
    dets: Vec<Detection>,
    class_names: HashMap<i32, String>,
}

impl FrameTracker {
    /// Vehicles are tracked with `config` as given; plates with the same settings and a motion
    /// gate of [`PLATE_MOTION_GATE`] unless `config` sets one.
    pub fn new(config: ByteTrackConfig) -> Self {
        let plate_gate = if config.motion_gate > 0.0 {
            config.motion_gate
        } else {
            PLATE_MOTION_GATE
        };
        Self::with_gates(config, 0.0, plate_gate)
    }

    /// Like [`Self::new`] with explicit motion gates for vehicles and plates (0 = IoU only).
    pub fn with_gates(config: ByteTrackConfig, vehicle_gate: f32, plate_gate: f32) -> Self {
        FrameTracker {
            vehicles: ByteTracker::new(ByteTrackConfig {
                motion_gate: vehicle_gate,
                ..config
            }),
            plates: ByteTracker::new(ByteTrackConfig {
                motion_gate: plate_gate,
                ..config
            }),
            next_public: 1,
            next_plate_public: PLATE_TRACK_BASE + 1,
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

    fn new_public(&mut self) -> u64 {
        let id = self.next_public;
        self.next_public += 1;
        id
    }

    fn public_of(&mut self, vt: TrackId) -> u64 {
        if let Some(v) = self.vehicle.get(&vt) {
            return v.public;
        }
        let public = self.new_public();
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
        if frame.detected {
            self.track_detections(frame);
        } else {
            self.predict(frame, !frame.still);
        }
        let ended = self.settle_ids(frame);
        for id in std::mem::take(&mut self.replaced) {
            if ended.contains(&id) && !frame.replaced_tracks.contains(&id) {
                frame.replaced_tracks.push(id);
            }
        }
        frame.ended_tracks.extend(ended);
    }

    /// Opens the ids reported on `frame` and ends those no live track carries any more.
    fn settle_ids(&mut self, frame: &AlprFrame) -> Vec<u64> {
        let live: HashSet<u64> = self
            .vehicle
            .values()
            .map(|v| v.public)
            .chain(self.plate_public.values().copied())
            .collect();
        let mut ended: Vec<u64> = self
            .open
            .iter()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        ended.sort_unstable();
        for id in &ended {
            self.open.remove(id);
        }
        for o in &frame.objects {
            if o.track_id != 0 && live.contains(&o.track_id) {
                self.open.insert(o.track_id);
            }
        }
        ended
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

    fn track_detections(&mut self, frame: &mut AlprFrame) {
        // Vehicles first: plates need their owners' ids.
        let dets = self.detections_of(frame, ObjectKind::Vehicle);
        let out = self.vehicles.update(&dets);
        let confirmed = out.assignments.clone();
        let tentative = out.tentative.clone();
        let mut removed = out.removed.clone();
        removed.extend(&out.dropped);
        // Object id -> ByteTrack vehicle track, for the plates' parents. A vehicle born
        // on this frame (not yet confirmed) already lends its id to its plate, so the plate's
        // first read is filed with the car; the vehicle box itself shows a track only once
        // confirmed.
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
        for id in &removed {
            self.vehicle.remove(id);
        }

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
        self.detected += 1;
        for p in assignments.iter().flatten() {
            self.plate_seen.insert(*p, self.detected);
        }
        for (k, ptid) in assignments.iter().enumerate() {
            let idx = self.dets[k].user as usize;
            let parent = frame.objects[idx]
                .parent_id
                .and_then(|p| vehicle_of_object.get(&p).copied());
            let track_id = match (ptid, parent) {
                (Some(p), Some(v)) if confirmed[k].is_some() => {
                    let public = self.note_plate(v, *p, frame);
                    self.plate_public.insert(*p, public);
                    public
                }
                (Some(p), Some(v)) if self.replacing(v, *p) => {
                    // A new plate where the car's own one is not seen: maybe another car in
                    // its place (confirmed or not on the next frame). Its first read must
                    // not go to the old car: not tracked yet.
                    0
                }
                (Some(p), Some(v)) => {
                    let public = self.public_of(v);
                    self.plate_public.insert(*p, public);
                    public
                }
                (Some(p), None) => match self.plate_public.get(p) {
                    Some(&public) => public,
                    None => {
                        let public = self.next_plate_public;
                        self.next_plate_public += 1;
                        self.plate_public.insert(*p, public);
                        public
                    }
                },
                (None, Some(v)) => self.public_of(v),
                (None, None) => 0,
            };
            let obj = &mut frame.objects[idx];
            obj.track_id = track_id;
            obj.predicted = false;
        }
        for id in &removed {
            self.plate_public.remove(id);
            self.plate_seen.remove(id);
        }
    }

    /// Whether tentative plate track `p` appears in vehicle track `v` while the vehicle's
    /// confirmed plate is not seen on this frame.
    fn replacing(&self, v: TrackId, p: TrackId) -> bool {
        let Some(old) = self.vehicle.get(&v).and_then(|e| e.plate) else {
            return false;
        };
        old != p && self.plate_seen.get(&old) != Some(&self.detected)
    }

    /// Records that vehicle track `v` carries the confirmed plate track `p` and returns the id
    /// both are reported with.
    ///
    /// If the vehicle carried another confirmed plate that is gone now (seen neither on this
    /// detected frame nor on the one before), the vehicle track has switched cars (the plate
    /// track itself follows a moving plate: a new one means a new plate). A car with two plate
    /// boxes (a second plate, a sticker read as one) flips between them without switching: it continues under a new id
    /// (objects of this frame already labelled with the old one are relabelled). Only
    /// confirmed plate tracks count: a flickering false plate must not split a car. A plate
    /// that had an id of its own before any car was seen with it gives that id to a car not
    /// yet reported downstream: its reads so far are filed under it.
    fn note_plate(&mut self, v: TrackId, p: TrackId, frame: &mut AlprFrame) -> u64 {
        let public = self.public_of(v);
        let Some(entry) = self.vehicle.get(&v).copied() else {
            return public;
        };
        let gone = |old: &TrackId| {
            self.plate_seen
                .get(old)
                .is_none_or(|&seen| seen + 1 < self.detected)
        };
        let switched = matches!(entry.plate, Some(old) if old != p && gone(&old));
        let own = self
            .plate_public
            .get(&p)
            .copied()
            .filter(|&id| id >= PLATE_TRACK_BASE && id != public);
        let adopted = (entry.plate.is_none() && !self.open.contains(&public))
            .then_some(own)
            .flatten();
        let new_id = if switched {
            Some(self.new_public())
        } else {
            adopted
        };
        if switched {
            // The old car's plate track (lost now) no longer holds its id: it ends now. If that
            // plate comes back in a car it gets the car's id again.
            self.plate_public.retain(|_, id| *id != entry.public);
            self.replaced.push(entry.public);
        }
        let public = match new_id {
            Some(new) => {
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

    /// Boxes of the live tracks on a frame the detector skipped: predicted with their motion, or
    /// held where they are (`motion` false: an idle frame, nothing moved).
    fn predict(&mut self, frame: &mut AlprFrame, motion: bool) {
        frame.objects.clear();
        let out = if motion {
            self.vehicles.predict_only()
        } else {
            self.vehicles.hold_only()
        };
        let tracks = out.tracks.clone();
        let removed = out.removed.clone();
        let mut next_id = 1u32;
        let mut by_public: HashMap<u64, u32> = HashMap::new();
        for t in &tracks {
            let public = self.public_of(t.id);
            by_public.insert(public, next_id);
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
        for id in &removed {
            self.vehicle.remove(id);
        }

        let out = if motion {
            self.plates.predict_only()
        } else {
            self.plates.hold_only()
        };
        let tracks = out.tracks.clone();
        let removed = out.removed.clone();
        for t in &tracks {
            let Some(&track_id) = self.plate_public.get(&t.id) else {
                continue;
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
                parent_id: by_public.get(&track_id).copied(),
                track_id,
                predicted: true,
                ..Default::default()
            });
            next_id += 1;
        }
        for id in &removed {
            self.plate_public.remove(id);
            self.plate_seen.remove(id);
        }
    }

    /// New settings, as for [`Self::with_gates`] (the stream's frame rate changed): the
    /// lost-track buffers are rescaled, every track and id carries on.
    pub fn reconfigure(&mut self, config: ByteTrackConfig, vehicle_gate: f32, plate_gate: f32) {
        self.vehicles.set_config(ByteTrackConfig {
            motion_gate: vehicle_gate,
            ..config
        });
        self.plates.set_config(ByteTrackConfig {
            motion_gate: plate_gate,
            ..config
        });
    }

    /// Ends every live track (end of stream, discontinuity): returns their ids and starts over.
    pub fn finish(&mut self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.open.drain().collect();
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
        self.plate_public.clear();
        self.plate_seen.clear();
        self.open.clear();
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
                    still: false,
                    tracked: false,
                    width: 1280,
                    height: 720,
                    objects,
                    ended_tracks: vec![],
                    replaced_tracks: vec![],
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
                still: false,
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
                replaced_tracks: vec![],
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
                still: false,
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
                replaced_tracks: vec![],
            };
            t.process(&mut frame);
            let car = frame.vehicles().next().unwrap().track_id;
            let plate = frame.plates().next().unwrap().track_id;
            if f == 5 {
                assert_eq!(plate, 0, "the new plate's first frame is nobody's yet");
            } else {
                assert_eq!(plate, car);
            }
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

    fn frame_of(f: u64, objects: Vec<AlprObject>) -> AlprFrame {
        AlprFrame {
            frame_number: f,
            detected: true,
            still: false,
            tracked: false,
            width: 1280,
            height: 720,
            objects,
            ended_tracks: vec![],
            replaced_tracks: vec![],
        }
    }

    /// A distant plate approaching at 10 fps: 20-40 px wide, moving 1.3-1.6 of its own width
    /// per frame and growing: no IoU between frames, one track anyway.
    #[test]
    fn a_small_fast_plate_keeps_one_track() {
        let run = |gate: f32| {
            let mut t = FrameTracker::with_gates(ByteTrackConfig::default(), 0.0, gate);
            let mut ids = HashSet::new();
            let mut ended = Vec::new();
            for f in 0..10u64 {
                let w = 20.0 + 2.0 * f as f32;
                let x = 100.0 + 30.0 * f as f32 + 0.5 * (f * f) as f32;
                let mut frame = frame_of(
                    f,
                    vec![obj(
                        1,
                        ObjectKind::Plate,
                        BBox::new(x, 400.0, w, w / 3.0),
                        None,
                    )],
                );
                t.process(&mut frame);
                ids.insert(frame.plates().next().unwrap().track_id);
                ended.extend(frame.ended_tracks);
            }
            ended.extend(t.finish());
            (ids.len(), ended.len())
        };
        let got = run(PLATE_MOTION_GATE);
        assert_eq!(got, (1, 1), "one id, ended once");
        let (ids, _) = run(0.0);
        assert!(ids >= 5, "IoU alone starts a track on every frame: {ids}");
    }

    /// The car's track ends first (it drove out of the detector's reach) while its plate is
    /// still tracked: the plate keeps the car's id, and the id ends once, when the plate goes.
    #[test]
    fn a_plate_outliving_its_car_keeps_the_id_and_ids_end_once() {
        let cfg = ByteTrackConfig {
            track_buffer: 3,
            ..Default::default()
        };
        let mut t = FrameTracker::new(cfg);
        let mut ended = Vec::new();
        let mut ids = Vec::new();
        for f in 0..20u64 {
            let x = 100.0 + 4.0 * f as f32;
            let mut objects = Vec::new();
            if f < 6 {
                objects.push(obj(
                    1,
                    ObjectKind::Vehicle,
                    BBox::new(x, 100.0, 200.0, 120.0),
                    None,
                ));
            }
            if f < 12 {
                objects.push(obj(
                    2,
                    ObjectKind::Plate,
                    BBox::new(x + 70.0, 190.0, 60.0, 20.0),
                    (f < 6).then_some(1),
                ));
            }
            let mut frame = frame_of(f, objects);
            t.process(&mut frame);
            if let Some(p) = frame.plates().find(|p| !p.predicted) {
                ids.push(p.track_id);
            }
            ended.extend(frame.ended_tracks.iter().map(|&e| (f, e)));
        }
        assert!(
            ids.iter().all(|&i| i == ids[0] && i < PLATE_TRACK_BASE),
            "{ids:?}"
        );
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0].1, ids[0]);
        assert!(ended[0].0 >= 12, "ended after the plate went: {ended:?}");
        assert!(t.finish().is_empty());
    }

    /// A plate seen before its car: the car, not reported before, takes the plate's id.
    #[test]
    fn a_car_found_after_its_plate_takes_the_plates_id() {
        let mut t = FrameTracker::new(ByteTrackConfig::default());
        let mut ids = Vec::new();
        let mut ended = Vec::new();
        for f in 0..10u64 {
            let x = 100.0 + 5.0 * f as f32;
            let mut objects = vec![obj(
                2,
                ObjectKind::Plate,
                BBox::new(x + 70.0, 190.0, 60.0, 20.0),
                (f >= 4).then_some(1),
            )];
            if f >= 4 {
                objects.push(obj(
                    1,
                    ObjectKind::Vehicle,
                    BBox::new(x, 100.0, 200.0, 120.0),
                    None,
                ));
            }
            let mut frame = frame_of(f, objects);
            t.process(&mut frame);
            let plate = frame.plates().next().unwrap().track_id;
            if let Some(v) = frame.vehicles().next().filter(|v| v.track_id != 0) {
                assert_eq!(v.track_id, plate, "frame {f}");
            }
            ids.push(plate);
            ended.extend(frame.ended_tracks);
        }
        assert!(ids[0] > PLATE_TRACK_BASE);
        assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
        assert!(ended.is_empty(), "{ended:?}");
        assert_eq!(t.finish(), vec![ids[0]]);
    }

    #[test]
    fn a_switch_lists_the_old_id_as_replaced() {
        let mut t = FrameTracker::new(ByteTrackConfig::default());
        let mut replaced = Vec::new();
        let mut first = 0;
        for f in 0..10u64 {
            let plate_x = if f < 5 { 150.0 } else { 300.0 };
            let mut frame = frame_of(
                f,
                vec![
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
            );
            t.process(&mut frame);
            if f == 0 {
                first = frame.vehicles().next().unwrap().track_id;
            }
            for r in &frame.replaced_tracks {
                assert!(frame.ended_tracks.contains(r));
            }
            replaced.extend(frame.replaced_tracks);
        }
        assert_eq!(replaced, vec![first]);
    }

    /// A car with a second plate-like box (a sticker, the plate's reflection): the detector
    /// finds one or the other on each frame. Not a switch to another car.
    #[test]
    fn two_plate_boxes_in_one_car_do_not_split_it() {
        let mut t = FrameTracker::new(ByteTrackConfig::default());
        let mut ids = HashSet::new();
        for f in 0..12u64 {
            let mut objects = vec![obj(
                1,
                ObjectKind::Vehicle,
                BBox::new(100.0, 100.0, 300.0, 200.0),
                None,
            )];
            if f % 3 != 2 {
                objects.push(obj(
                    2,
                    ObjectKind::Plate,
                    BBox::new(150.0, 250.0, 60.0, 20.0),
                    Some(1),
                ));
            }
            if f % 3 != 0 {
                objects.push(obj(
                    3,
                    ObjectKind::Plate,
                    BBox::new(300.0, 150.0, 40.0, 15.0),
                    Some(1),
                ));
            }
            let mut frame = frame_of(f, objects);
            t.process(&mut frame);
            assert!(frame.replaced_tracks.is_empty(), "frame {f}");
            ids.insert(frame.vehicles().next().unwrap().track_id);
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
    }
}
