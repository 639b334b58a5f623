// SPDX-License-Identifier: MIT OR Apache-2.0
//! One connection to the camera: a bin around `uridecodebin` whose first raw video stream
//! becomes the bin's `src` ghost pad. Audio and other streams are not decoded: their pads are
//! exposed undecoded and their data dropped. A session is built, started and thrown away whole;
//! the element's supervisor makes a new one for every reconnect.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::RtspTransport;

/// What a session needs to know, snapshot from the element's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub uri: String,
    /// rtspsrc jitter buffer, ms.
    pub latency_ms: u32,
    pub transport: RtspTransport,
    /// Bound of connection attempts and requests, s.
    pub timeout_s: u32,
}

/// Whether decodebin should go on decoding a stream with these caps: everything but audio,
/// text and subtitles (containers and RTP video lead to video).
fn wants_decoding(caps: &gst::CapsRef) -> bool {
    let Some(s) = caps.structure(0) else {
        return true;
    };
    let name = s.name().as_str();
    if name == "application/x-rtp" {
        return s.get::<&str>("media").map_or(true, |m| m == "video");
    }
    !(name.starts_with("audio/") || name.starts_with("text/") || name.starts_with("subpicture/"))
}

/// Configures the element uridecodebin made for the URI: rtspsrc gets the transport, jitter
/// buffer and timeouts of the element; an HTTP source its timeout.
fn configure_source(source: &gst::Element, cfg: &Config) {
    let factory = source.factory().map(|f| f.name().to_string());
    match factory.as_deref() {
        Some("rtspsrc") => {
            source.set_property("latency", cfg.latency_ms);
            source.set_property_from_str("protocols", cfg.transport.rtspsrc_protocols());
            source.set_property("tcp-timeout", u64::from(cfg.timeout_s) * 1_000_000);
            // The jitter buffer never holds more than `latency`: stay live.
            source.set_property("drop-on-latency", true);
        }
        Some("souphttpsrc") => source.set_property("timeout", cfg.timeout_s),
        _ => {}
    }
}

/// Builds the bin of session `id` inside `element` (not added, not started).
pub fn build(element: &super::AlprSrc, id: u64, cfg: &Config) -> Result<gst::Bin, String> {
    let bin = gst::Bin::builder().name(format!("session{id}")).build();
    // The element starts, stops and replaces the session itself: its state changes (and a
    // file's preroll) never become the pipeline's.
    bin.set_property("async-handling", true);
    bin.set_locked_state(true);

    let decode = gst::ElementFactory::make("uridecodebin")
        .name("decode")
        .property("uri", &cfg.uri)
        .build()
        .map_err(|e| {
            format!("cannot create uridecodebin ({e}): install gstreamer1.0-plugins-base")
        })?;
    decode.connect("autoplug-continue", false, |args| {
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        Some(caps.is_none_or(|c| wants_decoding(&c)).to_value())
    });
    let weak = element.downgrade();
    let config = cfg.clone();
    decode.connect("source-setup", false, move |args| {
        let source = args.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
        configure_source(&source, &config);
        if let Some(element) = weak.upgrade() {
            element.emit_by_name::<()>("source-setup", &[&source]);
        }
        None
    });
    let weak = element.downgrade();
    let weak_bin = bin.downgrade();
    decode.connect_pad_added(move |_, pad| {
        if let (Some(element), Some(bin)) = (weak.upgrade(), weak_bin.upgrade()) {
            element.imp().session_pad_added(id, &bin, pad);
        }
    });
    let weak = element.downgrade();
    decode.connect_no_more_pads(move |_| {
        if let Some(element) = weak.upgrade() {
            element.imp().session_no_more_pads(id);
        }
    });
    bin.add(&decode)
        .map_err(|e| format!("cannot build the session: {e}"))?;
    Ok(bin)
}

/// The session's output pad for the stream `pad` of uridecodebin, with `probe` on its events.
pub fn expose(
    bin: &gst::Bin,
    pad: &gst::Pad,
    probe: impl Fn(&mut gst::PadProbeInfo) -> gst::PadProbeReturn + Send + Sync + 'static,
) -> Result<gst::GhostPad, glib::BoolError> {
    let ghost = gst::GhostPad::builder_with_target(pad)?.name("src").build();
    ghost.set_active(true)?;
    bin.add_pad(&ghost)?;
    ghost.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        probe(info)
    });
    Ok(ghost)
}

/// Streams the element does not use: their data is dropped here, so that an unlinked pad
/// never stops the source (not-linked) and no sink element is needed.
pub fn discard(pad: &gst::Pad) {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        |_, _| gst::PadProbeReturn::Drop,
    );
}

/// What a stream is, for the "no video" error: its media type, or for RTP `audio PCMU (RTP)`.
pub fn stream_kind(caps: &gst::CapsRef) -> String {
    let Some(s) = caps.structure(0) else {
        return "unknown".into();
    };
    if s.name() == "application/x-rtp" {
        let media = s.get::<&str>("media").unwrap_or("unknown");
        let encoding = s.get::<&str>("encoding-name").unwrap_or("?");
        return format!("{media} {encoding} (RTP)");
    }
    s.name().to_string()
}

/// `640x352 I420 @ 24 fps` for the logs.
pub fn describe(caps: &gst::CapsRef) -> String {
    let Some(s) = caps.structure(0) else {
        return "no caps".into();
    };
    let mut d = String::new();
    if let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) {
        d.push_str(&format!("{w}x{h}"));
    }
    if let Ok(f) = s.get::<&str>("format") {
        d.push_str(&format!(" {f}"));
    }
    if let Ok(r) = s.get::<gst::Fraction>("framerate")
        && r.numer() > 0
        && r.denom() > 0
    {
        let fps = format!("{:.2}", r.numer() as f64 / r.denom() as f64);
        let fps = fps.trim_end_matches('0').trim_end_matches('.');
        d.push_str(&format!(" @ {fps} fps"));
    }
    if d.is_empty() {
        s.name().to_string()
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_video_is_decoded() {
        gst::init().unwrap();
        let yes = [
            "application/x-rtp, media=(string)video, encoding-name=(string)H264",
            "video/x-h264",
            "video/quicktime",
            "application/x-rtp",
        ];
        let no = [
            "application/x-rtp, media=(string)audio, encoding-name=(string)PCMU",
            "audio/mpeg",
            "text/x-raw",
            "subpicture/x-dvd",
        ];
        for c in yes {
            assert!(wants_decoding(&c.parse::<gst::Caps>().unwrap()), "{c}");
        }
        for c in no {
            assert!(!wants_decoding(&c.parse::<gst::Caps>().unwrap()), "{c}");
        }
    }

    #[test]
    fn caps_are_described() {
        gst::init().unwrap();
        let c: gst::Caps = "application/x-rtp, media=audio, encoding-name=PCMU"
            .parse()
            .unwrap();
        assert_eq!(stream_kind(&c), "audio PCMU (RTP)");
        let c: gst::Caps = "audio/mpeg".parse().unwrap();
        assert_eq!(stream_kind(&c), "audio/mpeg");
        let c: gst::Caps = "video/x-raw, format=I420, width=640, height=352, framerate=24/1"
            .parse()
            .unwrap();
        assert_eq!(describe(&c), "640x352 I420 @ 24 fps");
        let c: gst::Caps = "video/x-raw, width=960, height=540, framerate=30000/1001"
            .parse()
            .unwrap();
        assert_eq!(describe(&c), "960x540 @ 29.97 fps");
    }
}
