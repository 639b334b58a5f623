// SPDX-License-Identifier: MIT OR Apache-2.0
//! The custom events the ALPR elements send each other (part of the contract, beside the frame
//! meta): alprtrack's `alpr-tracks-ended` downstream, alprocr's `alpr-plates-settled` upstream
//! to alprdetect. Elements build and read them only through this module.

use gst::prelude::*;

use super::BBox;

/// Name of the custom downstream event alprtrack sends before EOS (and after a discontinuity it
/// cannot attach to a frame) with the ids of every track still open: field `tracks`, an array
/// of guint64.
pub const TRACKS_ENDED_EVENT: &str = "alpr-tracks-ended";

/// The [`TRACKS_ENDED_EVENT`] event listing `ids`.
pub fn tracks_ended_event(ids: Vec<u64>) -> gst::Event {
    let s = gst::Structure::builder(TRACKS_ENDED_EVENT)
        .field("tracks", gst::Array::new(ids))
        .build();
    gst::event::CustomDownstream::new(s)
}

/// Reads the track ids of an [`TRACKS_ENDED_EVENT`] event; `None` for any other event.
pub fn ended_tracks_of(event: &gst::EventRef) -> Option<Vec<u64>> {
    let s = event.structure()?;
    if s.name() != TRACKS_ENDED_EVENT {
        return None;
    }
    Some(
        s.get::<gst::Array>("tracks")
            .map(|a| a.iter().filter_map(|v| v.get::<u64>().ok()).collect())
            .unwrap_or_default(),
    )
}

/// Name of the custom upstream event alprocr sends after a frame in which settled vehicles were
/// visible, and once more, empty, when none are left: vehicles whose plate is read (property
/// `settle-reads`) or that were searched in vain for a while (`settle-unread`).
/// Fields: `width` and `height` (guint, the frame's size), `pts` (guint64, absent without a
/// timestamp), `tracks` (array of guint64, the vehicles' track ids) and `boxes` (array of
/// gfloat, x, y, w, h per vehicle, in frame pixels); `plate-tracks` and `plate-boxes` the same
/// for plates tracked on their own (no vehicle around them) whose text is settled (absent: none).
/// alprdetect stops searching those vehicles for plates, and counts everything they cover as
/// read for its idle frames (`motion-threshold`).
pub const SETTLED_EVENT: &str = "alpr-plates-settled";

/// The vehicles of one frame whose plates are read (see [`SETTLED_EVENT`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled {
    pub pts: Option<gst::ClockTime>,
    pub width: u32,
    pub height: u32,
    /// Track id and box of each vehicle.
    pub vehicles: Vec<(u64, BBox)>,
    /// Track id and box of each settled plate tracked without a vehicle.
    pub plates: Vec<(u64, BBox)>,
}

/// `(ids, flat boxes)` arrays of a track list.
fn to_arrays(list: &[(u64, BBox)]) -> (gst::Array, gst::Array) {
    let tracks = gst::Array::new(list.iter().map(|v| v.0.to_send_value()));
    let boxes = gst::Array::new(
        list.iter()
            .flat_map(|(_, b)| [b.x, b.y, b.w, b.h])
            .map(|v| v.to_send_value()),
    );
    (tracks, boxes)
}

/// The track list in fields `tracks_field` and `boxes_field`; `None` when malformed.
fn from_arrays(
    s: &gst::StructureRef,
    tracks_field: &str,
    boxes_field: &str,
) -> Option<Vec<(u64, BBox)>> {
    let flat: Vec<f32> = s
        .get::<gst::Array>(boxes_field)
        .ok()?
        .iter()
        .filter_map(|v| v.get::<f32>().ok())
        .collect();
    let tracks = s.get::<gst::Array>(tracks_field).ok()?;
    if flat.len() != 4 * tracks.len() {
        return None;
    }
    tracks
        .iter()
        .zip(flat.chunks_exact(4))
        .map(|(t, c)| {
            let id = t.get::<u64>().ok()?;
            Some((id, BBox::new(c[0], c[1], c[2], c[3])))
        })
        .collect()
}

impl Settled {
    pub fn to_event(&self) -> gst::Event {
        let (tracks, boxes) = to_arrays(&self.vehicles);
        let mut b = gst::Structure::builder(SETTLED_EVENT)
            .field("width", self.width)
            .field("height", self.height)
            .field_if_some("pts", self.pts.map(|t| t.nseconds()))
            .field("tracks", tracks)
            .field("boxes", boxes);
        if !self.plates.is_empty() {
            let (tracks, boxes) = to_arrays(&self.plates);
            b = b.field("plate-tracks", tracks).field("plate-boxes", boxes);
        }
        let s = b.build();
        gst::event::CustomUpstream::new(s)
    }

    /// Boxes further than this from the frame they are applied to (stream time) are stale.
    pub const MAX_AGE: gst::ClockTime = gst::ClockTime::from_mseconds(500);

    /// Whether these boxes may be used for a `width` x `height` frame with timestamp `pts`:
    /// same frame size, and timestamps (where both exist) at most [`Settled::MAX_AGE`] apart.
    pub fn usable_for(&self, width: u32, height: u32, pts: Option<gst::ClockTime>) -> bool {
        self.width == width
            && self.height == height
            && match (self.pts, pts) {
                (Some(a), Some(b)) => a.absdiff(b) <= Self::MAX_AGE,
                _ => true,
            }
    }

    /// Reads a [`SETTLED_EVENT`] event; `None` for any other event or a malformed one.
    pub fn of(event: &gst::EventRef) -> Option<Settled> {
        let s = event.structure()?;
        if s.name() != SETTLED_EVENT {
            return None;
        }
        let plates = if s.has_field("plate-tracks") {
            from_arrays(s, "plate-tracks", "plate-boxes")?
        } else {
            Vec::new()
        };
        Some(Settled {
            pts: s.get::<u64>("pts").ok().map(gst::ClockTime::from_nseconds),
            width: s.get("width").ok()?,
            height: s.get("height").ok()?,
            vehicles: from_arrays(s, "tracks", "boxes")?,
            plates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_ended_event_round_trips() {
        gst::init().unwrap();
        let ev = tracks_ended_event(vec![3, 1 << 41]);
        assert_eq!(ev.type_(), gst::EventType::CustomDownstream);
        assert_eq!(ended_tracks_of(&ev), Some(vec![3, 1 << 41]));
        let other = gst::event::CustomDownstream::new(gst::Structure::new_empty("other"));
        assert_eq!(ended_tracks_of(&other), None);
    }

    #[test]
    fn settled_event_round_trips() {
        gst::init().unwrap();
        let s = Settled {
            pts: Some(gst::ClockTime::from_mseconds(40)),
            width: 1280,
            height: 720,
            vehicles: vec![
                (3, BBox::new(1.0, 2.0, 300.0, 200.0)),
                (9, BBox::new(5.5, 6.0, 7.0, 8.0)),
            ],
            plates: vec![(1 << 40, BBox::new(600.0, 400.0, 80.0, 20.0))],
        };
        let ev = s.to_event();
        assert_eq!(ev.type_(), gst::EventType::CustomUpstream);
        assert_eq!(Settled::of(&ev), Some(s.clone()));
        let none = Settled {
            pts: None,
            vehicles: vec![],
            plates: vec![],
            ..s
        };
        assert_eq!(Settled::of(&none.to_event()), Some(none));
        let other = gst::event::CustomUpstream::new(gst::Structure::new_empty("other"));
        assert_eq!(Settled::of(&other), None);
    }
}
