// SPDX-License-Identifier: MIT OR Apache-2.0
//! The OCR model: an ONNX Runtime session checked against its fast-plate-ocr config, reading a
//! batch of plate crops per call.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::sessions::SharedSession;
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::ocrmodel::{self, PlateOcrConfig, PlateRead};
use crate::runtime::Provider;

pub struct OcrEngine {
    /// Shared with every element using the same model file and options (see `sessions`).
    pub session: Arc<SharedSession>,
    pub path: PathBuf,
    pub cfg: PlateOcrConfig,
    plate_output: usize,
    region_output: Option<usize>,
    /// Model inputs of the current batch, `cfg.input_len()` bytes each (NHWC u8).
    input: Vec<u8>,
}

fn shape_of(vt: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match vt {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.iter().copied().collect())),
        _ => None,
    }
}

impl OcrEngine {
    /// Loads the model (on the CPU) and its config and checks that they agree.
    pub fn load(model: &Path, config: &Path, threads: u32) -> Result<Self, String> {
        Self::load_on(model, config, threads, Provider::Cpu).map(|(e, _)| e)
    }

    /// As [`OcrEngine::load`], on `provider`; the second value says why the session runs on the
    /// CPU instead, when it does.
    pub fn load_on(
        model: &Path,
        config: &Path,
        threads: u32,
        provider: Provider,
    ) -> Result<(Self, Option<String>), String> {
        let cfg = PlateOcrConfig::from_file(config).map_err(|e| e.to_string())?;
        let (session, fallback) = crate::sessions::acquire(model, threads, provider)?;
        let bad = |what: String| format!("OCR model {}: {what}", model.display());

        let [input] = session.inputs() else {
            return Err(bad(format!(
                "expected one image input, found {}",
                session.inputs().len()
            )));
        };
        let (ity, ishape) = shape_of(input.dtype())
            .ok_or_else(|| bad(format!("input `{}` is not a tensor", input.name())))?;
        let want = cfg.input_shape(1);
        let dims_ok = ishape.len() == 4
            && ishape[1..]
                .iter()
                .zip(&want[1..])
                .all(|(&got, &w)| got == -1 || got as usize == w);
        if ity != TensorElementType::Uint8 || !dims_ok {
            return Err(bad(format!(
                "input `{}` is {ity:?} {ishape:?}, but config {} describes uint8 [N, {}, {}, {}]",
                input.name(),
                config.display(),
                want[1],
                want[2],
                want[3]
            )));
        }

        let outputs = session.outputs();
        let find = |name: &str, rank: &[usize]| {
            outputs.iter().position(|o| o.name() == name).or_else(|| {
                outputs
                    .iter()
                    .position(|o| shape_of(o.dtype()).is_some_and(|(_, s)| rank.contains(&s.len())))
            })
        };
        let plate_output = find("plate", &[3]).ok_or_else(|| {
            bad(format!(
                "no `plate` output [N, slots, alphabet] among {}",
                outputs
                    .iter()
                    .map(|o| o.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let region_output = outputs
            .iter()
            .position(|o| o.name() == "region")
            .filter(|&i| i != plate_output);
        let plate_shape = shape_of(outputs[plate_output].dtype())
            .map(|(_, s)| s)
            .unwrap_or_default();
        let region_shape = region_output.and_then(|i| shape_of(outputs[i].dtype()).map(|(_, s)| s));
        ocrmodel::validate_output_shapes(&plate_shape, region_shape.as_deref(), &cfg)
            .map_err(|e| bad(e.to_string()))?;
        Ok((
            OcrEngine {
                session,
                path: model.to_path_buf(),
                cfg,
                plate_output,
                region_output,
                input: Vec::new(),
            },
            fallback,
        ))
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.input.clear();
    }

    /// Adds a slot to the batch and lets `fill` write it (with the model's config at hand); the
    /// slot is removed again if `fill` fails.
    pub fn push_with<T, E>(
        &mut self,
        fill: impl FnOnce(&PlateOcrConfig, &mut [u8]) -> Result<T, E>,
    ) -> Result<T, E> {
        let len = self.cfg.input_len();
        let start = self.input.len();
        self.input.resize(start + len, 0);
        let r = fill(&self.cfg, &mut self.input[start..]);
        if r.is_err() {
            self.input.truncate(start);
        }
        r
    }

    pub fn batch_len(&self) -> usize {
        self.input.len() / self.cfg.input_len().max(1)
    }

    /// Slot `i` of the current batch.
    pub fn slot(&self, i: usize) -> &[u8] {
        let len = self.cfg.input_len();
        &self.input[i * len..(i + 1) * len]
    }

    /// Reads every plate of the batch in one inference call.
    pub fn run(&mut self) -> Result<Vec<PlateRead>, String> {
        let n = self.batch_len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let shape = self.cfg.input_shape(n);
        let fail = |e: ort::Error| format!("OCR model {}: {e}", self.path.display());
        let input = TensorRef::from_array_view((shape, self.input.as_slice())).map_err(fail)?;
        let (path, cfg) = (&self.path, &self.cfg);
        let (plate_output, region_output) = (self.plate_output, self.region_output);
        self.session.with(|session| {
            let outputs = session
                .run(ort::inputs![input])
                .map_err(|e| format!("OCR model {}: inference failed: {e}", path.display()))?;
            let (_, plate) = outputs[plate_output]
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("OCR model {}: `plate` output: {e}", path.display()))?;
            let region = match region_output {
                Some(i) => Some(
                    outputs[i]
                        .try_extract_tensor::<f32>()
                        .map_err(|e| format!("OCR model {}: `region` output: {e}", path.display()))?
                        .1,
                ),
                None => None,
            };
            ocrmodel::decode_batch(plate, region, n, cfg).map_err(|e| e.to_string())
        })?
    }
}
