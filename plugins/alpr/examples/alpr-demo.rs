// SPDX-License-Identifier: MIT OR Apache-2.0
//! The demo pipeline: a clip through detection, tracking and reading, with local outputs.
//!
//!   alpr-demo VIDEO OUT_DIR [element.property=value ...]
//!
//! ```text
//! filesrc ! decodebin ! videoconvert ! alprdetect ! alprtrack ! alprocr ! tee
//!   t. ! queue ! alprcsvsink location=OUT_DIR/plate_events.csv
//!   t. ! queue ! kafkasink outbox-location=OUT_DIR/outbox   (local mode unless brokers are set)
//!   t. ! queue ! s3sink location=OUT_DIR/crops              (local mode unless bucket/url is set)
//!   t. ! queue ! fakesink
//! ```
//! Prints each plate event as it is decided and a summary at the end. `kafka.brokers=...`,
//! `s3.bucket=...` etc. connect the sinks (what `scripts/demo --services` does).

use std::time::Instant;

#[path = "common/pipeline.rs"]
mod common;

use gst::prelude::*;
use gstalpr::event::PlateEvent;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (pos, props) = common::split_args(args.into_iter());
    let [video, out] = pos.as_slice() else {
        eprintln!("usage: alpr-demo VIDEO OUT_DIR [element.property=value ...]");
        std::process::exit(2);
    };
    std::fs::create_dir_all(out)?;
    gst::init()?;
    gstalpr::plugin_register_static()?;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! alprdetect ! alprtrack ! \
         alprocr camera-id=demo ! tee name=t \
         t. ! queue ! alprcsvsink location={} \
         t. ! queue ! kafkasink name=kafka outbox-location={} \
         t. ! queue ! s3sink name=s3 location={} \
         t. ! queue ! fakesink name=video",
        q(video),
        q(&format!("{out}/plate_events.csv")),
        q(&format!("{out}/outbox")),
        q(&format!("{out}/crops")),
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    common::apply(&pipeline, &props)?;

    let start = Instant::now();
    pipeline.set_state(gst::State::Playing)?;
    let mut events: Vec<PlateEvent> = Vec::new();
    let mut frames = 0u64;
    let counter = pipeline.by_name("video").ok_or("no video sink")?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    counter.static_pad("sink").ok_or("no pad")?.add_probe(
        gst::PadProbeType::BUFFER,
        move |_, _| {
            let _ = tx.send(());
            gst::PadProbeReturn::Ok
        },
    );
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = common::run_to_eos(&bus, |msg| {
        if let Some(ev) = common::plate_event(msg) {
            println!(
                "  plate {:<10} track {:<14} confidence {:.2}  reads {:>3}  crop {}",
                ev.plate_text, ev.track_id, ev.plate_confidence, ev.reads, ev.image_key
            );
            events.push(ev);
        }
        Ok(())
    });
    frames += rx.try_iter().count() as u64;
    let kafka = pipeline.by_name("kafka").ok_or("no kafkasink")?;
    let stats = kafka.property::<gst::Structure>("stats");
    let status = kafka.property_value("status");
    let s3 = pipeline.by_name("s3").ok_or("no s3sink")?;
    let s3_stats = s3.property::<gst::Structure>("stats");
    let s3_status = s3.property_value("status");
    let s3_target = s3
        .property::<Option<String>>("bucket")
        .or_else(|| s3.property::<Option<String>>("url"));
    pipeline.set_state(gst::State::Null)?;
    result?;
    let secs = start.elapsed().as_secs_f64();
    let plates: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.plate_text.as_str()).collect();
    println!();
    println!("{video}");
    println!(
        "  {frames} frames in {secs:.1} s ({:.1} fps), {} plate events, {} distinct plates",
        frames as f64 / secs,
        events.len(),
        plates.len()
    );
    println!("  CSV:    {out}/plate_events.csv");
    println!(
        "  outbox: {out}/outbox (kafkasink {}: {} queued, {} delivered)",
        status
            .get::<gstalpr::link::LinkStatus>()
            .map(|s| s.nick())
            .unwrap_or("?"),
        stats.get::<u64>("queued").unwrap_or(0),
        stats.get::<u64>("delivered").unwrap_or(0)
    );
    println!(
        "  crops:  {out}/crops (s3sink {}{}: {} saved, {} queued, {} uploaded)",
        s3_status
            .get::<gstalpr::link::LinkStatus>()
            .map(|s| s.nick())
            .unwrap_or("?"),
        s3_target.map(|t| format!(" to {t}")).unwrap_or_default(),
        s3_stats.get::<u64>("saved").unwrap_or(0),
        s3_stats.get::<u64>("queued").unwrap_or(0),
        s3_stats.get::<u64>("delivered").unwrap_or(0)
    );
    Ok(())
}
