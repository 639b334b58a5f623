// SPDX-License-Identifier: MIT OR Apache-2.0
//! A small RTSP server (GstRtspServer) that serves a video file as a camera would, for trying
//! `pipelines/rtsp.sh` and `alprsrc` without a camera; `tests/rtsp.rs` runs it as a separate
//! process so that it can kill and restart it.
//!
//! ```text
//! cargo run --example rtsp-server -- [--address 127.0.0.1] [--port 8554] [--mount /camera]
//!                                    [--encode] [--audio | --audio-only] FILE
//! ```
//!
//! Every client gets its own stream from the start of the file (an unshared media), paced in
//! real time; at the end of the file the stream ends and a client like `alprsrc` reconnects.
//! The file's H.264 stream is sent as it is (`qtdemux ! h264parse ! rtph264pay`, no re-encoding);
//! `--encode` decodes and re-encodes with x264enc instead, for files in another codec.
//! `--audio` adds a live test tone as a second stream (PCMU), `--audio-only` serves only the
//! tone (a camera path without video). Once listening it prints `ready rtsp://ADDRESS:PORT/MOUNT`
//! on stdout.

use std::path::PathBuf;

use gst::glib;
use gst_rtsp_server::prelude::*;

struct Options {
    address: String,
    port: u16,
    mount: String,
    encode: bool,
    audio: bool,
    video: bool,
    file: Option<PathBuf>,
}

fn usage() -> ! {
    eprintln!(
        "usage: rtsp-server [--address 127.0.0.1] [--port 8554] [--mount /camera] [--encode] \
         [--audio | --audio-only] FILE"
    );
    std::process::exit(2);
}

fn parse() -> Options {
    let mut o = Options {
        address: "127.0.0.1".into(),
        port: 8554,
        mount: "/camera".into(),
        encode: false,
        audio: false,
        video: true,
        file: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--address" => o.address = args.next().unwrap_or_else(|| usage()),
            "--port" => {
                o.port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            "--mount" => o.mount = args.next().unwrap_or_else(|| usage()),
            "--encode" => o.encode = true,
            "--audio" => o.audio = true,
            "--audio-only" => {
                o.audio = true;
                o.video = false;
            }
            "-h" | "--help" => usage(),
            f if !f.starts_with("--") && o.file.is_none() => o.file = Some(PathBuf::from(f)),
            _ => usage(),
        }
    }
    if !o.mount.starts_with('/') {
        o.mount.insert(0, '/');
    }
    o
}

/// The media pipeline description: payloaders named pay0, pay1, ... as GstRtspServer expects.
fn launch(o: &Options) -> Result<String, String> {
    let mut parts = Vec::new();
    let mut pay = 0;
    if o.video {
        let file = o.file.as_ref().ok_or("no FILE given")?;
        if !file.is_file() {
            return Err(format!("{} is not a file", file.display()));
        }
        let location = file.display().to_string().replace('"', "\\\"");
        let video = if o.encode {
            "decodebin ! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast \
             key-int-max=30 ! video/x-h264,profile=baseline"
        } else {
            "qtdemux ! h264parse"
        };
        parts.push(format!(
            "filesrc location=\"{location}\" ! {video} ! rtph264pay name=pay{pay} pt=96 \
             config-interval=-1"
        ));
        pay += 1;
    }
    if o.audio {
        parts.push(format!(
            "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! \
             audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay{pay} pt=0"
        ));
    }
    Ok(format!("( {} )", parts.join(" ")))
}

fn main() {
    let o = parse();
    gst::init().expect("GStreamer initialises");
    let launch = launch(&o).unwrap_or_else(|e| {
        eprintln!("rtsp-server: {e}");
        usage()
    });

    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address(&o.address);
    server.set_service(&o.port.to_string());
    let factory = gst_rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(&launch);
    // One pipeline per client: each connection starts at the beginning of the file, on a
    // keyframe, as a camera's stream does.
    factory.set_shared(false);
    server
        .mount_points()
        .expect("the server has mount points")
        .add_factory(&o.mount, factory);

    let main_loop = glib::MainLoop::new(None, false);
    let _source = match server.attach(None) {
        Ok(id) => id,
        Err(e) => {
            eprintln!(
                "rtsp-server: cannot listen on {}:{}: {e}",
                o.address, o.port
            );
            std::process::exit(1);
        }
    };
    // The port actually bound (--port 0 picks a free one).
    let port = server.bound_port();
    println!("ready rtsp://{}:{port}{}", o.address, o.mount);
    eprintln!("rtsp-server: serving {launch}");
    main_loop.run();
}
