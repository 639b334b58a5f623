// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers for tests and benches that run real servers on 127.0.0.1.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// Starts a server process (`command()` builds its command line; stdout and stderr are appended
/// to `log`) and returns it once it accepts connections on 127.0.0.1:`port`. A start that
/// exits first (the port of a killed predecessor not yet free) is retried; after 15 s the test
/// fails, naming `name` and the log.
pub fn spawn_listening(name: &str, port: u16, log: &Path, command: impl Fn() -> Command) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("{name} log {}: {e}", log.display()));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut child = command()
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out.try_clone().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{name} did not start on port {port}: see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
