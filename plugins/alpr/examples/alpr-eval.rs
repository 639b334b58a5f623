// SPDX-License-Identifier: MIT OR Apache-2.0
//! Accuracy of the real elements on labelled data.
//!
//!   alpr-eval images DIR...                  openalpr-style folders: IMAGE + IMAGE.txt with
//!                                            `file x y w h PLATE` (plate read anywhere)
//!   alpr-eval video VIDEO.mp4 TRUTH.csv      `first_frame,last_frame,source_image,plate,x,y,w,h`
//!                                            through alprdetect ! alprtrack ! alprocr
//!       [--motion M.csv]                     `first_frame,motion` (approach|pass|stop); default
//!                                            TRUTH.motion.csv or VIDEO.motion.csv when there
//!       [--json OUT.json]                    totals per motion kind
//!       [--events OUT.csv]                   every event with its segment and class
//!
//! Video events are scored per car by the car's frames and its plate text (see
//! `common/driveby.rs`), in a table per motion kind (`still` without a motion file); without a
//! motion file the plate does not move and the box-IoU table is printed first as well.
//!
//! Extra `element.property=value` arguments are applied to the pipeline's elements
//! (e.g. `alprocr.min-reads=2`).

#[path = "common/pipeline.rs"]
mod common;
#[path = "common/driveby.rs"]
mod driveby;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use driveby::FrameClock;
use gst::prelude::*;
use gstalpr::alprocr::tracks::SEGMENT_STRIDE;
use gstalpr::alprocr::vote::{cer, normalize_o0};
use gstalpr::event::{self, PlateEvent};
use gstalpr::meta::{AlprFrame, BBox};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.1}%", n as f64 * 100.0 / d as f64)
    }
}

/// Decodes an image to I420 (as a camera pipeline would deliver it).
fn decode(path: &Path) -> Res<(gst::Caps, gst::Buffer)> {
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false",
        path.display()
    );
    let p = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "pipeline")?;
    let sink = p
        .by_name("sink")
        .ok_or("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "appsink")?;
    p.set_state(gst::State::Playing)?;
    let sample = sink
        .pull_preroll()
        .map_err(|_| format!("cannot decode {}", path.display()));
    p.set_state(gst::State::Null)?;
    let sample = sample?;
    Ok((
        sample.caps().ok_or("caps")?.to_owned(),
        sample.buffer().ok_or("buffer")?.to_owned(),
    ))
}

fn images(dirs: &[String], props: &[String]) -> Res<()> {
    let bin = gst::parse::bin_from_description("alprdetect ! alprocr", true)?;
    common::apply(&bin, props)?;
    let mut h = gst_check::Harness::with_element(&bin, Some("sink"), Some("src"));
    h.play();
    println!(
        "{:<28} {:>6} {:>9} {:>9} {:>8} {:>8}",
        "folder", "images", "exact", "O==0", "CER", "no read"
    );
    for dir in dirs {
        let mut labelled: Vec<(PathBuf, String)> = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "txt") {
                let line = std::fs::read_to_string(&p)?;
                let f: Vec<&str> = line.trim().split('\t').collect();
                if f.len() == 6 {
                    labelled.push((Path::new(dir).join(f[0]), f[5].to_string()));
                }
            }
        }
        labelled.sort();
        let (mut exact, mut o0, mut none, mut cer_sum) = (0, 0, 0, 0.0);
        for (img, truth) in &labelled {
            let (caps, buf) = decode(img)?;
            h.set_src_caps(caps);
            let out = h.push_and_pull(buf)?;
            let texts: Vec<String> = AlprFrame::read(&out)
                .and_then(Result::ok)
                .map(|f| f.plates().filter_map(|p| p.text.clone()).collect())
                .unwrap_or_default();
            exact += texts.contains(truth) as usize;
            o0 += texts.iter().any(|t| normalize_o0(t) == normalize_o0(truth)) as usize;
            none += texts.is_empty() as usize;
            if std::env::var_os("ALPR_EVAL_MISSES").is_some() && !texts.contains(truth) {
                eprintln!("{}: expected {truth}, read {texts:?}", img.display());
            }
            // CER of the closest read (1.0 when nothing was read).
            cer_sum += texts.iter().map(|t| cer(t, truth)).fold(1.0f64, f64::min);
        }
        let n = labelled.len();
        println!(
            "{:<28} {:>6} {:>9} {:>9} {:>8.3} {:>8}",
            dir,
            n,
            pct(exact, n),
            pct(o0, n),
            cer_sum / n.max(1) as f64,
            none
        );
    }
    Ok(())
}

/// Options of `alpr-eval video`.
#[derive(Default)]
struct VideoOpts {
    /// `first_frame,motion` file; found beside the truth or the video when not given.
    motion: Option<String>,
    /// Where to write the totals per motion kind as JSON.
    json: Option<String>,
    /// Where to write every event with its classification as CSV.
    events: Option<String>,
}

/// The motion file of a clip: `TRUTH.motion.csv` (TRUTH without `.csv`), else
/// `VIDEO.motion.csv` (VIDEO without its extension), when one exists.
fn find_motion(video: &str, truth_csv: &str) -> Option<String> {
    let beside = |p: &str| Path::new(p).with_extension("motion.csv");
    [beside(truth_csv), beside(video)]
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

fn video(path: &str, truth_csv: &str, opts: &VideoOpts, props: &[String]) -> Res<()> {
    let truth_text = std::fs::read_to_string(truth_csv)?;
    let truth: Vec<(u64, u64, String, BBox)> = truth_text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| -> Res<_> {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() < 8 {
                return Err(format!("{truth_csv}: expected 8 columns in {l:?}").into());
            }
            let n = |i: usize| f[i].trim().parse::<f32>();
            Ok((
                f[0].trim().parse()?,
                f[1].trim().parse()?,
                f[3].trim().to_string(),
                BBox::new(n(4)?, n(5)?, n(6)?, n(7)?),
            ))
        })
        .collect::<Res<_>>()?;
    let motion_path = opts.motion.clone().or_else(|| find_motion(path, truth_csv));
    let motion = match &motion_path {
        Some(m) => {
            driveby::parse_motion(&std::fs::read_to_string(m)?).map_err(|e| format!("{m}: {e}"))?
        }
        None => Vec::new(),
    };
    let segments = driveby::segments(
        &driveby::parse_truth(&truth_text).map_err(|e| format!("{truth_csv}: {e}"))?,
        &motion,
    );
    // sync=false: nothing in the chain depends on the clock, the clip runs as fast as it can.
    let desc = format!(
        "filesrc location=\"{path}\" ! decodebin ! videoconvert ! alprdetect ! alprtrack ! alprocr name=eval-ocr ! fakesink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "pipeline")?;
    common::apply(&pipeline, props)?;
    // Events, and alprocr's clock per frame (see driveby::FrameClock): the wall clock when the
    // frame entered and left alprocr, and the tracks read on it.
    let events: Arc<Mutex<Vec<PlateEvent>>> = Arc::default();
    // Per frame: its clock, and whether it has left alprocr (the first time counts: the events
    // alprocr decides at EOS leave on a copy of a frame).
    let clock: Arc<Mutex<BTreeMap<u64, (FrameClock, bool)>>> = Arc::default();
    let ocr = pipeline.by_name("eval-ocr").ok_or("alprocr")?;
    let clock_in = clock.clone();
    ocr.static_pad("sink")
        .ok_or("pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let now = event::now_ms();
            if let Some(Some(Ok(f))) = info.buffer().map(|b| AlprFrame::read(b)) {
                clock_in.lock().unwrap().entry(f.frame_number).or_insert((
                    FrameClock {
                        frame: f.frame_number,
                        in_ms: now,
                        out_ms: now,
                        read_tracks: Vec::new(),
                    },
                    false,
                ));
            }
            gst::PadProbeReturn::Ok
        });
    let (ev2, clock_out) = (events.clone(), clock.clone());
    ocr.static_pad("src")
        .ok_or("pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let now = event::now_ms();
            let Some(b) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            if let Some(Ok(f)) = AlprFrame::read(b)
                && let Some((c, out @ false)) = clock_out.lock().unwrap().get_mut(&f.frame_number)
            {
                *out = true;
                c.out_ms = now;
                c.read_tracks = f
                    .objects
                    .iter()
                    .filter(|o| o.text.is_some() && (!f.tracked || o.track_id != 0))
                    .map(|o| o.track_id)
                    .collect();
            }
            if let Ok(evs) = event::read(b) {
                ev2.lock().unwrap().extend(evs.into_iter().map(|(e, _)| e));
            }
            gst::PadProbeReturn::Ok
        });
    let start = std::time::Instant::now();
    pipeline.set_state(gst::State::Playing)?;
    let ran = common::run_to_eos(&pipeline.bus().ok_or("bus")?, |_| Ok(()));
    pipeline.set_state(gst::State::Null)?;
    ran?;
    let secs = start.elapsed().as_secs_f64();
    let events = events.lock().unwrap();
    let clock: Vec<FrameClock> = clock
        .lock()
        .unwrap()
        .values()
        .map(|(c, _)| c.clone())
        .collect();
    println!(
        "{path}: {} events in {secs:.1} s ({} frames)",
        events.len(),
        clock.len()
    );
    if motion_path.is_none() {
        // A still slideshow: the plate stays where the truth box is, events match by box.
        println!("by box IoU >= 0.3 with the truth box, in the car's frames:");
        iou_table(&truth, &events);
    }

    // By segment and text (see examples/common/driveby.rs).
    let mut unclocked = 0;
    let merged = driveby::merge_revisions(events.iter().map(|e| {
        let (first, last) = driveby::event_frames(
            &clock,
            e.track_id % SEGMENT_STRIDE,
            e.first_seen_ms,
            e.last_seen_ms,
        )
        .unwrap_or_else(|| {
            unclocked += 1;
            (e.frame_number, e.frame_number)
        });
        driveby::Event {
            text: e.plate_text.clone(),
            first,
            last,
            reads: e.reads,
            frame_number: e.frame_number,
            track_id: e.track_id,
            revision: e.revision,
            event_id: e.event_id.clone(),
        }
    }));
    let report = driveby::score(&segments, &merged);
    println!(
        "by the car's frames and its plate text (motion: {}; {} events, revisions merged):",
        motion_path.as_deref().unwrap_or("none, all still"),
        merged.len()
    );
    print!("{}", report.table());
    if report.outside > 0 {
        println!(
            "{} events first read outside every car's frames (in the total's events only)",
            report.outside
        );
    }
    if unclocked > 0 {
        println!("{unclocked} events without alprocr frame times: placed at their best frame");
    }
    if let Some(p) = &opts.events {
        std::fs::write(p, report.events_csv(&segments))?;
        println!("events: {p}");
    }
    if let Some(p) = &opts.json {
        let row = |r: &driveby::Row| {
            serde_json::json!({
                "cars": r.cars,
                "events": r.events,
                "exact": r.exact,
                "o0": r.o0,
                "duplicates": r.duplicates,
                "misreads": r.misreads,
                "missed": r.missed,
                "other_plates": r.other,
                "other_excess": r.other_excess,
            })
        };
        let mut kinds = serde_json::Map::new();
        for (k, r) in &report.kinds {
            kinds.insert(k.clone(), row(r));
        }
        let doc = serde_json::json!({
            "video": path,
            "truth": truth_csv,
            "motion": motion_path,
            "seconds": secs,
            "kinds": kinds,
            "total": row(&report.total),
            "outside": report.outside,
        });
        std::fs::write(p, serde_json::to_string_pretty(&doc)? + "\n")?;
        println!("totals: {p}");
    }
    Ok(())
}

/// The box rule of the still slideshow: an event is a car's when its best frame is one of the
/// car's and its plate box overlaps the truth box.
fn iou_table(truth: &[(u64, u64, String, BBox)], events: &[PlateEvent]) {
    let mut per_car: Vec<Vec<&PlateEvent>> = vec![Vec::new(); truth.len()];
    let mut other = 0;
    for e in events.iter() {
        match truth.iter().position(|(a, b, _, bb)| {
            (*a..=*b).contains(&e.frame_number) && bb.iou(&e.plate_bbox) >= 0.3
        }) {
            Some(i) => per_car[i].push(e),
            None => other += 1,
        }
    }
    let n = truth.len();
    let misses = per_car.iter().filter(|v| v.is_empty()).count();
    let dups: usize = per_car.iter().map(|v| v.len().saturating_sub(1)).sum();
    let exact = per_car
        .iter()
        .zip(truth)
        .filter(|(v, t)| v.iter().any(|e| e.plate_text == t.2))
        .count();
    let o0 = per_car
        .iter()
        .zip(truth)
        .filter(|(v, t)| {
            v.iter()
                .any(|e| normalize_o0(&e.plate_text) == normalize_o0(&t.2))
        })
        .count();
    let cer_mean = per_car
        .iter()
        .zip(truth)
        .map(|(v, t)| {
            v.iter()
                .map(|e| cer(&e.plate_text, &t.2))
                .fold(1.0f64, f64::min)
        })
        .sum::<f64>()
        / n.max(1) as f64;
    println!(
        "{:>8} {:>8} {:>9} {:>9} {:>8} {:>16} {:>11} {:>7} {:>16}",
        "vehicles",
        "events",
        "exact",
        "O==0",
        "CER",
        "events/vehicle",
        "duplicates",
        "misses",
        "other plates"
    );
    println!(
        "{:>8} {:>8} {:>9} {:>9} {:>8.3} {:>16.3} {:>11} {:>7} {:>16}",
        n,
        events.len(),
        pct(exact, n),
        pct(o0, n),
        cer_mean,
        (events.len() - other) as f64 / n.max(1) as f64,
        dups,
        misses,
        other
    );
}

/// Takes `--name VALUE` or `--name=VALUE` out of `args`.
fn take_flag(args: &mut Vec<String>, name: &str) -> Res<Option<String>> {
    let prefix = format!("{name}=");
    if let Some(i) = args.iter().position(|a| a == name) {
        if i + 1 >= args.len() {
            return Err(format!("{name} needs a value").into());
        }
        let v = args.remove(i + 1);
        args.remove(i);
        return Ok(Some(v));
    }
    Ok(args
        .iter()
        .position(|a| a.starts_with(&prefix))
        .map(|i| args.remove(i)[prefix.len()..].to_string()))
}

fn main() -> Res<()> {
    gst::init()?;
    gstalpr::plugin_register_static()?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let opts = VideoOpts {
        motion: take_flag(&mut args, "--motion")?,
        json: take_flag(&mut args, "--json")?,
        events: take_flag(&mut args, "--events")?,
    };
    let (pos, props) = common::split_args(args.into_iter());
    match pos.first().map(String::as_str) {
        Some("images") if pos.len() > 1 => images(&pos[1..], &props),
        Some("video") if pos.len() == 3 => video(&pos[1], &pos[2], &opts, &props),
        _ => {
            eprintln!(
                "usage: alpr-eval images DIR... | alpr-eval video VIDEO TRUTH.csv [--motion M.csv] \
                 [--json OUT.json] [--events OUT.csv] [element.prop=value ...]"
            );
            std::process::exit(2);
        }
    }
}
