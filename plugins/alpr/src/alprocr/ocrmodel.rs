// SPDX-License-Identifier: MIT OR Apache-2.0
//! Pure logic around the fast-plate-ocr recogniser (CCT-XS v2 "global" and its siblings): the
//! model's YAML config, output-shape checks, decoding of the fixed-slot outputs, the crop
//! pre-processing that feeds the model, and a crop-quality score for picking and weighting reads.
//!
//! Nothing here touches ONNX Runtime, so all of it can be unit-tested without a model.
//!
//! The model contract (from fast-plate-ocr and the shipped `*_plate_config.yaml`):
//! - input `input`: `uint8 [N, img_height, img_width, C]`, NHWC, C = 3 (RGB) or 1 (grayscale).
//!   The model divides by 255 itself, so we feed raw bytes. The crop is resized with a plain
//!   stretch unless `keep_aspect_ratio` is set, in which case it is letterboxed.
//! - output `plate`: `[N, max_plate_slots, alphabet.len()]`, a softmax per slot. This is NOT CTC:
//!   slot `i` is character `i`; short plates are filled up with `pad_char`.
//! - optional output `region`: `[N, plate_regions.len()]`, a softmax over the regions in the YAML.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Upper bound for every size in the config (slots, image sides). Anything larger is surely a
/// broken file, and bounding it keeps the input buffer allocation sane.
pub const MAX_CONFIG_DIM: usize = 1024;

/// How many alternatives (best first) [`decode_batch`] keeps per character for soft voting.
pub const ALTERNATIVES_PER_CHAR: usize = 3;

/// Plate height (source pixels) below which [`crop_quality`]'s size term is 0: at under ~10 px
/// of plate height the characters are only a few pixels tall and are not reliably readable.
pub const QUALITY_MIN_HEIGHT_PX: f32 = 10.0;
/// Plate height (source pixels) at which [`crop_quality`]'s size term saturates at 1: the model
/// input is 64 px tall, and beyond ~40 px of real plate height more pixels add little.
pub const QUALITY_FULL_HEIGHT_PX: f32 = 40.0;
/// Variance of the Laplacian (on the model-input grey image, 0..255 scale) at which
/// [`crop_quality`]'s sharpness term is 0.5. A crisp plate (dark glyphs on a light plate) scores
/// several thousand; a crop upscaled 3x from a blurred 20 px plate scores a few hundred.
pub const SHARPNESS_HALF_VARIANCE: f64 = 1000.0;
/// Weights of size, sharpness and detector confidence in [`crop_quality`] (sum to 1).
pub const QUALITY_WEIGHTS: [f32; 3] = [0.4, 0.4, 0.2];

/// Everything that can go wrong in this module. Messages name the file and the field so that a
/// user who pointed the element at the wrong config can fix it without reading code.
#[derive(Debug, thiserror::Error)]
pub enum OcrModelError {
    #[error("cannot read OCR config {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("OCR config {} is not a valid plate OCR config: {source}", .path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error(
        "OCR config {} must be a YAML mapping of fields (max_plate_slots, alphabet, pad_char, \
         img_height, img_width, ...)",
        .path.display()
    )]
    NotAMapping { path: PathBuf },
    #[error("OCR config {}: field `{field}` {reason}", .path.display())]
    InvalidField {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error(
        "OCR model output `{output}` has shape {actual}, expected {expected} from config {}",
        .path.display()
    )]
    OutputShape {
        output: &'static str,
        actual: String,
        expected: String,
        path: PathBuf,
    },
    #[error(
        "OCR model output `{output}` holds {actual} values, expected {expected} for a batch of {n} \
         (config {})",
        .path.display()
    )]
    OutputLen {
        output: &'static str,
        actual: usize,
        expected: usize,
        n: usize,
        path: PathBuf,
    },
    #[error("invalid plate crop: {0}")]
    Crop(String),
}

type Result<T> = std::result::Result<T, OcrModelError>;

/// Resize method named by the config (`interpolation`), with the OpenCV names fast-plate-ocr uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    Linear,
    Cubic,
    Area,
    Lanczos4,
}

impl Interpolation {
    /// Whether [`crop_to_input`] reproduces this method (OpenCV `INTER_NEAREST` / `INTER_LINEAR`
    /// conventions). `cubic`, `area` and `lanczos4` are approximated with bilinear, which costs
    /// some accuracy on models trained with them; the element should warn once when this is false.
    pub fn is_exact(self) -> bool {
        matches!(self, Interpolation::Nearest | Interpolation::Linear)
    }
}

/// Colour layout of the model input (`image_color_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    Rgb,
    Grayscale,
}

/// The YAML as written, before validation. Defaults follow fast-plate-ocr's `PlateOCRConfig`.
#[derive(Deserialize)]
#[serde(rename = "PlateOcrConfig")]
struct RawConfig {
    max_plate_slots: i64,
    alphabet: String,
    pad_char: String,
    img_height: i64,
    img_width: i64,
    #[serde(default)]
    keep_aspect_ratio: bool,
    #[serde(default = "default_interpolation")]
    interpolation: Interpolation,
    #[serde(default = "default_color_mode")]
    image_color_mode: ColorMode,
    /// One grey level or an `[r, g, b]` triple; kept as a YAML value so that every malformed
    /// form gets a message naming the field (serde's untagged enums cannot).
    #[serde(default)]
    padding_color: Option<serde_norway::Value>,
    #[serde(default)]
    plate_regions: Option<Vec<String>>,
    /// Unknown keys are kept (not rejected) so that a newer fast-plate-ocr config with extra
    /// fields still loads; [`PlateOcrConfig::ignored_fields`] lets the element warn about them.
    #[serde(flatten)]
    extra: BTreeMap<String, serde_norway::Value>,
}

fn default_interpolation() -> Interpolation {
    Interpolation::Linear
}

/// fast-plate-ocr's own default is grayscale; the shipped configs all say which they use.
fn default_color_mode() -> ColorMode {
    ColorMode::Grayscale
}

/// fast-plate-ocr's default letterbox colour.
const DEFAULT_PADDING_COLOR: [u8; 3] = [114, 114, 114];

/// A validated fast-plate-ocr config (`*_plate_config.yaml`).
///
/// Fields are private so that the invariants checked at load time (pad in alphabet, unique
/// characters, sane sizes) hold for every value the decoder sees.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateOcrConfig {
    source: PathBuf,
    max_plate_slots: usize,
    alphabet: Vec<char>,
    pad_char: char,
    pad_index: usize,
    img_height: usize,
    img_width: usize,
    keep_aspect_ratio: bool,
    interpolation: Interpolation,
    image_color_mode: ColorMode,
    padding_color: [u8; 3],
    plate_regions: Option<Vec<String>>,
    ignored_fields: Vec<String>,
}

impl PlateOcrConfig {
    /// Reads and validates a config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| OcrModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml_str(&text, path)
    }

    /// Parses and validates config text; `source` is only used to name the file in errors.
    pub fn from_yaml_str(text: &str, source: impl Into<PathBuf>) -> Result<Self> {
        let path: PathBuf = source.into();
        // Syntax errors first (with line numbers), then a readable message for a document that
        // is valid YAML but not a mapping (empty file, a list, a scalar).
        let doc: serde_norway::Value =
            serde_norway::from_str(text).map_err(|source| OcrModelError::Yaml {
                path: path.clone(),
                source,
            })?;
        if !doc.is_mapping() {
            return Err(OcrModelError::NotAMapping { path });
        }
        let raw: RawConfig =
            serde_norway::from_str(text).map_err(|source| OcrModelError::Yaml {
                path: path.clone(),
                source,
            })?;
        let invalid = |field: &'static str, reason: String| OcrModelError::InvalidField {
            path: path.clone(),
            field,
            reason,
        };
        let dim = |field: &'static str, v: i64| -> Result<usize> {
            if v < 1 || v > MAX_CONFIG_DIM as i64 {
                Err(invalid(
                    field,
                    format!("is {v}, expected a value in 1..={MAX_CONFIG_DIM}"),
                ))
            } else {
                Ok(v as usize)
            }
        };
        let max_plate_slots = dim("max_plate_slots", raw.max_plate_slots)?;
        let img_height = dim("img_height", raw.img_height)?;
        let img_width = dim("img_width", raw.img_width)?;

        let alphabet: Vec<char> = raw.alphabet.chars().collect();
        if alphabet.is_empty() {
            return Err(invalid("alphabet", "is empty".into()));
        }
        if alphabet.len() > MAX_CONFIG_DIM {
            return Err(invalid(
                "alphabet",
                format!(
                    "has {} characters, more than {MAX_CONFIG_DIM}",
                    alphabet.len()
                ),
            ));
        }
        for (i, c) in alphabet.iter().enumerate() {
            if alphabet[..i].contains(c) {
                return Err(invalid(
                    "alphabet",
                    format!("contains {c:?} more than once; every class needs its own character"),
                ));
            }
        }

        let mut pad_chars = raw.pad_char.chars();
        let pad_char = match (pad_chars.next(), pad_chars.next()) {
            (Some(c), None) => c,
            _ => {
                return Err(invalid(
                    "pad_char",
                    format!("is {:?}, expected exactly one character", raw.pad_char),
                ));
            }
        };
        let Some(pad_index) = alphabet.iter().position(|&c| c == pad_char) else {
            return Err(invalid(
                "pad_char",
                format!("{pad_char:?} is not in the alphabet {:?}", raw.alphabet),
            ));
        };

        let padding_color = match &raw.padding_color {
            None => DEFAULT_PADDING_COLOR,
            Some(v) => {
                let level = |v: &serde_norway::Value| v.as_i64().and_then(|i| u8::try_from(i).ok());
                let bad = || {
                    invalid(
                        "padding_color",
                        format!(
                            "is {}, expected an integer in 0..=255 or a list of three",
                            compact(v)
                        ),
                    )
                };
                match v {
                    serde_norway::Value::Sequence(seq) => match seq[..] {
                        [ref r, ref g, ref b] => [
                            level(r).ok_or_else(bad)?,
                            level(g).ok_or_else(bad)?,
                            level(b).ok_or_else(bad)?,
                        ],
                        _ => return Err(bad()),
                    },
                    other => [level(other).ok_or_else(bad)?; 3],
                }
            }
        };

        if let Some(regions) = &raw.plate_regions {
            if regions.is_empty() {
                return Err(invalid(
                    "plate_regions",
                    "is an empty list; leave it out if the model has no region output".into(),
                ));
            }
            if regions.len() > MAX_CONFIG_DIM {
                return Err(invalid(
                    "plate_regions",
                    format!("has {} entries, more than {MAX_CONFIG_DIM}", regions.len()),
                ));
            }
        }

        Ok(PlateOcrConfig {
            source: path.clone(),
            max_plate_slots,
            alphabet,
            pad_char,
            pad_index,
            img_height,
            img_width,
            keep_aspect_ratio: raw.keep_aspect_ratio,
            interpolation: raw.interpolation,
            image_color_mode: raw.image_color_mode,
            padding_color,
            plate_regions: raw.plate_regions,
            ignored_fields: raw.extra.into_keys().collect(),
        })
    }

    /// The file this config came from (used in error messages).
    pub fn source(&self) -> &Path {
        &self.source
    }
    /// Number of character slots (classification heads) of the model.
    pub fn max_plate_slots(&self) -> usize {
        self.max_plate_slots
    }
    /// The output classes, in model order.
    pub fn alphabet(&self) -> &[char] {
        &self.alphabet
    }
    /// The padding class, always present in [`Self::alphabet`].
    pub fn pad_char(&self) -> char {
        self.pad_char
    }
    /// Index of [`Self::pad_char`] in [`Self::alphabet`].
    pub fn pad_index(&self) -> usize {
        self.pad_index
    }
    /// Model input height in pixels.
    pub fn img_height(&self) -> usize {
        self.img_height
    }
    /// Model input width in pixels.
    pub fn img_width(&self) -> usize {
        self.img_width
    }
    /// Letterbox instead of stretching.
    pub fn keep_aspect_ratio(&self) -> bool {
        self.keep_aspect_ratio
    }
    /// Resize method the model was trained with.
    pub fn interpolation(&self) -> Interpolation {
        self.interpolation
    }
    /// RGB or grayscale input.
    pub fn image_color_mode(&self) -> ColorMode {
        self.image_color_mode
    }
    /// Letterbox colour (RGB; grayscale models use the first value, as fast-plate-ocr does).
    pub fn padding_color(&self) -> [u8; 3] {
        self.padding_color
    }
    /// Region names of the `region` output, if the model has one.
    pub fn plate_regions(&self) -> Option<&[String]> {
        self.plate_regions.as_deref()
    }
    /// Keys in the YAML that this parser does not know and ignored (sorted).
    pub fn ignored_fields(&self) -> &[String] {
        &self.ignored_fields
    }
    /// Channels per input pixel: 3 for RGB, 1 for grayscale.
    pub fn num_channels(&self) -> usize {
        match self.image_color_mode {
            ColorMode::Rgb => 3,
            ColorMode::Grayscale => 1,
        }
    }
    /// Bytes of one model input image (`img_height * img_width * channels`).
    pub fn input_len(&self) -> usize {
        self.img_height * self.img_width * self.num_channels()
    }
    /// Input shape for a batch of `n`: `[n, img_height, img_width, channels]`.
    pub fn input_shape(&self, n: usize) -> [usize; 4] {
        [n, self.img_height, self.img_width, self.num_channels()]
    }
}

/// A short one-line rendering of a YAML value for error messages.
fn compact(v: &serde_norway::Value) -> String {
    match v {
        serde_norway::Value::Sequence(seq) => {
            let items: Vec<String> = seq.iter().map(compact).collect();
            format!("[{}]", items.join(", "))
        }
        serde_norway::Value::String(s) => format!("{s:?}"),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_string(),
    }
}

fn fmt_shape(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// A dimension as reported by the runtime matches `want` if it is equal or dynamic (`-1`).
fn dim_ok(d: i64, want: usize) -> bool {
    d == -1 || d == want as i64
}

fn batch_ok(d: i64) -> bool {
    d >= -1
}

/// Checks the model's output shapes against the config, so that a model/config mix-up fails at
/// start-up with a readable message instead of decoding garbage.
///
/// - `plate` must be `[N, max_plate_slots, alphabet.len()]`. The flattened form
///   `[N, max_plate_slots * alphabet.len()]` is accepted too, because fast-plate-ocr reshapes the
///   output the same way and some exports emit it flat.
/// - `region` (if the model has it and the config lists `plate_regions`) must be
///   `[N, plate_regions.len()]`. A region output without `plate_regions` in the config, or the
///   reverse, is accepted: the region is optional information and is then simply not reported.
///
/// Dynamic dimensions (`-1`) match anything; [`decode_batch`] re-checks the real buffer sizes.
pub fn validate_output_shapes(
    plate_shape: &[i64],
    region_shape: Option<&[i64]>,
    cfg: &PlateOcrConfig,
) -> Result<()> {
    let slots = cfg.max_plate_slots;
    let classes = cfg.alphabet.len();
    let plate_ok = match *plate_shape {
        [n, s, a] => batch_ok(n) && dim_ok(s, slots) && dim_ok(a, classes),
        [n, flat] => batch_ok(n) && dim_ok(flat, slots * classes),
        _ => false,
    };
    if !plate_ok {
        return Err(OcrModelError::OutputShape {
            output: "plate",
            actual: fmt_shape(plate_shape),
            expected: format!("[N, {slots}, {classes}]"),
            path: cfg.source.clone(),
        });
    }
    if let (Some(shape), Some(regions)) = (region_shape, cfg.plate_regions.as_deref()) {
        let region_ok = match *shape {
            [n, r] => {
                batch_ok(n)
                    && dim_ok(r, regions.len())
                    && (n == -1 || plate_shape[0] == -1 || n == plate_shape[0])
            }
            _ => false,
        };
        if !region_ok {
            return Err(OcrModelError::OutputShape {
                output: "region",
                actual: fmt_shape(shape),
                expected: format!("[N, {}]", regions.len()),
                path: cfg.source.clone(),
            });
        }
    }
    Ok(())
}

/// One decoded plate.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateRead {
    /// The plate text with all padding slots removed.
    pub text: String,
    /// Probability of each kept character (the max of its slot), aligned with `text.chars()`.
    pub char_confidences: Vec<f32>,
    /// For each kept character, up to [`ALTERNATIVES_PER_CHAR`] `(char, probability)` pairs, best
    /// first (the first is the character in `text`). The pad class is never listed: voting
    /// aligns characters by position, and "maybe padding" is already reflected in `confidence`.
    pub char_alternatives: Vec<Vec<(char, f32)>>,
    /// Model slot index of each kept character (differs from the position in `text` only when
    /// the model predicted padding in the middle of a plate).
    pub char_slots: Vec<usize>,
    /// Probability of the winning class of every slot, padding slots included.
    pub slot_confidences: Vec<f32>,
    /// Read confidence: the minimum over ALL slot maxima, padding slots included.
    ///
    /// Min rather than mean because a plate read is only right if every slot is right: one
    /// unsure character makes the whole string unsure, and a mean would hide it behind the other
    /// nine confident slots. Padding slots count because a wrongly predicted pad changes the text
    /// (drops a character) just as surely as a wrong character does. A read with an empty text
    /// (all padding) still gets a confidence; the caller should skip it.
    pub confidence: f32,
    /// Most likely region and its probability, when the model and the config both have regions.
    pub region: Option<(String, f32)>,
}

impl PlateRead {
    /// Mean of [`Self::char_confidences`] (0 for an empty read); for display and statistics.
    pub fn mean_char_confidence(&self) -> f32 {
        if self.char_confidences.is_empty() {
            0.0
        } else {
            self.char_confidences.iter().sum::<f32>() / self.char_confidences.len() as f32
        }
    }
}

/// A model probability made safe to compare: NaN and infinities become 0 (the model gave no
/// usable evidence), and the value is clamped to 0..=1 in case a model emits logits.
fn sane_prob(p: f32) -> f32 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Index and sanitised value of the largest probability (first one on ties, 0 for an empty row).
fn argmax(row: &[f32]) -> (usize, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &p) in row.iter().enumerate() {
        let p = sane_prob(p);
        if p > best.1 {
            best = (i, p);
        }
    }
    (best.0, best.1.max(0.0))
}

/// Decodes a batch of `n` plates from the flat `plate` output (`n * slots * alphabet` values)
/// and, optionally, the flat `region` output (`n * plate_regions.len()` values).
///
/// Per slot the argmax class is taken; padding slots are removed wherever they are (the model is
/// trained with right-padding, so a pad mid-plate means "no character here"). Never panics: NaN
/// or infinite probabilities count as 0. Buffer sizes that do not match `n` and the config are an
/// error rather than a silent partial decode, because they mean the model and config disagree.
pub fn decode_batch(
    plate: &[f32],
    region: Option<&[f32]>,
    n: usize,
    cfg: &PlateOcrConfig,
) -> Result<Vec<PlateRead>> {
    let slots = cfg.max_plate_slots;
    let classes = cfg.alphabet.len();
    let row_len = slots * classes;
    if plate.len() != n * row_len {
        return Err(OcrModelError::OutputLen {
            output: "plate",
            actual: plate.len(),
            expected: n * row_len,
            n,
            path: cfg.source.clone(),
        });
    }
    // Region names and probabilities, only when both model and config have them.
    let regions = match (region, cfg.plate_regions.as_deref()) {
        (Some(r), Some(names)) => {
            if r.len() != n * names.len() {
                return Err(OcrModelError::OutputLen {
                    output: "region",
                    actual: r.len(),
                    expected: n * names.len(),
                    n,
                    path: cfg.source.clone(),
                });
            }
            Some((r, names))
        }
        _ => None,
    };

    let mut reads = Vec::with_capacity(n);
    for b in 0..n {
        let mut text = String::with_capacity(slots);
        let mut char_confidences = Vec::with_capacity(slots);
        let mut char_alternatives = Vec::with_capacity(slots);
        let mut char_slots = Vec::with_capacity(slots);
        let mut slot_confidences = Vec::with_capacity(slots);
        for s in 0..slots {
            let start = (b * slots + s) * classes;
            let row = &plate[start..start + classes];
            let (idx, p) = argmax(row);
            slot_confidences.push(p);
            if idx == cfg.pad_index {
                continue;
            }
            text.push(cfg.alphabet[idx]);
            char_confidences.push(p);
            char_slots.push(s);
            char_alternatives.push(top_alternatives(row, cfg));
        }
        let confidence = slot_confidences.iter().copied().fold(1.0f32, f32::min);
        let region = regions.map(|(r, names)| {
            let row = &r[b * names.len()..(b + 1) * names.len()];
            let (i, p) = argmax(row);
            (names[i].clone(), p)
        });
        reads.push(PlateRead {
            text,
            char_confidences,
            char_alternatives,
            char_slots,
            slot_confidences,
            confidence,
            region,
        });
    }
    Ok(reads)
}

/// The best [`ALTERNATIVES_PER_CHAR`] non-pad classes of one slot, best first, ties by index.
fn top_alternatives(row: &[f32], cfg: &PlateOcrConfig) -> Vec<(char, f32)> {
    let mut top: Vec<(usize, f32)> = Vec::with_capacity(ALTERNATIVES_PER_CHAR + 1);
    for (i, &p) in row.iter().enumerate() {
        if i == cfg.pad_index {
            continue;
        }
        let p = sane_prob(p);
        // Insertion into a tiny sorted list; stable, so equal probabilities keep index order.
        let pos = top.iter().position(|&(_, q)| p > q).unwrap_or(top.len());
        if pos < ALTERNATIVES_PER_CHAR {
            top.insert(pos, (i, p));
            top.truncate(ALTERNATIVES_PER_CHAR);
        }
    }
    top.into_iter().map(|(i, p)| (cfg.alphabet[i], p)).collect()
}

/// A packed RGB image (3 bytes per pixel, rows `stride` bytes apart), e.g. a mapped `RGB`
/// video frame.
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    /// Bytes from the start of one row to the next (>= `width * 3`).
    pub stride: usize,
}

impl RgbView<'_> {
    fn check(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(OcrModelError::Crop(format!(
                "source image is {}x{}",
                self.width, self.height
            )));
        }
        if self.stride < self.width * 3 {
            return Err(OcrModelError::Crop(format!(
                "source stride {} is smaller than width*3 = {}",
                self.stride,
                self.width * 3
            )));
        }
        // The last row only needs its pixels, not the full stride.
        let needed = self.stride * (self.height - 1) + self.width * 3;
        if self.data.len() < needed {
            return Err(OcrModelError::Crop(format!(
                "source buffer has {} bytes, a {}x{} image with stride {} needs {needed}",
                self.data.len(),
                self.width,
                self.height,
                self.stride
            )));
        }
        Ok(())
    }

    #[inline]
    fn px(&self, x: usize, y: usize) -> [f32; 3] {
        let o = y * self.stride + x * 3;
        [
            self.data[o] as f32,
            self.data[o + 1] as f32,
            self.data[o + 2] as f32,
        ]
    }
}

/// Integer pixel rectangle of the source image that was actually cropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropRect {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

/// The crop rectangle for a detector box `roi = (x, y, width, height)` in source pixels (the
/// layout of `BBox` / `GstVideoRegionOfInterestMeta`), grown by `padding_frac` of the box width
/// on the left and on the right and of the box height at the top and at the bottom, rounded
/// outwards to whole pixels and clamped to the image.
///
/// Padding matters because detector boxes are often tight and clip the first or last character.
pub fn crop_rect(
    roi: (f32, f32, f32, f32),
    padding_frac: f32,
    image_width: usize,
    image_height: usize,
) -> Result<CropRect> {
    let (x, y, w, h) = roi;
    if ![x, y, w, h].iter().all(|v| v.is_finite()) {
        return Err(OcrModelError::Crop(format!(
            "box {roi:?} has non-finite coordinates"
        )));
    }
    if w <= 0.0 || h <= 0.0 {
        return Err(OcrModelError::Crop(format!("box {roi:?} has zero size")));
    }
    if !padding_frac.is_finite() || padding_frac < 0.0 {
        return Err(OcrModelError::Crop(format!(
            "padding fraction {padding_frac} must be finite and >= 0"
        )));
    }
    let (px, py) = (w * padding_frac, h * padding_frac);
    let clamp = |v: f32, hi: usize| -> usize { (v.max(0.0) as usize).min(hi) };
    let x0 = clamp((x - px).floor(), image_width);
    let y0 = clamp((y - py).floor(), image_height);
    let x1 = clamp((x + w + px).ceil(), image_width);
    let y1 = clamp((y + h + py).ceil(), image_height);
    if x1 <= x0 || y1 <= y0 {
        return Err(OcrModelError::Crop(format!(
            "box {roi:?} (padded by {padding_frac}) lies outside the {image_width}x{image_height} \
             image"
        )));
    }
    Ok(CropRect {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    })
}

/// Source taps for one output coordinate: `(i0, i1, weight of i1)`.
type Tap = (usize, usize, f32);

/// Sampling taps mapping `dst_len` output pixels onto `src_len` source pixels, following
/// OpenCV's `cv2.resize` conventions (which fast-plate-ocr trained with): half-pixel centres and
/// edge clamping for linear, `floor(d * scale)` for nearest.
fn taps(src_len: usize, dst_len: usize, interp: Interpolation) -> Vec<Tap> {
    let scale = src_len as f64 / dst_len as f64;
    (0..dst_len)
        .map(|d| match interp {
            Interpolation::Nearest => {
                let i = ((d as f64 * scale).floor() as usize).min(src_len - 1);
                (i, i, 0.0)
            }
            _ => {
                let f = (d as f64 + 0.5) * scale - 0.5;
                let mut i = f.floor();
                let mut a = f - i;
                if i < 0.0 {
                    i = 0.0;
                    a = 0.0;
                }
                let mut i = i as usize;
                if i >= src_len - 1 {
                    i = src_len - 1;
                    a = 0.0;
                }
                (i, (i + 1).min(src_len - 1), a as f32)
            }
        })
        .collect()
}

/// ITU-R BT.601 luma, as OpenCV's `COLOR_RGB2GRAY`.
#[inline]
fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Crops `roi` (see [`crop_rect`] for the box layout and padding) out of `src` and writes the
/// model input for one plate into `out` (`cfg.input_len()` bytes, HWC, RGB or grey).
///
/// Stretch-resizes to `img_width x img_height`, or, with `keep_aspect_ratio`, resizes to fit and
/// letterboxes with `padding_color` the way fast-plate-ocr does. Returns the source rectangle
/// used, e.g. for saving the crop. Errors (never panics) on a bad source view, a zero-size or
/// non-finite box, a box entirely outside the image, or a wrongly sized `out`.
pub fn crop_to_input(
    src: &RgbView,
    roi: (f32, f32, f32, f32),
    padding_frac: f32,
    cfg: &PlateOcrConfig,
    out: &mut [u8],
) -> Result<CropRect> {
    src.check()?;
    if out.len() != cfg.input_len() {
        return Err(OcrModelError::Crop(format!(
            "output buffer has {} bytes, the model input needs {} ({}x{}x{})",
            out.len(),
            cfg.input_len(),
            cfg.img_width,
            cfg.img_height,
            cfg.num_channels()
        )));
    }
    let rect = crop_rect(roi, padding_frac, src.width, src.height)?;
    let (ow, oh) = (cfg.img_width, cfg.img_height);
    let channels = cfg.num_channels();

    // Destination area inside the model input: everything, or the letterboxed interior.
    let (dx, dy, dw, dh) = if cfg.keep_aspect_ratio {
        let r = (oh as f64 / rect.height as f64).min(ow as f64 / rect.width as f64);
        // Python's round() (ties to even), to match fast-plate-ocr pixel for pixel.
        let nw = ((rect.width as f64 * r).round_ties_even() as usize).clamp(1, ow);
        let nh = ((rect.height as f64 * r).round_ties_even() as usize).clamp(1, oh);
        let left = (((ow - nw) as f64 / 2.0) - 0.1).round_ties_even().max(0.0) as usize;
        let top = (((oh - nh) as f64 / 2.0) - 0.1).round_ties_even().max(0.0) as usize;
        let pad = cfg.padding_color;
        for px in out.chunks_exact_mut(channels) {
            if channels == 1 {
                px[0] = pad[0];
            } else {
                px.copy_from_slice(&pad);
            }
        }
        (left, top, nw, nh)
    } else {
        (0, 0, ow, oh)
    };

    let xt = taps(rect.width, dw, cfg.interpolation);
    let yt = taps(rect.height, dh, cfg.interpolation);
    for (j, &(y0, y1, wy)) in yt.iter().enumerate() {
        let (sy0, sy1) = (rect.y + y0, rect.y + y1);
        let row = (dy + j) * ow;
        for (i, &(x0, x1, wx)) in xt.iter().enumerate() {
            let (sx0, sx1) = (rect.x + x0, rect.x + x1);
            let (p00, p01) = (src.px(sx0, sy0), src.px(sx1, sy0));
            let (p10, p11) = (src.px(sx0, sy1), src.px(sx1, sy1));
            let mut v = [0f32; 3];
            for c in 0..3 {
                let top = p00[c] + (p01[c] - p00[c]) * wx;
                let bottom = p10[c] + (p11[c] - p10[c]) * wx;
                v[c] = top + (bottom - top) * wy;
            }
            let o = (row + dx + i) * channels;
            if channels == 1 {
                out[o] = luma(v).round().clamp(0.0, 255.0) as u8;
            } else {
                for c in 0..3 {
                    out[o + c] = v[c].round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    Ok(rect)
}

/// Variance of the 4-neighbour Laplacian over the interior of a grey image (0 if it is smaller
/// than 3x3 or the buffer is short). A standard focus measure: blur removes the high
/// frequencies the Laplacian responds to.
pub fn laplacian_variance(grey: &[f32], width: usize, height: usize) -> f64 {
    if width < 3 || height < 3 || grey.len() < width * height {
        return 0.0;
    }
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0f64);
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let c = y * width + x;
            let l = (grey[c - 1] + grey[c + 1] + grey[c - width] + grey[c + width] - 4.0 * grey[c])
                as f64;
            sum += l;
            sum2 += l * l;
            count += 1.0;
        }
    }
    let mean = sum / count;
    (sum2 / count - mean * mean).max(0.0)
}

/// The parts of a crop-quality score, each in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropQuality {
    /// Plate-height term: 0 at <= [`QUALITY_MIN_HEIGHT_PX`], linear up to 1 at
    /// [`QUALITY_FULL_HEIGHT_PX`].
    pub size: f32,
    /// Sharpness term `v / (v + SHARPNESS_HALF_VARIANCE)` of the Laplacian variance `v`.
    pub sharpness: f32,
    /// The detector confidence, clamped to 0..=1 (NaN -> 0).
    pub detector: f32,
    /// The raw Laplacian variance, for tuning and debugging.
    pub laplacian_variance: f64,
    /// `0.4 * size + 0.4 * sharpness + 0.2 * detector` ([`QUALITY_WEIGHTS`]).
    pub score: f32,
}

/// Scores how readable a plate crop is, in 0..=1, to weight its OCR read in the track vote and to
/// pick the best crop to publish.
///
/// `model_input` is what [`crop_to_input`] wrote (so sharpness is measured on exactly what the
/// OCR sees, at a fixed size, which keeps the normalisation constant meaningful), and
/// `plate_height_px` the detector box height in source pixels (unpadded).
///
/// Formula: `score = 0.4 * size + 0.4 * sharpness + 0.2 * detector`, with
/// - `size = clamp((h - 10) / (40 - 10), 0, 1)`: tiny plates are unreadable, > 40 px adds little;
/// - `sharpness = v / (v + 1000)`, `v` the variance of the Laplacian of the grey input;
/// - `detector` = detector confidence.
///
/// A weighted sum rather than a product so that one weak term (say a low detector score on an
/// otherwise large, sharp plate) lowers the weight without zeroing it. With letterboxing the
/// flat border is included in the variance; that lowers all crops of a track alike.
pub fn crop_quality(
    model_input: &[u8],
    cfg: &PlateOcrConfig,
    plate_height_px: f32,
    detector_confidence: f32,
) -> Result<CropQuality> {
    if model_input.len() != cfg.input_len() {
        return Err(OcrModelError::Crop(format!(
            "model input has {} bytes, expected {}",
            model_input.len(),
            cfg.input_len()
        )));
    }
    let grey: Vec<f32> = match cfg.num_channels() {
        1 => model_input.iter().map(|&v| v as f32).collect(),
        _ => model_input
            .chunks_exact(3)
            .map(|p| luma([p[0] as f32, p[1] as f32, p[2] as f32]))
            .collect(),
    };
    let v = laplacian_variance(&grey, cfg.img_width, cfg.img_height);
    let sharpness = (v / (v + SHARPNESS_HALF_VARIANCE)) as f32;
    let h = if plate_height_px.is_finite() {
        plate_height_px
    } else {
        0.0
    };
    let size = ((h - QUALITY_MIN_HEIGHT_PX) / (QUALITY_FULL_HEIGHT_PX - QUALITY_MIN_HEIGHT_PX))
        .clamp(0.0, 1.0);
    let detector = sane_prob(detector_confidence);
    let [ws, wh, wd] = QUALITY_WEIGHTS;
    let score = (ws * size + wh * sharpness + wd * detector).clamp(0.0, 1.0);
    Ok(CropQuality {
        size,
        sharpness,
        detector,
        laplacian_variance: v,
        score,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped config: `$ALPR_MODELS_DIR/ocr/...`, else a `shared/models` folder above the
    /// crate (the checkout layout, also used by CI), else the development machine's path. The
    /// file is part of the project, so a missing file fails the test rather than skipping it.
    fn real_config_path() -> PathBuf {
        const REL: &str = "ocr/cct_xs_v2_global_plate_config.yaml";
        let mut tried = Vec::new();
        if let Some(d) = std::env::var_os("ALPR_MODELS_DIR").filter(|v| !v.is_empty()) {
            tried.push(PathBuf::from(d).join(REL));
        }
        for anc in Path::new(env!("CARGO_MANIFEST_DIR")).ancestors() {
            tried.push(anc.join("shared").join("models").join(REL));
        }
        tried.push(PathBuf::from("/work/shared/models").join(REL));
        tried
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .unwrap_or_else(|| panic!("OCR config not found, tried {tried:?}"))
    }

    fn real_config() -> PlateOcrConfig {
        PlateOcrConfig::from_file(real_config_path()).expect("shipped config parses")
    }

    const MINIMAL: &str = "max_plate_slots: 4\nalphabet: 'AB1_'\npad_char: '_'\n\
                           img_height: 8\nimg_width: 16\n";

    fn cfg_with(extra: &str) -> PlateOcrConfig {
        PlateOcrConfig::from_yaml_str(&format!("{MINIMAL}{extra}"), "test.yaml").unwrap()
    }

    fn err_of(text: &str) -> String {
        PlateOcrConfig::from_yaml_str(text, "bad.yaml")
            .expect_err("config must be rejected")
            .to_string()
    }

    #[test]
    fn parses_real_config() {
        let cfg = real_config();
        assert_eq!(cfg.max_plate_slots(), 10);
        assert_eq!(cfg.alphabet().len(), 37);
        assert_eq!(
            cfg.alphabet().iter().collect::<String>(),
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
        );
        assert_eq!(cfg.pad_char(), '_');
        assert_eq!(cfg.pad_index(), 36);
        assert_eq!((cfg.img_height(), cfg.img_width()), (64, 128));
        assert!(!cfg.keep_aspect_ratio());
        assert_eq!(cfg.interpolation(), Interpolation::Linear);
        assert!(cfg.interpolation().is_exact());
        assert_eq!(cfg.image_color_mode(), ColorMode::Rgb);
        assert_eq!(cfg.num_channels(), 3);
        assert_eq!(cfg.input_len(), 64 * 128 * 3);
        assert_eq!(cfg.input_shape(2), [2, 64, 128, 3]);
        let regions = cfg.plate_regions().expect("global model has regions");
        assert_eq!(regions.len(), 66);
        assert_eq!(regions[0], "Albania");
        assert_eq!(regions[10], "Bosnia and Herzegovina");
        assert_eq!(regions[65], "Unknown");
        assert!(cfg.ignored_fields().is_empty());
        assert_eq!(cfg.padding_color(), [114, 114, 114]);
        validate_output_shapes(&[-1, 10, 37], Some(&[-1, 66]), &cfg).unwrap();
    }

    #[test]
    fn defaults_follow_fast_plate_ocr() {
        let cfg = cfg_with("");
        assert!(!cfg.keep_aspect_ratio());
        assert_eq!(cfg.interpolation(), Interpolation::Linear);
        assert_eq!(cfg.image_color_mode(), ColorMode::Grayscale);
        assert_eq!(cfg.padding_color(), [114; 3]);
        assert!(cfg.plate_regions().is_none());
        assert_eq!(cfg.source(), Path::new("test.yaml"));
    }

    #[test]
    fn optional_fields_and_unknown_keys() {
        let cfg = cfg_with(
            "keep_aspect_ratio: true\ninterpolation: area\nimage_color_mode: rgb\n\
             padding_color: [1, 2, 3]\nfuture_field: 7\nanother: x\n",
        );
        assert!(cfg.keep_aspect_ratio());
        assert_eq!(cfg.interpolation(), Interpolation::Area);
        assert!(!cfg.interpolation().is_exact());
        assert_eq!(cfg.padding_color(), [1, 2, 3]);
        assert_eq!(cfg.ignored_fields(), ["another", "future_field"]);
        assert_eq!(cfg_with("padding_color: 9\n").padding_color(), [9; 3]);
    }

    #[test]
    fn missing_file_names_path() {
        let e = PlateOcrConfig::from_file("/nonexistent/dir/ocr.yaml").unwrap_err();
        assert!(matches!(e, OcrModelError::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/dir/ocr.yaml"), "{e}");
    }

    #[test]
    fn malformed_yaml_is_rejected_with_path() {
        let e = err_of("max_plate_slots: [1, 2\nalphabet: 'AB'\n");
        assert!(e.contains("bad.yaml"), "{e}");
        let e = err_of("alphabet: 'AB\n");
        assert!(e.contains("bad.yaml") && e.contains("line"), "{e}");
        for text in ["", "- just\n- a list\n", "42\n"] {
            let e = err_of(text);
            assert!(
                e.contains("bad.yaml") && e.contains("must be a YAML mapping"),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in [
            "max_plate_slots",
            "alphabet",
            "pad_char",
            "img_height",
            "img_width",
        ] {
            let text: String = MINIMAL
                .lines()
                .filter(|l| !l.starts_with(field))
                .map(|l| format!("{l}\n"))
                .collect();
            let e = err_of(&text);
            assert!(e.contains(field) && e.contains("bad.yaml"), "{field}: {e}");
        }
    }

    #[test]
    fn invalid_values_are_named() {
        let bad = |line: &str, field: &str, needle: &str| {
            let text: String = MINIMAL
                .lines()
                .map(|l| {
                    if l.starts_with(&format!("{field}:")) {
                        format!("{line}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            let text = if text.contains(line) {
                text
            } else {
                format!("{text}{line}\n")
            };
            let e = err_of(&text);
            assert!(
                e.contains(field) && e.contains("bad.yaml") && e.contains(needle),
                "{line}: {e}"
            );
        };
        bad("pad_char: '#'", "pad_char", "not in the alphabet");
        bad("pad_char: '__'", "pad_char", "exactly one character");
        bad("pad_char: ''", "pad_char", "exactly one character");
        bad("alphabet: ''", "alphabet", "empty");
        bad("alphabet: 'AB1_A'", "alphabet", "more than once");
        bad("max_plate_slots: 0", "max_plate_slots", "1..=1024");
        bad("img_height: -3", "img_height", "1..=1024");
        bad("img_width: 4096", "img_width", "1..=1024");
        bad("padding_color: 300", "padding_color", "0..=255");
        bad("padding_color: [1, 2]", "padding_color", "three");
        bad("padding_color: [1, 2, -3]", "padding_color", "0..=255");
        bad("padding_color: 'grey'", "padding_color", "\"grey\"");
        bad("padding_color: [1, 2]", "padding_color", "is [1, 2]");
        bad("plate_regions: []", "plate_regions", "empty");
        bad("interpolation: bicubic", "interpolation", "bicubic");
        bad("image_color_mode: bgr", "image_color_mode", "bgr");
    }

    #[test]
    fn shape_validation() {
        let cfg = real_config();
        validate_output_shapes(&[1, 10, 37], None, &cfg).unwrap();
        validate_output_shapes(&[4, 370], Some(&[4, 66]), &cfg).unwrap();
        validate_output_shapes(&[-1, 10, 37], Some(&[-1, 66]), &cfg).unwrap();

        let e = validate_output_shapes(&[1, 9, 37], None, &cfg).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`plate` has shape [1, 9, 37], expected [N, 10, 37] from config")
                && msg.contains("cct_xs_v2_global_plate_config.yaml"),
            "{msg}"
        );
        for bad in [
            &[1, 10, 36][..],
            &[1, 10],
            &[10, 37],
            &[1, 1, 10, 37],
            &[-2, 10, 37],
        ] {
            assert!(validate_output_shapes(bad, None, &cfg).is_err(), "{bad:?}");
        }
        let e = validate_output_shapes(&[1, 10, 37], Some(&[1, 65]), &cfg).unwrap_err();
        assert!(
            e.to_string()
                .contains("`region` has shape [1, 65], expected [N, 66]"),
            "{e}"
        );
        assert!(validate_output_shapes(&[2, 10, 37], Some(&[3, 66]), &cfg).is_err());
        assert!(validate_output_shapes(&[1, 10, 37], Some(&[66]), &cfg).is_err());
        // A config without regions ignores a region output.
        let small = cfg_with("");
        validate_output_shapes(&[1, 4, 4], Some(&[1, 66]), &small).unwrap();
    }

    /// Softmax-like rows: `p` on the given class, the rest spread evenly.
    fn slot(classes: usize, idx: usize, p: f32) -> Vec<f32> {
        let rest = (1.0 - p) / (classes - 1) as f32;
        (0..classes)
            .map(|i| if i == idx { p } else { rest })
            .collect()
    }

    fn encode(cfg: &PlateOcrConfig, text: &str, p: f32) -> Vec<f32> {
        let a = cfg.alphabet();
        let mut chars: Vec<char> = text.chars().collect();
        chars.resize(cfg.max_plate_slots(), cfg.pad_char());
        chars
            .iter()
            .flat_map(|c| slot(a.len(), a.iter().position(|x| x == c).unwrap(), p))
            .collect()
    }

    #[test]
    fn decode_strips_padding_and_reports_confidences() {
        let cfg = real_config();
        let mut plate = encode(&cfg, "AB123CD", 0.9);
        // Make '1' (slot 2) unsure and the first pad (slot 7) unsure.
        let a = cfg.alphabet().len();
        plate[2 * a..3 * a].copy_from_slice(&slot(a, 1, 0.6));
        plate[7 * a..8 * a].copy_from_slice(&slot(a, 36, 0.55));
        plate.extend(encode(&cfg, "X9", 0.99));
        let mut region = vec![0.0f32; 2 * 66];
        region[21] = 0.8; // France
        region[66 + 65] = 0.4; // Unknown
        let reads = decode_batch(&plate, Some(&region), 2, &cfg).unwrap();
        assert_eq!(reads.len(), 2);
        let r = &reads[0];
        assert_eq!(r.text, "AB123CD");
        assert_eq!(r.char_confidences.len(), 7);
        assert!((r.char_confidences[2] - 0.6).abs() < 1e-6);
        assert!((r.char_confidences[0] - 0.9).abs() < 1e-6);
        assert_eq!(r.slot_confidences.len(), 10);
        assert_eq!(r.char_slots, [0, 1, 2, 3, 4, 5, 6]);
        // min over all slots, including the unsure pad at slot 7
        assert!((r.confidence - 0.55).abs() < 1e-6, "{}", r.confidence);
        let mean = (0.9 * 6.0 + 0.6) / 7.0;
        assert!((r.mean_char_confidence() - mean).abs() < 1e-6);
        assert_eq!(r.region, Some(("France".to_string(), 0.8)));
        assert_eq!(r.char_alternatives[2][0].0, '1');
        assert!(
            r.char_alternatives
                .iter()
                .all(|alts| alts.len() == 3 && alts.iter().all(|(c, _)| *c != '_'))
        );
        assert_eq!(reads[1].text, "X9");
        assert!((reads[1].confidence - 0.99).abs() < 1e-6);
        assert_eq!(reads[1].region, Some(("Unknown".to_string(), 0.4)));
    }

    #[test]
    fn decode_interior_padding_and_alternatives() {
        let cfg = cfg_with(""); // alphabet "AB1_", 4 slots
        // slot0 A, slot1 pad, slot2 B (alt 1), slot3 pad
        let plate = [
            0.7, 0.1, 0.1, 0.1, //
            0.0, 0.0, 0.1, 0.9, //
            0.2, 0.5, 0.3, 0.0, //
            0.0, 0.0, 0.0, 1.0,
        ];
        let r = &decode_batch(&plate, None, 1, &cfg).unwrap()[0];
        assert_eq!(r.text, "AB");
        assert_eq!(r.char_slots, [0, 2]);
        assert_eq!(r.char_alternatives[1], [('B', 0.5), ('1', 0.3), ('A', 0.2)]);
        assert!((r.confidence - 0.5).abs() < 1e-6);
        assert_eq!(r.region, None);
    }

    #[test]
    fn decode_all_padding_gives_empty_text() {
        let cfg = real_config();
        let reads = decode_batch(&encode(&cfg, "", 0.97), None, 1, &cfg).unwrap();
        assert_eq!(reads[0].text, "");
        assert!(reads[0].char_confidences.is_empty());
        assert_eq!(reads[0].mean_char_confidence(), 0.0);
        assert!((reads[0].confidence - 0.97).abs() < 1e-6);
    }

    #[test]
    fn decode_is_nan_safe() {
        let cfg = cfg_with("");
        let plate = [
            f32::NAN,
            0.6,
            0.1,
            0.1, // -> B 0.6
            f32::NAN,
            f32::NAN,
            f32::NAN,
            f32::NAN, // all NaN -> class 0 ('A') with 0
            f32::INFINITY,
            0.2,
            0.1,
            0.0, // inf counts as 0 -> B 0.2
            0.0,
            0.0,
            0.0,
            1.0, // pad
        ];
        let r = &decode_batch(&plate, None, 1, &cfg).unwrap()[0];
        assert_eq!(r.text, "BAB");
        assert_eq!(r.char_confidences, [0.6, 0.0, 0.2]);
        assert_eq!(r.confidence, 0.0);
        assert!(r.char_confidences.iter().all(|c| c.is_finite()));
        assert!(r.confidence.is_finite());
    }

    #[test]
    fn decode_rejects_wrong_buffer_sizes() {
        let cfg = real_config();
        let plate = encode(&cfg, "AB1", 0.9);
        let e = decode_batch(&plate, None, 2, &cfg).unwrap_err();
        assert!(
            e.to_string().contains("holds 370 values, expected 740"),
            "{e}"
        );
        let e = decode_batch(&plate, Some(&[0.5; 10]), 1, &cfg).unwrap_err();
        assert!(e.to_string().contains("`region`"), "{e}");
        assert!(decode_batch(&[], None, 0, &cfg).unwrap().is_empty());
    }

    /// An image whose pixel (x, y) is (x, y, 7) for easy checking.
    fn gradient(w: usize, h: usize, stride: usize) -> Vec<u8> {
        let mut d = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                let o = y * stride + x * 3;
                d[o] = x as u8;
                d[o + 1] = y as u8;
                d[o + 2] = 7;
            }
        }
        d
    }

    #[test]
    fn crop_identity_and_stride() {
        // 16x8 input, crop exactly 16x8 from a padded-stride image: output == source pixels.
        let cfg = cfg_with("image_color_mode: rgb\n");
        let data = gradient(40, 30, 40 * 3 + 5);
        let src = RgbView {
            data: &data,
            width: 40,
            height: 30,
            stride: 40 * 3 + 5,
        };
        let mut out = vec![0u8; cfg.input_len()];
        let rect = crop_to_input(&src, (10.0, 5.0, 16.0, 8.0), 0.0, &cfg, &mut out).unwrap();
        assert_eq!(
            rect,
            CropRect {
                x: 10,
                y: 5,
                width: 16,
                height: 8
            }
        );
        for y in 0..8 {
            for x in 0..16 {
                let o = (y * 16 + x) * 3;
                assert_eq!(&out[o..o + 3], &[(10 + x) as u8, (5 + y) as u8, 7]);
            }
        }
    }

    #[test]
    fn crop_bilinear_downscale_matches_opencv_convention() {
        // Downscale 32 -> 16 columns: half-pixel centres sample between source pixels 2i, 2i+1.
        let cfg = cfg_with("image_color_mode: rgb\n");
        let data = gradient(32, 8, 96);
        let src = RgbView {
            data: &data,
            width: 32,
            height: 8,
            stride: 96,
        };
        let mut out = vec![0u8; cfg.input_len()];
        crop_to_input(&src, (0.0, 0.0, 32.0, 8.0), 0.0, &cfg, &mut out).unwrap();
        // x = 2i + 0.5 -> rounds to even-ish; check the exact float values via rounding.
        for i in 0..16 {
            let expect = (2.0 * i as f32 + 0.5).round() as u8;
            assert_eq!(out[i * 3], expect, "column {i}");
        }
    }

    #[test]
    fn crop_grayscale_and_padding_clamped_at_edges() {
        let cfg = cfg_with("");
        let data = vec![200u8; 20 * 10 * 3];
        let src = RgbView {
            data: &data,
            width: 20,
            height: 10,
            stride: 60,
        };
        let mut out = vec![0u8; cfg.input_len()];
        assert_eq!(out.len(), 16 * 8);
        // Box at the top-left corner with 50% padding: clamped to the image.
        let rect = crop_to_input(&src, (0.0, 0.0, 6.0, 4.0), 0.5, &cfg, &mut out).unwrap();
        assert_eq!(
            rect,
            CropRect {
                x: 0,
                y: 0,
                width: 9,
                height: 6
            }
        );
        assert!(out.iter().all(|&v| v == 200));
        // Box at the bottom-right edge, partly outside.
        let rect = crop_to_input(&src, (17.0, 8.0, 10.0, 10.0), 0.1, &cfg, &mut out).unwrap();
        assert_eq!((rect.x + rect.width, rect.y + rect.height), (20, 10));
        assert_eq!((rect.x, rect.y), (16, 7));
    }

    #[test]
    fn crop_errors_instead_of_panicking() {
        let cfg = cfg_with("");
        let data = vec![0u8; 20 * 10 * 3];
        let src = RgbView {
            data: &data,
            width: 20,
            height: 10,
            stride: 60,
        };
        let mut out = vec![0u8; cfg.input_len()];
        let cases: [(f32, f32, f32, f32); 7] = [
            (5.0, 5.0, 0.0, 3.0),           // zero width
            (5.0, 5.0, 3.0, -1.0),          // negative height
            (100.0, 100.0, 5.0, 5.0),       // fully outside
            (-50.0, 2.0, 10.0, 3.0),        // fully left of the image
            (f32::NAN, 0.0, 5.0, 5.0),      // NaN
            (0.0, 0.0, f32::INFINITY, 5.0), // infinite
            (20.0, 0.0, 5.0, 5.0),          // starts at the right edge
        ];
        for roi in cases {
            let e = crop_to_input(&src, roi, 0.0, &cfg, &mut out);
            assert!(matches!(e, Err(OcrModelError::Crop(_))), "{roi:?}: {e:?}");
        }
        assert!(crop_to_input(&src, (1.0, 1.0, 5.0, 5.0), -0.1, &cfg, &mut out).is_err());
        assert!(crop_to_input(&src, (1.0, 1.0, 5.0, 5.0), 0.0, &cfg, &mut out[1..]).is_err());
        let short = RgbView {
            data: &data[..100],
            ..src
        };
        assert!(crop_to_input(&short, (1.0, 1.0, 5.0, 5.0), 0.0, &cfg, &mut out).is_err());
        let narrow = RgbView { stride: 10, ..src };
        assert!(crop_to_input(&narrow, (1.0, 1.0, 5.0, 5.0), 0.0, &cfg, &mut out).is_err());
        let empty = RgbView {
            data: &[],
            width: 0,
            height: 0,
            stride: 0,
        };
        assert!(crop_to_input(&empty, (0.0, 0.0, 1.0, 1.0), 0.0, &cfg, &mut out).is_err());
        // A one-pixel sliver inside the image is still a valid crop.
        crop_to_input(&src, (19.5, 9.5, 0.25, 0.25), 0.0, &cfg, &mut out).unwrap();
    }

    #[test]
    fn crop_letterbox_keeps_aspect() {
        // Crop 8 wide x 8 high into 16x8 with letterbox: 8x8 centred, 4 px pad each side.
        let cfg =
            cfg_with("keep_aspect_ratio: true\nimage_color_mode: rgb\npadding_color: [1, 2, 3]\n");
        let data = vec![50u8; 30 * 30 * 3];
        let src = RgbView {
            data: &data,
            width: 30,
            height: 30,
            stride: 90,
        };
        let mut out = vec![0u8; cfg.input_len()];
        crop_to_input(&src, (4.0, 4.0, 16.0, 16.0), 0.0, &cfg, &mut out).unwrap();
        for y in 0..8 {
            for x in 0..16 {
                let o = (y * 16 + x) * 3;
                let want: &[u8] = if (4..12).contains(&x) {
                    &[50, 50, 50]
                } else {
                    &[1, 2, 3]
                };
                assert_eq!(&out[o..o + 3], want, "({x},{y})");
            }
        }
    }

    #[test]
    fn crop_nearest_samples_source_pixels() {
        let cfg = cfg_with("interpolation: nearest\nimage_color_mode: rgb\n");
        let data = gradient(64, 16, 192);
        let src = RgbView {
            data: &data,
            width: 64,
            height: 16,
            stride: 192,
        };
        let mut out = vec![0u8; cfg.input_len()];
        crop_to_input(&src, (0.0, 0.0, 64.0, 16.0), 0.0, &cfg, &mut out).unwrap();
        for i in 0..16 {
            assert_eq!(out[i * 3], (4 * i) as u8);
        }
    }

    /// Vertical black bars on white: a crude sharp "plate".
    fn bars(w: usize, h: usize) -> Vec<u8> {
        let mut d = vec![230u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                if (x / 4) % 3 == 0 && (8..h - 8).contains(&y) {
                    d[(y * w + x) * 3..(y * w + x) * 3 + 3].fill(20);
                }
            }
        }
        d
    }

    fn box_blur(src: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
        let mut out = src.to_vec();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let (mut s, mut n) = (0u32, 0u32);
                    for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                        for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                            s += src[(yy * w + xx) * 3 + c] as u32;
                            n += 1;
                        }
                    }
                    out[(y * w + x) * 3 + c] = (s / n) as u8;
                }
            }
        }
        out
    }

    #[test]
    fn quality_prefers_sharp_large_confident_crops() {
        let cfg = real_config();
        let sharp = bars(128, 64);
        let blurred = box_blur(&sharp, 128, 64, 3);
        let q_sharp = crop_quality(&sharp, &cfg, 50.0, 0.9).unwrap();
        let q_blur = crop_quality(&blurred, &cfg, 50.0, 0.9).unwrap();
        assert!(q_sharp.sharpness > 0.6, "{q_sharp:?}");
        assert!(q_blur.sharpness < 0.5 * q_sharp.sharpness, "{q_blur:?}");
        assert!(q_sharp.score > q_blur.score);
        assert_eq!(q_sharp.size, 1.0);

        let small = crop_quality(&sharp, &cfg, 10.0, 0.9).unwrap();
        assert_eq!(small.size, 0.0);
        let mid = crop_quality(&sharp, &cfg, 25.0, 0.9).unwrap();
        assert!((mid.size - 0.5).abs() < 1e-6);
        assert!(small.score < mid.score && mid.score < q_sharp.score);

        let flat = vec![128u8; cfg.input_len()];
        let q_flat = crop_quality(&flat, &cfg, 40.0, 1.0).unwrap();
        assert_eq!(q_flat.sharpness, 0.0);
        assert!((q_flat.score - 0.6).abs() < 1e-6, "{q_flat:?}");

        let q_nan = crop_quality(&sharp, &cfg, f32::NAN, f32::NAN).unwrap();
        assert_eq!((q_nan.size, q_nan.detector), (0.0, 0.0));
        assert!((0.0..=1.0).contains(&q_nan.score));
        assert!(crop_quality(&sharp[1..], &cfg, 40.0, 1.0).is_err());
    }

    #[test]
    fn laplacian_of_tiny_or_flat_images_is_zero() {
        assert_eq!(laplacian_variance(&[1.0; 4], 2, 2), 0.0);
        assert_eq!(laplacian_variance(&[9.0; 25], 5, 5), 0.0);
        assert_eq!(laplacian_variance(&[1.0; 3], 5, 5), 0.0);
        let mut img = [0.0f32; 25];
        img[12] = 10.0;
        assert!(laplacian_variance(&img, 5, 5) > 0.0);
    }
}
