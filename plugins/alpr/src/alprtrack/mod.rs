// SPDX-License-Identifier: MIT OR Apache-2.0
//! `alprtrack`: ByteTrack multi-object tracking over the alpr-frame metadata.

use gst::glib;
use gst::prelude::*;

pub mod bytetrack;
mod imp;
mod lap;
pub mod tracker;

/// Name of the custom downstream event alprtrack sends before EOS (and after a discontinuity it
/// cannot attach to a frame) with the ids of every track still open: field `tracks`, an array
/// of guint64.
pub const TRACKS_ENDED_EVENT: &str = "alpr-tracks-ended";

glib::wrapper! {
    pub struct AlprTrack(ObjectSubclass<imp::AlprTrack>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "alprtrack",
        gst::Rank::NONE,
        AlprTrack::static_type(),
    )
}

/// Reads the track ids of an [`TRACKS_ENDED_EVENT`] event; `None` for any other event.
pub fn ended_tracks_of(event: &gst::EventRef) -> Option<Vec<u64>> {
    let s = event.structure()?;
    if s.name() != TRACKS_ENDED_EVENT {
        return None;
    }
    Some(
        s.get::<gst::Array>("tracks")
            .map(|a| a.iter().filter_map(|v| v.get::<u64>().ok()).collect())
            .unwrap_or_default(),
    )
}
