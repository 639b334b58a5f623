// SPDX-License-Identifier: MIT OR Apache-2.0
//! The Prometheus endpoint against a real pipeline: the exposition passes `promtool check
//! metrics`, and a real Prometheus server scrapes it and answers queries on `alpr_*` series.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstalpr::metrics::{self, ServerState};

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// Runs the smoke clip through the analysers and a local-mode kafkasink, returning the
/// endpoint's address.
fn run_pipeline(outbox: &std::path::Path) -> SocketAddr {
    common::init();
    let clip = common::media("car-still-4XXF538.mp4");
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! alprdetect metrics-address=127.0.0.1:0 \
         ! alprtrack ! alprocr ! kafkasink name=k outbox-location=\"{}\"",
        clip.display(),
        outbox.display()
    );
    let p = gst::parse::launch(&desc).unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline finished");
    p.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{} {:?}", e.error(), e.debug());
    }
    match metrics::ensure_server(None).unwrap() {
        ServerState::Serving(a) => a,
        ServerState::Disabled => panic!("metrics server disabled"),
    }
}

fn value(text: &str, series_prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn endpoint_serves_valid_alpr_series_that_prometheus_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let addr = run_pipeline(&dir.path().join("outbox"));
    let resp = http_get(addr, "/metrics");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let text = body(&resp).to_string();
    assert!(
        value(&text, "alpr_frames_total{element=\"alprdetect") >= 4.0,
        "{text}"
    );
    assert!(value(&text, "alpr_detections_total{element=\"alprdetect") >= 4.0);
    assert!(value(&text, "alpr_reads_total") >= 4.0);
    assert!(value(&text, "alpr_events_total") >= 1.0);
    assert!(
        value(&text, "alpr_sink_queue_depth{sink=\"k\"}") >= 1.0,
        "{text}"
    );
    // A local-mode kafkasink keeps its queue-age gauge too.
    assert!(
        text.contains("alpr_sink_queue_oldest_age_seconds{sink=\"k\"}"),
        "{text}"
    );
    assert!(http_get(addr, "/other").starts_with("HTTP/1.1 404"));

    // The exposition format is valid for Prometheus' own linter.
    let metrics_file = dir.path().join("metrics.txt");
    std::fs::write(&metrics_file, &text).unwrap();
    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics_file).unwrap())
        .output()
        .expect("promtool runs (apt install prometheus)");
    assert!(
        lint.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // A real Prometheus server scrapes the endpoint and answers a query.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: alpr\n    \
             static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (apt install prometheus)"),
    );
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&prom, Duration::from_secs(1)) {
            drop(s.write_all(b""));
            let resp = http_get(prom, "/api/v1/query?query=sum(alpr_frames_total)");
            if body(&resp).contains("\"result\":[{") {
                assert!(body(&resp).contains("\"status\":\"success\""), "{resp}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped alpr_frames_total"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
