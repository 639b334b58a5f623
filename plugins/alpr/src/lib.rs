// SPDX-License-Identifier: MIT OR Apache-2.0
#![allow(clippy::non_send_fields_in_send_ty)]
//! gst-alpr: automatic licence-plate recognition elements for GStreamer.
//!
//! One plugin (`libgstalpr.so`) so that the metas register once. See `meta` for the metadata
//! contract between the elements and the applications that embed them.

use std::sync::LazyLock;

use gst::glib;

pub mod alprcsvsink;
pub mod alprdetect;
pub mod alprocr;
pub mod alprsrc;
pub mod alprtrack;
pub mod alprwatch;
pub mod event;
pub mod kafkasink;
pub mod link;
pub mod meta;
pub mod metrics;
pub mod models;
pub mod runtime;
pub mod s3sink;
pub mod sessions;
pub mod sink;
pub mod store;
pub mod video;

/// The plugin's one tokio runtime, for the async clients (object_store) and the `/metrics`
/// server. Network work runs on it from the sinks' worker threads, never from a streaming
/// thread. Built on first use; if that fails (no threads left), the error is kept and every
/// element that needs it reports it instead of panicking.
static RUNTIME: LazyLock<Result<tokio::runtime::Runtime, String>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("alpr-tokio")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))
});

/// The plugin's one lock-poisoning policy: a panic on another thread (a bug, already reported
/// by the element trampolines) must not take a streaming or worker thread down with it; the
/// data behind these locks is consistent between statements, so the guard is taken as it is.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The plugin's tokio runtime ([`RUNTIME`]), or why it could not be built.
pub(crate) fn tokio_runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    RUNTIME.as_ref().map_err(Clone::clone)
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    meta::register();
    event::register();
    alprdetect::register(plugin)?;
    alprtrack::register(plugin)?;
    alprocr::register(plugin)?;
    alprwatch::register(plugin)?;
    alprcsvsink::register(plugin)?;
    kafkasink::register(plugin)?;
    s3sink::register(plugin)?;
    alprsrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    alpr,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
