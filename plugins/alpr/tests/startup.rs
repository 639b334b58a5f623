// SPDX-License-Identifier: MIT OR Apache-2.0
//! The incremental start-up of the original guide, as one scripted test: the pipeline starts
//! first with both sinks configured and no service up; then the broker and the registry come up,
//! then S3. Each sink connects within one retry interval, nothing produced before is lost, and
//! `alpr_sink_connected` flips as it happens.
// Both server helpers include the shared `net.rs`; two copies in this test crate are harmless.
#![allow(clippy::duplicate_mod)]

mod common;
#[path = "common/kafka.rs"]
mod kafka;
#[path = "common/s3.rs"]
mod s3;

use std::time::{Duration, Instant};

use gst::prelude::*;

const PLATES: &str = "alpr.events.plates";
const VEHICLES: &str = "alpr.events.vehicles";
const BUCKET: &str = "alpr-plate-images";
const RETRY: u32 = 2;

fn connected(sink: &str) -> Option<i64> {
    let text = gstalpr::metrics::render();
    let prefix = format!("alpr_sink_connected{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn pipeline_first_then_kafka_then_s3_loses_nothing() {
    common::init();
    let dir = tempfile::tempdir().unwrap();
    let (kport, rport, sport) = (kafka::free_port(), kafka::free_port(), s3::free_port());
    let desc = format!(
        "appsrc name=src format=time caps=application/x-alpr-events ! tee name=t \
         t. ! queue ! kafkasink name=kafka brokers=127.0.0.1:{kport} \
              schema-registry=http://127.0.0.1:{rport} retry-interval={RETRY} \
              outbox-location=\"{outbox}\" \
         t. ! queue ! s3sink name=s3 endpoint=http://127.0.0.1:{sport} bucket={BUCKET} \
              access-key-id={ak} secret-access-key={sk} retry-interval={RETRY} \
              location=\"{crops}\"",
        outbox = dir.path().join("outbox").display(),
        crops = dir.path().join("crops").display(),
        ak = s3::ACCESS_KEY,
        sk = s3::SECRET_KEY,
    );
    let pipeline = common::launch(&desc);
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let kafka_sink = pipeline.by_name("kafka").unwrap();
    let s3_sink = pipeline.by_name("s3").unwrap();
    let stat = |el: &gst::Element, f: &str| {
        el.property::<gst::Structure>("stats")
            .get::<u64>(f)
            .unwrap()
    };
    pipeline.set_state(gst::State::Playing).unwrap();

    // 1. The pipeline runs with nothing up: everything is kept locally.
    let events = s3::events_with_crops(40, 6_000);
    for chunk in events.chunks(4) {
        src.push_buffer(s3::buffer_with_crops(chunk)).unwrap();
    }
    kafka::wait_for(
        Duration::from_secs(30),
        "both sinks to meet their outage",
        || (stat(&kafka_sink, "failures") >= 1 && stat(&s3_sink, "failures") >= 1).then_some(()),
    );
    assert_eq!(stat(&kafka_sink, "queued"), 40);
    assert_eq!(stat(&s3_sink, "queued"), 40);
    assert_eq!(connected("kafka"), Some(0));
    assert_eq!(connected("s3"), Some(0));

    // 2. Kafka and the registry come up: kafkasink connects within one retry interval.
    let registry = kafka::Registry::start_on(rport);
    let tansu = kafka::Tansu::start(&dir.path().join("tansu"), kport);
    tansu.create_topic(PLATES);
    tansu.create_topic(VEHICLES);
    let up = Instant::now();
    kafka::wait_for(
        Duration::from_secs(30),
        "kafkasink to deliver the backlog",
        || (stat(&kafka_sink, "delivered") >= 40).then_some(()),
    );
    let took = up.elapsed();
    assert!(
        took < Duration::from_secs(RETRY as u64 + 5),
        "Kafka backlog took {took:?}"
    );
    assert_eq!(connected("kafka"), Some(1));
    assert_eq!(connected("s3"), Some(0), "S3 is still down");

    // 3. S3 comes up: s3sink connects within one retry interval and uploads every crop.
    let s3srv = s3::S3sFs::start(&dir.path().join("s3"), sport, &[BUCKET]);
    let up = Instant::now();
    kafka::wait_for(
        Duration::from_secs(30),
        "s3sink to upload the backlog",
        || (stat(&s3_sink, "delivered") >= 40).then_some(()),
    );
    let took = up.elapsed();
    assert!(
        took < Duration::from_secs(RETRY as u64 + 5),
        "S3 backlog took {took:?}"
    );
    assert_eq!(connected("s3"), Some(1));

    src.end_of_stream().unwrap();
    let _ = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos]);
    pipeline.set_state(gst::State::Null).unwrap();

    // Nothing produced before the services came up is lost.
    let got = kafka::consume(
        &tansu.brokers(),
        &registry.url(),
        PLATES,
        40,
        Duration::from_secs(30),
    );
    let ids: std::collections::HashSet<String> = got.iter().map(|r| r.str("event_id")).collect();
    for (e, crop) in &events {
        assert!(
            ids.contains(&e.event_id),
            "event {} missing in Kafka",
            e.event_id
        );
        assert_eq!(
            s3srv.object(BUCKET, &e.image_key).as_deref(),
            Some(crop.as_slice()),
            "crop {} missing or different in S3",
            e.image_key
        );
    }
}
