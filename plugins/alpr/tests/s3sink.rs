// SPDX-License-Identifier: MIT OR Apache-2.0
//! s3sink against a real S3 server on 127.0.0.1: s3s-fs (a separate process that checks SigV4,
//! killed with SIGKILL for outages), plus the local and file:// modes.

mod common;
#[path = "common/s3.rs"]
mod s3;

use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gstalpr::event::PlateEvent;
use object_store::ObjectStoreExt;
use s3::*;

const BUCKET: &str = "alpr-crops";

/// An s3sink fed by a Harness, with its own bus.
struct Sink {
    h: gst_check::Harness,
    el: gst::Element,
    bus: gst::Bus,
}

fn make_sink(location: &Path, props: &[(&str, &dyn ToValue)]) -> gst::Element {
    common::init();
    let el = gst::ElementFactory::make("s3sink")
        .property("location", location.to_str().unwrap())
        .property("retry-interval", 1u32)
        .build()
        .unwrap();
    for (k, v) in props {
        el.set_property_from_value(k, &v.to_value());
    }
    el
}

/// The S3 properties for `endpoint` with the right credentials.
fn s3_props(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("bucket", BUCKET.to_string()),
        ("endpoint", endpoint.to_string()),
        ("access-key-id", ACCESS_KEY.to_string()),
        ("secret-access-key", SECRET_KEY.to_string()),
    ]
}

impl Sink {
    fn new(location: &Path, props: &[(&str, &dyn ToValue)]) -> Sink {
        let el = make_sink(location, props);
        let bus = gst::Bus::new();
        el.set_bus(Some(&bus));
        let mut h = gst_check::Harness::with_element(&el, Some("sink"), None);
        h.set_src_caps_str("application/x-alpr-events");
        Sink { h, el, bus }
    }

    fn s3(location: &Path, endpoint: &str, extra: &[(&str, &dyn ToValue)]) -> Sink {
        let base = s3_props(endpoint);
        let mut props: Vec<(&str, &dyn ToValue)> =
            base.iter().map(|(k, v)| (*k, v as &dyn ToValue)).collect();
        props.extend_from_slice(extra);
        Sink::new(location, &props)
    }

    fn push(&mut self, events: &[(PlateEvent, Vec<u8>)]) {
        for e in events {
            let buf = buffer_with_crops(std::slice::from_ref(e));
            assert_eq!(self.h.push(buf), Ok(gst::FlowSuccess::Ok));
        }
    }

    fn stats(&self) -> gst::Structure {
        self.el.property::<gst::Structure>("stats")
    }

    fn stat(&self, name: &str) -> u64 {
        self.stats().get::<u64>(name).unwrap()
    }

    fn status(&self) -> String {
        let v = self.el.property_value("status");
        let (_, ev) = glib::EnumValue::from_value(&v).unwrap();
        ev.nick().to_string()
    }

    fn wait_uploaded(&self, n: u64, timeout: Duration) {
        wait_for(timeout, &format!("{n} crops uploaded"), || {
            (self.stat("delivered") >= n && self.stat("queued") == 0).then_some(())
        });
    }

    /// Warnings and errors posted so far, as text.
    fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(m) = self
            .bus
            .pop_filtered(&[gst::MessageType::Warning, gst::MessageType::Error])
        {
            match m.view() {
                gst::MessageView::Warning(w) => v.push(format!("{} {:?}", w.error(), w.debug())),
                gst::MessageView::Error(e) => v.push(format!("{} {:?}", e.error(), e.debug())),
                _ => {}
            }
        }
        v
    }

    /// Attempts made during `window` (after the first failure): proves the pacing.
    fn attempts_during(&self, window: Duration) -> u64 {
        wait_for(Duration::from_secs(20), "a failed attempt", || {
            (self.stat("failures") >= 1).then_some(())
        });
        let before = self.stat("attempts");
        std::thread::sleep(window);
        self.stat("attempts") - before
    }
}

/// Every crop is in the bucket, byte-identical, under the key its event names.
fn check_uploaded(srv: &S3sFs, events: &[(PlateEvent, Vec<u8>)]) {
    for (e, crop) in events {
        let got = srv
            .object(BUCKET, &e.image_key)
            .unwrap_or_else(|| panic!("{} missing from the bucket", e.image_key));
        assert!(got == *crop, "{} differs from its crop", e.image_key);
    }
}

/// Every crop is saved locally under location/image_key.
fn check_local(dir: &Path, events: &[(PlateEvent, Vec<u8>)]) {
    for (e, crop) in events {
        let p = dir.join(&e.image_key);
        assert_eq!(
            std::fs::read(&p).unwrap_or_else(|err| panic!("{}: {err}", p.display())),
            *crop
        );
    }
}

/// Scenario 1: the pipeline starts before S3. Crops are saved locally at once; once s3s-fs
/// is up, every crop is uploaded within one retry interval, byte-identical, under its key,
/// with content type and metadata.
#[test]
fn scenario1_start_before_s3() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let crops = dir.path().join("crops");
    let mut s = Sink::s3(
        &crops,
        &format!("http://127.0.0.1:{port}"),
        &[("retry-interval", &2u32)],
    );
    let events = events_with_crops(20, 20_000);
    let pushed = Instant::now();
    s.push(&events);
    check_local(&crops, &events);
    wait_for(Duration::from_secs(10), "a failed attempt", || {
        (s.stat("failures") >= 1).then_some(())
    });
    assert_eq!(s.stat("queued"), 20);
    assert_eq!(s.stat("delivered"), 0);
    let w = s.problems().join("\n");
    assert!(
        w.contains("MinIO connection failed (will retry in") && w.contains("unreachable"),
        "{w}"
    );
    // The queue-age gauge keeps growing during the outage.
    let name = s.el.name().to_string();
    let m = gstalpr::metrics::get();
    let age = || m.sink_queue_oldest_age.with_label_values(&[&name]).get();
    wait_for(Duration::from_secs(5), "queue age >= 2 s", || {
        (age() >= 2).then_some(())
    });
    let outage = pushed.elapsed();

    let srv = S3sFs::start(dir.path(), port, &[BUCKET]);
    let up = Instant::now();
    s.wait_uploaded(20, Duration::from_secs(15));
    let took = up.elapsed();
    eprintln!("scenario 1: 20 crops uploaded {took:?} after s3s-fs came up");
    assert!(took < Duration::from_secs(2 + 2), "took {took:?}");
    assert_eq!(s.status(), "connected");
    check_uploaded(&srv, &events);
    // One latency sample per upload, each at least as long as the outage they waited through.
    let lat = m.sink_latency.with_label_values(&[&name]);
    assert_eq!(lat.get_sample_count(), 20);
    assert!(
        lat.get_sample_sum() >= 20.0 * outage.as_secs_f64() * 0.9,
        "latency sum {} for an outage of {outage:?}",
        lat.get_sample_sum()
    );
    wait_for(Duration::from_secs(5), "queue age back to 0", || {
        (age() == 0).then_some(())
    });

    // Content type and metadata, read back through the S3 API.
    let store = srv.client(BUCKET);
    let (e, crop) = &events[4];
    let got = common_block_on(async {
        let r = store
            .get(&object_store::path::Path::from(e.image_key.as_str()))
            .await
            .unwrap();
        let attrs = r.attributes.clone();
        (attrs, r.bytes().await.unwrap())
    });
    assert_eq!(got.1.as_ref(), crop.as_slice());
    let attr = |a: object_store::Attribute| got.0.get(&a).map(|v| v.as_ref().to_string());
    assert_eq!(
        attr(object_store::Attribute::ContentType).as_deref(),
        Some("image/jpeg")
    );
    assert_eq!(
        attr(object_store::Attribute::Metadata("event-id".into())),
        Some(e.event_id.clone())
    );
    assert_eq!(
        attr(object_store::Attribute::Metadata("plate".into())),
        Some(e.plate_text.clone())
    );
    assert_eq!(
        attr(object_store::Attribute::Metadata("camera".into())),
        Some(e.camera_id.clone())
    );
}

fn common_block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Scenario 2: s3s-fs is SIGKILLed while crops flow and restarted later: every crop is there
/// afterwards.
#[test]
fn scenario2_s3_killed_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = S3sFs::start(dir.path(), free_port(), &[BUCKET]);
    let crops = dir.path().join("crops");
    let mut s = Sink::s3(&crops, &srv.endpoint(), &[]);
    let events = events_with_crops(150, 5_000);
    for (i, e) in events.iter().enumerate() {
        s.push(std::slice::from_ref(e));
        std::thread::sleep(Duration::from_millis(5));
        if i == 50 {
            srv.kill();
        }
        if i == 100 {
            // Keep S3 down until the sink has met the outage, so the test always covers one.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while s.stat("failures") == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the sink never noticed that S3 was down"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            srv.restart();
        }
    }
    s.wait_uploaded(150, Duration::from_secs(30));
    assert!(s.stat("failures") >= 1, "the outage was noticed");
    check_uploaded(&srv, &events);
    check_local(&crops, &events);
}

const CHILD_ENV: &str = "ALPR_S3SINK_CHILD";

/// Scenario 3: the pipeline process is SIGKILLed with a backlog (S3 down); a restarted
/// pipeline uploads the whole backlog.
#[test]
fn scenario3_pipeline_killed_with_backlog() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        // Child: S3 down; accept the crops, say so, then wait to be killed.
        let (crops, endpoint) = spec.split_once(';').unwrap();
        let mut s = Sink::s3(Path::new(crops), endpoint, &[]);
        let events = events_with_crops(30, 8_000);
        s.push(&events);
        for (e, _) in &events {
            println!("EVENT {}", e.image_key);
        }
        println!("ACCEPTED {}", s.stat("queued"));
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let crops = dir.path().join("crops");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "scenario3_pipeline_killed_with_backlog",
            "--exact",
            "--nocapture",
        ])
        .env(
            CHILD_ENV,
            format!("{};http://127.0.0.1:{port}", crops.display()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = Vec::new();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(k) = line.strip_prefix("EVENT ") {
            keys.push(k.to_string());
        }
        if let Some(n) = line.strip_prefix("ACCEPTED ") {
            assert_eq!(n, "30");
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(keys.len(), 30);

    let srv = S3sFs::start(dir.path(), port, &[BUCKET]);
    let s = Sink::s3(&crops, &srv.endpoint(), &[]);
    assert_eq!(s.stat("queued"), 30, "the backlog survived the kill");
    s.wait_uploaded(30, Duration::from_secs(20));
    // The crops the child made, by key: the same bytes as its local copies.
    for k in &keys {
        let local = std::fs::read(crops.join(k)).unwrap();
        assert_eq!(srv.object(BUCKET, k).as_ref(), Some(&local), "{k}");
    }
}

/// Wrong credentials: a warning naming the cause, attempts paced by the retry interval,
/// nothing lost (uploaded once the right ones are given); the secret is never shown.
#[test]
fn wrong_credentials_warn_paced_and_keep_the_crops() {
    common::init();
    let logs = Arc::new(Mutex::new(String::new()));
    let l2 = logs.clone();
    gst::log::set_threshold_for_name("s3sink", gst::DebugLevel::Info);
    let f = gst::log::add_log_function(move |cat, _lvl, _f, _m, _l, _o, msg| {
        if cat.name() == "s3sink"
            && let Some(m) = msg.get()
        {
            l2.lock().unwrap().push_str(&format!("{m}\n"));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let srv = S3sFs::start(dir.path(), free_port(), &[BUCKET]);
    let crops = dir.path().join("crops");
    let events = events_with_crops(3, 2_000);
    {
        let mut s = Sink::s3(
            &crops,
            &srv.endpoint(),
            &[("secret-access-key", &"hunter2-wrong")],
        );
        s.push(&events);
        let n = s.attempts_during(Duration::from_millis(3200));
        assert!(
            (2..=4).contains(&n),
            "{n} attempts in 3.2 s at 1 s interval"
        );
        let w = s.problems().join("\n");
        assert!(w.contains("credentials rejected"), "{w}");
        assert_eq!(s.stat("queued"), 3);
        assert_ne!(s.status(), "connected");
        assert_eq!(
            s.el.property::<Option<String>>("secret-access-key")
                .as_deref(),
            Some("*****")
        );
        assert!(!w.contains("hunter2"));
    }
    gst::log::remove_log_function(f);
    gst::log::set_threshold_for_name("s3sink", gst::DebugLevel::None);
    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("Attempting to connect to MinIO"), "{logs}");
    assert!(
        !logs.contains("hunter2") && !logs.contains(SECRET_KEY),
        "secret logged"
    );

    // The right credentials next run: the backlog goes out.
    let s = Sink::s3(&crops, &srv.endpoint(), &[]);
    s.wait_uploaded(3, Duration::from_secs(10));
    check_uploaded(&srv, &events);
}

/// A missing bucket: a warning naming it, paced retries, crops kept; with create-bucket the
/// sink makes it (signed CreateBucket) and uploads.
#[test]
fn missing_bucket_warns_and_create_bucket_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let srv = S3sFs::start(dir.path(), free_port(), &[]);
    let crops = dir.path().join("crops");
    let events = events_with_crops(4, 3_000);
    {
        let mut s = Sink::s3(&crops, &srv.endpoint(), &[]);
        s.push(&events);
        let n = s.attempts_during(Duration::from_millis(2200));
        assert!(
            (1..=3).contains(&n),
            "{n} attempts in 2.2 s at 1 s interval"
        );
        let w = s.problems().join("\n");
        assert!(
            w.contains(&format!("bucket {BUCKET} does not exist")),
            "{w}"
        );
        assert_eq!(s.stat("queued"), 4);
    }
    let s = Sink::s3(&crops, &srv.endpoint(), &[("create-bucket", &true)]);
    s.wait_uploaded(4, Duration::from_secs(10));
    assert!(srv.data.join(BUCKET).is_dir());
    check_uploaded(&srv, &events);
}

/// An unreachable endpoint: a warning naming the cause, one attempt per retry interval.
#[test]
fn unreachable_endpoint_is_paced() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Sink::s3(
        &dir.path().join("crops"),
        &format!("http://127.0.0.1:{}", free_port()),
        &[],
    );
    s.push(&events_with_crops(2, 1_000));
    let n = s.attempts_during(Duration::from_millis(3200));
    assert!(
        (2..=4).contains(&n),
        "{n} attempts in 3.2 s at 1 s interval"
    );
    let w = s.problems().join("\n");
    assert!(w.contains("endpoint unreachable"), "{w}");
    assert_eq!(s.stat("queued"), 2);
    // A down link does not hold EOS: the crops stay queued for the next run.
    let t = Instant::now();
    assert!(s.h.push_event(gst::event::Eos::new()));
    assert!(t.elapsed() < Duration::from_secs(3));
}

fn start_error(location: &Path, props: &[(&str, &dyn ToValue)]) -> String {
    let el = make_sink(location, props);
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    assert!(el.set_state(gst::State::Paused).is_err());
    let _ = el.set_state(gst::State::Null);
    let errs = common::bus_errors(&bus);
    assert!(!errs.is_empty(), "no error posted");
    errs[0].clone()
}

/// An unwritable local directory and bad settings fail start with errors naming the cause.
#[test]
fn unwritable_location_and_bad_settings_fail_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    for props in [
        vec![],
        vec![("bucket", "alpr-crops"), ("endpoint", "http://127.0.0.1:1")],
    ] {
        let props: Vec<(&str, &dyn ToValue)> =
            props.iter().map(|(k, v)| (*k, v as &dyn ToValue)).collect();
        let e = start_error(&file.join("crops"), &props);
        assert!(
            e.contains("a-file/crops") && e.contains("Not a directory"),
            "{e}"
        );
    }
    let loc = dir.path().join("crops");
    let e = start_error(&loc, &[("bucket", &"Bad_Bucket")]);
    assert!(e.contains("bucket") && e.contains("Bad_Bucket"), "{e}");
    let e = start_error(
        &loc,
        &[("bucket", &"alpr-crops"), ("url", &"file:///tmp/x")],
    );
    assert!(e.contains("either bucket"), "{e}");
    let e = start_error(
        &loc,
        &[("bucket", &"alpr-crops"), ("endpoint", &"127.0.0.1:9000")],
    );
    assert!(e.contains("endpoint") && e.contains("http"), "{e}");
    let e = start_error(&loc, &[("url", &"gopher://x/y")]);
    assert!(e.contains("url"), "{e}");
}

/// Local mode (no bucket, no url): crops saved under location, nothing else.
#[test]
fn local_mode_saves_crops() {
    let dir = tempfile::tempdir().unwrap();
    let crops = dir.path().join("crops");
    let mut s = Sink::new(&crops, &[]);
    let events = events_with_crops(5, 1_000);
    s.push(&events);
    check_local(&crops, &events);
    assert_eq!(s.status(), "local");
    assert_eq!(s.stat("saved"), 5);
    assert!(s.problems().is_empty());
}

/// A file:// object store, with retention 0: uploaded crops leave the local directory.
#[test]
fn file_url_with_delete_after_upload() {
    let dir = tempfile::tempdir().unwrap();
    let crops = dir.path().join("crops");
    let remote = dir.path().join("remote");
    std::fs::create_dir_all(&remote).unwrap();
    let url = format!("file://{}", remote.display());
    let mut s = Sink::new(&crops, &[("url", &url), ("local-retention", &0i64)]);
    let events = events_with_crops(6, 1_500);
    s.push(&events);
    s.wait_uploaded(6, Duration::from_secs(10));
    for (e, crop) in &events {
        assert_eq!(std::fs::read(remote.join(&e.image_key)).unwrap(), *crop);
        assert!(!crops.join(&e.image_key).exists(), "deleted after upload");
    }
    assert!(s.problems().is_empty());
}

/// The queue bound while S3 is down: drop-oldest keeps the newest, warns once, counts.
#[test]
fn queue_overflow_drops_oldest_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let crops = dir.path().join("crops");
    let mut s = Sink::s3(
        &crops,
        &format!("http://127.0.0.1:{}", free_port()),
        &[("queue-max-bytes", &25_000u64), ("retry-interval", &60u32)],
    );
    let events = events_with_crops(10, 4_000); // 4.0-4.6 KB each
    s.push(&events);
    assert!(s.stat("dropped") >= 4, "{}", s.stats());
    assert!(s.stat("queued-bytes") <= 25_000);
    assert_eq!(s.stat("queued") + s.stat("dropped"), 10);
    let w = s.problems().join("\n");
    assert_eq!(w.matches("upload queue full").count(), 1, "{w}");
    assert!(
        !crops.join(&events[0].0.image_key).exists(),
        "oldest deleted"
    );
    check_local(&crops, &events[9..]);
}

/// Events carrying a vehicle crop and a whole frame besides the plate crop (alprocr
/// `vehicle-image` / `frame-image`): every image is saved and uploaded under the key its event
/// names, byte-identical; an event naming no extra key uploads its crop only.
#[test]
fn vehicle_and_frame_images_are_uploaded_under_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let crops = dir.path().join("crops");
    let srv = S3sFs::start(dir.path(), free_port(), &[BUCKET]);
    let mut s = Sink::s3(&crops, &srv.endpoint(), &[]);
    let mut sent: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..4u64 {
        let mut e = plate_event("gate-x", i);
        let images = gstalpr::event::EventImages {
            crop: Some(gst::Buffer::from_slice(crop_bytes(i, 3_000))),
            vehicle: (i != 3).then(|| gst::Buffer::from_slice(crop_bytes(100 + i, 40_000))),
            frame: (i % 2 == 0).then(|| gst::Buffer::from_slice(crop_bytes(200 + i, 150_000))),
        };
        if images.vehicle.is_some() {
            e.vehicle_image_key = Some(gstalpr::event::extra_image_key(&e.image_key, "vehicle"));
        }
        if images.frame.is_some() {
            e.frame_image_key = Some(gstalpr::event::extra_image_key(&e.image_key, "frame"));
        }
        for (k, b) in images.keyed(&e) {
            sent.push((k.to_string(), b.map_readable().unwrap().to_vec()));
        }
        let mut buf = gst::Buffer::new();
        gstalpr::event::attach_with_images(buf.get_mut().unwrap(), &[(e, images)]).unwrap();
        assert_eq!(s.h.push(buf), Ok(gst::FlowSuccess::Ok));
    }
    // 4 crops + 3 vehicle images + 2 frames.
    assert_eq!(sent.len(), 9);
    s.wait_uploaded(9, Duration::from_secs(15));
    for (key, data) in &sent {
        assert_eq!(
            std::fs::read(crops.join(key)).unwrap(),
            *data,
            "{key} local"
        );
        let got = srv
            .object(BUCKET, key)
            .unwrap_or_else(|| panic!("{key} missing from the bucket"));
        assert!(got == *data, "{key} differs");
    }
    assert!(s.problems().is_empty());
}
