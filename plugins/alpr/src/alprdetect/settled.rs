// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which detected vehicles need no plate search: alprocr has read their track's plate (its
//! upstream settled event names the tracks and their boxes) and the vehicle still looks the
//! same as when detection first skipped it.
//!
//! The look check matters because a tracker can carry a track over to a different car: a scene
//! cut, a car pulling into the spot another just left, two cars crossing. Each vehicle gets a
//! coarse grey-level signature (8 x 8 cell means of its box in the vehicle model's input,
//! normalised), compared by correlation. A track's reference signature is taken the first time
//! it is skipped, and only if the vehicle also looked the same in the previous detected frame.
//! When the vehicle no longer matches its reference it is searched in that frame and the next
//! two, then skipped again (with a new reference) once it looks steady from one frame to the
//! next. A car that turns or comes closer is so searched again now and then, from new
//! viewpoints; a car the track jumped to gets three reads, enough for alprocr to stop naming the
//! track as settled when they disagree with its decision (or to split the track, `tracks.rs`).

use super::decode::RawDet;
use super::preprocess::Letterbox;
use crate::meta::BBox;

const CELLS: usize = 8;
/// At most this many samples per cell and axis: a signature costs at most 1024 reads per box.
const SAMPLES: usize = 4;
/// A detected vehicle is a settled track's when their boxes overlap at least this much (IoU):
/// settled boxes are one frame old in a plain chain, a few frames behind a queue.
const MATCH_IOU: f32 = 0.5;
/// Correlation above which two signatures show the same vehicle. Consecutive frames of one car
/// score above 0.95; different cars in the same place mostly below 0.8, but not always: at a
/// hard cut right after a car was read (driveby-us-cut, an approaching car settled on its last
/// frame) the next car scored above 0.9 and was skipped for a second. A car wrongly taken for
/// a new one costs three plate searches; a new car taken for the read one loses its plate.
const SAME_LOOK: f32 = 0.95;
/// Frames a settled vehicle is searched after its look changed: as many as alprocr's default
/// `settle-reads`, so that a car the track jumped to gets enough reads to unsettle the track
/// (or to settle its own plate).
const RECHECK: u32 = 3;
/// Boxes smaller than this in the model input (pixels, either side) give no signature.
const MIN_SIDE: f32 = 8.0;

pub type Signature = [f32; CELLS * CELLS];

/// The grey-level signature of `b` (frame pixels) in a planar `[3, height, width]` model input
/// letterboxed by `lb`: cell means with zero mean and unit norm. `None` for a box too small or
/// without contrast.
pub fn signature(
    tensor: &[f32],
    width: usize,
    height: usize,
    lb: &Letterbox,
    b: BBox,
) -> Option<Signature> {
    let plane = width * height;
    if tensor.len() < 3 * plane {
        return None;
    }
    let x0 = (b.x - lb.origin_x) * lb.ratio + lb.offset_x;
    let y0 = (b.y - lb.origin_y) * lb.ratio + lb.offset_y;
    let (bw, bh) = (b.w * lb.ratio, b.h * lb.ratio);
    if !(bw >= MIN_SIDE && bh >= MIN_SIDE && x0.is_finite() && y0.is_finite()) {
        return None;
    }
    let n = CELLS * SAMPLES;
    let (sx, sy) = (bw / n as f32, bh / n as f32);
    let mut sig = [0.0f32; CELLS * CELLS];
    for j in 0..n {
        let y = (y0 + (j as f32 + 0.5) * sy).clamp(0.0, (height - 1) as f32) as usize;
        for i in 0..n {
            let x = (x0 + (i as f32 + 0.5) * sx).clamp(0.0, (width - 1) as f32) as usize;
            let p = y * width + x;
            sig[(j / SAMPLES) * CELLS + i / SAMPLES] +=
                tensor[p] + tensor[plane + p] + tensor[2 * plane + p];
        }
    }
    let mean = sig.iter().sum::<f32>() / sig.len() as f32;
    sig.iter_mut().for_each(|v| *v -= mean);
    let norm = sig.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm.is_nan() || norm <= 1e-3 * (mean.abs() + 1.0) {
        return None;
    }
    sig.iter_mut().for_each(|v| *v /= norm);
    Some(sig)
}

/// Correlation of two signatures, -1..=1.
pub fn similarity(a: &Signature, b: &Signature) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[derive(Debug, Clone)]
enum Held {
    /// Skipped; the vehicle's look when it was first skipped.
    Same(Box<Signature>),
    /// Its look changed: searched in this many more frames before it may be skipped again.
    Recheck(u32),
}

/// Decides per frame which vehicles are settled (see the module docs). Reuses its buffers.
#[derive(Debug, Default)]
pub struct SettledFilter {
    /// Per settled track: its state since detection first matched it.
    held: Vec<(u64, Held)>,
    next: Vec<(u64, Held)>,
    /// The vehicles of the previous detected frame and their signatures.
    prev: Vec<(BBox, Option<Signature>)>,
    cur: Vec<Option<Signature>>,
    taken: Vec<bool>,
}

impl SettledFilter {
    /// Forgets everything (flush, new stream).
    pub fn clear(&mut self) {
        self.held.clear();
        self.prev.clear();
    }

    /// Sets `out[i]` for each of `vehicles` that is a settled track's vehicle and still looks
    /// like it. `settled` lists the settled tracks and their boxes; `look(b)` is the signature
    /// of box `b` in the current frame.
    pub fn apply(
        &mut self,
        settled: &[(u64, BBox)],
        vehicles: &[RawDet],
        mut look: impl FnMut(BBox) -> Option<Signature>,
        out: &mut Vec<bool>,
    ) {
        out.clear();
        out.resize(vehicles.len(), false);
        self.cur.clear();
        self.cur.extend(vehicles.iter().map(|v| look(v.bbox)));
        self.taken.clear();
        self.taken.resize(vehicles.len(), false);
        self.next.clear();
        for &(track, sbox) in settled {
            let held = self
                .held
                .iter()
                .position(|(t, _)| *t == track)
                .map(|i| self.held.swap_remove(i).1);
            let Some(vi) = best_match(&sbox, vehicles.iter().map(|v| &v.bbox), &self.taken) else {
                // Not in view this frame (occluded, missed): keep what is known about it.
                if let Some(h) = held {
                    self.next.push((track, h));
                }
                continue;
            };
            self.taken[vi] = true;
            let cur = self.cur[vi];
            // `state`: what to keep about the track; `skip`: leave the vehicle alone.
            let (state, skip) = match (held, cur) {
                // No look this frame (too small, no contrast): searched, nothing learnt.
                (held, None) => (held, false),
                (Some(Held::Same(reference)), Some(c))
                    if similarity(&c, &reference) >= SAME_LOOK =>
                {
                    (Some(Held::Same(reference)), true)
                }
                // It changed since it was first skipped: searched in this and the next frames.
                (Some(Held::Same(_)), Some(_)) => (Some(Held::Recheck(RECHECK - 1)), false),
                (Some(Held::Recheck(n)), Some(_)) if n > 0 => (Some(Held::Recheck(n - 1)), false),
                // First skip (or after the re-check): the vehicle must also have looked the same
                // a frame ago, else the track may have jumped to this car just now. Without a
                // previous look, wait.
                (Some(Held::Recheck(_)) | None, Some(c)) => {
                    let steady =
                        best_match(&vehicles[vi].bbox, self.prev.iter().map(|p| &p.0), &[])
                            .and_then(|pi| self.prev[pi].1)
                            .is_some_and(|p| similarity(&c, &p) >= SAME_LOOK);
                    (steady.then_some(Held::Same(Box::new(c))), steady)
                }
            };
            out[vi] = skip;
            if let Some(h) = state {
                self.next.push((track, h));
            }
        }
        std::mem::swap(&mut self.held, &mut self.next);
        self.prev.clear();
        self.prev
            .extend(vehicles.iter().zip(&self.cur).map(|(v, s)| (v.bbox, *s)));
    }
}

/// The box among `boxes` (not yet `taken`) overlapping `b` most, at least [`MATCH_IOU`].
fn best_match<'a>(
    b: &BBox,
    boxes: impl Iterator<Item = &'a BBox>,
    taken: &[bool],
) -> Option<usize> {
    boxes
        .enumerate()
        .filter(|(i, _)| !taken.get(*i).copied().unwrap_or(false))
        .map(|(i, v)| (i, v.iou(b)))
        .filter(|&(_, iou)| iou >= MATCH_IOU)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 64;
    const H: usize = 48;

    /// A planar 3 x H x W input with a bright rectangle (a "car" with a pattern) at `(x, y)`.
    fn scene(cars: &[(usize, usize, usize)]) -> Vec<f32> {
        let mut t = vec![100.0; 3 * W * H];
        for &(x0, y0, pattern) in cars {
            for y in y0..y0 + 16 {
                for x in x0..x0 + 16 {
                    let stripe = ((x - x0) / 4 + (y - y0) / 4 * pattern) % 3;
                    for c in 0..3 {
                        t[c * W * H + y * W + x] = 40.0 + 80.0 * stripe as f32;
                    }
                }
            }
        }
        t
    }

    fn identity() -> Letterbox {
        Letterbox {
            ratio: 1.0,
            offset_x: 0.0,
            offset_y: 0.0,
            origin_x: 0.0,
            origin_y: 0.0,
            content_w: W,
            content_h: H,
        }
    }

    fn det(x: f32, y: f32) -> RawDet {
        RawDet {
            bbox: BBox::new(x, y, 16.0, 16.0),
            score: 0.9,
            class_id: 2,
        }
    }

    #[test]
    fn signatures_tell_cars_apart_and_ignore_brightness() {
        let lb = identity();
        let a = scene(&[(10, 10, 1)]);
        let b = scene(&[(10, 10, 2)]);
        let bright: Vec<f32> = a.iter().map(|v| v * 1.5 + 10.0).collect();
        let sig = |t: &[f32]| signature(t, W, H, &lb, BBox::new(10.0, 10.0, 16.0, 16.0)).unwrap();
        assert!(similarity(&sig(&a), &sig(&bright)) > 0.99);
        assert!(similarity(&sig(&a), &sig(&b)) < SAME_LOOK);
        let flat = vec![100.0; 3 * W * H];
        assert!(signature(&flat, W, H, &lb, BBox::new(10.0, 10.0, 16.0, 16.0)).is_none());
        assert!(signature(&a, W, H, &lb, BBox::new(10.0, 10.0, 4.0, 4.0)).is_none());
    }

    #[test]
    fn a_settled_vehicle_is_skipped_until_it_looks_different() {
        let lb = identity();
        let mut f = SettledFilter::default();
        let mut out = Vec::new();
        let car = [det(10.0, 10.0)];
        let box_of = |t: &[f32], b: BBox| signature(t, W, H, &lb, b);
        let a = scene(&[(10, 10, 1)]);
        let b = scene(&[(10, 10, 2)]);
        // Frame 1: nothing settled yet; the filter learns the look.
        f.apply(&[], &car, |bb| box_of(&a, bb), &mut out);
        assert_eq!(out, [false]);
        // Frame 2: track 7 settled and the car looks as it did: skipped.
        let settled = [(7, BBox::new(11.0, 10.0, 16.0, 16.0))];
        f.apply(&settled, &car, |bb| box_of(&a, bb), &mut out);
        assert_eq!(out, [true]);
        f.apply(&settled, &car, |bb| box_of(&a, bb), &mut out);
        assert_eq!(out, [true]);
        // A different car under the same track (a cut): searched at the change and in the next
        // RECHECK - 1 frames, then skipped again while it looks steady, unless alprocr stops
        // naming the track (it does when those reads disagree with its decision).
        for _ in 0..RECHECK {
            f.apply(&settled, &car, |bb| box_of(&b, bb), &mut out);
            assert_eq!(out, [false]);
        }
        f.apply(&settled, &car, |bb| box_of(&b, bb), &mut out);
        assert_eq!(out, [true]);
        f.apply(&[], &car, |bb| box_of(&a, bb), &mut out);
        let settled = [(8, BBox::new(10.0, 10.0, 16.0, 16.0))];
        f.apply(&settled, &car, |bb| box_of(&b, bb), &mut out);
        assert_eq!(out, [false], "no steady look yet");
        f.apply(&settled, &car, |bb| box_of(&b, bb), &mut out);
        assert_eq!(out, [true]);
        // A settled box far from every vehicle matches none.
        let far = [(8, BBox::new(40.0, 30.0, 16.0, 16.0))];
        f.apply(&far, &car, |bb| box_of(&b, bb), &mut out);
        assert_eq!(out, [false]);
    }

    #[test]
    fn a_track_that_jumped_to_another_car_is_searched_at_the_jump() {
        let lb = identity();
        let mut f = SettledFilter::default();
        let mut out = Vec::new();
        let car = [det(10.0, 10.0)];
        let a = scene(&[(10, 10, 1)]);
        let b = scene(&[(10, 10, 2)]);
        f.apply(&[], &car, |bb| signature(&a, W, H, &lb, bb), &mut out);
        // Settled arrives with the frame where the car changed: searched there.
        let settled = [(3, BBox::new(10.0, 10.0, 16.0, 16.0))];
        f.apply(&settled, &car, |bb| signature(&b, W, H, &lb, bb), &mut out);
        assert_eq!(out, [false]);
        // A box without a look (flat) is searched and teaches nothing.
        let flat = vec![100.0; 3 * W * H];
        f.apply(
            &settled,
            &car,
            |bb| signature(&flat, W, H, &lb, bb),
            &mut out,
        );
        assert_eq!(out, [false]);
    }
}
