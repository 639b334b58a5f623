// SPDX-License-Identifier: MIT OR Apache-2.0
//! ByteTrack association time per frame for 10, 100 and 500 objects, on one core.
//!
//!   cargo bench --bench tracker
//!
//! Scene: objects on a grid drifting through each other with pixel noise, 10% detector dropouts
//! and scores uniform in 0.3..0.95 (so both associations run). Goal: <= 0.5 ms at 100 objects.

use std::hint::black_box;
use std::time::{Duration, Instant};

use gstalpr::alprtrack::bytetrack::{ByteTracker, Detection};

/// SplitMix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn run(n: usize, frames: usize) -> (Duration, f64) {
    let side = (n as f32).sqrt().ceil() as usize;
    let mut rng = Rng(5);
    let mut tracker = ByteTracker::default();
    let mut dets = Vec::with_capacity(n);
    let mut total = Duration::ZERO;
    let mut reported = 0usize;
    for f in 0..frames {
        dets.clear();
        for k in 0..n {
            if rng.unit() < 0.1 {
                continue;
            }
            let (c, r) = ((k % side) as f32, (k / side) as f32);
            let vx = 0.5 - (k % 3) as f32 * 0.5;
            dets.push(Detection {
                x: c * 70.0 + vx * f as f32 + rng.unit() - 0.5,
                y: r * 110.0 + 0.3 * f as f32 + rng.unit() - 0.5,
                w: 50.0,
                h: 90.0,
                score: 0.3 + 0.65 * rng.unit(),
                class_id: 2,
                user: k as u32,
            });
        }
        let t0 = Instant::now();
        let out = black_box(tracker.update(black_box(&dets)));
        total += t0.elapsed();
        reported += out.tracks.len();
    }
    (total / frames as u32, reported as f64 / frames as f64)
}

fn main() {
    println!("ByteTrack update() per frame (one thread):");
    for n in [10, 100, 500] {
        let (t, tracked) = run(n, 500);
        println!(
            "  {n:>4} objects: {:>8.1} us/frame   ({tracked:.1} tracks reported per frame)",
            t.as_secs_f64() * 1e6
        );
    }
}
