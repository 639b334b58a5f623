// SPDX-License-Identifier: MIT OR Apache-2.0
//! The metadata contract between the ALPR elements and the applications that embed them.
//!
//! Every analysed frame carries one `alpr-frame` [`gst::meta::CustomMeta`] whose structure lists
//! the objects found in that frame (vehicles and plates, in pixels of this frame), plus one
//! `GstVideoRegionOfInterestMeta` per object so that generic GStreamer code (overlays, other
//! analytics) sees the boxes too. The custom meta has no tags, so `queue`, `tee` and
//! `videoconvert` keep it.
//!
//! Elements and apps never touch the structure by hand: they read it with [`AlprFrame::read`]
//! and write it with [`AlprFrame::write`], which keeps the custom meta and the ROI metas in step.
//! The custom events the elements send each other (`alpr-tracks-ended`, `alpr-plates-settled`)
//! are part of the same contract: see the `events` submodule, re-exported here.
//!
//! Structure layout (`alpr-frame`), for apps in other languages:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `frame-number` | guint64 | index of the frame in the stream, counted by alprdetect |
//! | `detected` | gboolean | the detector ran on this frame (false on frames skipped by `interval` or as idle) |
//! | `still` | gboolean | skipped as idle (`motion-threshold`): nothing moved since the last detected frame |
//! | `tracked` | gboolean | alprtrack processed this frame (track ids are meaningful) |
//! | `width`, `height` | guint | frame size the boxes refer to |
//! | `objects` | GstValueArray of `alpr-object` structures | see [`AlprObject`] |
//! | `ended-tracks` | GstValueArray of guint64 | track ids that ended on this frame |
//! | `replaced-tracks` | GstValueArray of guint64 | those of them that ended because another car took their place (optional) |

mod alerts;
mod events;

pub use alerts::{
    ALERT_STRUCT, ALERTS_META, Alert, AlertError, AlertStatus, attach_alerts, read_alerts,
};
pub use events::{SETTLED_EVENT, Settled, TRACKS_ENDED_EVENT, ended_tracks_of, tracks_ended_event};

use gst::glib;
use gst::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

/// Name of the per-frame custom meta and of the structure it holds.
pub const FRAME_META: &str = "alpr-frame";
/// Name of each object structure inside `objects`.
pub const OBJECT_STRUCT: &str = "alpr-object";
/// Name of the parameter structure attached to each ROI meta.
pub const ROI_PARAM: &str = "detection";

/// Registers the custom metas. Called once from `plugin_init`; calling it again, from any
/// thread, is harmless.
pub fn register() {
    register_custom_meta(FRAME_META);
    register_custom_meta(ALERTS_META);
}

/// Registers custom meta `name` unless it is registered. Serialised: two threads that both find
/// it missing (parallel tests) would otherwise both register it, which GLib reports as critical.
pub(crate) fn register_custom_meta(name: &str) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !gst::meta::CustomMeta::is_registered(name) {
        gst::meta::CustomMeta::register(name, &[]);
    }
}

/// What an object is. The string form is the ROI type that other GStreamer code sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Vehicle,
    Plate,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Vehicle => "vehicle",
            ObjectKind::Plate => "license-plate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vehicle" => Some(ObjectKind::Vehicle),
            "license-plate" | "plate" => Some(ObjectKind::Plate),
            _ => None,
        }
    }
}

/// An axis-aligned box in pixels of the frame it belongs to (top-left corner + size).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BBox {
    pub fn new(x: f32, y: f32, w: f32, h: f32) -> Self {
        BBox { x, y, w, h }
    }

    pub fn from_corners(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        BBox {
            x: x1,
            y: y1,
            w: x2 - x1,
            h: y2 - y1,
        }
    }

    pub fn x2(&self) -> f32 {
        self.x + self.w
    }

    pub fn y2(&self) -> f32 {
        self.y + self.h
    }

    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x2().min(other.x2()) - self.x.max(other.x)).max(0.0);
        let iy = (self.y2().min(other.y2()) - self.y.max(other.y)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }

    /// The box grown by `margin` times its width and height on every side.
    pub fn padded(&self, margin: f32) -> BBox {
        BBox {
            x: self.x - self.w * margin,
            y: self.y - self.h * margin,
            w: self.w * (1.0 + 2.0 * margin),
            h: self.h * (1.0 + 2.0 * margin),
        }
    }

    /// Clips the box to a `width` x `height` frame.
    pub fn clip(&self, width: u32, height: u32) -> BBox {
        let (fw, fh) = (width as f32, height as f32);
        let x1 = self.x.clamp(0.0, fw);
        let y1 = self.y.clamp(0.0, fh);
        let x2 = self.x2().clamp(0.0, fw);
        let y2 = self.y2().clamp(0.0, fh);
        BBox::from_corners(x1, y1, x2.max(x1), y2.max(y1))
    }

    pub fn is_finite(&self) -> bool {
        self.x.is_finite() && self.y.is_finite() && self.w.is_finite() && self.h.is_finite()
    }
}

/// One detected (or tracked, or read) object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlprObject {
    /// Unique within the frame; `parent_id` refers to it.
    pub id: u32,
    pub kind: Option<ObjectKind>,
    /// Class label (`car`, `truck`, `license-plate`, ...).
    pub class: String,
    /// Detector confidence, 0..1.
    pub confidence: f32,
    pub bbox: BBox,
    /// For a plate: the `id` of the vehicle it lies in, if any.
    pub parent_id: Option<u32>,
    /// Set by alprtrack; 0 means not tracked.
    pub track_id: u64,
    /// The box was predicted by the tracker, not detected on this frame.
    pub predicted: bool,
    /// Set by alprocr: the text read on this frame.
    pub text: Option<String>,
    pub text_confidence: f32,
    pub char_confidences: Vec<f32>,
}

impl AlprObject {
    pub fn kind_or_vehicle(&self) -> ObjectKind {
        self.kind.unwrap_or(ObjectKind::Vehicle)
    }

    fn to_structure(&self) -> gst::Structure {
        let mut b = gst::Structure::builder(OBJECT_STRUCT)
            .field("id", self.id)
            .field("kind", self.kind_or_vehicle().as_str())
            .field("class", self.class.as_str())
            .field("confidence", self.confidence as f64)
            .field("x", self.bbox.x as f64)
            .field("y", self.bbox.y as f64)
            .field("w", self.bbox.w as f64)
            .field("h", self.bbox.h as f64)
            .field("parent-id", self.parent_id.unwrap_or(0))
            .field("track-id", self.track_id)
            .field("predicted", self.predicted);
        if let Some(text) = &self.text {
            b = b
                .field("text", text.as_str())
                .field("text-confidence", self.text_confidence as f64)
                .field(
                    "char-confidences",
                    gst::Array::new(self.char_confidences.iter().map(|c| *c as f64)),
                );
        }
        b.build()
    }

    fn from_structure(s: &gst::StructureRef) -> Result<Self, MetaError> {
        let f64_field = |name: &'static str| -> Result<f32, MetaError> {
            s.get::<f64>(name)
                .map(|v| v as f32)
                .map_err(|e| MetaError::field(name, e))
        };
        let kind_str = s
            .get::<&str>("kind")
            .map_err(|e| MetaError::field("kind", e))?;
        let kind = ObjectKind::parse(kind_str).ok_or_else(|| MetaError::Field {
            field: "kind",
            reason: format!("unknown kind {kind_str:?}, expected vehicle or license-plate"),
        })?;
        let parent = s.get::<u32>("parent-id").unwrap_or(0);
        let char_confidences = match s.get::<gst::Array>("char-confidences") {
            Ok(arr) => arr
                .iter()
                .filter_map(|v| v.get::<f64>().ok())
                .map(|v| v as f32)
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(AlprObject {
            id: s.get::<u32>("id").map_err(|e| MetaError::field("id", e))?,
            kind: Some(kind),
            class: s.get::<String>("class").unwrap_or_default(),
            confidence: f64_field("confidence")?,
            bbox: BBox::new(
                f64_field("x")?,
                f64_field("y")?,
                f64_field("w")?,
                f64_field("h")?,
            ),
            parent_id: (parent != 0).then_some(parent),
            track_id: s.get::<u64>("track-id").unwrap_or(0),
            predicted: s.get::<bool>("predicted").unwrap_or(false),
            text: s.get::<String>("text").ok(),
            text_confidence: s.get::<f64>("text-confidence").unwrap_or(0.0) as f32,
            char_confidences,
        })
    }
}

/// Everything the ALPR elements know about one frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlprFrame {
    pub frame_number: u64,
    pub detected: bool,
    /// alprdetect skipped this frame as idle (`motion-threshold`): nothing moved since the last
    /// detected frame, so the objects are where they were then (alprtrack holds them still
    /// rather than predicting their motion).
    pub still: bool,
    /// alprtrack ran on this frame: a `track_id` of 0 then means "not tracked", not "no tracker".
    pub tracked: bool,
    pub width: u32,
    pub height: u32,
    pub objects: Vec<AlprObject>,
    pub ended_tracks: Vec<u64>,
    /// Those of `ended_tracks` that ended because the tracker saw another car take their place
    /// (the plate in a vehicle box changed): what follows there is a new car, however similar
    /// its plate.
    pub replaced_tracks: Vec<u64>,
}

/// A malformed `alpr-frame` meta (written by something other than this API).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetaError {
    #[error("alpr-frame meta: field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
}

impl MetaError {
    fn field(field: &'static str, err: impl std::fmt::Display) -> Self {
        MetaError::Field {
            field,
            reason: err.to_string(),
        }
    }
}

impl AlprFrame {
    /// Reads the frame meta of `buffer`: `None` when the buffer has none.
    pub fn read(buffer: &gst::BufferRef) -> Option<Result<AlprFrame, MetaError>> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, FRAME_META).ok()?;
        Some(Self::from_structure(meta.structure()))
    }

    fn from_structure(s: &gst::StructureRef) -> Result<AlprFrame, MetaError> {
        let objects = match s.get::<gst::Array>("objects") {
            Ok(arr) => arr
                .iter()
                .map(|v| {
                    let st = v
                        .get::<gst::Structure>()
                        .map_err(|e| MetaError::field("objects", e))?;
                    AlprObject::from_structure(&st)
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(gst::structure::GetError::FieldNotFound { .. }) => Vec::new(),
            Err(e) => return Err(MetaError::field("objects", e)),
        };
        let ids = |field: &str| match s.get::<gst::Array>(field) {
            Ok(arr) => arr.iter().filter_map(|v| v.get::<u64>().ok()).collect(),
            Err(_) => Vec::new(),
        };
        let ended_tracks = ids("ended-tracks");
        let replaced_tracks = ids("replaced-tracks");
        Ok(AlprFrame {
            frame_number: s.get::<u64>("frame-number").unwrap_or(0),
            detected: s.get::<bool>("detected").unwrap_or(true),
            still: s.get::<bool>("still").unwrap_or(false),
            tracked: s.get::<bool>("tracked").unwrap_or(false),
            width: s.get::<u32>("width").unwrap_or(0),
            height: s.get::<u32>("height").unwrap_or(0),
            objects,
            ended_tracks,
            replaced_tracks,
        })
    }

    fn fill_structure(&self, s: &mut gst::StructureRef) {
        s.set("frame-number", self.frame_number);
        s.set("detected", self.detected);
        s.set("still", self.still);
        s.set("tracked", self.tracked);
        s.set("width", self.width);
        s.set("height", self.height);
        s.set(
            "objects",
            gst::Array::new(self.objects.iter().map(|o| o.to_structure())),
        );
        s.set("ended-tracks", gst::Array::new(self.ended_tracks.iter()));
        if self.replaced_tracks.is_empty() {
            s.remove_field("replaced-tracks");
        } else {
            s.set(
                "replaced-tracks",
                gst::Array::new(self.replaced_tracks.iter()),
            );
        }
    }

    /// Writes (or replaces) the frame meta on `buffer`, and replaces the ALPR ROI metas so that
    /// they match `self.objects`. ROI metas of other kinds are left alone.
    pub fn write(&self, buffer: &mut gst::BufferRef) -> Result<(), glib::BoolError> {
        match gst::meta::CustomMeta::from_mut_buffer(buffer, FRAME_META) {
            Ok(mut meta) => self.fill_structure(meta.mut_structure()),
            Err(_) => {
                let mut meta = gst::meta::CustomMeta::add(buffer, FRAME_META)?;
                self.fill_structure(meta.mut_structure());
            }
        }

        buffer.foreach_meta_mut(|mut meta| {
            let ours = meta
                .downcast_ref::<VideoRegionOfInterestMeta>()
                .is_some_and(|roi| ObjectKind::parse(roi.roi_type()).is_some());
            ControlFlow::Continue(if ours {
                gst::buffer::BufferMetaForeachAction::Remove
            } else {
                gst::buffer::BufferMetaForeachAction::Keep
            })
        });

        for obj in &self.objects {
            let b = obj.bbox.clip(
                if self.width > 0 { self.width } else { u32::MAX },
                if self.height > 0 {
                    self.height
                } else {
                    u32::MAX
                },
            );
            let rect = (
                b.x.round() as u32,
                b.y.round() as u32,
                b.w.round() as u32,
                b.h.round() as u32,
            );
            let mut roi =
                VideoRegionOfInterestMeta::add(buffer, obj.kind_or_vehicle().as_str(), rect);
            roi.set_id(obj.id as i32);
            roi.set_parent_id(obj.parent_id.map(|p| p as i32).unwrap_or(-1));
            let mut param = gst::Structure::builder(ROI_PARAM)
                .field("confidence", obj.confidence as f64)
                .field("label", obj.class.as_str())
                .field("track-id", obj.track_id)
                .field("predicted", obj.predicted);
            if let Some(text) = &obj.text {
                param = param
                    .field("text", text.as_str())
                    .field("text-confidence", obj.text_confidence as f64);
            }
            roi.add_param(param.build());
        }
        Ok(())
    }

    pub fn vehicles(&self) -> impl Iterator<Item = &AlprObject> {
        self.objects
            .iter()
            .filter(|o| o.kind == Some(ObjectKind::Vehicle))
    }

    pub fn plates(&self) -> impl Iterator<Item = &AlprObject> {
        self.objects
            .iter()
            .filter(|o| o.kind == Some(ObjectKind::Plate))
    }
}

/// How an element downstream of alprdetect reads a buffer's frame meta: a malformed meta is an
/// element error, a missing one a single warning per run (naming what to put upstream) after
/// which such buffers pass untouched.
#[derive(Debug, Default)]
pub struct FrameReader {
    warned: AtomicBool,
}

impl FrameReader {
    /// Warn again on the next missing meta (a new run).
    pub fn reset(&self) {
        self.warned.store(false, Ordering::SeqCst);
    }

    /// `Ok(None)`: no meta, pass the buffer on.
    pub fn read(
        &self,
        element: &gst::Element,
        buf: &gst::BufferRef,
    ) -> Result<Option<AlprFrame>, gst::FlowError> {
        match AlprFrame::read(buf) {
            Some(Ok(f)) => Ok(Some(f)),
            Some(Err(e)) => {
                gst::element_error!(element, gst::StreamError::Format, ("{e}"));
                Err(gst::FlowError::Error)
            }
            None => {
                if !self.warned.swap(true, Ordering::SeqCst) {
                    let name = element.factory().map(|f| f.name()).unwrap_or_default();
                    gst::element_warning!(
                        element,
                        gst::StreamError::Format,
                        ("frames carry no alpr-frame meta: put alprdetect before {name}")
                    );
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_grows_a_box_evenly_on_every_side() {
        let b = BBox::new(100.0, 50.0, 40.0, 20.0).padded(0.25);
        assert_eq!(b, BBox::new(90.0, 45.0, 60.0, 30.0));
        assert_eq!(
            BBox::new(1.0, 2.0, 3.0, 4.0).padded(0.0),
            BBox::new(1.0, 2.0, 3.0, 4.0)
        );
    }
}
