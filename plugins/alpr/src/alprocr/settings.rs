// SPDX-License-Identifier: MIT OR Apache-2.0
//! alprocr's settings: the properties, their defaults and the conversions to the voter's
//! configuration (the element's `imp.rs` only locks and delegates).

use gst::glib;
use gst::prelude::*;

use super::AlprOcrEmit;
use super::tracks;
use super::vote::{EmitMode, FormatMode, PlateFormat, VoterConfig};
use crate::event;
use crate::runtime::Provider;

const DEFAULT_CAMERA_ID: &str = "camera-0";
const DEFAULT_MIN_READS: u32 = 1;
const DEFAULT_MIN_CHARS: u32 = 3;
const DEFAULT_MIN_CONFIDENCE: f32 = 0.0;
const DEFAULT_EARLY_AGREE: u32 = 3;
const DEFAULT_CROP_PADDING: f32 = 0.08;
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_JPEG_QUALITY: u32 = 90;
const DEFAULT_VEHICLE_IMAGE: bool = false;
const DEFAULT_FRAME_IMAGE: bool = false;
const DEFAULT_IMAGE_MAX_SIDE: u32 = 1280;
const DEFAULT_VEHICLE_EVENTS: bool = false;
const DEFAULT_SETTLE_READS: u32 = 3;
const DEFAULT_MERGE_FRAMES: u32 = 5;
const DEFAULT_SETTLE_UNREAD: u32 = 10;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub ocr_model: Option<String>,
    pub ocr_config: Option<String>,
    pub camera_id: String,
    pub source: Option<String>,
    pub min_reads: u32,
    pub min_chars: u32,
    pub min_confidence: f32,
    pub plate_format: Option<String>,
    pub emit: AlprOcrEmit,
    pub early_agree: u32,
    pub crop_padding: f32,
    pub key_template: String,
    pub threads: u32,
    pub execution_provider: Provider,
    pub jpeg_quality: u32,
    pub vehicle_image: bool,
    pub frame_image: bool,
    pub image_max_side: u32,
    pub vehicle_events: bool,
    pub settle_reads: u32,
    pub settle_unread: u32,
    pub merge_frames: u32,
    pub fragment_confidence: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ocr_model: None,
            ocr_config: None,
            camera_id: DEFAULT_CAMERA_ID.into(),
            source: None,
            min_reads: DEFAULT_MIN_READS,
            min_chars: DEFAULT_MIN_CHARS,
            min_confidence: DEFAULT_MIN_CONFIDENCE,
            plate_format: None,
            emit: AlprOcrEmit::default(),
            early_agree: DEFAULT_EARLY_AGREE,
            crop_padding: DEFAULT_CROP_PADDING,
            key_template: event::DEFAULT_KEY_TEMPLATE.into(),
            threads: DEFAULT_THREADS,
            execution_provider: Provider::default(),
            jpeg_quality: DEFAULT_JPEG_QUALITY,
            vehicle_image: DEFAULT_VEHICLE_IMAGE,
            frame_image: DEFAULT_FRAME_IMAGE,
            image_max_side: DEFAULT_IMAGE_MAX_SIDE,
            vehicle_events: DEFAULT_VEHICLE_EVENTS,
            settle_reads: DEFAULT_SETTLE_READS,
            settle_unread: DEFAULT_SETTLE_UNREAD,
            merge_frames: DEFAULT_MERGE_FRAMES,
            fragment_confidence: tracks::DEFAULT_FRAGMENT_CONFIDENCE,
        }
    }
}

impl Settings {
    pub fn voter_config(&self) -> Result<VoterConfig, String> {
        let format = match self.plate_format.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(
                PlateFormat::new(p, FormatMode::default())
                    .map_err(|e| format!("property `plate-format`: {e}"))?,
            ),
            None => None,
        };
        let cfg = VoterConfig {
            min_reads: self.min_reads as usize,
            min_confidence: self.min_confidence,
            format,
            emit: match self.emit {
                AlprOcrEmit::TrackEnd => EmitMode::OnTrackEnd,
                AlprOcrEmit::Early => EmitMode::Early {
                    agree: self.early_agree as usize,
                },
                AlprOcrEmit::EveryRead => EmitMode::EveryRead,
            },
            ..Default::default()
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

impl Settings {
    /// The element's properties (`stats` included: the element answers it).
    pub fn param_specs() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("ocr-model")
                .nick("OCR model")
                .blurb(
                    "Path of the fast-plate-ocr ONNX model. NULL: ocr/cct_xs_v2_global.onnx \
                     from $ALPR_MODELS_DIR, ../shared/models or ~/.cache/gst-alpr/models",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("ocr-config")
                .nick("OCR config")
                .blurb(
                    "Path of the model's plate config YAML (alphabet, slots, input size). \
                     NULL: the config beside the model",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("camera-id")
                .nick("Camera id")
                .blurb("Camera name put in every event (Kafka key, crop key)")
                .default_value(Some(DEFAULT_CAMERA_ID))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("source")
                .nick("Source")
                .blurb("Host/pipeline name put in every event. NULL: the host name")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("min-reads")
                .nick("Minimum reads")
                .blurb("Reads of a track needed before it may produce an event")
                .minimum(1)
                .maximum(1000)
                .default_value(DEFAULT_MIN_READS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("min-chars")
                .nick("Minimum characters")
                .blurb("Reads with fewer characters are ignored (fragments, not plates)")
                .minimum(1)
                .maximum(16)
                .default_value(DEFAULT_MIN_CHARS)
                .mutable_ready()
                .build(),
            glib::ParamSpecFloat::builder("min-confidence")
                .nick("Minimum confidence")
                .blurb("Decision confidence needed for an event, 0..1 (0 = any)")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(DEFAULT_MIN_CONFIDENCE)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("plate-format")
                .nick("Plate format")
                .blurb(
                    "Optional regular expression a plate must match as a whole (e.g. \
                     [A-Z]{2}[0-9]{2}[A-Z]{3}); reads that do not match weigh 10x less",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("emit", AlprOcrEmit::default())
                .nick("Emit")
                .blurb("When a track's plate event is emitted")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("early-agree")
                .nick("Early agree")
                .blurb("With emit=early: identical reads needed before the first event")
                .minimum(1)
                .maximum(100)
                .default_value(DEFAULT_EARLY_AGREE)
                .mutable_ready()
                .build(),
            glib::ParamSpecFloat::builder("crop-padding")
                .nick("Crop padding")
                .blurb("Margin added around a plate box before reading, as a fraction of its size on each side")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(DEFAULT_CROP_PADDING)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("key-template")
                .nick("Crop key template")
                .blurb(
                    "Object key of each event's crop image; placeholders {date} {camera} \
                     {track} {frame} {quality} {plate} {event}",
                )
                .default_value(Some(event::DEFAULT_KEY_TEMPLATE))
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("threads")
                .nick("Inference threads")
                .blurb("ONNX Runtime intra-op threads; 0 = one per core")
                .maximum(256)
                .default_value(DEFAULT_THREADS)
                .mutable_ready()
                .build(),
            Provider::param_spec(),
            glib::ParamSpecUInt::builder("jpeg-quality")
                .nick("JPEG quality")
                .blurb("Quality of the crop JPEG carried by each event, 1..100")
                .minimum(1)
                .maximum(100)
                .default_value(DEFAULT_JPEG_QUALITY)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("vehicle-image")
                .nick("Vehicle image")
                .blurb(
                    "Also carry a JPEG of the vehicle around the best plate crop (same \
                     frame), named by the event's vehicle_image_key (<crop key>_vehicle.jpg); \
                     s3sink uploads it. Events of plates seen outside any vehicle have none",
                )
                .default_value(DEFAULT_VEHICLE_IMAGE)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("frame-image")
                .nick("Frame image")
                .blurb(
                    "Also carry a JPEG of the whole frame of the best plate crop, named by \
                     the event's frame_image_key (<crop key>_frame.jpg); s3sink uploads it. \
                     Costs up to 6 scaled frames of memory per open track",
                )
                .default_value(DEFAULT_FRAME_IMAGE)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("image-max-side")
                .nick("Extra image size")
                .blurb(
                    "Longest side in pixels of the vehicle and frame images: larger ones \
                     are scaled down (aspect kept)",
                )
                .minimum(64)
                .maximum(8192)
                .default_value(DEFAULT_IMAGE_MAX_SIDE)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("vehicle-events")
                .nick("Vehicle-track events")
                .blurb(
                    "Also emit one vehicle-track event per vehicle track when it ends (class, \
                     first/last seen, frames, decided plate if any) in the \
                     alpr-vehicle-events meta: kafkasink sends them to its vehicles-topic",
                )
                .default_value(DEFAULT_VEHICLE_EVENTS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("settle-reads")
                .nick("Settle reads")
                .blurb(
                    "Identical reads (a clear majority of the track's reads) after which a \
                     vehicle's plate counts as read: alprdetect, told by an upstream \
                     alpr-plates-settled event, stops searching that vehicle for plates \
                     while it stays in view. Never fewer than min-reads (and early-agree \
                     with emit=early), and only once the decision passes min-confidence, \
                     and not while the car comes closer (its box, or the plate's without a \
                     vehicle, grew by more than 5% over those reads while the plate is under \
                     40 px tall: its next reads are larger). 0 = never (every vehicle is \
                     searched in every frame)",
                )
                .maximum(1000)
                .default_value(DEFAULT_SETTLE_READS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("merge-frames")
                .nick("Merge frames")
                .blurb(
                    "Frames an ended track waits for a track that continues it (the same \
                     plate, up to OCR confusions, seen where and within 3 frames of when it \
                     was last seen): then its reads go into that track and one event comes \
                     out for the car. A track the tracker lists as replaced (another plate \
                     took its place in its vehicle box) merges only into the same text. 0 = \
                     every track is its own event",
                )
                .maximum(1000)
                .default_value(DEFAULT_MERGE_FRAMES)
                .mutable_ready()
                .build(),
            glib::ParamSpecFloat::builder("fragment-confidence")
                .nick("Fragment confidence")
                .blurb(
                    "A track of one or two reads that no other track continues is emitted \
                     only if its best read is at least this confident (such fragments of \
                     far or half-seen plates are mostly misreads; they are counted in \
                     stats as dropped-fragments). 0 = always emitted",
                )
                .minimum(0.0)
                .maximum(1.0)
                .default_value(tracks::DEFAULT_FRAGMENT_CONFIDENCE)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("settle-unread")
                .nick("Settle unread")
                .blurb(
                    "Detected frames a vehicle is searched without a plate read of \
                     confidence 0.5 or more before it is left alone as well (told to alprdetect like a read plate); it is \
                     searched again once its box grows by a third (coming closer) or it \
                     looks different. 0 = never",
                )
                .maximum(100_000)
                .default_value(DEFAULT_SETTLE_UNREAD)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                .nick("Statistics")
                .blurb(
                    "Plates cropped, reads, events, open tracks, OCR batches (model calls), \
                     mean OCR ms per plate",
                )
                .read_only()
                .build(),
        ]
    }

    /// Sets property `name` (type-checked by GObject); returns "from OLD to NEW" for the log.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> String {
        macro_rules! set {
            ($field:ident, $ty:ty) => {{
                let new: $ty = value.get().expect("type checked upstream");
                let change = format!("from {:?} to {:?}", self.$field, new);
                self.$field = new;
                change
            }};
        }
        match name {
            "ocr-model" => set!(ocr_model, Option<String>),
            "ocr-config" => set!(ocr_config, Option<String>),
            "camera-id" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                let new = v.unwrap_or_else(|| DEFAULT_CAMERA_ID.into());
                let change = format!("from {:?} to {:?}", self.camera_id, new);
                self.camera_id = new;
                change
            }
            "source" => set!(source, Option<String>),
            "min-reads" => set!(min_reads, u32),
            "min-chars" => set!(min_chars, u32),
            "min-confidence" => set!(min_confidence, f32),
            "plate-format" => set!(plate_format, Option<String>),
            "emit" => set!(emit, AlprOcrEmit),
            "early-agree" => set!(early_agree, u32),
            "crop-padding" => set!(crop_padding, f32),
            "key-template" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                let new = v.unwrap_or_else(|| event::DEFAULT_KEY_TEMPLATE.into());
                let change = format!("from {:?} to {:?}", self.key_template, new);
                self.key_template = new;
                change
            }
            "threads" => set!(threads, u32),
            "execution-provider" => set!(execution_provider, Provider),
            "jpeg-quality" => set!(jpeg_quality, u32),
            "vehicle-image" => set!(vehicle_image, bool),
            "frame-image" => set!(frame_image, bool),
            "image-max-side" => set!(image_max_side, u32),
            "vehicle-events" => set!(vehicle_events, bool),
            "settle-reads" => set!(settle_reads, u32),
            "settle-unread" => set!(settle_unread, u32),
            "merge-frames" => set!(merge_frames, u32),
            "fragment-confidence" => set!(fragment_confidence, f32),
            other => unreachable!("unknown property {other}"),
        }
    }

    /// The value of property `name` (not `stats`).
    pub fn get(&self, name: &str) -> glib::Value {
        match name {
            "ocr-model" => self.ocr_model.to_value(),
            "ocr-config" => self.ocr_config.to_value(),
            "camera-id" => self.camera_id.to_value(),
            "source" => self.source.to_value(),
            "min-reads" => self.min_reads.to_value(),
            "min-chars" => self.min_chars.to_value(),
            "min-confidence" => self.min_confidence.to_value(),
            "plate-format" => self.plate_format.to_value(),
            "emit" => self.emit.to_value(),
            "early-agree" => self.early_agree.to_value(),
            "crop-padding" => self.crop_padding.to_value(),
            "key-template" => self.key_template.to_value(),
            "threads" => self.threads.to_value(),
            "execution-provider" => self.execution_provider.to_value(),
            "jpeg-quality" => self.jpeg_quality.to_value(),
            "vehicle-image" => self.vehicle_image.to_value(),
            "frame-image" => self.frame_image.to_value(),
            "image-max-side" => self.image_max_side.to_value(),
            "vehicle-events" => self.vehicle_events.to_value(),
            "settle-reads" => self.settle_reads.to_value(),
            "settle-unread" => self.settle_unread.to_value(),
            "merge-frames" => self.merge_frames.to_value(),
            "fragment-confidence" => self.fragment_confidence.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}
