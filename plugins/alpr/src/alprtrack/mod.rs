// SPDX-License-Identifier: MIT OR Apache-2.0
//! `alprtrack`: ByteTrack multi-object tracking over the alpr-frame metadata.

use gst::glib;
use gst::prelude::*;

pub mod bytetrack;
mod imp;
mod lap;
pub mod tracker;

pub use crate::meta::{TRACKS_ENDED_EVENT, ended_tracks_of};

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
