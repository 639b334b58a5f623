// SPDX-License-Identifier: MIT OR Apache-2.0
//! `alprsrc`: raw video from a camera URI (`rtsp://`, `http://`, `file://`, anything
//! `uridecodebin` reads) that reconnects inside the running pipeline. When the inner source fails,
//! ends or stops sending, the bin tears it down, waits `retry-interval` and builds a new one;
//! downstream sees one stream (no EOS, running time keeps growing, the first buffer after a
//! reconnect is `DISCONT` so alprtrack ends its tracks).

use gst::glib;
use gst::prelude::*;

mod imp;
mod session;
mod supervisor;

/// How RTSP sources receive the RTP packets (property `rtsp-transport`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAlprRtspTransport")]
pub enum RtspTransport {
    /// Interleaved in the RTSP connection: no UDP loss, passes NAT and firewalls.
    #[default]
    #[enum_value(
        name = "TCP: RTP interleaved in the RTSP connection (no packet loss, passes NAT)",
        nick = "tcp"
    )]
    Tcp = 0,
    #[enum_value(
        name = "UDP unicast (lowest latency, loses packets on busy links)",
        nick = "udp"
    )]
    Udp = 1,
    #[enum_value(
        name = "Whatever the camera offers: UDP multicast, UDP, then TCP",
        nick = "auto"
    )]
    Auto = 2,
}

impl RtspTransport {
    /// The value of rtspsrc's `protocols` flags.
    pub fn rtspsrc_protocols(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
            RtspTransport::Auto => "udp-mcast+udp+tcp",
        }
    }
}

glib::wrapper! {
    pub struct AlprSrc(ObjectSubclass<imp::AlprSrc>)
        @extends gst::Bin, gst::Element, gst::Object,
        @implements gst::ChildProxy;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    RtspTransport::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    crate::link::LinkStatus::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "alprsrc",
        gst::Rank::NONE,
        AlprSrc::static_type(),
    )
}

/// `uri` with its password replaced by `*****`: what logs, messages and the property show.
pub fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:*****@{host}{path}"),
            None => uri.to_string(),
        },
        None => uri.to_string(),
    }
}

/// Checks `uri` before anything starts: a URI (not a path), with a scheme some installed
/// GStreamer source handles. The error names the property and what is expected.
pub fn validate_uri(uri: Option<&str>) -> Result<(), String> {
    let Some(uri) = uri.filter(|u| !u.trim().is_empty()) else {
        return Err(
            "no uri set: set uri=rtsp://[user:password@]host[:port]/path \
                    (or http://..., file:///absolute/path)"
                .into(),
        );
    };
    let shown = redact_uri(uri);
    let Some(scheme) = scheme(uri) else {
        return Err(format!(
            "uri `{shown}` is not a URI: expected scheme://..., e.g. rtsp://host/stream or \
             file:///absolute/path/video.mp4"
        ));
    };
    match gst::Element::make_from_uri(gst::URIType::Src, uri, None) {
        Ok(_) => {}
        Err(e) if e.matches(gst::URIError::UnsupportedProtocol) => {
            return Err(format!(
                "uri `{shown}`: no installed GStreamer source reads {scheme}:// URIs (rtsp:// \
                 and http:// need gstreamer1.0-plugins-good)"
            ));
        }
        Err(e) => {
            return Err(format!(
                "uri `{shown}` is not valid: {}",
                e.message().replace(uri, &shown)
            ));
        }
    }
    Ok(())
}

/// The scheme of `scheme://...`, lower case; None when `uri` has none (a path).
fn scheme(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once("://")?;
    let ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then(|| scheme.to_ascii_lowercase())
}

/// What the logs call the far end: `RTSP`, `HTTP`, `file`...
pub fn service_name(uri: &str) -> String {
    match scheme(uri).as_deref() {
        Some("rtsp" | "rtsps" | "rtspt" | "rtspu") => "RTSP".into(),
        Some("http" | "https") => "HTTP".into(),
        Some("file") => "file".into(),
        Some(other) => other.to_ascii_uppercase(),
        None => "source".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_uri("rtsp://admin:s3cr@t@192.0.2.10:554/stream1?x=1"),
            "rtsp://admin:*****@192.0.2.10:554/stream1?x=1"
        );
        assert_eq!(
            redact_uri("rtsp://192.0.2.10/a@b"),
            "rtsp://192.0.2.10/a@b",
            "an @ in the path is not userinfo"
        );
        assert_eq!(redact_uri("rtsp://user@host/x"), "rtsp://user@host/x");
        assert_eq!(redact_uri("file:///tmp/a.mp4"), "file:///tmp/a.mp4");
    }

    #[test]
    fn uris_are_checked() {
        gst::init().unwrap();
        assert!(validate_uri(None).unwrap_err().contains("no uri set"));
        let e = validate_uri(Some("/tmp/video.mp4")).unwrap_err();
        assert!(e.contains("not a URI") && e.contains("file:///"), "{e}");
        let e = validate_uri(Some("nosuchscheme://h/x")).unwrap_err();
        assert!(e.contains("nosuchscheme://"), "{e}");
        validate_uri(Some("file:///tmp/a.mp4")).unwrap();
        assert_eq!(service_name("rtsp://h/x"), "RTSP");
        assert_eq!(service_name("file:///x"), "file");
    }
}
