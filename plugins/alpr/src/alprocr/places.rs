// SPDX-License-Identifier: MIT OR Apache-2.0
//! Where and when a track's plate was read, and the continuity test that says whether one
//! track's plate is the same plate another track saw where and when the first left off (see
//! `tracks.rs`). No GStreamer here.

use std::collections::VecDeque;

use super::vote::{PlateMatch, plate_match};
use crate::meta::BBox;

/// Recent plate places a track keeps for the continuity test.
const RECENT: usize = 16;
/// Two tracks continue each other only if their plates were seen within this many frames (a
/// track whose vehicle box was still detected counts as seen then: a settled plate is no
/// longer searched).
const CONTINUITY_FRAMES: u64 = 3;
/// ... and at most this many plate sizes (measured per axis in the plates' width and height)
/// from where the ended track's plate would be then, moving on as it did or stopped, plus
/// [`CONTINUITY_SLACK`] per frame between the two sightings.
const CONTINUITY_SIZES: f32 = 1.0;
const CONTINUITY_SLACK: f32 = 0.2;
/// Per frame between the sightings, when the ended track's motion is unknown (one read): a
/// plate passing at 10 fps moves about 1.5 of its sizes per frame.
const UNKNOWN_MOTION: f32 = 1.5;
/// ... and at most this factor apart in width.
const CONTINUITY_SCALE: f32 = 1.5;

/// Where and when a track's plate was read, and what.
#[derive(Debug, Clone)]
pub struct Place {
    pub frame: u64,
    pub bbox: BBox,
    pub text: String,
}

/// A plate's motion: pixels per frame, and whether it is known (two sightings on different
/// frames).
#[derive(Debug, Clone, Copy, Default)]
pub struct Motion {
    pub vx: f32,
    pub vy: f32,
    pub known: bool,
}

/// The first place of a track and its last [`RECENT`] ones, in frame order.
#[derive(Debug, Default)]
pub struct Places {
    first: Option<Place>,
    recent: VecDeque<Place>,
}

fn reads(p: &Place, text: &str) -> bool {
    plate_match(&p.text, text) != PlateMatch::Different
}

impl Places {
    pub fn note(&mut self, frame: u64, bbox: BBox, text: &str) {
        let place = Place {
            frame,
            bbox,
            text: text.to_string(),
        };
        if self.first.as_ref().is_none_or(|p| frame < p.frame) {
            self.first = Some(place.clone());
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        let at = self.recent.partition_point(|p| p.frame <= frame);
        self.recent.insert(at, place);
    }

    pub fn first_frame(&self) -> u64 {
        self.first.as_ref().map_or(0, |p| p.frame)
    }

    pub fn last_frame(&self) -> u64 {
        self.recent.back().map_or(0, |p| p.frame)
    }

    /// The place of the read closest in frames to `frame` among those that read `text` (up to
    /// OCR confusions, or near it): a car may show a second plate-like box.
    pub fn near(&self, frame: u64, text: &str) -> Option<&Place> {
        self.first
            .iter()
            .chain(self.recent.iter())
            .filter(|p| reads(p, text))
            .min_by_key(|p| p.frame.abs_diff(frame))
    }

    /// The last place where `text` was read (or the last place at all).
    pub fn last(&self, text: &str) -> Option<&Place> {
        self.recent
            .iter()
            .rev()
            .find(|p| reads(p, text))
            .or(self.recent.back())
    }

    /// How the plate read as `text` moved between its last two sightings on different frames.
    pub fn velocity(&self, text: &str) -> Motion {
        let mut it = self.recent.iter().rev().filter(|p| reads(p, text));
        let Some(b) = it.next() else {
            return Motion::default();
        };
        let Some(a) = it.find(|p| p.frame < b.frame) else {
            return Motion::default();
        };
        let dt = (b.frame - a.frame) as f32;
        let vx = (b.bbox.x + b.bbox.w / 2.0 - a.bbox.x - a.bbox.w / 2.0) / dt;
        let vy = (b.bbox.y + b.bbox.h / 2.0 - a.bbox.y - a.bbox.h / 2.0) / dt;
        if vx.is_finite() && vy.is_finite() {
            Motion {
                vx,
                vy,
                known: true,
            }
        } else {
            Motion::default()
        }
    }
}

/// Whether `place` (another track's sighting) continues a plate last read at `last`, moving
/// with `motion` and there until frame `since`: its distance in plate sizes from where the
/// plate would be, or `None` if too far in time, place or size.
pub fn continuity(last: &Place, motion: Motion, since: u64, place: &Place) -> Option<f32> {
    if place.frame.abs_diff(since) > CONTINUITY_FRAMES {
        return None;
    }
    let gap = place.frame.abs_diff(last.frame);
    let (a, b) = (&last.bbox, &place.bbox);
    let scale = a.w.max(b.w) / a.w.min(b.w).max(1e-3);
    // Where the plate would be at that frame, moving on as it did or stopped (a car that stood
    // while its settled plate was not searched).
    let dt = place.frame as f32 - last.frame as f32;
    let d = [0.0, dt]
        .iter()
        .map(|t| {
            let cx = a.x + a.w / 2.0 + motion.vx * t;
            let cy = a.y + a.h / 2.0 + motion.vy * t;
            // Per axis in plate widths and heights: a plate moving by its height vertically
            // has moved as much as one moving by its width sideways.
            let ex = (cx - b.x - b.w / 2.0) * 2.0 / (a.w + b.w);
            let ey = (cy - b.y - b.h / 2.0) * 2.0 / (a.h + b.h);
            (ex * ex + ey * ey).sqrt()
        })
        .fold(f32::INFINITY, f32::min);
    // Without a velocity (a track of one read) any plausible motion is allowed.
    let slack = if motion.known {
        CONTINUITY_SLACK
    } else {
        UNKNOWN_MOTION
    };
    let allowed = CONTINUITY_SIZES + slack * gap as f32;
    (scale <= CONTINUITY_SCALE && d <= allowed).then_some(d)
}
