// SPDX-License-Identifier: MIT OR Apache-2.0
//! alprtrack on synthetic metadata (truth known) and on a real clip behind alprdetect.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gstalpr::alprtrack::ended_tracks_of;
use gstalpr::meta::{AlprFrame, AlprObject, BBox, ObjectKind};

fn caps() -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", 1280)
        .field("height", 720)
        .field("framerate", gst::Fraction::new(25, 1))
        .build()
}

fn buffer_with(frame: &AlprFrame, n: u64) -> gst::Buffer {
    let mut buf = gst::Buffer::with_size(16).unwrap();
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * n));
        frame.write(b).unwrap();
    }
    buf
}

fn car(id: u32, x: f32, y: f32, score: f32) -> AlprObject {
    AlprObject {
        id,
        kind: Some(ObjectKind::Vehicle),
        class: "car".into(),
        confidence: score,
        bbox: BBox::new(x, y, 180.0, 110.0),
        ..Default::default()
    }
}

/// Two cars crossing in neighbouring lanes (boxes overlap by up to 60%; the far one drops to a
/// low score while occluded), then EOS: ids stay stable,
/// the plate takes its car's id, and EOS announces every open track before EOS itself.
#[test]
fn synthetic_crossing_keeps_ids_and_announces_ends_at_eos() {
    common::init();
    let mut h = gst_check::Harness::new("alprtrack");
    h.play();
    h.set_src_caps(caps());
    let mut ids_a = HashSet::new();
    let mut ids_b = HashSet::new();
    for f in 0..40u64 {
        let xa = 100.0 + 20.0 * f as f32;
        let xb = 900.0 - 20.0 * f as f32;
        let crossing = (15..25).contains(&f);
        let mut plate = AlprObject {
            id: 3,
            kind: Some(ObjectKind::Plate),
            class: "license-plate".into(),
            confidence: 0.8,
            bbox: BBox::new(xa + 60.0, 380.0, 50.0, 16.0),
            parent_id: Some(1),
            ..Default::default()
        };
        if f % 7 == 6 {
            plate.confidence = 0.4;
        }
        let frame = AlprFrame {
            frame_number: f,
            detected: true,
            still: false,
            tracked: false,
            width: 1280,
            height: 720,
            objects: vec![
                car(1, xa, 300.0, 0.9),
                car(2, xb, 340.0, if crossing { 0.3 } else { 0.85 }),
                plate,
            ],
            ended_tracks: vec![],
            replaced_tracks: vec![],
        };
        let out = h.push_and_pull(buffer_with(&frame, f)).unwrap();
        let got = AlprFrame::read(&out).unwrap().unwrap();
        let a = got.objects.iter().find(|o| o.id == 1).unwrap().track_id;
        let b = got.objects.iter().find(|o| o.id == 2).unwrap().track_id;
        let p = got.objects.iter().find(|o| o.id == 3).unwrap().track_id;
        assert_eq!(p, a, "frame {f}: plate inherits its vehicle's track");
        ids_a.insert(a);
        ids_b.insert(b);
        // The ROI metas carry the track id too.
        let roi_tracks: Vec<u64> = out
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .filter_map(|m| {
                m.param("detection")
                    .and_then(|s| s.get::<u64>("track-id").ok())
            })
            .collect();
        assert!(roi_tracks.contains(&a), "{roi_tracks:?}");
    }
    assert_eq!(ids_a.len(), 1, "car A ids {ids_a:?}");
    assert_eq!(ids_b.len(), 1, "car B ids {ids_b:?}");
    assert_ne!(ids_a, ids_b);

    assert!(h.push_event(gst::event::Eos::new()));
    let mut ended = None;
    while let Some(ev) = h.try_pull_event() {
        if let Some(t) = ended_tracks_of(&ev) {
            ended = Some(t);
        }
        if ev.type_() == gst::EventType::Eos {
            assert!(ended.is_some(), "tracks-ended event comes before EOS");
        }
    }
    let mut want: Vec<u64> = ids_a.union(&ids_b).copied().collect();
    want.sort();
    assert_eq!(ended.unwrap(), want);
}

/// A car that leaves is listed in `ended-tracks` on the frame its track is removed.
#[test]
fn removed_track_is_listed_on_its_frame() {
    common::init();
    let mut h = gst_check::Harness::new("alprtrack");
    h.element().unwrap().set_property("track-buffer", 6u32);
    h.play();
    h.set_src_caps(caps());
    let mut id = 0;
    let mut ended_at = Vec::new();
    for f in 0..20u64 {
        let objects = if f < 5 {
            vec![car(1, 100.0 + 10.0 * f as f32, 300.0, 0.9)]
        } else {
            vec![]
        };
        let frame = AlprFrame {
            frame_number: f,
            detected: true,
            still: false,
            tracked: false,
            width: 1280,
            height: 720,
            objects,
            ended_tracks: vec![],
            replaced_tracks: vec![],
        };
        let got = AlprFrame::read(&h.push_and_pull(buffer_with(&frame, f)).unwrap())
            .unwrap()
            .unwrap();
        if f == 0 {
            id = got.objects[0].track_id;
        }
        for t in got.ended_tracks {
            ended_at.push((f, t));
        }
    }
    // track-buffer 6 at 30 fps -> 5 frames at 25 fps: last seen on frame 4, removed on frame 10.
    assert_eq!(ended_at, vec![(10, id)]);
}

/// A camera that changes its frame rate mid-stream still looks at the same cars: the tracks
/// carry on. A new stream (another file, a reconnected source) ends them, listed downstream,
/// and ids keep counting up.
#[test]
fn a_rate_change_keeps_tracks_and_a_new_stream_ends_them() {
    common::init();
    let mut h = gst_check::Harness::new("alprtrack");
    h.play();
    h.set_src_caps(caps());
    let frame = |f: u64| AlprFrame {
        frame_number: f,
        detected: true,
        still: false,
        tracked: false,
        width: 1280,
        height: 720,
        objects: vec![car(1, 100.0 + 5.0 * f as f32, 300.0, 0.9)],
        ended_tracks: vec![],
        replaced_tracks: vec![],
    };
    let mut ids = HashSet::new();
    for f in 0..12u64 {
        if f == 6 {
            let mut ten = caps();
            ten.make_mut().set("framerate", gst::Fraction::new(10, 1));
            h.set_src_caps(ten);
        }
        let got = AlprFrame::read(&h.push_and_pull(buffer_with(&frame(f), f)).unwrap())
            .unwrap()
            .unwrap();
        assert!(
            got.ended_tracks.is_empty(),
            "frame {f}: {:?}",
            got.ended_tracks
        );
        ids.insert(got.objects[0].track_id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let old = *ids.iter().next().unwrap();
    while h.try_pull_event().is_some() {}
    assert!(h.push_event(gst::event::StreamStart::new("second")));
    let mut ended = None;
    while let Some(ev) = h.try_pull_event() {
        if let Some(t) = ended_tracks_of(&ev) {
            ended = Some(t);
        }
    }
    assert_eq!(
        ended,
        Some(vec![old]),
        "the old stream's track ends before the new stream"
    );
    let got = AlprFrame::read(&h.push_and_pull(buffer_with(&frame(12), 12)).unwrap())
        .unwrap()
        .unwrap();
    let new = got.objects[0].track_id;
    assert!(new > old, "ids are never reused: {new} after {old}");
}

#[test]
fn frames_without_meta_pass_with_one_warning() {
    common::init();
    let mut h = gst_check::Harness::new("alprtrack");
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    h.play();
    h.set_src_caps(caps());
    for _ in 0..3 {
        h.push_and_pull(gst::Buffer::with_size(16).unwrap())
            .unwrap();
    }
    let warnings: Vec<_> =
        std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning])).collect();
    assert_eq!(warnings.len(), 1);
    let gst::MessageView::Warning(w) = warnings[0].view() else {
        unreachable!()
    };
    assert!(
        w.error()
            .to_string()
            .contains("put alprdetect before alprtrack"),
        "{:?} {:?}",
        w.error(),
        w.debug()
    );
}

/// Real clip: `alprdetect ! alprtrack` on the first 4 s of street-approach.mp4 (about 5 vehicles
/// per frame), with detection on every other frame. Tracks per vehicle are bounded, tracks last,
/// and skipped frames carry predicted, tracked boxes.
#[test]
fn real_clip_tracks_are_few_and_long() {
    common::init();
    let clip = common::media("street-approach.mp4");
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! alprdetect interval=2 ! \
         identity eos-after=96 ! alprtrack ! fakesink name=sink",
        clip.display()
    );
    let pipeline = common::launch(&desc);
    let frames: Arc<Mutex<Vec<AlprFrame>>> = Arc::default();
    let f2 = frames.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(Ok(f)) = info.buffer().and_then(|b| AlprFrame::read(b)) {
                f2.lock().unwrap().push(f);
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(180),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline finished");
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{} {:?}", e.error(), e.debug());
    }
    let frames = frames.lock().unwrap();
    assert!(frames.len() >= 96);
    let mut lengths: BTreeMap<u64, usize> = BTreeMap::new();
    let mut max_simultaneous = 0;
    let mut predicted_tracked = 0;
    for f in frames.iter() {
        let tracked: Vec<_> = f.vehicles().filter(|v| v.track_id != 0).collect();
        max_simultaneous = max_simultaneous.max(tracked.len());
        for v in &tracked {
            *lengths.entry(v.track_id).or_default() += 1;
            if v.predicted {
                predicted_tracked += 1;
                assert!(!f.detected);
            }
        }
    }
    let tracks = lengths.len();
    let mean_len = lengths.values().sum::<usize>() as f64 / tracks.max(1) as f64;
    println!(
        "{} frames: {tracks} vehicle tracks, at most {max_simultaneous} at once, mean length \
         {mean_len:.1} frames, {predicted_tracked} predicted boxes",
        frames.len()
    );
    assert!(
        max_simultaneous >= 2,
        "the clip has several vehicles at once"
    );
    assert!(
        tracks <= 2 * max_simultaneous + 2,
        "{tracks} tracks for at most {max_simultaneous} vehicles at once: ids fragment"
    );
    assert!(mean_len >= 30.0, "tracks too short: {mean_len:.1} frames");
    assert!(
        predicted_tracked > 0,
        "skipped frames carry predicted boxes"
    );
}
