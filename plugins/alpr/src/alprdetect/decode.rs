// SPDX-License-Identifier: MIT OR Apache-2.0
//! Output decoders for the detector families we ship, picked from the model's output shape.

use crate::meta::BBox;

/// A detection in model-input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDet {
    pub bbox: BBox,
    pub score: f32,
    pub class_id: usize,
}

/// How to turn the model output into boxes.
#[derive(Debug, Clone, PartialEq)]
pub enum Family {
    /// YOLOX raw head `[1, anchors, 5 + classes]`: grid decode, then NMS outside the model.
    YoloxRaw {
        num_classes: usize,
        strides: Vec<usize>,
    },
    /// YOLOv9 end2end (NMS inside): `[N, 7]` rows of `batch, x1, y1, x2, y2, class, score`.
    End2End,
}

impl Family {
    pub fn name(&self) -> &'static str {
        match self {
            Family::YoloxRaw { .. } => "YOLOX raw head",
            Family::End2End => "YOLO end2end (NMS inside)",
        }
    }

    /// Identifies the family from the (single) output shape and the input size.
    /// Dynamic dimensions are given as -1.
    pub fn from_shapes(output: &[i64], in_w: usize, in_h: usize) -> Result<Family, String> {
        const STRIDES: [usize; 3] = [8, 16, 32];
        match output {
            [b, n, c] if (*b == 1 || *b == -1) && *c > 5 => {
                let expected: usize = STRIDES.iter().map(|s| (in_w / s) * (in_h / s)).sum();
                if *n == -1 || *n as usize == expected {
                    Ok(Family::YoloxRaw {
                        num_classes: (*c - 5) as usize,
                        strides: STRIDES.to_vec(),
                    })
                } else {
                    Err(format!(
                        "output has {n} anchor rows but a YOLOX head on a {in_w}x{in_h} input has \
                         {expected} (strides 8/16/32)"
                    ))
                }
            }
            [_, 7] => Ok(Family::End2End),
            _ => Err(format!(
                "unsupported output shape {output:?}: expected a YOLOX raw head [1, anchors, \
                 5 + classes] or a YOLO end2end output [N, 7] (batch, x1, y1, x2, y2, class, score)"
            )),
        }
    }
}

/// Geometry of a YOLOX raw head.
#[derive(Debug, Clone, Copy)]
pub struct YoloxGrid<'a> {
    pub num_classes: usize,
    pub strides: &'a [usize],
    pub in_w: usize,
    pub in_h: usize,
}

/// Decodes a YOLOX raw head. `wanted` lists the classes to keep; for each anchor the best wanted
/// class is taken, scored `objectness * class probability`. NaN scores never pass.
pub fn decode_yolox(
    out: &[f32],
    grid: YoloxGrid<'_>,
    threshold: f32,
    wanted: &[usize],
    dets: &mut Vec<RawDet>,
) {
    let YoloxGrid {
        num_classes,
        strides,
        in_w,
        in_h,
    } = grid;
    let row = 5 + num_classes;
    let mut idx = 0usize;
    for &s in strides {
        let (gw, gh) = (in_w / s, in_h / s);
        for gy in 0..gh {
            for gx in 0..gw {
                let Some(r) = out.get(idx * row..(idx + 1) * row) else {
                    return;
                };
                idx += 1;
                let obj = r[4];
                if obj.is_nan() || obj < threshold {
                    continue;
                }
                let mut best = (0.0f32, usize::MAX);
                for &c in wanted {
                    if let Some(&p) = r.get(5 + c)
                        && p > best.0
                    {
                        best = (p, c);
                    }
                }
                let score = obj * best.0;
                if best.1 == usize::MAX || score.is_nan() || score < threshold {
                    continue;
                }
                let s = s as f32;
                let cx = (r[0] + gx as f32) * s;
                let cy = (r[1] + gy as f32) * s;
                let w = r[2].exp() * s;
                let h = r[3].exp() * s;
                let bbox = BBox::new(cx - w / 2.0, cy - h / 2.0, w, h);
                if bbox.is_finite() && w > 0.0 && h > 0.0 {
                    dets.push(RawDet {
                        bbox,
                        score,
                        class_id: best.1,
                    });
                }
            }
        }
    }
}

/// Decodes an end2end output (NMS already applied by the model).
pub fn decode_end2end(out: &[f32], threshold: f32, dets: &mut Vec<RawDet>) {
    for r in out.chunks_exact(7) {
        let score = r[6];
        if score.is_nan() || score < threshold {
            continue;
        }
        let bbox = BBox::from_corners(r[1], r[2], r[3], r[4]);
        if bbox.is_finite() && bbox.w > 0.0 && bbox.h > 0.0 {
            dets.push(RawDet {
                bbox,
                score,
                class_id: r[5].max(0.0) as usize,
            });
        }
    }
}

/// Greedy non-maximum suppression, class-agnostic, in place; keeps the highest scores.
pub fn nms(dets: &mut Vec<RawDet>, iou: f32) {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep = 0;
    for i in 0..dets.len() {
        let cand = dets[i];
        if dets[..keep].iter().all(|k| k.bbox.iou(&cand.bbox) <= iou) {
            dets[keep] = cand;
            keep += 1;
        }
    }
    dets.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_from_shapes() {
        assert_eq!(
            Family::from_shapes(&[1, 3549, 85], 416, 416).unwrap(),
            Family::YoloxRaw {
                num_classes: 80,
                strides: vec![8, 16, 32]
            }
        );
        assert_eq!(
            Family::from_shapes(&[-1, 7], 416, 416).unwrap(),
            Family::End2End
        );
        let e = Family::from_shapes(&[1, 100, 85], 416, 416).unwrap_err();
        assert!(e.contains("3549"), "{e}");
        let e = Family::from_shapes(&[1, 4385, 14, 2], 320, 240).unwrap_err();
        assert!(e.contains("unsupported output shape"), "{e}");
    }

    const GRID: YoloxGrid<'static> = YoloxGrid {
        num_classes: 2,
        strides: &[8, 16, 32],
        in_w: 16,
        in_h: 16,
    };

    #[test]
    fn yolox_grid_decode() {
        // A 16x16 input has grids 2x2 (s8), 1x1 (s16), 0 (s32): 5 anchors, 2 classes.
        let mut out = vec![0.0f32; 5 * 7];
        // Anchor 3 is stride 8, gx=1, gy=1: centre (0.5+1)*8 = 12, size exp(0)*8 = 8.
        let r = &mut out[3 * 7..4 * 7];
        r.copy_from_slice(&[0.5, 0.5, 0.0, 1.0f32.ln(), 0.9, 0.1, 0.8]);
        let mut dets = Vec::new();
        decode_yolox(&out, GRID, 0.3, &[1], &mut dets);
        assert_eq!(dets.len(), 1);
        let d = dets[0];
        assert_eq!(d.class_id, 1);
        assert!((d.score - 0.72).abs() < 1e-6);
        assert!((d.bbox.x - 8.0).abs() < 1e-5 && (d.bbox.w - 8.0).abs() < 1e-5);
        // Class 0 alone is below threshold.
        dets.clear();
        decode_yolox(&out, GRID, 0.3, &[0], &mut dets);
        assert!(dets.is_empty());
        // NaN never produces a box.
        out[3 * 7 + 4] = f32::NAN;
        decode_yolox(&out, GRID, 0.3, &[1], &mut dets);
        assert!(dets.is_empty());
    }

    #[test]
    fn end2end_and_nms() {
        let out = [
            0.0, 10.0, 10.0, 50.0, 30.0, 0.0, 0.9, //
            0.0, 12.0, 10.0, 52.0, 30.0, 0.0, 0.5, //
            0.0, 100.0, 10.0, 150.0, 30.0, 0.0, 0.2, //
            0.0, 200.0, 10.0, 190.0, 30.0, 0.0, 0.9, // inverted box
        ];
        let mut dets = Vec::new();
        decode_end2end(&out, 0.25, &mut dets);
        assert_eq!(dets.len(), 2);
        nms(&mut dets, 0.45);
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].score, 0.9);
    }
}
