// SPDX-License-Identifier: MIT OR Apache-2.0
//! The sinks together on a low disk (issue 16): the disk-space bound applies the overflow
//! policy instead of stopping the pipeline.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gstalpr::event;

/// What reached the tee: per event id, how many plate events (revisions); the records
/// kafkasink gets (plate and vehicle events) and the images s3sink gets, before and after
/// space came back.
#[derive(Default)]
struct Seen {
    plates: HashMap<String, usize>,
    records: u64,
    images: u64,
    /// Records and images of the buffers after the switch.
    records_after: u64,
    images_after: u64,
}

/// What a run of the slideshow through the three sinks gave.
struct Run {
    seen: Seen,
    frames: u64,
    /// (queued, dropped) of kafkasink and s3sink at EOS.
    kafka: (u64, u64),
    s3: (u64, u64),
    /// Warnings posted, with the name of their source.
    warnings: Vec<(String, String)>,
}

/// Plays the slideshow into alprcsvsink (`csv`), kafkasink (outbox under `outbox`, local mode)
/// and s3sink (`crops`, local mode), both with `min-free-space=min_free`; at frame `switch` (if
/// any) both sinks' `min-free-space` drops to 0. Panics on an error message.
fn run(
    csv: &Path,
    outbox: &Path,
    crops: &Path,
    min_free: u64,
    switch: Option<u64>,
    names: (&str, &str),
    extra: &str,
) -> Run {
    let clip = common::media("openalpr_eu_slideshow.mp4");
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! alprdetect ! alprtrack ! alprocr \
         ! tee name=t \
         t. ! queue ! alprcsvsink location=\"{}\" min-free-space=0 \
         t. ! queue ! kafkasink name={} outbox-location=\"{}\" min-free-space={min_free} \
         t. ! queue ! s3sink name={} location=\"{}\" min-free-space={min_free} {extra}",
        clip.display(),
        csv.display(),
        names.0,
        outbox.display(),
        names.1,
        crops.display()
    );
    let pipeline = common::launch(&desc);
    let kafka = pipeline.by_name(names.0).unwrap();
    let s3 = pipeline.by_name(names.1).unwrap();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let frames = Arc::new(AtomicU64::new(0));
    {
        let (seen, frames, kafka, s3) = (seen.clone(), frames.clone(), kafka.clone(), s3.clone());
        let tee = pipeline.by_name("t").unwrap();
        tee.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(buf) = info.buffer() else {
                    return gst::PadProbeReturn::Ok;
                };
                let n = frames.fetch_add(1, Ordering::SeqCst) + 1;
                if Some(n) == switch {
                    // Space is back; the queues ahead of the sinks still hold older buffers.
                    kafka.set_property("min-free-space", 0u64);
                    s3.set_property("min-free-space", 0u64);
                }
                let plates = event::read_with_images(buf).unwrap();
                let vehicles = event::read_vehicles(buf).unwrap();
                let images: u64 = plates.iter().map(|(e, i)| i.keyed(e).len() as u64).sum();
                let records = (plates.len() + vehicles.len()) as u64;
                let mut s = seen.lock().unwrap();
                for (e, _) in &plates {
                    *s.plates.entry(e.event_id.clone()).or_default() += 1;
                }
                s.records += records;
                s.images += images;
                if switch.is_some_and(|sw| n > sw) {
                    s.records_after += records;
                    s.images_after += images;
                }
                gst::PadProbeReturn::Ok
            });
    }
    let mut warnings = Vec::new();
    common::play_until_eos(&pipeline, 600, |msg| {
        if let gst::MessageView::Warning(w) = msg.view() {
            let src = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
            warnings.push((src, format!("{} {:?}", w.error(), w.debug())));
        }
    });
    let stats = |el: &gst::Element| {
        let st = el.property::<gst::Structure>("stats");
        (
            st.get::<u64>("queued").unwrap(),
            st.get::<u64>("dropped").unwrap(),
        )
    };
    let (kafka_stats, s3_stats) = (stats(&kafka), stats(&s3));
    pipeline.set_state(gst::State::Null).unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let run = Run {
        seen,
        frames: frames.load(Ordering::SeqCst),
        kafka: kafka_stats,
        s3: s3_stats,
        warnings,
    };
    println!(
        "frames {}, plate events {}, records {} ({} after the switch), images {} ({} after); \
         kafkasink (queued, dropped) {:?}; s3sink {:?}; warnings {:?}",
        run.frames,
        run.seen.plates.values().sum::<usize>(),
        run.seen.records,
        run.seen.records_after,
        run.seen.images,
        run.seen.images_after,
        run.kafka,
        run.s3,
        run.warnings
    );
    run
}

/// Checks what holds however full the disk was: every plate event is in the CSV (on a disk
/// with room), every item is stored or counted as dropped (stats and metric agree), what is
/// stored is in the outbox and on disk, and each sink posted one warning for its episode,
/// containing `cause`.
fn check_nothing_lost_in_silence(
    r: &Run,
    csv: &Path,
    outbox: &Path,
    crops: &Path,
    names: (&str, &str),
    cause: &str,
) {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut rows: HashMap<String, usize> = HashMap::new();
    for line in text.lines().skip(1) {
        *rows
            .entry(line.split(',').next().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(rows, r.seen.plates, "the CSV holds every plate event");
    let metric = |name: &str| {
        gstalpr::metrics::get()
            .sink_dropped
            .with_label_values(&[name])
            .get()
    };
    let ((k_queued, k_dropped), (s_queued, s_dropped)) = (r.kafka, r.s3);
    assert_eq!(k_queued + k_dropped, r.seen.records);
    assert_eq!(s_queued + s_dropped, r.seen.images);
    assert!(k_dropped > 0 && s_dropped > 0, "{:?} {:?}", r.kafka, r.s3);
    assert_eq!(metric(names.0), k_dropped);
    assert_eq!(metric(names.1), s_dropped);
    let outbox_rows = gstalpr::kafkasink::outbox::Outbox::open(
        outbox,
        1_000_000,
        gstalpr::kafkasink::outbox::Overflow::DropOldest,
        false,
    )
    .unwrap()
    .len();
    assert_eq!(outbox_rows, k_queued, "the stored events are in the outbox");
    assert_eq!(jpegs(crops), s_queued, "the stored crops are on disk");
    // One warning per sink for the episode, naming the cause; none from the CSV (room there).
    for (name, what) in [(names.0, "outbox full"), (names.1, "upload queue full")] {
        let w: Vec<_> = r.warnings.iter().filter(|(src, _)| src == name).collect();
        assert_eq!(w.len(), 1, "one warning per episode from {name}: {w:?}");
        assert!(w[0].1.contains(what) && w[0].1.contains(cause), "{w:?}");
    }
    assert!(
        !r.warnings
            .iter()
            .any(|(src, _)| src.starts_with("alprcsvsink")),
        "{:?}",
        r.warnings
    );
}

/// The slideshow with kafkasink's outbox and s3sink's crops on a "full" disk: `min-free-space`
/// above what any disk has free. Half-way through, space comes back (`min-free-space=0`, a
/// property that may change while playing). The pipeline runs to EOS without an error; nothing
/// is lost in silence; after the switch the sinks store again.
#[test]
fn slideshow_on_a_full_disk_runs_to_eos_and_stores_again_when_space_returns() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let (csv, outbox, crops) = (
        dir.path().join("events.csv"),
        dir.path().join("outbox"),
        dir.path().join("crops"),
    );
    let names = ("lowdisk-kafka", "lowdisk-s3");
    let r = run(&csv, &outbox, &crops, u64::MAX / 2, Some(270), names, "");
    assert!(r.seen.records_after > 0 && r.seen.images_after > 0);
    assert!(
        r.seen.records > r.seen.records_after,
        "events before the switch"
    );
    check_nothing_lost_in_silence(&r, &csv, &outbox, &crops, names, "min-free-space");
    // Stored again once space returned: at least all that came after the switch (the queues
    // ahead of the sinks may have held some older buffers too).
    assert!(r.kafka.0 >= r.seen.records_after, "{:?}", r.kafka);
    assert!(r.s3.0 >= r.seen.images_after, "{:?}", r.s3);
}

/// Where the tiny-filesystem test runs its pipeline (set for the child process).
const TINY_FS: &str = "ALPR_TEST_TINY_FS";

/// Issue 16's case for real: the outbox and the crops on a 300 KiB filesystem (a tmpfs mounted
/// in a private user and mount namespace, so no root is needed), `min-free-space=0`: writes
/// fail with ENOSPC / SQLITE_FULL. The pipeline runs to EOS all the same, the CSV (elsewhere)
/// holds every event, each sink warns once and counts what it gave up. The test runs itself
/// again as a child process inside the namespace; where namespaces are not allowed (some
/// containers) it says so and checks nothing.
#[test]
fn slideshow_with_outbox_and_crops_on_a_tiny_filesystem_runs_to_eos() {
    if let Some(small) = std::env::var_os(TINY_FS) {
        common::init();
        let small = Path::new(&small);
        let csv = small.parent().unwrap().join("events.csv");
        let (outbox, crops) = (small.join("outbox"), small.join("crops"));
        let names = ("tinyfs-kafka", "tinyfs-s3");
        // A second CSV on the tiny filesystem: rows it cannot write are dropped and counted.
        let small_csv = small.join("events.csv");
        let extra = format!(
            "t. ! queue ! alprcsvsink name=tinyfs-csv location=\"{}\" min-free-space=0",
            small_csv.display()
        );
        let r = run(&csv, &outbox, &crops, 0, None, names, &extra);
        check_nothing_lost_in_silence(&r, &csv, &outbox, &crops, names, "disk is full");
        assert!(r.kafka.0 > 0 && r.s3.0 > 0, "stored while there was room");
        let text = std::fs::read_to_string(&small_csv).unwrap();
        assert!(text.ends_with('\n'), "whole rows only");
        let rows: Vec<&str> = text.lines().skip(1).collect();
        let columns = text.lines().next().unwrap().split(',').count();
        for row in &rows {
            let id = row.split(',').next().unwrap();
            assert!(r.seen.plates.contains_key(id), "{row}");
            assert!(row.split(',').count() >= columns, "a torn row: {row}");
        }
        let dropped = gstalpr::metrics::get()
            .sink_dropped
            .with_label_values(&["tinyfs-csv"])
            .get();
        let events: usize = r.seen.plates.values().sum();
        assert!(dropped > 0, "the tiny CSV filled up");
        assert_eq!(rows.len() as u64 + dropped, events as u64);
        let w: Vec<_> = r
            .warnings
            .iter()
            .filter(|(src, _)| src == "tinyfs-csv")
            .collect();
        assert_eq!(w.len(), 1, "one warning per episode: {w:?}");
        assert!(w[0].1.contains("No space left"), "{w:?}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let probe = Command::new("unshare")
        .args([
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=300k tmpfs \"$0\"",
        ])
        .arg(&small)
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("SKIPPED: cannot mount a tmpfs in a user namespace here: {other:?}");
            return;
        }
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("unshare")
        .args([
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=300k tmpfs \"$0\" && exec \"$1\" --exact \
             slideshow_with_outbox_and_crops_on_a_tiny_filesystem_runs_to_eos --nocapture",
        ])
        .arg(&small)
        .arg(&exe)
        .env(TINY_FS, &small)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the run on the tiny filesystem failed: {status}"
    );
}

/// JPEG files under `dir`, recursively.
fn jpegs(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            n += jpegs(&p);
        } else if p.extension().is_some_and(|x| x == "jpg") {
            n += 1;
        }
    }
    n
}
