// SPDX-License-Identifier: MIT OR Apache-2.0
//! Runs `filesrc ! decodebin ! videoconvert ! alprdetect [! alprtrack] ! fakesink` on a video
//! file and writes one JSON line per frame with what was found, read through the metadata API.
//!
//!   cargo run --release --example alpr-detect -- [--track] VIDEO [OUT.jsonl] [alprdetect props...]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gstalpr::meta::AlprFrame;

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[derive(Default)]
struct Summary {
    frames: u64,
    frames_with_vehicles: u64,
    vehicles: u64,
    plates: u64,
    /// Frames each vehicle track was seen on.
    track_lengths: std::collections::BTreeMap<u64, u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let track = args.first().is_some_and(|a| a == "--track");
    if track {
        args.remove(0);
    }
    let Some(video) = args.first() else {
        eprintln!("usage: alpr-detect [--track] VIDEO [OUT.jsonl] [property=value ...]");
        std::process::exit(2);
    };
    let out_path = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "output/detections.jsonl".into());
    let props = args.iter().skip(2).cloned().collect::<Vec<_>>().join(" ");

    gst::init()?;
    gstalpr::plugin_register_static()?;
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! alprdetect {props} {} ! identity name=tap \
         ! fakesink",
        glib_quote(video),
        if track {
            // Tracker properties, e.g. ALPR_TRACK_PROPS="track-thresh=0.45 new-track-thresh=0.55".
            format!(
                "! alprtrack {}",
                std::env::var("ALPR_TRACK_PROPS").unwrap_or_default()
            )
        } else {
            String::new()
        }
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let tap = pipeline.by_name("tap").ok_or("no tap")?;

    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = Arc::new(Mutex::new(std::io::BufWriter::new(std::fs::File::create(
        &out_path,
    )?)));
    let summary = Arc::new(Mutex::new(Summary::default()));
    let (out2, sum2) = (out.clone(), summary.clone());
    tap.static_pad("src")
        .ok_or("no src pad")?
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buf) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let Some(Ok(frame)) = AlprFrame::read(buf) else {
                return gst::PadProbeReturn::Ok;
            };
            let mut s = sum2.lock().unwrap();
            s.frames += 1;
            let nv = frame.vehicles().count() as u64;
            s.vehicles += nv;
            s.plates += frame.plates().count() as u64;
            if nv > 0 {
                s.frames_with_vehicles += 1;
            }
            for v in frame.vehicles().filter(|v| v.track_id != 0) {
                *s.track_lengths.entry(v.track_id).or_default() += 1;
            }
            let objs: Vec<String> = frame
                .objects
                .iter()
                .map(|o| {
                    format!(
                        "{{\"id\":{},\"kind\":{},\"class\":{},\"confidence\":{:.3},\"box\":[{:.1},{:.1},{:.1},{:.1}],\"parent\":{},\"track\":{},\"predicted\":{}}}",
                        o.id,
                        json_str(o.kind_or_vehicle().as_str()),
                        json_str(&o.class),
                        o.confidence,
                        o.bbox.x,
                        o.bbox.y,
                        o.bbox.w,
                        o.bbox.h,
                        o.parent_id.unwrap_or(0),
                        o.track_id,
                        o.predicted
                    )
                })
                .collect();
            let pts = buf.pts().map(|t| t.mseconds()).unwrap_or(0);
            let _ = writeln!(
                out2.lock().unwrap(),
                "{{\"frame\":{},\"pts_ms\":{pts},\"objects\":[{}]}}",
                frame.frame_number,
                objs.join(",")
            );
            gst::PadProbeReturn::Ok
        });

    let start = Instant::now();
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(e) => {
                result = Err(format!(
                    "{}: {}",
                    e.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    e.error()
                ));
                break;
            }
            _ => {}
        }
    }
    pipeline.set_state(gst::State::Null)?;
    out.lock().unwrap().flush()?;
    result?;
    let s = summary.lock().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: {} frames in {:.1} s ({:.1} fps), vehicles on {} frames, {} vehicle boxes, {} plate boxes -> {}",
        video,
        s.frames,
        secs,
        s.frames as f64 / secs,
        s.frames_with_vehicles,
        s.vehicles,
        s.plates,
        out_path
    );
    if track {
        let n = s.track_lengths.len();
        let total: u64 = s.track_lengths.values().sum();
        println!(
            "  {n} vehicle tracks, mean length {:.1} frames",
            total as f64 / n.max(1) as f64
        );
    }
    Ok(())
}

fn glib_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
