// SPDX-License-Identifier: MIT OR Apache-2.0
//! Vehicle-track events (alprocr `vehicle-events`): one [`VehicleTrackEvent`] per vehicle track
//! when the tracker ends it, with how long and in how many frames it was seen, its most
//! frequent class and the plate decided for it (if any). kafkasink sends them to its vehicles
//! topic. No GStreamer here.

use std::collections::HashMap;

use super::tracks::SEGMENT_STRIDE;
use crate::event::VehicleTrackEvent;
use crate::meta::{AlprFrame, ObjectKind};

#[derive(Debug, Default)]
struct Open {
    classes: HashMap<String, u64>,
    first_seen_ms: i64,
    last_seen_ms: i64,
    frames: u64,
    plate: Option<String>,
}

#[derive(Debug, Default)]
pub struct VehicleTracks {
    open: HashMap<u64, Open>,
}

impl VehicleTracks {
    pub fn open_tracks(&self) -> usize {
        self.open.len()
    }

    /// Counts the frame for every tracked vehicle detected on it (predicted boxes are not
    /// sightings).
    pub fn observe(&mut self, frame: &AlprFrame, now_ms: i64) {
        for o in &frame.objects {
            if o.kind_or_vehicle() != ObjectKind::Vehicle || o.track_id == 0 || o.predicted {
                continue;
            }
            let t = self.open.entry(o.track_id).or_insert_with(|| Open {
                first_seen_ms: now_ms,
                ..Default::default()
            });
            t.last_seen_ms = now_ms;
            t.frames += 1;
            // The class name is copied once per track, not per frame.
            match t.classes.get_mut(&o.class) {
                Some(n) => *n += 1,
                None => {
                    t.classes.insert(o.class.clone(), 1);
                }
            }
        }
    }

    /// A plate event was decided for track `track_id` (or one of its split segments).
    pub fn plate_decided(&mut self, track_id: u64, text: &str) {
        if let Some(t) = self.open.get_mut(&(track_id % SEGMENT_STRIDE)) {
            t.plate = Some(text.to_string());
        }
    }

    /// Ends vehicle track `track_id`: its event (id, camera and source left for the element),
    /// `None` when it was never seen as a vehicle.
    pub fn end(&mut self, track_id: u64) -> Option<VehicleTrackEvent> {
        let t = self.open.remove(&track_id)?;
        let class = t
            .classes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(c, _)| c)
            .unwrap_or_default();
        Some(VehicleTrackEvent {
            track_id,
            vehicle_class: class,
            first_seen_ms: t.first_seen_ms,
            last_seen_ms: t.last_seen_ms,
            frames: t.frames,
            plate_text: t.plate,
            ..Default::default()
        })
    }

    /// Vehicle track `from` turned out to be part of track `into` (its plate reads were merged
    /// there): its sightings count for `into`, whose event (at its end) is the car's only one.
    pub fn merge(&mut self, from: u64, into: u64) {
        let Some(f) = self.open.remove(&from) else {
            return;
        };
        let t = self.open.entry(into).or_insert_with(|| Open {
            first_seen_ms: f.first_seen_ms,
            last_seen_ms: f.last_seen_ms,
            ..Default::default()
        });
        t.first_seen_ms = t.first_seen_ms.min(f.first_seen_ms);
        t.last_seen_ms = t.last_seen_ms.max(f.last_seen_ms);
        t.frames += f.frames;
        for (class, n) in f.classes {
            *t.classes.entry(class).or_default() += n;
        }
        if t.plate.is_none() {
            t.plate = f.plate;
        }
    }

    /// Ends every open track (EOS), in track order.
    pub fn end_all(&mut self) -> Vec<VehicleTrackEvent> {
        let mut ids: Vec<u64> = self.open.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter().filter_map(|id| self.end(id)).collect()
    }

    pub fn clear(&mut self) {
        self.open.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{AlprObject, BBox};

    fn vehicle(track_id: u64, class: &str, predicted: bool) -> AlprObject {
        AlprObject {
            kind: Some(ObjectKind::Vehicle),
            class: class.into(),
            bbox: BBox::new(0.0, 0.0, 10.0, 10.0),
            track_id,
            predicted,
            ..Default::default()
        }
    }

    #[test]
    fn one_event_per_vehicle_track_with_its_plate_and_majority_class() {
        let mut v = VehicleTracks::default();
        let frame = |objs: Vec<AlprObject>| AlprFrame {
            objects: objs,
            ..Default::default()
        };
        v.observe(&frame(vec![vehicle(3, "car", false)]), 1000);
        v.observe(
            &frame(vec![vehicle(3, "truck", false), vehicle(4, "bus", false)]),
            1040,
        );
        v.observe(&frame(vec![vehicle(3, "car", false)]), 1080);
        // A predicted box is not a sighting; untracked vehicles are not tracks.
        v.observe(
            &frame(vec![vehicle(3, "car", true), vehicle(0, "car", false)]),
            1120,
        );
        v.plate_decided(3 + 2 * SEGMENT_STRIDE, "AB123");
        assert_eq!(v.open_tracks(), 2);
        let e = v.end(3).unwrap();
        assert_eq!(
            (e.track_id, e.vehicle_class.as_str(), e.frames),
            (3, "car", 3)
        );
        assert_eq!((e.first_seen_ms, e.last_seen_ms), (1000, 1080));
        assert_eq!(e.plate_text.as_deref(), Some("AB123"));
        assert!(v.end(3).is_none(), "ended once");
        let rest = v.end_all();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].track_id, rest[0].plate_text.as_deref()), (4, None));
    }
}
