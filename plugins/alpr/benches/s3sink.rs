// SPDX-License-Identifier: MIT OR Apache-2.0
//! s3sink throughput against a raw object_store put loop, and the streaming thread's cost while
//! S3 is down.
//!
//!   cargo bench --bench s3sink
//!
//! Both throughput runs go to the same s3s-fs server (a real process on 127.0.0.1, SigV4
//! checked) in the same run. 1. Uploads/s: N crops of 20 KB through s3sink (one crop per
//! buffer: local file + queue commit + upload + queue delete each) versus N sequential
//! `put`s of the same bytes from a bare object_store client. Goal: ratio >= 0.8.
//! 2. S3 down: the time `render` takes per buffer on the streaming thread (save + queue commit
//! only). Goal: < 1 ms.
//!
//! Size: ALPR_BENCH_CROPS (default 1000).

#[path = "../tests/common/s3.rs"]
mod s3;

use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use s3::*;

const BUCKET: &str = "bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sink(location: &std::path::Path, endpoint: &str) -> (gst_check::Harness, gst::Element) {
    let el = gst::ElementFactory::make("s3sink")
        .property("location", location.to_str().unwrap())
        .property("retry-interval", 1u32)
        .property("bucket", BUCKET)
        .property("endpoint", endpoint)
        .property("access-key-id", ACCESS_KEY)
        .property("secret-access-key", SECRET_KEY)
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), None);
    h.set_src_caps_str("application/x-alpr-events");
    (h, el)
}

fn stat(el: &gst::Element, name: &str) -> u64 {
    use gst::prelude::*;
    el.property::<gst::Structure>("stats")
        .get::<u64>(name)
        .unwrap()
}

fn main() {
    gst::init().unwrap();
    gstalpr::plugin_register_static().unwrap();
    let n = env_usize("ALPR_BENCH_CROPS", 1000);
    let dir = tempfile::tempdir().unwrap();
    let srv = S3sFs::start(dir.path(), free_port(), &[BUCKET]);
    let crop = crop_bytes(1, 20_000);

    // 1a. Raw object_store puts, sequential, same client settings as a default builder.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = srv.client(BUCKET);
    let t = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            let p = object_store::path::Path::from(format!("raw/{i}.jpg"));
            store.put(&p, crop.clone().into()).await.unwrap();
        }
    });
    let raw = n as f64 / t.elapsed().as_secs_f64();

    // 1b. The same through s3sink, from the first push until the last upload is acknowledged.
    let events: Vec<_> = (0..n as u64)
        .map(|i| (plate_event("bench", i), crop.clone()))
        .collect();
    let (mut h, el) = sink(&dir.path().join("crops"), &srv.endpoint());
    // The link connects on the first pending crop: the time counts from the first push.
    let t = Instant::now();
    for e in &events {
        h.push(buffer_with_crops(std::slice::from_ref(e))).unwrap();
    }
    wait_for(Duration::from_secs(600), "all uploads", || {
        (stat(&el, "delivered") >= n as u64).then_some(())
    });
    let sink_rate = n as f64 / t.elapsed().as_secs_f64();
    for (e, c) in events.iter().step_by(97) {
        assert_eq!(srv.object(BUCKET, &e.image_key).as_ref(), Some(c));
    }
    drop(h);
    println!(
        "uploads of 20 KB crops to s3s-fs: raw object_store {raw:.0}/s, s3sink {sink_rate:.0}/s, \
         ratio {:.2} (goal >= 0.8)",
        sink_rate / raw
    );

    // 2. S3 down: per-buffer time on the streaming thread.
    let (mut h, _el) = sink(
        &dir.path().join("crops-down"),
        &format!("http://127.0.0.1:{}", free_port()),
    );
    let events: Vec<_> = (0..n as u64)
        .map(|i| (plate_event("down", i), crop.clone()))
        .collect();
    let bufs: Vec<_> = events
        .iter()
        .map(|e| buffer_with_crops(std::slice::from_ref(e)))
        .collect();
    let mut times = Vec::with_capacity(n);
    for b in bufs {
        let t = Instant::now();
        h.push(b).unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "streaming thread per buffer while S3 is down ({n} buffers, one 20 KB crop each): \
         mean {:.3} ms, median {:.3} ms, p99 {:.3} ms, max {:.3} ms (goal < 1 ms)",
        mean.as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() * 99 / 100].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}
