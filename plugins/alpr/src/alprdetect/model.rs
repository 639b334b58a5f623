// SPDX-License-Identifier: MIT OR Apache-2.0
//! One detector model: an ONNX Runtime session, its input convention and its output decoder.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::sessions::SharedSession;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::decode::{self, Family, RawDet};
use super::preprocess::{FrameView, InputSpec, Letterbox, Preprocessor};
use crate::meta::BBox;
use crate::runtime::Provider;

/// COCO class names, used when a YOLOX model has 80 classes and no names file beside it.
const COCO: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// Class names that count as vehicles in a multi-class (COCO-like) detector.
pub const VEHICLE_CLASS_NAMES: [&str; 5] = ["car", "motorcycle", "bus", "truck", "van"];

/// A detector model ready to run.
pub struct Detector {
    /// Shared with every element using the same model file and options (see `sessions`).
    pub session: Arc<SharedSession>,
    pub path: PathBuf,
    pub family: Family,
    pub spec: InputSpec,
    /// Class names by id (empty for single-class models).
    pub class_names: Vec<String>,
    /// Class ids to keep.
    wanted: Vec<usize>,
    tensor: Vec<f32>,
    pre: Preprocessor,
    /// Reused decode buffer, so steady-state frames do not allocate.
    scratch: Vec<RawDet>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("path", &self.path)
            .field("family", &self.family)
            .field("spec", &self.spec)
            .finish()
    }
}

fn tensor_shape(vt: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match vt {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.iter().copied().collect())),
        _ => None,
    }
}

impl Detector {
    /// Loads `path` on the CPU and checks that its inputs and outputs are a shape we can decode.
    pub fn load(path: &Path, threads: u32, names_file: Option<&Path>) -> Result<Self, String> {
        Self::load_on(path, threads, Provider::Cpu, names_file).map(|(d, _)| d)
    }

    /// As [`Detector::load`], on `provider`; the second value says why the session runs on the
    /// CPU instead, when it does (see [`crate::runtime::open_session_on`]).
    pub fn load_on(
        path: &Path,
        threads: u32,
        provider: Provider,
        names_file: Option<&Path>,
    ) -> Result<(Self, Option<String>), String> {
        let (shared, fallback) = crate::sessions::acquire(path, threads, provider)?;
        let bad = |what: String| format!("model {}: {what}", path.display());
        let (inputs, outputs) = (shared.inputs(), shared.outputs());

        let [input] = inputs else {
            return Err(bad(format!(
                "expected one image input, found {}",
                inputs.len()
            )));
        };
        let (ity, ishape) = tensor_shape(input.dtype())
            .ok_or_else(|| bad(format!("input `{}` is not a tensor", input.name())))?;
        let (in_h, in_w) = match (ity, ishape.as_slice()) {
            (TensorElementType::Float32, [_, 3, h, w]) if *h > 0 && *w > 0 => {
                (*h as usize, *w as usize)
            }
            _ => {
                return Err(bad(format!(
                    "input `{}` is {ity:?} {ishape:?}, expected float32 [1, 3, H, W] with a fixed H and W",
                    input.name()
                )));
            }
        };
        let [output] = outputs else {
            return Err(bad(format!(
                "expected one output, found {} ({})",
                outputs.len(),
                outputs
                    .iter()
                    .map(|o| o.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let (oty, oshape) = tensor_shape(output.dtype())
            .ok_or_else(|| bad(format!("output `{}` is not a tensor", output.name())))?;
        if oty != TensorElementType::Float32 {
            return Err(bad(format!(
                "output `{}` is {oty:?}, expected float32",
                output.name()
            )));
        }
        let family = Family::from_shapes(&oshape, in_w, in_h)
            .map_err(|e| bad(format!("output `{}`: {e}", output.name())))?;

        // Each family was trained with its own input convention.
        let spec = match family {
            Family::YoloxRaw { .. } => InputSpec {
                width: in_w,
                height: in_h,
                bgr: true,
                scale: 1.0,
                centered: false,
                pad: 114.0,
            },
            Family::End2End => InputSpec {
                width: in_w,
                height: in_h,
                bgr: false,
                scale: 1.0 / 255.0,
                centered: true,
                pad: 114.0,
            },
        };

        let class_names: Vec<String> = match (&family, names_file) {
            (Family::YoloxRaw { .. }, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| format!("class names file {}: {e}", f.display()))?
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect(),
            (
                Family::YoloxRaw {
                    num_classes: 80, ..
                },
                None,
            ) => COCO.iter().map(|s| s.to_string()).collect(),
            _ => Vec::new(),
        };
        let wanted = match &family {
            Family::YoloxRaw { num_classes, .. } => {
                if !class_names.is_empty() && class_names.len() != *num_classes {
                    return Err(bad(format!(
                        "the model has {num_classes} classes but its names file lists {}",
                        class_names.len()
                    )));
                }
                let v: Vec<usize> = class_names
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| VEHICLE_CLASS_NAMES.contains(&n.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                // A dedicated vehicle model without COCO names: every class is a vehicle.
                if v.is_empty() {
                    (0..*num_classes).collect()
                } else {
                    v
                }
            }
            Family::End2End => Vec::new(),
        };

        Ok((
            Detector {
                session: shared,
                path: path.to_path_buf(),
                family,
                spec,
                class_names,
                wanted,
                tensor: vec![0.0; 3 * in_w * in_h],
                pre: Preprocessor::default(),
                scratch: Vec::new(),
            },
            fallback,
        ))
    }

    pub fn class_name(&self, id: usize) -> &str {
        self.class_names.get(id).map(String::as_str).unwrap_or("")
    }

    /// The input tensor as last prepared (planar, `3 x height x width`).
    pub fn tensor(&self) -> &[f32] {
        &self.tensor
    }

    /// Letterboxes `roi` of `frame` into the input tensor (pre-processing only).
    pub fn prepare(&mut self, frame: &FrameView<'_>, roi: BBox) -> Option<Letterbox> {
        self.pre.fill(frame, roi, &self.spec, &mut self.tensor)
    }

    /// Prepares the input from another detector's input for the same region (see
    /// [`Preprocessor::derive`]); `None` when the input sizes differ.
    pub fn prepare_from(&mut self, other: &Detector, other_lb: &Letterbox) -> Option<Letterbox> {
        Preprocessor::derive(
            &other.tensor,
            &other.spec,
            other_lb,
            &self.spec,
            &mut self.tensor,
        )
    }

    /// Runs the model on the prepared tensor, appending detections in frame pixels to `out`.
    /// `threshold` filters scores; NMS is applied for families without it inside.
    pub fn infer(
        &mut self,
        lb: &Letterbox,
        threshold: f32,
        nms_iou: f32,
        out: &mut Vec<RawDet>,
    ) -> Result<(), String> {
        let shape = [1usize, 3, self.spec.height, self.spec.width];
        let input = TensorRef::from_array_view((shape, self.tensor.as_slice()))
            .map_err(|e| format!("model {}: input tensor: {e}", self.path.display()))?;
        let start = out.len();
        let path = &self.path;
        let (family, spec, wanted, scratch) =
            (&self.family, &self.spec, &self.wanted, &mut self.scratch);
        self.session.with(|session| -> Result<(), String> {
            let outputs = session
                .run(ort::inputs![input])
                .map_err(|e| format!("model {}: inference failed: {e}", path.display()))?;
            let (_, data) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("model {}: output: {e}", path.display()))?;
            Self::decode(family, spec, wanted, scratch, data, threshold, nms_iou, out);
            Ok(())
        })??;
        for d in &mut out[start..] {
            d.bbox = lb.to_frame(d.bbox);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decode(
        family: &Family,
        spec: &InputSpec,
        wanted: &[usize],
        dets: &mut Vec<RawDet>,
        data: &[f32],
        threshold: f32,
        nms_iou: f32,
        out: &mut Vec<RawDet>,
    ) {
        match family {
            Family::YoloxRaw {
                num_classes,
                strides,
            } => {
                dets.clear();
                let grid = decode::YoloxGrid {
                    num_classes: *num_classes,
                    strides,
                    in_w: spec.width,
                    in_h: spec.height,
                };
                decode::decode_yolox(data, grid, threshold, wanted, dets);
                decode::nms(dets, nms_iou);
                out.extend_from_slice(dets);
            }
            Family::End2End => decode::decode_end2end(data, threshold, out),
        }
    }

    /// Pre-processing plus inference on one region.
    pub fn detect(
        &mut self,
        frame: &FrameView<'_>,
        roi: BBox,
        threshold: f32,
        nms_iou: f32,
        out: &mut Vec<RawDet>,
    ) -> Result<(), String> {
        match self.prepare(frame, roi) {
            Some(lb) => self.infer(&lb, threshold, nms_iou, out),
            None => Ok(()),
        }
    }
}
