// SPDX-License-Identifier: MIT OR Apache-2.0
//! Loading ONNX Runtime (`libonnxruntime.so`) at run time, once per process.
//!
//! `ort` is built with `load-dynamic`, so nothing is linked at build time. The library is taken
//! from `$ORT_DYLIB_PATH`, else from the gst-alpr cache (`scripts/setup` extracts it there from the
//! PyPI `onnxruntime` wheel), else from the system library path. Loading it ourselves, before any
//! other `ort` call, turns a missing library into an error message instead of a panic inside `ort`.

use std::path::PathBuf;
use std::sync::OnceLock;

use gst::glib;
use gst::prelude::*;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

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

/// Where a session's nodes run (the elements' `execution-provider` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAlprExecutionProvider")]
pub enum Provider {
    #[default]
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu = 0,
    #[enum_value(
        name = "NVIDIA CUDA (onnxruntime-gpu library, CUDA and cuDNN)",
        nick = "cuda"
    )]
    Cuda = 1,
    #[enum_value(
        name = "NVIDIA TensorRT, then CUDA and the CPU for the nodes it does not take",
        nick = "tensorrt"
    )]
    TensorRt = 2,
}

impl Provider {
    /// The `execution-provider` property of the elements that run models.
    pub fn param_spec() -> glib::ParamSpec {
        glib::ParamSpecEnum::builder_with_default("execution-provider", Provider::default())
            .nick("Execution provider")
            .blurb(
                "Where ONNX Runtime runs the models: cpu, cuda or tensorrt (needs the \
                 onnxruntime-gpu library in ORT_DYLIB_PATH and an NVIDIA GPU; without them the \
                 element warns and runs on the CPU)",
            )
            .mutable_ready()
            .build()
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }
}

/// Execution providers the loaded ONNX Runtime library was built with.
pub fn available_providers() -> Vec<String> {
    use ort::ep::ExecutionProvider;
    let mut v = vec!["CPUExecutionProvider".to_string()];
    if ort::ep::CUDA::is_available().unwrap_or(false) {
        v.push("CUDAExecutionProvider".into());
    }
    if ort::ep::TensorRT::is_available().unwrap_or(false) {
        v.push("TensorrtExecutionProvider".into());
    }
    v
}

/// Opens an ONNX model on the CPU with `threads` intra-op threads (0 = ONNX Runtime's default).
pub fn open_session(path: &std::path::Path, threads: u32) -> Result<Session, String> {
    open_session_on(path, threads, Provider::Cpu).map(|(s, _)| s)
}

fn cpu_builder(env: &Environment, threads: u32) -> Result<SessionBuilder, ort::Error> {
    let mut builder =
        Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::Level3)?;
    if threads > 0 {
        builder = builder
            .with_intra_threads(threads as usize)?
            .with_inter_threads(1)?;
    }
    if threads != 1 {
        // Pool threads that spin between operators burn a core while the streaming thread
        // pre-processes, the other element's session runs, or the decoder needs the CPU.
        builder = builder.with_intra_op_spinning(false)?;
    }
    Ok(builder)
}

/// Registers `provider` on `builder`; `Err` says why it cannot be used.
fn register(builder: &mut SessionBuilder, provider: Provider) -> Result<(), String> {
    use ort::ep::ExecutionProvider;
    let wanted = match provider {
        Provider::Cpu => return Ok(()),
        Provider::Cuda => "CUDAExecutionProvider",
        Provider::TensorRt => "TensorrtExecutionProvider",
    };
    if !available_providers().iter().any(|p| p == wanted) {
        return Err(format!(
            "the ONNX Runtime library in use was built without {wanted} (it has {}); point \
             ORT_DYLIB_PATH at the libonnxruntime.so of the onnxruntime-gpu wheel",
            available_providers().join(", ")
        ));
    }
    let cuda = ort::ep::CUDA::default().with_device_id(0);
    let r = match provider {
        Provider::TensorRt => {
            let mut trt = ort::ep::TensorRT::default().with_device_id(0);
            // Engines take minutes to build: keep them between runs.
            if let Some(dir) = crate::models::cache_dir().map(|d| d.join("tensorrt"))
                && std::fs::create_dir_all(&dir).is_ok()
            {
                use ort::ep::ArbitrarilyConfigurableExecutionProvider;
                trt = trt
                    .with_arbitrary_config("trt_engine_cache_enable", "1")
                    .with_arbitrary_config("trt_engine_cache_path", dir.display());
            }
            trt.register(builder).and_then(|()| cuda.register(builder))
        }
        _ => cuda.register(builder),
    };
    r.map_err(|e| format!("{wanted} could not be registered: {e}"))
}

/// Opens an ONNX model with `threads` intra-op threads (0 = ONNX Runtime's default) on
/// `provider`. When the provider cannot be used (library without it, no GPU, driver errors) the
/// session is opened on the CPU instead and the second value says why, for the caller to warn.
pub fn open_session_on(
    path: &std::path::Path,
    threads: u32,
    provider: Provider,
) -> Result<(Session, Option<String>), String> {
    let env = environment()?;
    let fail = |e: ort::Error| format!("cannot load ONNX model {}: {e}", path.display());
    let mut fallback = None;
    if provider != Provider::Cpu {
        let mut builder = cpu_builder(env, threads).map_err(fail)?;
        match register(&mut builder, provider) {
            Ok(()) => match builder.commit_from_file(path) {
                Ok(session) => return Ok((session, None)),
                Err(e) => fallback = Some(format!("{} session failed: {e}", provider.name())),
            },
            Err(e) => fallback = Some(e),
        }
    }
    let session = cpu_builder(env, threads)
        .map_err(fail)?
        .commit_from_file(path)
        .map_err(fail)?;
    Ok((session, fallback))
}
