// SPDX-License-Identifier: MIT OR Apache-2.0
//! Helpers shared by the integration tests: plugin registration, test assets, image decoding.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Once;

use gst::prelude::*;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstalpr::plugin_register_static().expect("register the alpr plugin");
    });
}

fn shared(var: &str, sub: &str) -> PathBuf {
    if let Some(d) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for anc in manifest.ancestors() {
        let cand = anc.join("shared").join(sub);
        if cand.is_dir() {
            return cand;
        }
    }
    panic!(
        "test assets not found: set {var} or provide ../shared/{sub} beside the project \
         (see README: scripts/test sets it up)"
    );
}

/// Sample clips (`../shared/media` or `$ALPR_MEDIA_DIR`).
pub fn media(name: &str) -> PathBuf {
    let p = shared("ALPR_MEDIA_DIR", "media").join(name);
    assert!(p.is_file(), "missing test clip {}", p.display());
    p
}

/// Labelled benchmark images (`../shared/data` or `$ALPR_DATA_DIR`).
pub fn data_dir() -> PathBuf {
    shared("ALPR_DATA_DIR", "data")
}

/// One labelled image of the openalpr benchmark: the file and the plate box and text.
#[derive(Debug, Clone)]
pub struct Labelled {
    pub image: PathBuf,
    pub bbox: (f32, f32, f32, f32),
    pub text: String,
}

pub fn openalpr(region: &str) -> Vec<Labelled> {
    let dir = data_dir().join("openalpr").join(region);
    let mut v = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "txt") {
            let line = std::fs::read_to_string(&p).unwrap();
            let f: Vec<&str> = line.trim().split('\t').collect();
            assert_eq!(
                f.len(),
                6,
                "{}: expected 6 tab-separated fields",
                p.display()
            );
            v.push(Labelled {
                image: dir.join(f[0]),
                bbox: (
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[4].parse().unwrap(),
                ),
                text: f[5].to_string(),
            });
        }
    }
    v.sort_by(|a, b| a.image.cmp(&b.image));
    v
}

/// Decodes a still image (or the first frame of a clip) with GStreamer into `format`.
pub fn decode_image(path: &std::path::Path, format: &str) -> (gst::Caps, gst::Buffer) {
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format={format} ! appsink name=sink sync=false",
        path.display()
    );
    let pipeline = launch(&desc);
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let sample = sink
        .pull_preroll()
        .unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()));
    pipeline.set_state(gst::State::Null).unwrap();
    (
        sample.caps().unwrap().to_owned(),
        sample.buffer().unwrap().to_owned(),
    )
}

/// Collects the error messages posted on a bus.
pub fn bus_errors(bus: &gst::Bus) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            v.push(format!("{} ({:?})", e.error(), e.debug()));
        }
    }
    v
}

/// Parses a launch line that must be valid into a pipeline.
pub fn launch(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .expect("a launch line with several elements makes a pipeline")
}

/// Plays `pipeline` until EOS, handing every other bus message to `each`; panics on an error
/// message or when EOS takes longer than `timeout_s`. The pipeline is left playing.
pub fn play_until_eos(
    pipeline: &gst::Pipeline,
    timeout_s: u64,
    mut each: impl FnMut(&gst::Message),
) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let msg = bus
            .timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64))
            .unwrap_or_else(|| panic!("no EOS within {timeout_s} s"));
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            _ => each(&msg),
        }
    }
}

/// Runs a launch line until EOS or an error (60 s at most) and returns the pipeline, still
/// playing (set it to NULL when done), with the warnings and errors it posted.
pub fn run_to_eos(desc: &str) -> (gst::Pipeline, Vec<String>, Vec<String>) {
    let pipeline = launch(desc);
    let bus = pipeline.bus().unwrap();
    // A failing start is reported on the bus, read below.
    let _ = pipeline.set_state(gst::State::Playing);
    let (mut warnings, mut errors) = (Vec::new(), Vec::new());
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                errors.push(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
            gst::MessageView::Warning(w) => {
                warnings.push(format!("{} ({:?})", w.error(), w.debug()))
            }
            _ => {}
        }
    }
    (pipeline, warnings, errors)
}

/// Waits (up to 20 s) until the element's `stats` field `field` reads `want`: a run still in
/// flight on another thread briefly holds the shared model too.
#[track_caller]
pub fn expect_users(h: &gst_check::Harness, field: &str, want: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let n = h
            .element()
            .unwrap()
            .property::<gst::Structure>("stats")
            .get::<u64>(field)
            .unwrap();
        if n == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{field}: {n}, expected {want}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
