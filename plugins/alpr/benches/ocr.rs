// SPDX-License-Identifier: MIT OR Apache-2.0
//! OCR time per plate at batch 1 and batch 8 (one inference thread), on a real plate crop.
//!
//!   cargo bench --bench ocr

use std::time::Instant;

use gstalpr::alprocr::engine::OcrEngine;
use gstalpr::alprocr::ocrmodel::{self, RgbView};

fn main() {
    let dirs = gstalpr::models::search_dirs();
    let find = |rel: &str| {
        dirs.iter()
            .map(|d| d.join(rel))
            .find(|p| p.is_file())
            .expect("models: set ALPR_MODELS_DIR")
    };
    let mut engine = OcrEngine::load(
        &find(gstalpr::models::OCR_MODEL),
        &find(gstalpr::models::OCR_CONFIG),
        1,
    )
    .expect("OCR model loads");
    // A synthetic plate-like crop: dark characters on a light background.
    let (w, h) = (160usize, 40usize);
    let mut rgb = vec![230u8; w * h * 3];
    for x in 0..w {
        for y in 8..32 {
            if (x / 6) % 3 == 0 {
                let i = (y * w + x) * 3;
                rgb[i..i + 3].copy_from_slice(&[20, 20, 20]);
            }
        }
    }
    let src = RgbView {
        data: &rgb,
        width: w,
        height: h,
        stride: w * 3,
    };
    println!("OCR ({}), one thread:", engine.path.display());
    for batch in [1usize, 8] {
        let fill = |engine: &mut OcrEngine| {
            engine.clear();
            for _ in 0..batch {
                engine
                    .push_with(|cfg, slot| {
                        ocrmodel::crop_to_input(
                            &src,
                            (0.0, 0.0, w as f32, h as f32),
                            0.0,
                            cfg,
                            slot,
                        )
                    })
                    .expect("crop");
            }
        };
        fill(&mut engine);
        for _ in 0..5 {
            engine.run().expect("warm-up");
        }
        let iters = 200 / batch;
        let t0 = Instant::now();
        for _ in 0..iters {
            fill(&mut engine);
            std::hint::black_box(engine.run().expect("OCR runs"));
        }
        let per_plate = t0.elapsed().as_secs_f64() * 1e3 / (iters * batch) as f64;
        println!("  batch {batch}: {per_plate:.2} ms per plate");
    }
}
