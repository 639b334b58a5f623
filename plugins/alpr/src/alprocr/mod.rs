// SPDX-License-Identifier: MIT OR Apache-2.0
//! `alprocr`: plate text recognition, one decided reading per vehicle track, and plate events.

use gst::glib;
use gst::prelude::*;

pub mod engine;
mod imp;
pub mod ocrmodel;
mod places;
mod settings;
pub mod tracks;
pub mod vehicles;
pub mod vote;

pub use crate::meta::{SETTLED_EVENT, Settled};

/// When alprocr emits a track's plate event (property `emit`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAlprOcrEmit")]
pub enum AlprOcrEmit {
    #[default]
    #[enum_value(
        name = "When the track ends (one event per vehicle)",
        nick = "track-end"
    )]
    TrackEnd = 0,
    #[enum_value(
        name = "As soon as early-agree reads agree; an update follows if the decision changes",
        nick = "early"
    )]
    Early = 1,
    #[enum_value(name = "After every read", nick = "every-read")]
    EveryRead = 2,
}

glib::wrapper! {
    pub struct AlprOcr(ObjectSubclass<imp::AlprOcr>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    AlprOcrEmit::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    crate::runtime::Provider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "alprocr",
        gst::Rank::NONE,
        AlprOcr::static_type(),
    )
}
