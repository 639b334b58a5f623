// SPDX-License-Identifier: MIT OR Apache-2.0
//! Loading ONNX Runtime (`libonnxruntime.so`) at run time, once per process.
//!
//! `ort` is built with `load-dynamic`, so nothing is linked at build time. The library is taken
//! from `$ORT_DYLIB_PATH`, else from the gst-alpr cache (`scripts/setup` extracts it there from the
//! PyPI `onnxruntime` wheel), else from the system library path. Loading it ourselves, before any
//! other `ort` call, turns a missing library into an error message instead of a panic inside `ort`.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::{Session, builder::GraphOptimizationLevel};

const HOW_TO_INSTALL: &str = "install it with scripts/setup (it extracts libonnxruntime.so from the \
PyPI `onnxruntime` wheel >= 1.31 into ~/.cache/gst-alpr/onnxruntime/) or point ORT_DYLIB_PATH at \
libonnxruntime.so.1.xx.y";

fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        // An explicit choice is never second-guessed: a wrong path must be reported as such.
        return vec![PathBuf::from(p)];
    }
    let mut v = Vec::new();
    if let Some(c) = crate::models::cache_dir() {
        v.push(c.join("onnxruntime").join("libonnxruntime.so"));
    }
    v.push(PathBuf::from("libonnxruntime.so"));
    v
}

/// The process-wide ONNX Runtime environment, loaded on first use; the result (and its error
/// text) is cached for the process.
pub fn environment() -> Result<&'static Environment, String> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut errors = Vec::new();
        for path in candidates() {
            if path.is_absolute() && !path.exists() {
                errors.push(format!("{}: no such file", path.display()));
                continue;
            }
            match ort::init_from(&path) {
                Ok(builder) => {
                    return builder
                        .with_name("gst-alpr")
                        .build()
                        .map_err(|e| format!("ONNX Runtime environment: {e}"));
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(format!(
            "ONNX Runtime library could not be loaded ({}); {HOW_TO_INSTALL}",
            errors.join("; ")
        ))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Makes sure ONNX Runtime is loaded.
pub fn ensure() -> Result<(), String> {
    environment().map(|_| ())
}

/// Opens an ONNX model with `threads` intra-op threads (0 = ONNX Runtime's default).
pub fn open_session(path: &std::path::Path, threads: u32) -> Result<Session, String> {
    let env = environment()?;
    let fail = |e: ort::Error| format!("cannot load ONNX model {}: {e}", path.display());
    let mut builder = Session::builder(env)
        .map_err(fail)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| fail(e.into()))?;
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads as usize)
            .map_err(|e| fail(e.into()))?
            .with_inter_threads(1)
            .map_err(|e| fail(e.into()))?;
    }
    builder.commit_from_file(path).map_err(fail)
}
