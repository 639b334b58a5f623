// SPDX-License-Identifier: MIT OR Apache-2.0
//! Plate-to-Kafka latency: a clip played at camera speed through the whole chain with early
//! emission, delivered to a real broker, latencies read from the process's own metrics.
//!
//!   alpr-latency VIDEO BROKERS SCHEMA_REGISTRY [element.property=value ...]
//!
//! ```text
//! filesrc ! decodebin ! videoconvert ! identity sync=true      (frames arrive at the clip's rate)
//!   ! queue leaky=downstream max-size-buffers=4                 (a live source drops, never waits)
//!   ! alprdetect ! alprtrack ! alprocr emit=early ! kafkasink retry-interval=1
//! ```
//! Prints, per event, how long after the plate's first read it was decided, and from the
//! metrics after EOS (kafkasink holds EOS until the broker acknowledged everything):
//! `alpr_plate_to_delivery_seconds` (first read -> delivery report, the issue's latency) and
//! `alpr_sink_delivery_latency_seconds` (kafkasink acceptance -> delivery report), as
//! p50 / p95 / max bucket bounds with linear interpolation inside the bucket.

#[path = "common/pipeline.rs"]
mod common;

use gst::prelude::*;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A histogram series: sample count, sample sum, (upper bound, cumulative count) per bucket.
type Series = (u64, f64, Vec<(f64, u64)>);

/// One histogram series of the process-wide registry.
fn histogram(name: &str, sink: &str) -> Option<Series> {
    let families = gstalpr::metrics::get().registry.gather();
    let fam = families.iter().find(|f| f.name() == name)?;
    let m = fam.get_metric().iter().find(|m| {
        m.get_label()
            .iter()
            .any(|l| l.name() == "sink" && l.value() == sink)
    })?;
    let h = m.get_histogram();
    let buckets = h
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    Some((h.get_sample_count(), h.get_sample_sum(), buckets))
}

/// The `q` quantile of a cumulative histogram, interpolated linearly within its bucket.
fn quantile(count: u64, buckets: &[(f64, u64)], q: f64) -> f64 {
    let rank = q * count as f64;
    let mut prev = (0.0, 0u64);
    for &(le, cum) in buckets {
        if cum as f64 >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            let in_bucket = (cum - prev.1).max(1) as f64;
            return prev.0 + (le - prev.0) * ((rank - prev.1 as f64) / in_bucket).clamp(0.0, 1.0);
        }
        prev = (le, cum);
    }
    prev.0
}

fn report(title: &str, name: &str, sink: &str) {
    match histogram(name, sink) {
        Some((n, sum, b)) if n > 0 => println!(
            "  {title:<34} n={n:<4} mean {:.3} s  p50 {:.3} s  p95 {:.3} s  ({name})",
            sum / n as f64,
            quantile(n, &b, 0.50),
            quantile(n, &b, 0.95)
        ),
        _ => println!("  {title:<34} no samples ({name})"),
    }
}

fn main() -> Res<()> {
    let (pos, props) = common::split_args(std::env::args().skip(1));
    let [video, brokers, registry] = pos.as_slice() else {
        eprintln!("usage: alpr-latency VIDEO BROKERS SCHEMA_REGISTRY [element.property=value ...]");
        std::process::exit(2);
    };
    let outbox = tempfile_dir()?;
    gst::init()?;
    gstalpr::plugin_register_static()?;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! identity sync=true ! \
         queue leaky=downstream max-size-buffers=4 max-size-bytes=0 max-size-time=0 ! \
         alprdetect interval=1 ! alprtrack track-thresh=0.45 new-track-thresh=0.5 ! \
         alprocr name=ocr emit=early camera-id=latency ! \
         kafkasink name=kafka brokers={} schema-registry={} retry-interval=1 outbox-location={}",
        q(video),
        q(brokers),
        q(registry),
        q(&outbox.display().to_string()),
    );
    let pipeline = gst::parse::launch(&desc)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    common::apply(&pipeline, &props)?;
    let sink = pipeline
        .by_name("kafka")
        .ok_or("no kafkasink")?
        .name()
        .to_string();

    let start = std::time::Instant::now();
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let mut decided: Vec<f64> = Vec::new();
    let result = common::run_to_eos(&bus, |msg| {
        if let Some(ev) = common::plate_event(msg) {
            let after = (gstalpr::event::now_ms() - ev.first_seen_ms) as f64 / 1000.0;
            println!(
                "  plate {:<10} track {:<6} rev {} decided {after:.3} s after its first read",
                ev.plate_text, ev.track_id, ev.revision
            );
            decided.push(after);
        }
        Ok(())
    });
    let kafka = pipeline.by_name("kafka").ok_or("no kafkasink")?;
    let stats = kafka.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null)?;
    let _ = std::fs::remove_dir_all(&outbox);
    result?;
    decided.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        decided
            .get(((decided.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!();
    println!(
        "{video}: {:.1} s, {} events, kafkasink {} delivered, {} queued",
        start.elapsed().as_secs_f64(),
        decided.len(),
        stats.get::<u64>("delivered").unwrap_or(0),
        stats.get::<u64>("queued").unwrap_or(0)
    );
    println!(
        "  {:<34} n={:<4} p50 {:.3} s  p95 {:.3} s  (exact, from the bus messages)",
        "first read -> event decided",
        decided.len(),
        pick(0.5),
        pick(0.95)
    );
    report(
        "first read -> Kafka delivery report",
        "alpr_plate_to_delivery_seconds",
        &sink,
    );
    report(
        "kafkasink accepted -> delivery",
        "alpr_sink_delivery_latency_seconds",
        &sink,
    );
    Ok(())
}

/// A fresh outbox directory under the system temp dir (the latency run starts empty).
fn tempfile_dir() -> Res<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("alpr-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
