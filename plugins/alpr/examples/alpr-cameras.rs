// SPDX-License-Identifier: MIT OR Apache-2.0
//! N cameras in one process: N copies of a clip through
//! `filesrc ! decodebin ! videoconvert ! alprdetect threads=1 ! alprtrack ! alprocr threads=1 !
//! fakesink`, all playing at once; prints peak RSS (VmHWM), aggregate frames/s and frames/s per
//! camera, and how many elements share each model.
//!
//! ```text
//! alpr-cameras N [VIDEO]        # VIDEO defaults to ../shared/media/motorway.mp4
//! ALPR_SHARE_SESSIONS=0 alpr-cameras N   # every element loads its own sessions (as before)
//! ```

use std::time::Instant;

use gst::prelude::*;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .ok_or("usage: alpr-cameras N [VIDEO]")?
        .parse()?;
    let video = args
        .next()
        .unwrap_or_else(|| "../shared/media/motorway.mp4".into());
    gst::init()?;
    gstalpr::plugin_register_static()?;

    let chains: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "filesrc location=\"{video}\" ! decodebin ! videoconvert ! \
                 alprdetect name=d{i} threads=1 ! alprtrack ! alprocr name=o{i} threads=1 ! \
                 fakesink"
            )
        })
        .collect();
    let pipeline = gst::parse::launch(&chains.join(" "))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let t0 = Instant::now();
    pipeline.set_state(gst::State::Playing)?;
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Eos(..) => break,
            gst::MessageView::Error(e) => {
                pipeline.set_state(gst::State::Null)?;
                return Err(format!("{}: {:?}", e.error(), e.debug()).into());
            }
            _ => {}
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let mut frames = Vec::new();
    let mut users = (0, 0);
    for i in 0..n {
        let d = pipeline
            .by_name(&format!("d{i}"))
            .ok_or("no alprdetect")?
            .property::<gst::Structure>("stats");
        let o = pipeline
            .by_name(&format!("o{i}"))
            .ok_or("no alprocr")?
            .property::<gst::Structure>("stats");
        frames.push(d.get::<u64>("frames")?);
        users = (
            d.get::<u64>("vehicle-session-users")?,
            o.get::<u64>("session-users")?,
        );
    }
    pipeline.set_state(gst::State::Null)?;
    let total: u64 = frames.iter().sum();
    let per_camera: Vec<String> = frames
        .iter()
        .map(|f| format!("{:.1}", *f as f64 / wall))
        .collect();
    println!(
        "{{\"cameras\": {n}, \"frames\": {total}, \"wall_s\": {wall:.2}, \"aggregate_fps\": {:.1}, \
         \"fps_per_camera\": [{}], \"peak_rss_mib\": {:.1}, \"vehicle_model_users\": {}, \
         \"ocr_model_users\": {}}}",
        total as f64 / wall,
        per_camera.join(", "),
        vm_hwm_kib() as f64 / 1024.0,
        users.0,
        users.1
    );
    Ok(())
}
