// SPDX-License-Identifier: MIT OR Apache-2.0
//! Idle frames: whether a frame may skip inference because nothing moved since the last frame
//! the detectors ran on, and nothing in view is still waiting to be read.
//!
//! The motion check compares a coarse grey thumbnail of the frame (cell means of a grid about
//! [`COLS`] cells wide, each mean taken over up to [`SAMPLES`] x [`SAMPLES`] pixels) with the
//! thumbnail of the last detected frame, not of the previous frame, so slow change adds up
//! until it counts. Averaging makes it robust to sensor noise (the noise of a mean of 64
//! pixels is an eighth of a pixel's); the median difference over all cells is taken off first,
//! so exposure changes and compression flicker that shift the whole picture do not count, and
//! on a camera noisier than the threshold allows for, the threshold rises with the measured
//! noise (up to 3x); a change of most of the picture (a pan, a zoom, a cut) always counts. A frame moved when at least [`MIN_CELLS`] cells differ by more than the threshold
//! (grey levels, 0..255): a lone cell is more often a flicker than a car.
//!
//! What keeps the detectors running on a still scene (the rules that never lose a plate):
//! - something in view is not read yet: a vehicle or a plate of the last detected frame that no
//!   box of alprocr's settled event covers (a stopped car is searched until alprocr has read it,
//!   or has given up on it: `settle-unread`);
//! - a recheck: the [`RECHECK`] frames after a frame that moved are detected too (at a scene cut
//!   the tracker may carry a read car's track over to the next car; alprocr needs those reads to
//!   notice);
//! - the heartbeat: at least one detected frame every `heartbeat` of stream time;
//! - no reference yet (first frame, after a flush or a new stream, or a new frame size).
//!
//! Skipped frames are marked `detected=false` like the frames `interval` leaves out, so
//! alprtrack carries the tracks over them.

use std::time::Duration;

use super::preprocess::{FrameView, Layout};
use crate::meta::{AlprFrame, BBox, Settled};

/// Thumbnail width in cells; rows follow the frame's aspect ratio.
pub const COLS: usize = 64;
/// Samples per cell and axis, at most.
pub const SAMPLES: usize = 8;
/// Cells that must change for a frame to count as moved.
pub const MIN_CELLS: usize = 2;
/// The threshold rises to this many standard deviations of the cells' noise (see
/// [`changed_cells`]).
const NOISE_SIGMAS: f32 = 5.0;
/// ... but not above this many times the configured threshold.
const MAX_RAISE: f32 = 3.0;
/// A detected object is covered by a settled box when their overlap (IoU) reaches this.
const COVER_IOU: f32 = 0.5;
/// Frames detected after a frame that moved, whatever alprocr's settled event says: at a scene
/// cut the tracker may carry a settled track over to a different car, and it takes three reads
/// (alprocr's default `settle-reads`) to unsettle or split it (as `settled.rs` does for the
/// plate search).
const RECHECK: u32 = 3;
/// Frame rate assumed for the heartbeat when neither timestamps nor caps give one.
const FALLBACK_FPS: f64 = 25.0;

/// The element's settings for idle frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleConfig {
    /// Grey levels a cell must change by; 0 turns the idle skip off.
    pub threshold: f32,
    /// A frame is detected at least this often (stream time).
    pub heartbeat: Duration,
}

/// Why a frame runs the detectors (for the debug log and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Off,
    NoReference,
    Moved {
        cells: usize,
    },
    /// One of the [`RECHECK`] frames after a move.
    Recheck,
    Unread,
    Heartbeat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Detect(Why),
    Skip,
}

/// A coarse grey thumbnail: cell means, row-major.
#[derive(Debug, Default, Clone)]
struct Thumb {
    cols: usize,
    rows: usize,
    cells: Vec<f32>,
}

impl Thumb {
    /// Fills `self` from `view` (luma of YUV frames, BT.601 weights of RGB ones).
    fn fill(&mut self, view: &FrameView) {
        let (w, h) = (view.width, view.height);
        self.cols = COLS.min(w.max(1));
        self.rows = ((h * self.cols).div_ceil(w.max(1))).clamp(1, h.max(1));
        self.cells.clear();
        self.cells.resize(self.cols * self.rows, 0.0);
        if w == 0 || h == 0 {
            return;
        }
        for r in 0..self.rows {
            let (y0, y1) = (
                r * h / self.rows,
                ((r + 1) * h / self.rows).max(r * h / self.rows + 1),
            );
            let sy = (y1 - y0).min(SAMPLES);
            for c in 0..self.cols {
                let (x0, x1) = (
                    c * w / self.cols,
                    ((c + 1) * w / self.cols).max(c * w / self.cols + 1),
                );
                let sx = (x1 - x0).min(SAMPLES);
                let mut sum = 0u32;
                for j in 0..sy {
                    let y = y0 + (2 * j + 1) * (y1 - y0) / (2 * sy);
                    for i in 0..sx {
                        let x = x0 + (2 * i + 1) * (x1 - x0) / (2 * sx);
                        sum += grey(view, x, y) as u32;
                    }
                }
                self.cells[r * self.cols + c] = sum as f32 / (sx * sy) as f32;
            }
        }
    }

    fn same_grid(&self, o: &Thumb) -> bool {
        self.cols == o.cols && self.rows == o.rows && self.cells.len() == o.cells.len()
    }
}

/// The grey level of pixel (`x`, `y`); 0 where the view is too short (never panics).
fn grey(view: &FrameView, x: usize, y: usize) -> u8 {
    match view.layout {
        Layout::Packed { r, g, b, bpp } => {
            let p = y * view.strides[0] + x * bpp as usize;
            let px = |o: u8| view.planes[0].get(p + o as usize).copied().unwrap_or(0) as u32;
            ((77 * px(r) + 150 * px(g) + 29 * px(b)) >> 8) as u8
        }
        Layout::Planar420 | Layout::SemiPlanar420 { .. } => view.planes[0]
            .get(y * view.strides[0] + x)
            .copied()
            .unwrap_or(0),
    }
}

/// How many cells of `cur` differ from `reference` by more than the threshold, once the median
/// difference (a change of the whole picture's brightness) is taken off. The threshold is
/// `threshold` or, on a noisier camera, [`NOISE_SIGMAS`] times the noise of the cell differences
/// (estimated from their median absolute deviation, which a few moving cells do not shift),
/// whichever is higher, but at most [`MAX_RAISE`] times `threshold`. When most cells changed
/// (a median absolute deviation above `threshold`: a pan, a zoom, a cut, a vehicle filling the
/// view), every cell counts as changed: that is no noise. `scratch` is reused.
fn changed_cells(cur: &Thumb, reference: &Thumb, threshold: f32, scratch: &mut Vec<f32>) -> usize {
    scratch.clear();
    scratch.extend(cur.cells.iter().zip(&reference.cells).map(|(a, b)| a - b));
    if scratch.is_empty() {
        return 0;
    }
    let mid = scratch.len() / 2;
    let median = *scratch.select_nth_unstable_by(mid, f32::total_cmp).1;
    scratch.iter_mut().for_each(|d| *d = (*d - median).abs());
    let mad = *scratch.select_nth_unstable_by(mid, f32::total_cmp).1;
    if mad > threshold {
        return scratch.len();
    }
    let threshold = (NOISE_SIGMAS * 1.4826 * mad).clamp(threshold, MAX_RAISE * threshold);
    scratch.iter().filter(|d| **d > threshold).count()
}

/// Whether everything a detected frame found is read already, given alprocr's settled vehicles
/// and settled plates (tracked without a vehicle): a vehicle overlapping a settled vehicle, or
/// holding a settled plate; a plate lying in a settled vehicle or on a settled plate.
pub fn all_read(
    vehicles: &[BBox],
    plates: &[BBox],
    settled_vehicles: &[BBox],
    settled_plates: &[BBox],
) -> bool {
    let centre = |b: &BBox| (b.x + b.w / 2.0, b.y + b.h / 2.0);
    let inside = |(x, y): (f32, f32), b: &BBox| x >= b.x && x <= b.x2() && y >= b.y && y <= b.y2();
    vehicles.iter().all(|v| {
        settled_vehicles.iter().any(|s| s.iou(v) >= COVER_IOU)
            || settled_plates.iter().any(|p| inside(centre(p), v))
    }) && plates.iter().all(|p| {
        settled_vehicles.iter().any(|s| inside(centre(p), s))
            || settled_plates
                .iter()
                .any(|s| inside(centre(p), s) || inside(centre(s), p))
    })
}

/// Decides per frame whether the detectors run (see the module docs). Reuses its buffers.
#[derive(Debug, Default)]
pub struct IdleGate {
    reference: Thumb,
    has_reference: bool,
    cur: Thumb,
    scratch: Vec<f32>,
    /// The last detected frame left something unread.
    unread: bool,
    /// Frames still to detect after the last move.
    recheck: u32,
    /// Stream time of the last detected frame, or frames counted since it (no timestamps).
    last_pts: Option<Duration>,
    frames_since: u64,
    /// Frames skipped since the start.
    pub skipped: u64,
    /// Boxes of alprocr's settled vehicles and plates for the frame being detected, and the
    /// frame's own vehicles and plates (buffers reused from frame to frame).
    settled_vehicles: Vec<BBox>,
    settled_plates: Vec<BBox>,
    vehicles: Vec<BBox>,
    plates: Vec<BBox>,
}

impl IdleGate {
    /// Forgets the reference (flush, new stream, new caps).
    pub fn reset(&mut self) {
        self.has_reference = false;
        self.recheck = 0;
        self.last_pts = None;
        self.frames_since = 0;
    }

    /// Whether the frame `view` at stream time `pts` runs the detectors. `fps` (from the caps,
    /// 0 when unknown) paces the heartbeat when frames carry no timestamps. Call
    /// [`IdleGate::detected`] after a frame that ran.
    pub fn decide(
        &mut self,
        cfg: &IdleConfig,
        view: &FrameView,
        pts: Option<Duration>,
        fps: f64,
    ) -> Decision {
        if cfg.threshold <= 0.0 {
            return Decision::Detect(Why::Off);
        }
        self.frames_since += 1;
        self.cur.fill(view);
        if !self.has_reference || !self.cur.same_grid(&self.reference) {
            return Decision::Detect(Why::NoReference);
        }
        let cells = changed_cells(&self.cur, &self.reference, cfg.threshold, &mut self.scratch);
        if cells >= MIN_CELLS {
            self.recheck = RECHECK;
            return Decision::Detect(Why::Moved { cells });
        }
        if self.recheck > 0 {
            self.recheck -= 1;
            return Decision::Detect(Why::Recheck);
        }
        if self.unread {
            return Decision::Detect(Why::Unread);
        }
        let since = match (pts, self.last_pts) {
            (Some(now), Some(last)) if now >= last => now - last,
            _ => {
                let fps = if fps > 0.0 { fps } else { FALLBACK_FPS };
                Duration::from_secs_f64(self.frames_since as f64 / fps)
            }
        };
        if since >= cfg.heartbeat {
            return Decision::Detect(Why::Heartbeat);
        }
        self.skipped += 1;
        Decision::Skip
    }

    /// Takes the boxes of alprocr's settled event usable for the frame about to be detected
    /// (nothing to do while the idle skip is off).
    pub fn note_settled(&mut self, cfg: &IdleConfig, settled: Option<&Settled>) {
        self.settled_vehicles.clear();
        self.settled_plates.clear();
        if cfg.threshold <= 0.0 {
            return;
        }
        if let Some(s) = settled {
            self.settled_vehicles.extend(s.vehicles.iter().map(|v| v.1));
            self.settled_plates.extend(s.plates.iter().map(|p| p.1));
        }
    }

    /// The frame last passed to [`IdleGate::decide`] ran the detectors and found `frame`'s
    /// objects: [`IdleGate::detected`] with whether they are all read (by the boxes given to
    /// [`IdleGate::note_settled`]). Nothing to do while the idle skip is off.
    pub fn detected_objects(&mut self, cfg: &IdleConfig, pts: Option<Duration>, frame: &AlprFrame) {
        if cfg.threshold <= 0.0 {
            return;
        }
        self.vehicles.clear();
        self.vehicles.extend(frame.vehicles().map(|o| o.bbox));
        self.plates.clear();
        self.plates.extend(frame.plates().map(|o| o.bbox));
        let read = all_read(
            &self.vehicles,
            &self.plates,
            &self.settled_vehicles,
            &self.settled_plates,
        );
        self.detected(pts, !read);
    }

    /// The frame last passed to [`IdleGate::decide`] ran the detectors: it becomes the
    /// reference; `unread` says whether it left something to read.
    pub fn detected(&mut self, pts: Option<Duration>, unread: bool) {
        std::mem::swap(&mut self.reference, &mut self.cur);
        self.has_reference = !self.reference.cells.is_empty();
        self.unread = unread;
        self.last_pts = pts;
        self.frames_since = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alprdetect::preprocess::YuvMatrix;

    const W: usize = 640;
    const H: usize = 360;

    /// A textured grey frame with a bright square at `(sq_x, 60)` and noise of +-`noise`.
    fn frame(sq_x: Option<usize>, noise: u8, seed: u64, offset: i16) -> Vec<u8> {
        shaded(sq_x, 240, noise, seed, offset)
    }

    /// [`frame`] with the square at grey level `sq_v`.
    fn shaded(sq_x: Option<usize>, sq_v: i16, noise: u8, seed: u64, offset: i16) -> Vec<u8> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut out = vec![0u8; W * H];
        for y in 0..H {
            for x in 0..W {
                let mut v = 60 + ((x / 7 + y / 5) % 9) as i16 * 10 + offset;
                if let Some(sx) = sq_x
                    && (sx..sx + 24).contains(&x)
                    && (60..84).contains(&y)
                {
                    v = sq_v;
                }
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if noise > 0 {
                    let n = ((s >> 33) % (2 * noise as u64 + 1)) as i16 - noise as i16;
                    v += n;
                }
                out[y * W + x] = v.clamp(0, 255) as u8;
            }
        }
        out
    }

    fn view(y: &[u8]) -> FrameView<'_> {
        FrameView {
            layout: Layout::Planar420,
            width: W,
            height: H,
            planes: [y, &[], &[]],
            strides: [W, W / 2, W / 2],
            matrix: YuvMatrix::new(0.299, 0.114, false),
        }
    }

    fn cfg() -> IdleConfig {
        IdleConfig {
            threshold: 8.0,
            heartbeat: Duration::from_secs(2),
        }
    }

    fn at(frame: u64) -> Option<Duration> {
        Some(Duration::from_millis(100 * frame))
    }

    #[test]
    fn still_noisy_scene_is_skipped_until_the_heartbeat() {
        let mut g = IdleGate::default();
        let f0 = frame(None, 0, 0, 0);
        assert_eq!(
            g.decide(&cfg(), &view(&f0), at(0), 10.0),
            Decision::Detect(Why::NoReference)
        );
        g.detected(at(0), false);
        let mut detected = vec![];
        for i in 1..=45u64 {
            // Sensor noise of +-20 grey levels and a global exposure drift.
            let f = frame(None, 20, i, (i % 5) as i16 * 3);
            if let Decision::Detect(why) = g.decide(&cfg(), &view(&f), at(i), 10.0) {
                assert_eq!(why, Why::Heartbeat, "frame {i}");
                g.detected(at(i), false);
                detected.push(i);
            }
        }
        assert_eq!(detected, [20, 40]);
        assert_eq!(g.skipped, 43);
    }

    #[test]
    fn a_small_moving_object_is_detected_on_its_first_frame() {
        let mut g = IdleGate::default();
        let f = frame(None, 10, 1, 0);
        g.decide(&cfg(), &view(&f), at(0), 10.0);
        g.detected(at(0), false);
        let f = frame(None, 10, 2, 0);
        assert_eq!(g.decide(&cfg(), &view(&f), at(1), 10.0), Decision::Skip);
        // A 24 px square (a far plate) appears, then moves by a few pixels each frame.
        let f = frame(Some(100), 10, 3, 0);
        assert!(matches!(
            g.decide(&cfg(), &view(&f), at(2), 10.0),
            Decision::Detect(Why::Moved { .. })
        ));
        g.detected(at(2), false);
        let f = frame(Some(108), 10, 4, 0);
        assert!(matches!(
            g.decide(&cfg(), &view(&f), at(3), 10.0),
            Decision::Detect(Why::Moved { .. })
        ));
    }

    #[test]
    fn slow_change_adds_up_against_the_last_detected_frame() {
        let mut g = IdleGate::default();
        let f = shaded(Some(100), 100, 0, 0, 0);
        g.decide(&cfg(), &view(&f), at(0), 10.0);
        g.detected(at(0), false);
        // A patch brightens by 2 grey levels a frame: no frame differs from the one before by
        // the threshold, but the change since the last detected frame grows past it.
        let mut first = None;
        for i in 1..=15 {
            let f = shaded(Some(100), 100 + 2 * i, 0, 0, 0);
            if g.decide(&cfg(), &view(&f), at(i as u64), 10.0) != Decision::Skip {
                first = Some(i);
                break;
            }
        }
        assert_eq!(first, Some(5));
    }

    #[test]
    fn pans_zooms_and_cuts_count_as_moved() {
        let mut g = IdleGate::default();
        let f = frame(Some(100), 6, 0, 0);
        g.decide(&cfg(), &view(&f), at(0), 10.0);
        g.detected(at(0), false);
        // The whole textured scene slides by 3 pixels (a pan, a passing lorry filling the view).
        let mut panned = frame(Some(100), 6, 1, 0);
        panned.rotate_right(3);
        assert!(matches!(
            g.decide(&cfg(), &view(&panned), at(1), 10.0),
            Decision::Detect(Why::Moved { .. })
        ));
        // A cut from black to the scene.
        let black = vec![0u8; W * H];
        g.decide(&cfg(), &view(&black), at(2), 10.0);
        g.detected(at(2), false);
        let f = frame(None, 6, 2, 0);
        assert!(matches!(
            g.decide(&cfg(), &view(&f), at(3), 10.0),
            Decision::Detect(Why::Moved { .. })
        ));
    }

    #[test]
    fn frames_after_a_move_are_rechecked() {
        let mut g = IdleGate::default();
        let f = frame(None, 4, 0, 0);
        g.decide(&cfg(), &view(&f), at(0), 10.0);
        g.detected(at(0), false);
        // A cut to another scene: moved, then three frames rechecked whatever is settled.
        let cut = frame(Some(300), 4, 1, 40);
        let mut why = vec![];
        for i in 1..=6 {
            let f = frame(Some(300), 4, i, 40);
            let view_frame = if i == 1 { &cut } else { &f };
            match g.decide(&cfg(), &view(view_frame), at(i), 10.0) {
                Decision::Detect(w) => {
                    g.detected(at(i), false);
                    why.push(Some(w));
                }
                Decision::Skip => why.push(None),
            }
        }
        assert!(matches!(why[0], Some(Why::Moved { .. })), "{why:?}");
        assert_eq!(
            why[1..],
            [
                Some(Why::Recheck),
                Some(Why::Recheck),
                Some(Why::Recheck),
                None,
                None
            ]
        );
    }

    #[test]
    fn unread_objects_keep_the_detectors_running() {
        let mut g = IdleGate::default();
        let f = frame(Some(100), 5, 0, 0);
        g.decide(&cfg(), &view(&f), at(0), 10.0);
        g.detected(at(0), true);
        let f = frame(Some(100), 5, 1, 0);
        assert_eq!(
            g.decide(&cfg(), &view(&f), at(1), 10.0),
            Decision::Detect(Why::Unread)
        );
        g.detected(at(1), false);
        let f = frame(Some(100), 5, 2, 0);
        assert_eq!(g.decide(&cfg(), &view(&f), at(2), 10.0), Decision::Skip);
    }

    #[test]
    fn off_new_sizes_and_missing_timestamps() {
        let mut g = IdleGate::default();
        let f = frame(None, 0, 0, 0);
        let off = IdleConfig {
            threshold: 0.0,
            ..cfg()
        };
        assert_eq!(
            g.decide(&off, &view(&f), None, 0.0),
            Decision::Detect(Why::Off)
        );
        g.decide(&cfg(), &view(&f), None, 0.0);
        g.detected(None, false);
        // Without timestamps the heartbeat counts frames at the caps' rate.
        let mut n = 0;
        while g.decide(&cfg(), &view(&f), None, 5.0) == Decision::Skip {
            n += 1;
        }
        assert_eq!(n, 9);
        g.reset();
        assert_eq!(
            g.decide(&cfg(), &view(&f), None, 5.0),
            Decision::Detect(Why::NoReference)
        );
        // A short or empty plane never panics.
        let short = [0u8; 10];
        let _ = g.decide(&cfg(), &view(&short), None, 5.0);
    }

    #[test]
    fn objects_are_read_when_settled_boxes_cover_them() {
        let car = BBox::new(100.0, 100.0, 200.0, 120.0);
        let moved = BBox::new(110.0, 104.0, 200.0, 120.0);
        let plate = BBox::new(180.0, 190.0, 40.0, 12.0);
        let far_plate = BBox::new(500.0, 100.0, 40.0, 12.0);
        let far_car = BBox::new(500.0, 100.0, 200.0, 120.0);
        assert!(all_read(&[], &[], &[], &[]));
        assert!(!all_read(&[car], &[], &[], &[]));
        assert!(!all_read(&[], &[plate], &[], &[]));
        assert!(all_read(&[car], &[plate], &[moved], &[]));
        assert!(!all_read(&[car], &[plate, far_plate], &[moved], &[]));
        assert!(!all_read(&[car, far_car], &[], &[moved], &[]));
        // A plate read on its own track (its car not tracked) covers itself and its car.
        let jittered = BBox::new(183.0, 191.0, 40.0, 12.0);
        assert!(all_read(&[car], &[plate], &[], &[jittered]));
        assert!(!all_read(&[car, far_car], &[plate], &[], &[jittered]));
    }
}
