// SPDX-License-Identifier: MIT OR Apache-2.0
//! Accuracy of the real elements on labelled data.
//!
//!   alpr-eval images DIR...                  openalpr-style folders: IMAGE + IMAGE.txt with
//!                                            `file x y w h PLATE` (plate read anywhere)
//!   alpr-eval video VIDEO.mp4 TRUTH.csv      `first_frame,last_frame,source_image,plate,x,y,w,h`
//!                                            through alprdetect ! alprtrack ! alprocr
//!
//! Extra `element.property=value` arguments are applied to the pipeline's elements
//! (e.g. `alprocr.min-reads=2`).

#[path = "common/pipeline.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
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

fn video(path: &str, truth_csv: &str, props: &[String]) -> Res<()> {
    let truth: Vec<(u64, u64, String, BBox)> = std::fs::read_to_string(truth_csv)?
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
    let desc = format!(
        "filesrc location=\"{path}\" ! decodebin ! videoconvert ! alprdetect ! alprtrack ! alprocr ! fakesink name=sink"
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "pipeline")?;
    common::apply(&pipeline, props)?;
    let events: Arc<Mutex<Vec<PlateEvent>>> = Arc::default();
    let ev2 = events.clone();
    pipeline
        .by_name("sink")
        .ok_or("sink")?
        .static_pad("sink")
        .ok_or("pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(Ok(evs)) = info.buffer().map(|b| event::read(b)) {
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
        .zip(&truth)
        .filter(|(v, t)| v.iter().any(|e| e.plate_text == t.2))
        .count();
    let o0 = per_car
        .iter()
        .zip(&truth)
        .filter(|(v, t)| {
            v.iter()
                .any(|e| normalize_o0(&e.plate_text) == normalize_o0(&t.2))
        })
        .count();
    let cer_mean = per_car
        .iter()
        .zip(&truth)
        .map(|(v, t)| {
            v.iter()
                .map(|e| cer(&e.plate_text, &t.2))
                .fold(1.0f64, f64::min)
        })
        .sum::<f64>()
        / n.max(1) as f64;
    println!("{path}: {} events in {secs:.1} s", events.len());
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
    Ok(())
}

fn main() -> Res<()> {
    gst::init()?;
    gstalpr::plugin_register_static()?;
    let (pos, props) = common::split_args(std::env::args().skip(1));
    match pos.first().map(String::as_str) {
        Some("images") if pos.len() > 1 => images(&pos[1..], &props),
        Some("video") if pos.len() == 3 => video(&pos[1], &pos[2], &props),
        _ => {
            eprintln!(
                "usage: alpr-eval images DIR... | alpr-eval video VIDEO TRUTH.csv [element.prop=value ...]"
            );
            std::process::exit(2);
        }
    }
}
