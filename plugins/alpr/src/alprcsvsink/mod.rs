// SPDX-License-Identifier: MIT OR Apache-2.0
//! `alprcsvsink`: appends every plate event of the `alpr-events` meta to a local CSV file, and
//! (property `alerts-location`) every watchlist alert of the `alpr-alerts` meta to another.

use gst::glib;
use gst::prelude::*;

pub mod csv;
mod imp;

glib::wrapper! {
    pub struct AlprCsvSink(ObjectSubclass<imp::AlprCsvSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "alprcsvsink",
        gst::Rank::NONE,
        AlprCsvSink::static_type(),
    )
}
