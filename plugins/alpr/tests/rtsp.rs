// SPDX-License-Identifier: MIT OR Apache-2.0
//! alprsrc against a real RTSP server: `examples/rtsp-server.rs` (GstRtspServer) serving
//! street-approach.mp4 from its own process on 127.0.0.1, killed (SIGKILL), frozen (SIGSTOP) and
//! restarted on the same port while one pipeline `alprsrc ! videoconvert ! alprdetect ! alprtrack
//! ! alprocr ! fakesink` keeps running; and the errors of bad input.

mod common;
#[path = "common/net.rs"]
mod net;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstalpr::meta::AlprFrame;
use net::free_port;

/// `examples/rtsp-server`, built (or found up to date) once per test run with the profile of
/// this test binary.
fn server_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/rtsp-<hash> -> target/<profile>/examples/rtsp-server
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "gst-plugin-alpr", "--example", "rtsp-server"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("run cargo to build examples/rtsp-server");
        assert!(status.success(), "cargo build --example rtsp-server failed");
        let bin = profile_dir.join("examples/rtsp-server");
        assert!(bin.is_file(), "no {}", bin.display());
        bin
    })
    .clone()
}

/// The RTSP server process. Dropping it kills it.
struct Server {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl Server {
    fn start(port: u16, args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let mut s = Server {
            child: Self::spawn(port, &args),
            port,
            args,
        };
        s.wait_ready();
        s
    }

    fn spawn(port: u16, args: &[String]) -> Child {
        Command::new(server_binary())
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start examples/rtsp-server")
    }

    /// Waits for the `ready rtsp://...` line.
    fn wait_ready(&mut self) {
        let stdout = self.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("rtsp-server prints `ready` within 10 s");
        assert!(
            line.starts_with("ready rtsp://"),
            "rtsp-server said {line:?}"
        );
    }

    fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/camera", self.port)
    }

    /// SIGKILL: the connection drops at once, as when a camera loses power.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts again on the same port, serving `args` from now on.
    fn restart(&mut self, args: &[&str]) {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.child = Self::spawn(self.port, &self.args);
        self.wait_ready();
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {}", self.child.id());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal_quietly("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn signal_quietly(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
    }
}

/// 640x352, 24 fps, ~5 vehicles per frame.
fn clip() -> String {
    common::media("street-approach.mp4").display().to_string()
}

/// 960x540, 30 fps: the camera "changed resolution" across a restart.
fn other_clip() -> String {
    common::media("motorway.mp4").display().to_string()
}

/// The running time of `buf` on `pad` (its current segment).
fn running_time(pad: &gst::Pad, buf: &gst::BufferRef) -> Option<gst::ClockTime> {
    let ev = pad.sticky_event::<gst::event::Segment>(0)?;
    let seg = ev.segment().downcast_ref::<gst::ClockTime>()?.clone();
    seg.to_running_time(buf.pts())
}

/// One frame as the sink saw it.
#[derive(Debug, Clone)]
struct Frame {
    /// Running time.
    pts: Option<gst::ClockTime>,
    discont: bool,
    /// alprdetect ran on it and found something.
    detections: usize,
}

/// What the bus said, gathered while the test waits.
#[derive(Default)]
struct Bus {
    errors: Vec<String>,
    /// `status` of every alpr-link-status message of alprsrc, with its reason.
    statuses: Vec<(String, String)>,
    eos: bool,
}

impl Bus {
    fn pump(&mut self, bus: &gst::Bus) {
        while let Some(msg) = bus.pop() {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    self.errors.push(format!("{} ({:?})", e.error(), e.debug()));
                }
                gst::MessageView::Eos(_) => self.eos = true,
                gst::MessageView::Element(e) => {
                    if let Some(s) = e.structure()
                        && s.name() == "alpr-link-status"
                    {
                        let status = s
                            .value("status")
                            .ok()
                            .and_then(|v| v.serialize().ok())
                            .map(|g| g.to_string())
                            .unwrap_or_default();
                        let reason = s.get::<String>("reason").unwrap_or_default();
                        self.statuses.push((status, reason));
                    }
                }
                _ => {}
            }
        }
    }
}

struct Run {
    pipeline: gst::Pipeline,
    src: gst::Element,
    frames: Arc<Mutex<Vec<Frame>>>,
    bus: Bus,
}

impl Run {
    fn start(uri: &str) -> Run {
        common::init();
        let desc = format!(
            "alprsrc name=src uri={uri} retry-interval=1 timeout=3 ! videoconvert ! \
             alprdetect interval=3 threads=1 ! alprtrack ! alprocr camera-id=rtsp-test ! \
             fakesink name=sink sync=false"
        );
        let pipeline = common::launch(&desc);
        let src = pipeline.by_name("src").unwrap();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let f = frames.clone();
        pipeline
            .by_name("sink")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                if let Some(buf) = info.buffer() {
                    let detections = match AlprFrame::read(buf) {
                        Some(Ok(fr)) if fr.detected => fr.objects.len(),
                        _ => 0,
                    };
                    f.lock().unwrap().push(Frame {
                        pts: running_time(pad, buf),
                        discont: buf.flags().contains(gst::BufferFlags::DISCONT),
                        detections,
                    });
                }
                gst::PadProbeReturn::Ok
            });
        pipeline.set_state(gst::State::Playing).unwrap();
        Run {
            pipeline,
            src,
            frames,
            bus: Bus::default(),
        }
    }

    fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    /// Width of the video the sink gets now.
    fn width(&self) -> i32 {
        let caps = self
            .pipeline
            .by_name("sink")
            .unwrap()
            .static_pad("sink")
            .unwrap()
            .current_caps()
            .expect("the sink has caps");
        caps.structure(0).unwrap().get::<i32>("width").unwrap()
    }

    fn status(&self) -> String {
        let v = self.src.property_value("status");
        v.serialize().unwrap().to_string()
    }

    /// Pumps the bus until `cond` holds or `timeout` passes; false on timeout.
    fn wait(&mut self, timeout: Duration, mut cond: impl FnMut(&Run) -> bool) -> bool {
        let bus = self.pipeline.bus().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            self.bus.pump(&bus);
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn detected_since(&self, from: usize) -> usize {
        self.frames()[from.min(self.frames().len())..]
            .iter()
            .filter(|f| f.detections > 0)
            .count()
    }

    fn assert_playing_without_errors(&self, when: &str) {
        assert!(
            self.bus.errors.is_empty(),
            "{when}: errors on the bus: {:?}",
            self.bus.errors
        );
        let (res, state, _) = self.pipeline.state(gst::ClockTime::ZERO);
        assert!(res.is_ok(), "{when}: pipeline state query failed");
        assert_eq!(state, gst::State::Playing, "{when}: pipeline left PLAYING");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The scenario: detections flow, the server is killed and later restarted on the same
/// port (with a clip of another resolution), and the same pipeline instance detects again; then the server freezes (no data, the
/// connection stays open) and the no-data timeout reconnects; finally an EOS from the
/// application ends the pipeline.
#[test]
fn reconnects_after_server_kill_and_stall_in_the_same_pipeline() {
    let started = Instant::now();
    let mut server = Server::start(free_port(), &[&clip()]);
    let mut run = Run::start(&server.url());

    assert!(
        run.wait(Duration::from_secs(30), |r| r.detected_since(0) >= 8),
        "no detections from the RTSP stream within 30 s (frames: {}, statuses: {:?}, errors: {:?})",
        run.frames().len(),
        run.bus.statuses,
        run.bus.errors
    );
    assert_eq!(run.status(), "connected");
    assert_eq!(run.width(), 640);
    run.assert_playing_without_errors("before the outage");

    // Outage 1: the server dies (SIGKILL) and comes back with another resolution.
    let before = run.frames();
    let last_pts_before = before.last().and_then(|f| f.pts).unwrap();
    let killed = Instant::now();
    server.kill();
    let n_statuses = run.bus.statuses.len();
    assert!(
        run.wait(Duration::from_secs(5), |r| r.bus.statuses[n_statuses..]
            .iter()
            .any(|(s, _)| s == "disconnected")),
        "alprsrc did not report the lost server: {:?}",
        run.bus.statuses
    );
    let n_frames = run.frames().len();
    // The pipeline stays up, quietly, while the server is gone (failed attempts meanwhile).
    run.wait(Duration::from_secs(2), |_| false);
    run.assert_playing_without_errors("during the outage");
    assert_eq!(
        run.frames().len(),
        n_frames,
        "frames arrived while the server was down"
    );
    assert!(run.status() != "connected", "status {}", run.status());

    server.restart(&[&other_clip()]);
    let outage = killed.elapsed();
    assert!(
        run.wait(Duration::from_secs(30), |r| r.detected_since(n_frames) >= 8),
        "no detections after the server came back (frames since: {}, statuses: {:?}, errors: {:?})",
        run.frames().len() - n_frames,
        run.bus.statuses,
        run.bus.errors
    );
    run.assert_playing_without_errors("after the reconnect");
    assert_eq!(run.width(), 960, "caps were not renegotiated");
    let frames = run.frames();
    let first_after = &frames[n_frames];
    assert!(
        first_after.discont,
        "the first frame after the reconnect is not DISCONT: {first_after:?}"
    );
    assert!(
        frames[1..n_frames].iter().all(|f| !f.discont),
        "DISCONT before the outage"
    );
    // Running time kept growing with the clock across the outage (no reset to zero).
    let pts_after = first_after.pts.unwrap();
    assert!(
        pts_after > last_pts_before + gst::ClockTime::from_mseconds(1500),
        "pts {pts_after} after an outage of {outage:?} is not later than {last_pts_before} + the outage"
    );
    let ptss: Vec<_> = frames.iter().filter_map(|f| f.pts).collect();
    // Never backwards (equal neighbours happen: rtpjitterbuffer keeps the timestamps of a stream
    // with B-frames, like motorway.mp4's, from going back by repeating one).
    let backwards: Vec<_> = ptss.windows(2).filter(|w| w[0] > w[1]).collect();
    assert!(
        backwards.is_empty(),
        "timestamps do not grow monotonically: {backwards:?} (reconnect at frame {n_frames})"
    );
    let seq: Vec<&str> = run.bus.statuses.iter().map(|(s, _)| s.as_str()).collect();
    let lost = seq.iter().position(|s| *s == "disconnected").unwrap();
    assert!(seq[..lost].contains(&"connected"), "{seq:?}");
    assert!(seq[lost..].contains(&"connected"), "{seq:?}");
    assert_eq!(run.status(), "connected");
    let stats = run.src.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("connections").unwrap(), 2, "{stats}");
    assert!(stats.get::<u64>("failures").unwrap() >= 1, "{stats}");

    // Outage 2: the server freezes; the connection stays open but no frame comes.
    let n_frames = run.frames().len();
    let n_statuses = run.bus.statuses.len();
    server.signal("STOP");
    assert!(
        run.wait(Duration::from_secs(10), |r| r.bus.statuses[n_statuses..]
            .iter()
            .any(
                |(s, reason)| s == "disconnected" && reason.contains("no frame for 3s")
            )),
        "the no-data timeout did not fire: {:?}",
        &run.bus.statuses[n_statuses..]
    );
    run.assert_playing_without_errors("while the server is frozen");
    server.signal("CONT");
    let after_stall = run.frames().len();
    assert!(
        run.wait(Duration::from_secs(30), |r| r.detected_since(after_stall)
            >= 4),
        "no detections after the frozen server resumed: {:?}",
        &run.bus.statuses[n_statuses..]
    );
    run.assert_playing_without_errors("after the stall");
    assert!(run.frames()[n_frames..].iter().any(|f| f.discont));

    // EOS from the application still ends the pipeline.
    assert!(run.pipeline.send_event(gst::event::Eos::new()));
    assert!(
        run.wait(Duration::from_secs(10), |r| r.bus.eos),
        "EOS sent by the application did not reach the sink"
    );
    assert!(run.bus.errors.is_empty(), "{:?}", run.bus.errors);
    run.pipeline.set_state(gst::State::Null).unwrap();
    println!(
        "frames {}, with detections {}, statuses {:?}, total {:?}",
        run.frames().len(),
        run.detected_since(0),
        run.bus
            .statuses
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>(),
        started.elapsed()
    );
}

/// Starts `alprsrc` with `props` into a fakesink and returns the first error on the bus
/// (within `timeout`), or panics.
fn first_error(props: &str, timeout: Duration) -> String {
    common::init();
    let pipeline = common::launch(&format!("alprsrc {props} ! fakesink"));
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Error(e)) => format!("{} | {:?}", e.error(), e.debug()),
        _ => panic!("alprsrc {props}: no error within {timeout:?}"),
    }
}

#[test]
fn bad_uris_are_refused_with_the_property_named() {
    let e = first_error("", Duration::from_secs(5));
    assert!(e.contains("no uri set") && e.contains("uri=rtsp://"), "{e}");
    let e = first_error("uri=/tmp/video.mp4", Duration::from_secs(5));
    assert!(e.contains("not a URI") && e.contains("file:///"), "{e}");
    let e = first_error("uri=nosuchscheme://camera/x", Duration::from_secs(5));
    assert!(e.contains("nosuchscheme://"), "{e}");
    // The password never reads back (nor appears in logs and messages, which use the same form).
    let src = gst::ElementFactory::make("alprsrc")
        .property("uri", "rtsp://admin:s3cret@192.0.2.10/stream1")
        .build()
        .unwrap();
    assert_eq!(
        src.property::<String>("uri"),
        "rtsp://admin:*****@192.0.2.10/stream1"
    );
    // A file that is not there: the source cannot even start.
    let e = first_error("uri=file:///no/such/video.mp4", Duration::from_secs(5));
    assert!(
        e.contains("uri=file:///no/such/video.mp4") && e.contains("cannot start"),
        "{e}"
    );
}

#[test]
fn a_stream_without_video_is_an_error_not_a_retry_loop() {
    let server = Server::start(free_port(), &["--audio-only"]);
    let started = Instant::now();
    let e = first_error(
        &format!("uri={} retry-interval=1", server.url()),
        Duration::from_secs(15),
    );
    assert!(
        e.contains("no video stream") && e.contains(&server.url()) && e.contains("audio"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn audio_streams_are_ignored() {
    let server = Server::start(free_port(), &["--audio", &clip()]);
    let mut run = Run::start(&server.url());
    assert!(
        run.wait(Duration::from_secs(30), |r| r.frames().len() >= 24),
        "no video from a stream with audio: {:?} {:?}",
        run.bus.statuses,
        run.bus.errors
    );
    run.assert_playing_without_errors("video + audio");
}

#[test]
fn gives_up_after_max_retries() {
    // Nothing listens on the port.
    let port = free_port();
    let started = Instant::now();
    let e = first_error(
        &format!("uri=rtsp://127.0.0.1:{port}/camera retry-interval=1 max-retries=2"),
        Duration::from_secs(15),
    );
    assert!(
        e.contains(&format!("rtsp://127.0.0.1:{port}/camera")) && e.contains("max-retries=2"),
        "{e}"
    );
    // Three attempts one second apart.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

#[test]
fn a_file_uri_plays_and_loops_with_growing_timestamps() {
    common::init();
    let uri = format!(
        "file://{}",
        common::media("car-still-4XXF538.mp4").display()
    );
    // 4 frames per pass: three passes need a restart twice.
    let pipeline = common::launch(&format!(
        "alprsrc name=src uri={uri} retry-interval=1 ! fakesink name=sink sync=false"
    ));
    let frames = Arc::new(Mutex::new(Vec::new()));
    let f = frames.clone();
    pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |pad, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => f.lock().unwrap().push((
                        running_time(pad, b),
                        b.flags().contains(gst::BufferFlags::DISCONT),
                    )),
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                        f.lock().unwrap().push((None, false));
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while frames.lock().unwrap().len() < 12 && Instant::now() < deadline {
        if let Some(m) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        ) {
            panic!("unexpected {:?}", m);
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let frames = frames.lock().unwrap().clone();
    assert!(frames.len() >= 12, "{frames:?}");
    assert!(
        frames.iter().all(|(p, _)| p.is_some()),
        "EOS went out: {frames:?}"
    );
    // Running time, not the file's own timestamps (they restart at zero every pass).
    let pts: Vec<_> = frames.iter().map(|(p, _)| p.unwrap()).collect();
    assert!(pts.windows(2).all(|w| w[0] < w[1]), "{pts:?}");
    let disconts = frames.iter().filter(|(_, d)| *d).count();
    assert!(disconts >= 2, "each restart is DISCONT: {frames:?}");
}
