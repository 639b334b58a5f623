// SPDX-License-Identifier: MIT OR Apache-2.0
//! Detection on one frame: vehicles, then plates on the full frame and/or inside vehicles.
//! No GStreamer in here, so the benchmark and the element share exactly this code.

use std::time::{Duration, Instant};

use super::decode::{self, RawDet};
use super::model::Detector;
use super::preprocess::FrameView;
use super::settled::{self, SettledFilter};
use crate::meta::{AlprObject, BBox, ObjectKind};

/// Where the plate model looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlateMode {
    /// On the whole frame only.
    FullFrame,
    /// Inside vehicle boxes only.
    Vehicles,
    /// Both: a plate is found even when its car is cut off or missed.
    Both,
    /// The full frame, then a crop pass only for the vehicles that need one: at least
    /// `min_vehicle_width` wide (narrower cars carry plates too small to read) and with no
    /// plate found inside them by the full-frame pass.
    #[default]
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    pub vehicle_threshold: f32,
    pub plate_threshold: f32,
    pub nms_iou: f32,
    pub plate_mode: PlateMode,
    pub max_vehicle_crops: usize,
    /// Plate mode `Auto`: narrowest vehicle (pixels) that gets a crop pass.
    pub min_vehicle_width: f32,
}

/// Time spent per stage, accumulated (for logs and benchmarks). `inference` includes the
/// output decoding and NMS; `model_inputs` counts both models' inputs.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub preprocess: Duration,
    pub inference: Duration,
    pub model_inputs: u64,
    pub frames: u64,
    /// The vehicle model's share of `model_inputs` and `inference` (the rest is the plate
    /// model's).
    pub vehicle_inputs: u64,
    pub vehicle_inference: Duration,
    /// Vehicles matched to a settled box (their plate is read; not searched again).
    pub settled_vehicles: u64,
    /// Plate passes left out because every vehicle they would search is settled: full-frame
    /// passes and vehicle crop passes.
    pub skipped_plate_passes: u64,
}

/// Which model a recorded input was prepared for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRole {
    Vehicle,
    Plate,
}

/// A vehicle crop is worth a second plate pass only when it shows the car at least this much
/// larger than the full-frame pass does.
const MIN_CROP_MAGNIFICATION: f32 = 1.25;
/// Margin added around a vehicle box before the plate pass: boxes are often tight at the bumper.
const CROP_MARGIN: f32 = 0.05;
/// Vehicles smaller than this (pixels, either side) are too small to carry a readable plate.
const MIN_CROP_SIDE: f32 = 24.0;
/// A box this close to the frame edge (pixels) may be a vehicle cut off by it.
const EDGE: f32 = 2.0;
pub const PLATE_CLASS: &str = "license-plate";

pub struct Engine {
    pub vehicle: Detector,
    pub plate: Detector,
    pub cfg: EngineConfig,
    pub times: StageTimes,
    vehicles: Vec<RawDet>,
    plates: Vec<RawDet>,
    order: Vec<usize>,
    /// Per vehicle: the full-frame pass found a plate inside it (plate mode `Auto`).
    has_plate: Vec<bool>,
    /// Vehicles whose plates are already read (from alprocr's settled event), in this frame's
    /// pixels: detected vehicles matching one are not searched for plates. Set by the caller
    /// before [`Engine::run`]; empty searches every vehicle.
    pub settled: Vec<(u64, BBox)>,
    /// Per vehicle: it is a settled track's and still looks the same.
    is_settled: Vec<bool>,
    filter: SettledFilter,
    /// When set, a copy of every model input, in the order the models ran (for the model-only
    /// bound of `examples/alpr-bench`; never set by the element).
    pub record: Option<Vec<(InputRole, Vec<f32>)>>,
}

impl Engine {
    /// Forgets the settled vehicles and their looks (flush, new stream).
    pub fn forget_settled(&mut self) {
        self.settled.clear();
        self.filter.clear();
    }

    /// Elements sharing the vehicle model and the plate model, and the sessions both pools
    /// hold (see [`crate::sessions`]).
    pub fn session_users(&self) -> (usize, usize, usize) {
        (
            self.vehicle.session.users(),
            self.plate.session.users(),
            self.vehicle.session.sessions() + self.plate.session.sessions(),
        )
    }

    pub fn new(vehicle: Detector, plate: Detector, cfg: EngineConfig) -> Self {
        Engine {
            vehicle,
            plate,
            cfg,
            times: StageTimes::default(),
            vehicles: Vec::new(),
            plates: Vec::new(),
            order: Vec::new(),
            has_plate: Vec::new(),
            settled: Vec::new(),
            is_settled: Vec::new(),
            filter: SettledFilter::default(),
            record: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn timed(
        det: &mut Detector,
        times: &mut StageTimes,
        record: &mut Option<Vec<(InputRole, Vec<f32>)>>,
        frame: &FrameView<'_>,
        roi: BBox,
        threshold: f32,
        nms_iou: f32,
        out: &mut Vec<RawDet>,
    ) -> Result<(), String> {
        let t0 = Instant::now();
        let lb = det.prepare(frame, roi);
        times.preprocess += t0.elapsed();
        if let Some(lb) = lb {
            if let Some(r) = record {
                r.push((InputRole::Plate, det.tensor().to_vec()));
            }
            times.model_inputs += 1;
            let t1 = Instant::now();
            det.infer(&lb, threshold, nms_iou, out)?;
            times.inference += t1.elapsed();
        }
        Ok(())
    }

    /// Detects vehicles and plates; objects get ids 1.. in the order vehicles, then plates.
    pub fn run(
        &mut self,
        frame: &FrameView<'_>,
        objects: &mut Vec<AlprObject>,
    ) -> Result<(), String> {
        let full = BBox::new(0.0, 0.0, frame.width as f32, frame.height as f32);
        let cfg = self.cfg.clone();
        self.times.frames += 1;

        // Vehicle pass on the full frame.
        self.vehicles.clear();
        let t0 = Instant::now();
        let full_lb = self.vehicle.prepare(frame, full);
        self.times.preprocess += t0.elapsed();
        if let Some(lb) = full_lb {
            if let Some(r) = &mut self.record {
                r.push((InputRole::Vehicle, self.vehicle.tensor().to_vec()));
            }
            let t1 = Instant::now();
            self.times.model_inputs += 1;
            self.times.vehicle_inputs += 1;
            self.vehicle
                .infer(&lb, cfg.vehicle_threshold, cfg.nms_iou, &mut self.vehicles)?;
            let spent = t1.elapsed();
            self.times.inference += spent;
            self.times.vehicle_inference += spent;
        }
        for v in &mut self.vehicles {
            v.bbox = v.bbox.clip(frame.width as u32, frame.height as u32);
        }
        self.vehicles.retain(|v| v.bbox.w >= 1.0 && v.bbox.h >= 1.0);
        match full_lb {
            Some(lb) => {
                let (w, h) = (self.vehicle.spec.width, self.vehicle.spec.height);
                let tensor = self.vehicle.tensor();
                self.filter.apply(
                    &self.settled,
                    &self.vehicles,
                    |b| settled::signature(tensor, w, h, &lb, b),
                    &mut self.is_settled,
                );
            }
            None => {
                self.is_settled.clear();
                self.is_settled.resize(self.vehicles.len(), false);
            }
        }
        let settled = self.is_settled.iter().filter(|&&s| s).count();
        self.times.settled_vehicles += settled as u64;
        // Nothing to read when every vehicle in view is settled (read already) or, in plate mode
        // auto, a whole vehicle smaller than `min_vehicle_width` both ways (its plate is too
        // small to read): the full-frame pass is left out then. A vehicle cut off by the frame
        // edge may be larger than its box, and with no vehicle at all the pass still runs, so a
        // car the vehicle model misses keeps its plate.
        let auto = cfg.plate_mode == PlateMode::Auto;
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        let small = |b: &BBox| {
            b.w < cfg.min_vehicle_width
                && b.h < cfg.min_vehicle_width
                && b.x > EDGE
                && b.y > EDGE
                && b.x2() < fw - EDGE
                && b.y2() < fh - EDGE
        };
        let nothing_to_read = !self.vehicles.is_empty()
            && self
                .vehicles
                .iter()
                .zip(&self.is_settled)
                .all(|(v, &settled)| settled || (auto && small(&v.bbox)));

        // Full-frame plate pass: same region and input size as the vehicle pass, so its input is
        // derived from the vehicle input instead of resampling the frame again.
        self.plates.clear();
        if cfg.plate_mode != PlateMode::Vehicles && nothing_to_read {
            self.times.skipped_plate_passes += 1;
        } else if cfg.plate_mode != PlateMode::Vehicles {
            let t0 = Instant::now();
            let lb = match full_lb {
                Some(vlb) => self
                    .plate
                    .prepare_from(&self.vehicle, &vlb)
                    .or_else(|| self.plate.prepare(frame, full)),
                None => None,
            };
            self.times.preprocess += t0.elapsed();
            if let Some(lb) = lb {
                if let Some(r) = &mut self.record {
                    r.push((InputRole::Plate, self.plate.tensor().to_vec()));
                }
                let t1 = Instant::now();
                self.times.model_inputs += 1;
                self.plate
                    .infer(&lb, cfg.plate_threshold, cfg.nms_iou, &mut self.plates)?;
                self.times.inference += t1.elapsed();
            }
        }
        if cfg.plate_mode != PlateMode::FullFrame {
            self.has_plate.clear();
            self.has_plate.resize(self.vehicles.len(), false);
            if auto {
                for p in &self.plates {
                    if let Some(vi) = parent_of(&p.bbox, &self.vehicles) {
                        self.has_plate[vi] = true;
                    }
                }
            }
            let pw = self.plate.spec.width as f32;
            let ph = self.plate.spec.height as f32;
            let full_ratio = (pw / full.w).min(ph / full.h);
            // Largest vehicles first: they carry the most readable plates.
            let vehicles = &self.vehicles;
            self.order.clear();
            self.order.extend(0..vehicles.len());
            self.order
                .sort_by(|&a, &b| vehicles[b].bbox.area().total_cmp(&vehicles[a].bbox.area()));
            let mut crops = 0;
            for &vi in &self.order {
                if crops >= cfg.max_vehicle_crops {
                    break;
                }
                let v = self.vehicles[vi].bbox;
                if v.w < MIN_CROP_SIDE || v.h < MIN_CROP_SIDE {
                    continue;
                }
                if auto && (self.has_plate[vi] || v.w < cfg.min_vehicle_width) {
                    continue;
                }
                let roi = v
                    .padded(CROP_MARGIN)
                    .clip(frame.width as u32, frame.height as u32);
                let crop_ratio = (pw / roi.w).min(ph / roi.h);
                if cfg.plate_mode != PlateMode::Vehicles
                    && crop_ratio < full_ratio * MIN_CROP_MAGNIFICATION
                {
                    continue;
                }
                if self.is_settled[vi] {
                    self.times.skipped_plate_passes += 1;
                    continue;
                }
                crops += 1;
                Self::timed(
                    &mut self.plate,
                    &mut self.times,
                    &mut self.record,
                    frame,
                    roi,
                    cfg.plate_threshold,
                    cfg.nms_iou,
                    &mut self.plates,
                )?;
            }
        }
        // Merge full-frame and crop passes: the same plate seen twice keeps its best score.
        for p in &mut self.plates {
            p.bbox = p.bbox.clip(frame.width as u32, frame.height as u32);
        }
        self.plates.retain(|p| p.bbox.w >= 1.0 && p.bbox.h >= 1.0);
        decode::nms(&mut self.plates, cfg.nms_iou);

        objects.clear();
        for (i, v) in self.vehicles.iter().enumerate() {
            objects.push(AlprObject {
                id: i as u32 + 1,
                kind: Some(ObjectKind::Vehicle),
                class: self.vehicle.class_name(v.class_id).to_string(),
                confidence: v.score,
                bbox: v.bbox,
                ..Default::default()
            });
        }
        let nv = self.vehicles.len() as u32;
        for (i, p) in self.plates.iter().enumerate() {
            objects.push(AlprObject {
                id: nv + i as u32 + 1,
                kind: Some(ObjectKind::Plate),
                class: PLATE_CLASS.to_string(),
                confidence: p.score,
                bbox: p.bbox,
                parent_id: parent_of(&p.bbox, &self.vehicles).map(|vi| vi as u32 + 1),
                ..Default::default()
            });
        }
        Ok(())
    }
}

/// The vehicle a plate belongs to: the one covering most of the plate (at least half of it),
/// the smaller vehicle on a tie (a car in front of a bus).
pub fn parent_of(plate: &BBox, vehicles: &[RawDet]) -> Option<usize> {
    let area = plate.area();
    if area <= 0.0 {
        return None;
    }
    let mut best: Option<(usize, f32, f32)> = None;
    for (i, v) in vehicles.iter().enumerate() {
        let ix = (plate.x2().min(v.bbox.x2()) - plate.x.max(v.bbox.x)).max(0.0);
        let iy = (plate.y2().min(v.bbox.y2()) - plate.y.max(v.bbox.y)).max(0.0);
        let cover = ix * iy / area;
        if cover < 0.5 {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, c, a)) => cover > c + 1e-3 || ((cover - c).abs() <= 1e-3 && v.bbox.area() < a),
        };
        if better {
            best = Some((i, cover, v.bbox.area()));
        }
    }
    best.map(|b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, w: f32, h: f32) -> RawDet {
        RawDet {
            bbox: BBox::new(x, y, w, h),
            score: 0.9,
            class_id: 2,
        }
    }

    #[test]
    fn plate_parent_is_the_covering_smallest_vehicle() {
        let vehicles = [det(0.0, 0.0, 500.0, 400.0), det(100.0, 100.0, 200.0, 150.0)];
        let plate = BBox::new(150.0, 200.0, 60.0, 20.0);
        assert_eq!(parent_of(&plate, &vehicles), Some(1));
        let outside = BBox::new(600.0, 200.0, 60.0, 20.0);
        assert_eq!(parent_of(&outside, &vehicles), None);
        let half_out = BBox::new(480.0, 100.0, 60.0, 20.0);
        assert_eq!(parent_of(&half_out, &vehicles), None);
    }
}
