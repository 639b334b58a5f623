// SPDX-License-Identifier: MIT OR Apache-2.0
//! Where model files come from, decided in one place for every element.
//!
//! Order: the element property (an explicit path), then `$ALPR_MODELS_DIR/<relative>`, then a
//! `shared/models/<relative>` folder in the working directory or one of its parents (the layout of
//! a development checkout), then the user cache `$XDG_CACHE_HOME/gst-alpr/models/<relative>`
//! (default `~/.cache/gst-alpr/models`), which `scripts/fetch-models` fills from the upstream URLs
//! in `models/manifest.tsv` after checking each file's sha256.

use std::path::{Path, PathBuf};

/// Default locations of the shipped models, relative to a models directory.
pub const VEHICLE_MODEL: &str = "vehicle/yolox_nano.onnx";
/// The int8 copy first; the float upstream file (same inputs and outputs) when only it is there.
pub const PLATE_MODELS: [&str; 2] = [
    "plate/yolo-v9-t-416-license-plates-end2end-int8.onnx",
    "plate/yolo-v9-t-416-license-plates-end2end.onnx",
];
pub const OCR_MODEL: &str = "ocr/cct_xs_v2_global.onnx";
/// The OCR model's config (alphabet, slots, input size), found beside the model by default.
pub const OCR_CONFIG: &str = "ocr/cct_xs_v2_global_plate_config.yaml";

/// The per-user cache directory of gst-alpr (`$XDG_CACHE_HOME/gst-alpr` or `~/.cache/gst-alpr`).
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("gst-alpr"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("gst-alpr"))
}

/// Candidate model directories, in the order they are searched.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("ALPR_MODELS_DIR").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for anc in cwd.ancestors() {
            let cand = anc.join("shared").join("models");
            if cand.is_dir() {
                dirs.push(cand);
                break;
            }
        }
    }
    if let Some(c) = cache_dir() {
        dirs.push(c.join("models"));
    }
    dirs
}

/// Resolves a model: `explicit` (from the property named `property`) wins and must exist;
/// otherwise each of `relatives` is looked up in [`search_dirs`], first match wins. The error
/// lists every place tried.
pub fn resolve(
    explicit: Option<&str>,
    property: &str,
    relatives: &[&str],
) -> Result<PathBuf, String> {
    if let Some(p) = explicit.filter(|p| !p.is_empty()) {
        let path = PathBuf::from(p);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "model file {} (property `{property}`) does not exist or is not a file",
                path.display()
            ))
        };
    }
    let dirs = search_dirs();
    for relative in relatives {
        for d in &dirs {
            let cand = d.join(relative);
            if cand.is_file() {
                return Ok(cand);
            }
        }
    }
    let tried: Vec<String> = relatives
        .iter()
        .flat_map(|r| dirs.iter().map(move |d| d.join(r).display().to_string()))
        .collect();
    Err(format!(
        "model `{}` not found (tried: {}). Set the `{property}` property, set \
         ALPR_MODELS_DIR, or run scripts/fetch-models to download it into the cache",
        relatives.first().copied().unwrap_or_default(),
        if tried.is_empty() {
            "no candidate directories".to_string()
        } else {
            tried.join(", ")
        }
    ))
}

/// A file beside `model` (e.g. a class-names list), if present.
pub fn sibling(model: &Path, name: &str) -> Option<PathBuf> {
    let p = model.parent()?.join(name);
    p.is_file().then_some(p)
}
