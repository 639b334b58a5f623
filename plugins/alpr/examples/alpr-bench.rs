// SPDX-License-Identifier: MIT OR Apache-2.0
//! The measurements behind `scripts/bench`; prints one JSON object on stdout.
//!
//! ```text
//! alpr-bench pipeline VIDEO [--frames N] [--threads T] [element.property=value ...]
//! alpr-bench pipeline VIDEO --soak-minutes M [--rss-every S] [element.property=value ...]
//! alpr-bench bound VIDEO [--frames N] [--threads T] [element.property=value ...]
//! ```
//!
//! `pipeline` runs `filesrc ! decodebin ! alprdetect ! alprtrack ! alprocr ! kafkasink` (local
//! mode: the outbox lives in a temporary directory) on the first N frames and reports wall time,
//! process CPU time, CPU time per stage, counts and peak RSS. Stages are timed with the CPU clock
//! of the streaming thread, switched by pad probes: `decode` from the parser's or decoder's sink
//! pad, then `detect`, `track`, `ocr` and `sink` from each element's sink pad. Work on other
//! threads (demuxer, ONNX Runtime pool threads with `--threads` > 1, the sink's worker) is the
//! process CPU time minus the streaming thread's.
//!
//! With `--soak-minutes` the clip is looped with seamless segment seeks for M minutes and the
//! resident set size is sampled every S seconds (default 5).
//!
//! `bound` is the model-only bound: for each frame the element code builds the model inputs
//! exactly as in the pipeline (same detector passes, same OCR batches, recorded while running
//! the engine untimed), then bare ONNX Runtime sessions with the same options run those inputs,
//! timed, while the decoder is blocked. Frames per second of model time is the most any
//! pipeline with these models and these invocations can do. Which vehicles alprdetect leaves
//! alone (`skip-settled`) depends on what alprocr has read, so a first pass runs the real
//! `alprdetect ! alprtrack ! alprocr` chain and records, per frame, the settled vehicles
//! alprdetect used; the replay gives the engine the same ones.

#[path = "common/pipeline.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstalpr::alprdetect::AlprPlateMode;
use gstalpr::alprdetect::engine::{Engine, EngineConfig, InputRole};
use gstalpr::alprdetect::model::Detector;
use gstalpr::alprdetect::preprocess::Preprocessor;
use gstalpr::alprocr::engine::OcrEngine;
use gstalpr::alprocr::ocrmodel::{self, RgbView};
use gstalpr::meta::{AlprObject, BBox, ObjectKind, Settled};
use gstalpr::{models, runtime};
use ort::value::TensorRef;
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Counts heap allocations made through Rust's allocator, per thread (GLib's own `g_malloc`
/// calls are not seen): the stage clock reads it to report allocations per frame by stage.
struct CountingAlloc;

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn allocs() -> u64 {
    ALLOCS.with(|a| a.get())
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised thread local
// without destructor, so touching it never allocates.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// alprocr scales plate crops down to this longest side before reading (its `MAX_CROP_SIDE`);
/// the OCR input is 128x64 whatever the crop size, so this does not change model time.
const OCR_CROP_SIDE: usize = 320;
/// Frames whose inputs are prepared before each timed replay in `bound`.
const CHUNK: usize = 8;

struct Opts {
    mode: String,
    video: String,
    frames: Option<u64>,
    threads: u32,
    soak_minutes: Option<f64>,
    rss_every: f64,
    /// `(element factory or name, property, value)`
    props: Vec<(String, String, String)>,
}

fn usage() -> ! {
    eprintln!(
        "usage: alpr-bench pipeline|bound VIDEO [--frames N] [--threads T] [--soak-minutes M] \
         [--rss-every S] [element.property=value ...]"
    );
    std::process::exit(2);
}

fn parse_args() -> Res<Opts> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    if mode != "pipeline" && mode != "bound" {
        usage();
    }
    let video = args.next().unwrap_or_else(|| usage());
    let mut o = Opts {
        mode,
        video,
        frames: None,
        threads: 1,
        soak_minutes: None,
        rss_every: 5.0,
        props: Vec::new(),
    };
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Res<String> {
            args.next()
                .ok_or_else(|| format!("{name} needs a value").into())
        };
        match a.as_str() {
            "--frames" => o.frames = Some(value("--frames")?.parse()?),
            "--threads" => o.threads = value("--threads")?.parse()?,
            "--soak-minutes" => o.soak_minutes = Some(value("--soak-minutes")?.parse()?),
            "--rss-every" => o.rss_every = value("--rss-every")?.parse()?,
            p if p.contains('=') => {
                let (target, v) = p.split_once('=').unwrap_or_default();
                let (el, prop) = target
                    .split_once('.')
                    .ok_or_else(|| format!("{p}: expected element.property=value"))?;
                o.props.push((el.into(), prop.into(), v.into()));
            }
            _ => usage(),
        }
    }
    Ok(o)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> Duration {
    clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn gettid() -> i32 {
    // SAFETY: no arguments, always succeeds.
    unsafe { libc::gettid() }
}

/// A `kB` field of /proc/self/status (VmRSS, VmHWM), in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of each live thread of this process, by thread name.
fn thread_times() -> Vec<(String, f64)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return v;
    };
    for e in dir.flatten() {
        let p = e.path();
        let name = std::fs::read_to_string(p.join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let ns: f64 = std::fs::read_to_string(p.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        v.push((name, ns / 1e9));
    }
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

const STAGES: [&str; 5] = ["decode", "detect", "track", "ocr", "sink"];
const DECODE: usize = 0;
const DETECT: usize = 1;
const TRACK: usize = 2;
const OCR: usize = 3;
const SINK: usize = 4;

/// Streaming-thread CPU time per stage, switched by pad probes.
#[derive(Default)]
struct StageClock {
    tid: Option<i32>,
    stage: Option<usize>,
    last: Duration,
    acc: [Duration; 5],
    last_allocs: u64,
    allocs: [u64; 5],
    frames: u64,
    limit: Option<u64>,
    eos_sent: bool,
    start: Option<(Instant, Duration)>,
    end: Option<(Instant, Duration)>,
}

impl StageClock {
    /// Attributes the streaming thread's CPU time since the last mark to the stage that was
    /// running, and switches to `next`. Marks from other threads are ignored.
    fn mark(&mut self, next: Option<usize>) {
        if self.tid != Some(gettid()) {
            return;
        }
        let now = thread_cpu();
        let a = allocs();
        if let Some(s) = self.stage {
            self.acc[s] += now.saturating_sub(self.last);
            self.allocs[s] += a - self.last_allocs;
        }
        self.last = now;
        self.last_allocs = a;
        self.stage = next;
    }
}

fn stage_probe(pad: &gst::Pad, clock: &Arc<Mutex<StageClock>>, stage: usize) {
    let clock = clock.clone();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        clock.lock().unwrap().mark(Some(stage));
        gst::PadProbeReturn::Ok
    });
}

fn apply_props(pipeline: &gst::Pipeline, props: &[(String, String, String)]) -> Res<()> {
    for (el, prop, value) in props {
        let e = common::find(pipeline, el)
            .ok_or_else(|| format!("{el}.{prop}: no {el} in the pipeline"))?;
        common::set(&e, prop, value)?;
    }
    Ok(())
}

fn structure_json(s: &gst::StructureRef) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in s.iter() {
        let j = if let Ok(x) = v.get::<u64>() {
            json!(x)
        } else if let Ok(x) = v.get::<f64>() {
            json!(x)
        } else if let Ok(x) = v.get::<u32>() {
            json!(x)
        } else if let Ok(x) = v.get::<bool>() {
            json!(x)
        } else if let Ok(Some(x)) = v.get::<Option<String>>() {
            json!(x)
        } else {
            Value::Null
        };
        m.insert(k.to_string(), j);
    }
    Value::Object(m)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

fn pipeline(o: &Opts) -> Res<Value> {
    let outbox = tempfile::tempdir()?;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let desc = format!(
        "filesrc location={} ! decodebin name=dec ! alprdetect name=detect threads={t} ! \
         alprtrack name=track ! alprocr name=ocr camera-id=bench threads={t} ! \
         kafkasink name=sink outbox-location={}",
        q(&o.video),
        q(&outbox.path().display().to_string()),
        t = o.threads,
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    apply_props(&pipeline, &o.props)?;
    let soak = o.soak_minutes.map(|m| Duration::from_secs_f64(m * 60.0));

    let clock = Arc::new(Mutex::new(StageClock {
        limit: if soak.is_some() { None } else { o.frames },
        ..Default::default()
    }));
    let el = |n: &str| pipeline.by_name(n).ok_or(format!("no {n}"));
    let sink_pad =
        |n: &str| -> Res<gst::Pad> { Ok(el(n)?.static_pad("sink").ok_or("no sink pad")?) };
    let detect_sink = sink_pad("detect")?;
    {
        let clock = clock.clone();
        detect_sink.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
            let mut c = clock.lock().unwrap();
            if c.limit.is_some_and(|l| c.frames >= l) {
                let send = !c.eos_sent;
                c.eos_sent = true;
                drop(c);
                if send {
                    // Serialized, from the streaming thread: everything before it is processed.
                    pad.send_event(gst::event::Eos::new());
                }
                // Handled, not Drop: the buffer is released here (Drop leaves GStreamer 1.22
                // unreffing a pointer gstreamer-rs already took).
                return gst::PadProbeReturn::Handled;
            }
            if c.tid.is_none() {
                c.tid = Some(gettid());
                c.last = thread_cpu();
                c.last_allocs = allocs();
                c.start = Some((Instant::now(), process_cpu()));
            }
            c.frames += 1;
            c.mark(Some(DETECT));
            gst::PadProbeReturn::Ok
        });
    }
    stage_probe(&sink_pad("track")?, &clock, TRACK);
    stage_probe(&sink_pad("ocr")?, &clock, OCR);
    let kafka_sink = sink_pad("sink")?;
    stage_probe(&kafka_sink, &clock, SINK);
    {
        let clock = clock.clone();
        kafka_sink.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            if let Some(gst::PadProbeData::Event(ev)) = &info.data
                && ev.type_() == gst::EventType::Eos
            {
                let mut c = clock.lock().unwrap();
                c.mark(None);
                c.end = Some((Instant::now(), process_cpu()));
            }
            gst::PadProbeReturn::Ok
        });
    }
    // Parsers and decoders inside decodebin appear while it plugs them.
    {
        let clock = clock.clone();
        let dec = el("dec")?.downcast::<gst::Bin>().map_err(|_| "not a bin")?;
        dec.connect_deep_element_added(move |_, _, e| {
            let klass = e
                .factory()
                .map(|f| f.metadata("klass").unwrap_or_default().to_string())
                .unwrap_or_default();
            if (klass.contains("Decoder") || klass.contains("Parser"))
                && !klass.contains("Demux")
                && let Some(p) = e.static_pad("sink")
            {
                stage_probe(&p, &clock, DECODE);
            }
        });
    }

    // RSS samples: (seconds since start, MiB, frames so far).
    let samples: Arc<Mutex<Vec<(f64, f64, u64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (samples, stop, clock) = (samples.clone(), stop.clone(), clock.clone());
        let every = Duration::from_secs_f64(o.rss_every.max(0.1));
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let frames = clock.lock().unwrap().frames;
                samples.lock().unwrap().push((
                    t0.elapsed().as_secs_f64(),
                    status_kib("VmRSS:") as f64 / 1024.0,
                    frames,
                ));
                let until = Instant::now() + every;
                while Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };

    let bus = pipeline.bus().ok_or("no bus")?;
    let started = Instant::now();
    if soak.is_some() {
        pipeline.set_state(gst::State::Paused)?;
        wait_async_done(&bus)?;
        pipeline.seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT,
            gst::ClockTime::ZERO,
        )?;
    }
    pipeline.set_state(gst::State::Playing)?;
    let mut events = 0u64;
    let mut plates = BTreeSet::new();
    let mut loops = 1u64;
    let result = common::run_to_eos(&bus, |msg| {
        if let gst::MessageView::SegmentDone(_) = msg.view() {
            // Seamless loop; the last pass is a plain seek so that the stream ends in EOS.
            let last = soak.is_none_or(|d| started.elapsed() >= d);
            let flags = if last {
                gst::SeekFlags::empty()
            } else {
                gst::SeekFlags::SEGMENT
            };
            loops += 1;
            pipeline
                .seek_simple(flags, gst::ClockTime::ZERO)
                .map_err(|e| format!("loop seek failed: {e}"))?;
        } else if let Some(ev) = common::plate_event(msg) {
            events += 1;
            plates.insert(ev.plate_text);
        }
        Ok(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let threads = thread_times();
    let stats =
        |n: &str| -> Res<Value> { Ok(structure_json(&el(n)?.property::<gst::Structure>("stats"))) };
    let (detect_stats, ocr_stats, sink_stats) = (stats("detect")?, stats("ocr")?, stats("sink")?);
    let caps = detect_sink.current_caps();
    pipeline.set_state(gst::State::Null)?;
    result?;

    let c = clock.lock().unwrap();
    let ((w0, c0), (w1, c1)) = (
        c.start.ok_or("no frame reached alprdetect")?,
        c.end.ok_or("no EOS reached kafkasink")?,
    );
    let wall = (w1 - w0).as_secs_f64();
    let cpu = (c1 - c0).as_secs_f64();
    let streaming: f64 = c.acc.iter().map(Duration::as_secs_f64).sum();
    let mut stages = serde_json::Map::new();
    for (i, name) in STAGES.iter().enumerate() {
        stages.insert(name.to_string(), json!(c.acc[i].as_secs_f64()));
    }
    stages.insert("other_threads".into(), json!((cpu - streaming).max(0.0)));
    let mut stage_allocs = serde_json::Map::new();
    for (i, name) in STAGES.iter().enumerate() {
        stage_allocs.insert(name.to_string(), json!(c.allocs[i]));
    }
    let size = caps
        .as_ref()
        .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
        .map(|i| (i.width(), i.height()))
        .unwrap_or_default();
    let samples = samples.lock().unwrap().clone();
    let mut out = json!({
        "mode": "pipeline",
        "clip": o.video,
        "width": size.0,
        "height": size.1,
        "threads": o.threads,
        "frames": c.frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "stages_cpu_s": stages,
        "stages_allocs": stage_allocs,
        "detect": detect_stats,
        "ocr": ocr_stats,
        "sink": sink_stats,
        "events": events,
        "distinct_plates": plates.len(),
        "plates": plates,
        "peak_rss_mib": status_kib("VmHWM:") as f64 / 1024.0,
        "threads_cpu_s": threads.iter().filter(|t| t.1 >= 0.01).map(|(n, s)| json!([n, s])).collect::<Vec<_>>(),
    });
    if soak.is_some() {
        let total = samples.last().map(|s| s.0).unwrap_or(0.0);
        let second_half: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.0 >= total / 2.0)
            .map(|s| (s.0 / 60.0, s.1))
            .collect();
        out["soak"] = json!({
            "minutes": total / 60.0,
            "loops": loops,
            "samples": samples.iter().map(|s| json!([s.0, s.1, s.2])).collect::<Vec<_>>(),
            "peak_rss_mib": samples.iter().map(|s| s.1).fold(0.0, f64::max),
            "slope_mib_per_min_second_half": slope(&second_half),
        });
    }
    Ok(out)
}

fn wait_async_done(bus: &gst::Bus) -> Res<()> {
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(60))
            .ok_or("pipeline did not preroll in 60 s")?;
        match msg.view() {
            gst::MessageView::AsyncDone(_) => return Ok(()),
            gst::MessageView::Error(e) => {
                return Err(format!("{} ({})", e.error(), e.debug().unwrap_or_default()).into());
            }
            _ => {}
        }
    }
}

/// Model invocations of one frame, with their inputs.
#[derive(Default)]
struct FrameWork {
    detectors: Vec<(InputRole, Vec<f32>)>,
    /// Batch size and the NHWC u8 batch.
    ocr: Option<(usize, Vec<u8>)>,
}

#[derive(Default)]
struct ModelTime {
    calls: u64,
    items: u64,
    wall: Duration,
}

fn run_f32(s: &mut ort::session::Session, shape: [usize; 4], data: &[f32]) -> Res<()> {
    let input = TensorRef::from_array_view((shape, data))?;
    let out = s.run(ort::inputs![input])?;
    std::hint::black_box(&out);
    Ok(())
}

/// Track ids and boxes of the vehicles alprdetect leaves alone on one frame.
type SettledVehicles = Vec<(u64, BBox)>;

/// The settled vehicles alprdetect uses on each of the first `o.frames` frames of the real
/// `alprdetect ! alprtrack ! alprocr` chain (alprocr's upstream `alpr-plates-settled` events,
/// as alprdetect accepts them), so that the bound replays the same plate passes.
fn settled_per_frame(o: &Opts) -> Res<Vec<SettledVehicles>> {
    let q = format!("\"{}\"", o.video.replace('\\', "\\\\").replace('"', "\\\""));
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={q} ! decodebin ! alprdetect name=detect threads={t} ! \
         alprtrack name=track ! alprocr name=ocr threads={t} ! fakesink",
        t = o.threads
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    apply_props(&pipeline, &o.props)?;
    let detect = pipeline.by_name("detect").ok_or("no alprdetect")?;
    let enabled: bool = detect.property("skip-settled");
    let latest: Arc<Mutex<Option<Settled>>> = Arc::default();
    let log: Arc<Mutex<Vec<SettledVehicles>>> = Arc::default();
    {
        let latest = latest.clone();
        detect.static_pad("src").ok_or("no src pad")?.add_probe(
            gst::PadProbeType::EVENT_UPSTREAM,
            move |_, info| {
                if let Some(gst::PadProbeData::Event(ev)) = &info.data
                    && let Some(s) = Settled::of(ev)
                {
                    *latest.lock().unwrap() = Some(s);
                }
                gst::PadProbeReturn::Ok
            },
        );
    }
    {
        let (log, limit) = (log.clone(), o.frames);
        detect.static_pad("sink").ok_or("no sink pad")?.add_probe(
            gst::PadProbeType::BUFFER,
            move |pad, info| {
                let mut log = log.lock().unwrap();
                if limit.is_some_and(|l| log.len() as u64 >= l) {
                    if log.len() as u64 == limit.unwrap_or(0) {
                        log.push(Vec::new()); // marks the EOS as sent
                        pad.send_event(gst::event::Eos::new());
                    }
                    return gst::PadProbeReturn::Handled;
                }
                let size = pad
                    .current_caps()
                    .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
                    .map(|i| (i.width(), i.height()));
                let pts = info.buffer().and_then(|b| b.pts());
                let used = match (&*latest.lock().unwrap(), size) {
                    (Some(s), Some((w, h))) if enabled && s.usable_for(w, h, pts) => {
                        s.vehicles.clone()
                    }
                    _ => Vec::new(),
                };
                log.push(used);
                gst::PadProbeReturn::Ok
            },
        );
    }
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(600)) else {
            break Err("the settled-events pass did not finish in 10 minutes".into());
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break Ok(()),
            gst::MessageView::Error(e) => break Err(format!("{} ({:?})", e.error(), e.debug())),
            _ => {}
        }
    };
    pipeline.set_state(gst::State::Null)?;
    result?;
    let mut log = std::mem::take(&mut *log.lock().unwrap());
    log.truncate(o.frames.map_or(usize::MAX, |l| l as usize));
    Ok(log)
}

fn bound(o: &Opts) -> Res<Value> {
    let settled = settled_per_frame(o)?;
    // The effective element configuration: defaults plus the overrides, read from real elements.
    let detect = gst::ElementFactory::make("alprdetect").build()?;
    let ocr = gst::ElementFactory::make("alprocr").build()?;
    for (el, prop, value) in &o.props {
        let e = match el.as_str() {
            "alprdetect" | "detect" => &detect,
            "alprocr" | "ocr" => &ocr,
            _ => continue,
        };
        common::set(e, prop, value)?;
    }
    let mode: AlprPlateMode = detect.property("plate-mode");
    let cfg = EngineConfig {
        vehicle_threshold: detect.property("vehicle-threshold"),
        plate_threshold: detect.property("plate-threshold"),
        nms_iou: detect.property("nms-iou"),
        plate_mode: mode.into(),
        max_vehicle_crops: detect.property::<u32>("max-vehicle-crops") as usize,
        min_vehicle_width: detect.property::<u32>("min-vehicle-width") as f32,
    };
    let interval = u64::from(detect.property::<u32>("interval").max(1));
    let padding: f32 = ocr.property("crop-padding");
    let prop = |e: &gst::Element, p: &str| e.property::<Option<String>>(p);
    let vehicle_path = models::resolve(
        prop(&detect, "vehicle-model").as_deref(),
        "vehicle-model",
        &[models::VEHICLE_MODEL],
    )?;
    let plate_path = models::resolve(
        prop(&detect, "plate-model").as_deref(),
        "plate-model",
        &models::PLATE_MODELS,
    )?;
    let ocr_path = models::resolve(
        prop(&ocr, "ocr-model").as_deref(),
        "ocr-model",
        &[models::OCR_MODEL],
    )?;
    let ocr_config: PathBuf = match prop(&ocr, "ocr-config") {
        Some(c) => c.into(),
        None => models::sibling(&ocr_path, "cct_xs_v2_global_plate_config.yaml")
            .map(Ok)
            .unwrap_or_else(|| models::resolve(None, "ocr-config", &[models::OCR_CONFIG]))?,
    };
    runtime::ensure()?;
    let names = models::sibling(&vehicle_path, "coco_classes.txt");
    let vehicle = Detector::load(&vehicle_path, o.threads, names.as_deref())?;
    let plate = Detector::load(&plate_path, o.threads, None)?;
    let vshape = [1, 3, vehicle.spec.height, vehicle.spec.width];
    let pshape = [1, 3, plate.spec.height, plate.spec.width];
    let mut engine = Engine::new(vehicle, plate, cfg);
    let mut reader = OcrEngine::load(&ocr_path, &ocr_config, o.threads)?;
    // The bare sessions: same files, same options (threads, execution provider) as the
    // elements'.
    let dp: runtime::Provider = detect.property("execution-provider");
    let op: runtime::Provider = ocr.property("execution-provider");
    let mut vs = runtime::open_session_on(&vehicle_path, o.threads, dp)?.0;
    let mut ps = runtime::open_session_on(&plate_path, o.threads, dp)?.0;
    let mut os = runtime::open_session_on(&ocr_path, o.threads, op)?.0;

    let q = format!("\"{}\"", o.video.replace('\\', "\\\\").replace('"', "\\\""));
    let decode = gst::parse::launch(&format!(
        "filesrc location={q} ! decodebin ! appsink name=frames sync=false max-buffers=2 \
         caps=video/x-raw"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let appsink = decode
        .by_name("frames")
        .ok_or("no appsink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    decode.set_state(gst::State::Playing)?;

    let mut pre = Preprocessor::default();
    let mut crop = Vec::new();
    let mut objects: Vec<AlprObject> = Vec::new();
    let (mut vt, mut pt, mut ot) = (
        ModelTime::default(),
        ModelTime::default(),
        ModelTime::default(),
    );
    let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
    let mut frames = 0u64;
    let mut size = (0, 0);
    let mut done = false;
    while !done {
        let mut chunk: Vec<FrameWork> = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            if o.frames.is_some_and(|l| frames >= l) {
                done = true;
                break;
            }
            let Ok(sample) = appsink.pull_sample() else {
                done = true;
                break;
            };
            let index = frames;
            frames += 1;
            if !index.is_multiple_of(interval) {
                chunk.push(FrameWork::default());
                continue;
            }
            let caps = sample.caps().ok_or("sample without caps")?;
            let info = gst_video::VideoInfo::from_caps(caps)?;
            size = (info.width(), info.height());
            let (layout, matrix) = gstalpr::video::layout_of(&info)
                .ok_or_else(|| format!("unsupported format {}", info.format().to_str()))?;
            let buffer = sample.buffer().ok_or("sample without buffer")?;
            let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)?;
            let view = gstalpr::video::frame_view(&vframe, layout, matrix);
            engine.settled.clear();
            if let Some(s) = settled.get(index as usize) {
                engine.settled.extend_from_slice(s);
            }
            engine.record = Some(Vec::new());
            engine.run(&view, &mut objects)?;
            let mut work = FrameWork {
                detectors: engine.record.take().unwrap_or_default(),
                ocr: None,
            };
            // alprocr's batch: every detected plate of the frame that yields a crop.
            reader.clear();
            for obj in objects.iter().filter(|o| o.kind == Some(ObjectKind::Plate)) {
                let b = obj.bbox;
                if !b.is_finite() || b.w < 2.0 || b.h < 2.0 {
                    continue;
                }
                let roi = b.padded(padding);
                let Some((w, h, _)) = pre.crop_rgb(&view, roi, OCR_CROP_SIDE, &mut crop) else {
                    continue;
                };
                let src = RgbView {
                    data: &crop,
                    width: w,
                    height: h,
                    stride: w * 3,
                };
                let _ = reader.push_with(|cfg, slot| {
                    ocrmodel::crop_to_input(&src, (0.0, 0.0, w as f32, h as f32), 0.0, cfg, slot)
                });
            }
            let n = reader.batch_len();
            if n > 0 {
                let bytes: Vec<u8> = (0..n).flat_map(|i| reader.slot(i).to_vec()).collect();
                work.ocr = Some((n, bytes));
            }
            chunk.push(work);
        }
        // The decoder is blocked on the full appsink now: only the models run.
        let (w0, c0) = (Instant::now(), process_cpu());
        for work in &chunk {
            for (role, input) in &work.detectors {
                let (session, shape, t) = match role {
                    InputRole::Vehicle => (&mut vs, vshape, &mut vt),
                    InputRole::Plate => (&mut ps, pshape, &mut pt),
                };
                let t0 = Instant::now();
                run_f32(session, shape, input)?;
                t.wall += t0.elapsed();
                t.calls += 1;
                t.items += 1;
            }
            if let Some((n, bytes)) = &work.ocr {
                let t0 = Instant::now();
                let input =
                    TensorRef::from_array_view((reader.cfg.input_shape(*n), bytes.as_slice()))?;
                let out = os.run(ort::inputs![input])?;
                std::hint::black_box(&out);
                ot.wall += t0.elapsed();
                ot.calls += 1;
                ot.items += *n as u64;
            }
        }
        wall += w0.elapsed();
        cpu += process_cpu() - c0;
    }
    decode.set_state(gst::State::Null)?;
    let model = |t: &ModelTime| {
        json!({
            "calls": t.calls,
            "items": t.items,
            "wall_s": t.wall.as_secs_f64(),
        })
    };
    Ok(json!({
        "mode": "bound",
        "clip": o.video,
        "width": size.0,
        "height": size.1,
        "threads": o.threads,
        "interval": interval,
        "frames": frames,
        "wall_s": wall.as_secs_f64(),
        "cpu_s": cpu.as_secs_f64(),
        "vehicle": model(&vt),
        "plate": model(&pt),
        "ocr": model(&ot),
        "peak_rss_mib": status_kib("VmHWM:") as f64 / 1024.0,
    }))
}

fn main() -> Res<()> {
    let o = parse_args()?;
    gst::init()?;
    gstalpr::plugin_register_static()?;
    let out = match o.mode.as_str() {
        "pipeline" => pipeline(&o)?,
        _ => bound(&o)?,
    };
    println!("{out}");
    Ok(())
}
