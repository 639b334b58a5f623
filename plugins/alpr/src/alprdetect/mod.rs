// SPDX-License-Identifier: MIT OR Apache-2.0
//! `alprdetect`: vehicle and licence-plate detection with ONNX models.

use gst::glib;
use gst::prelude::*;

pub mod decode;
pub mod engine;
pub mod idle;
mod imp;
pub mod model;
pub mod preprocess;
pub mod settled;

/// Where the plate model looks (property `plate-mode`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAlprPlateMode")]
pub enum AlprPlateMode {
    #[enum_value(name = "Full frame only", nick = "full-frame")]
    FullFrame = 0,
    #[enum_value(name = "Inside vehicle boxes only", nick = "vehicles")]
    Vehicles = 1,
    #[enum_value(
        name = "Full frame and inside vehicle boxes (finds plates of cut-off or missed cars)",
        nick = "both"
    )]
    Both = 2,
    #[default]
    #[enum_value(
        name = "Full frame, and inside the vehicles wide enough to carry a readable plate where \
                the full frame found none",
        nick = "auto"
    )]
    Auto = 3,
}

impl From<AlprPlateMode> for engine::PlateMode {
    fn from(m: AlprPlateMode) -> Self {
        match m {
            AlprPlateMode::FullFrame => engine::PlateMode::FullFrame,
            AlprPlateMode::Vehicles => engine::PlateMode::Vehicles,
            AlprPlateMode::Both => engine::PlateMode::Both,
            AlprPlateMode::Auto => engine::PlateMode::Auto,
        }
    }
}

glib::wrapper! {
    pub struct AlprDetect(ObjectSubclass<imp::AlprDetect>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    AlprPlateMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    crate::runtime::Provider::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "alprdetect",
        gst::Rank::NONE,
        AlprDetect::static_type(),
    )
}
