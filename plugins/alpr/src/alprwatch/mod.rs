// SPDX-License-Identifier: MIT OR Apache-2.0
//! `alprwatch`: matches every plate event against watchlists (OCR confusions forgiven) and
//! raises alerts: an `alpr-alerts` meta on the buffer and an `alpr-alert` element message per
//! alert (see [`crate::meta::Alert`]). The matching is pure Rust: [`matcher`] (weighted
//! distance, BK-tree index), [`lists`] (list files), [`alerts`] (new / updated / retracted per
//! event), [`reload`] (noticing changed files).

use gst::glib;
use gst::prelude::*;

pub mod alerts;
mod imp;
pub mod lists;
pub mod matcher;
pub mod reload;

glib::wrapper! {
    pub struct AlprWatch(ObjectSubclass<imp::AlprWatch>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "alprwatch",
        gst::Rank::NONE,
        AlprWatch::static_type(),
    )
}
