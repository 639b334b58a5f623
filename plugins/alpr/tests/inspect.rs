// SPDX-License-Identifier: MIT OR Apache-2.0
//! `gst-inspect-1.0` output of every element, checked against committed snapshots so that a
//! property or documentation change is always reviewed. `UPDATE_SNAPSHOTS=1` rewrites them.

use std::path::PathBuf;
use std::process::Command;

fn plugin_dir() -> PathBuf {
    // target/<profile>/deps/<test binary> -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstalpr.so").is_file(),
        "{} has no libgstalpr.so: build the plugin first (cargo build)",
        dir.display()
    );
    dir
}

fn inspect(element: &str) -> String {
    let out = Command::new("gst-inspect-1.0")
        .arg("--no-colors")
        .arg(element)
        .env("GST_PLUGIN_PATH", plugin_dir())
        // Do not let a stale registry or other plugins' warnings interfere.
        .env("GST_REGISTRY", plugin_dir().join("inspect-registry.bin"))
        .output()
        .expect("gst-inspect-1.0 runs (apt install gstreamer1.0-tools)");
    assert!(
        out.status.success(),
        "gst-inspect-1.0 {element} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // Paths, versions and dates differ between machines and builds.
        .filter(|l| {
            let t = l.trim_start();
            !(t.starts_with("Filename")
                || t.starts_with("Version")
                || t.starts_with("Source release date"))
        })
        .map(|l| l.trim_end().to_string() + "\n")
        .collect()
}

fn check(element: &str) {
    let got = inspect(element);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{element}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "gst-inspect-1.0 {element} differs from {} from line {}:\n  now:      {:?}\n  snapshot: {:?}\n\
             Review the change and rerun with UPDATE_SNAPSHOTS=1 to accept it.",
            path.display(),
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

#[test]
fn alprsrc_inspect_snapshot() {
    check("alprsrc");
}

#[test]
fn alprdetect_inspect_snapshot() {
    check("alprdetect");
}

#[test]
fn alprtrack_inspect_snapshot() {
    check("alprtrack");
}

#[test]
fn kafkasink_inspect_snapshot() {
    check("kafkasink");
}

#[test]
fn alprocr_inspect_snapshot() {
    check("alprocr");
}

#[test]
fn alprwatch_inspect_snapshot() {
    check("alprwatch");
}

#[test]
fn alprcsvsink_inspect_snapshot() {
    check("alprcsvsink");
}

#[test]
fn s3sink_inspect_snapshot() {
    check("s3sink");
}
