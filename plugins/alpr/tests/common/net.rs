// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers for tests and benches that run real servers on 127.0.0.1.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (closed again: "service down" until something binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A test server binary: `$<env>`, `../shared/bin/<name>`, or the cargo-install cache of
/// scripts/lib.sh (`~/.cache/gst-alpr/<name>/bin/<name>`).
pub fn server_bin(env: &str, name: &str, what: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for anc in manifest.ancestors() {
        let cand = anc.join("shared/bin").join(name);
        if cand.is_file() {
            return cand;
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_default()
        .join(format!("gst-alpr/{name}/bin/{name}"));
    assert!(
        cache.is_file(),
        "{what} is not installed: set {env}, or run scripts/setup (it installs {name} into \
         ~/.cache/gst-alpr/{name})"
    );
    cache
}
