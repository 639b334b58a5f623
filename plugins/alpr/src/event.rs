// SPDX-License-Identifier: MIT OR Apache-2.0
//! The plate event: one per vehicle track and plate decision, shared by alprocr (which makes it)
//! and the sinks (which deliver it). Its Avro schema is `schemas/plate_event.avsc`; the
//! structure form travels on buffers as the `alpr-events` custom meta, each event carrying its
//! best plate crop as JPEG bytes.
//!
//! Crop object keys come from one template (`DEFAULT_KEY_TEMPLATE`), rendered by alprocr into
//! `image_key`, so an event names its image without the two sinks talking to each other.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::meta::BBox;

/// Name of the custom meta (and its structure) that carries events on a buffer.
pub const EVENTS_META: &str = "alpr-events";
/// Name of each event structure inside the meta's `events` array and of the bus message.
pub const EVENT_STRUCT: &str = "alpr-plate-event";
/// Default crop key: `{date}/{camera}_track{track}_frame{frame}_q{quality}.jpg`.
pub const DEFAULT_KEY_TEMPLATE: &str = "{date}/{camera}_track{track}_frame{frame}_q{quality}.jpg";

/// Name of the custom meta (and its structure) that carries vehicle-track events on a buffer.
pub const VEHICLE_EVENTS_META: &str = "alpr-vehicle-events";
/// Name of each vehicle-track event structure inside that meta's `events` array.
pub const VEHICLE_EVENT_STRUCT: &str = "alpr-vehicle-event";

/// Registers the events metas (from `plugin_init`).
pub fn register() {
    for name in [EVENTS_META, VEHICLE_EVENTS_META] {
        crate::meta::register_custom_meta(name);
    }
}

/// One decided plate of one vehicle track.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlateEvent {
    /// Time-ordered unique id (UUIDv7) of the car's event, stable across retries and shared by
    /// its revisions: consumers dedup by it and keep the highest `revision`.
    pub event_id: String,
    pub camera_id: String,
    pub track_id: u64,
    /// 0 for the first decision of a track; each later changed decision of the same track
    /// (early emission followed by an update) counts up. Consumers keep the highest.
    pub revision: u32,
    pub plate_text: String,
    pub plate_confidence: f32,
    pub char_confidences: Vec<f32>,
    /// Reads that agreed with the decided text.
    pub reads: u32,
    pub region: Option<String>,
    pub vehicle_class: Option<String>,
    pub vehicle_confidence: Option<f32>,
    /// Wall-clock milliseconds since the UNIX epoch.
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Frame of the best crop.
    pub frame_number: u64,
    pub plate_bbox: BBox,
    pub vehicle_bbox: Option<BBox>,
    /// Quality of the best crop, 0..1.
    pub quality: f32,
    /// Object key of the crop image (rendered from the key template).
    pub image_key: String,
    /// Object key of the vehicle crop of the same frame (alprocr `vehicle-image`), when made.
    pub vehicle_image_key: Option<String>,
    /// Object key of the whole frame of the best crop (alprocr `frame-image`), when made.
    pub frame_image_key: Option<String>,
    /// Host / pipeline that produced the event.
    pub source: String,
}

/// The JPEG images an event carries: the plate crop, and, when alprocr was asked for them, the
/// vehicle crop and the whole frame of the same moment. Each is uploaded by s3sink under the
/// matching key of the event (`image_key`, `vehicle_image_key`, `frame_image_key`).
#[derive(Debug, Clone, Default)]
pub struct EventImages {
    pub crop: Option<gst::Buffer>,
    pub vehicle: Option<gst::Buffer>,
    pub frame: Option<gst::Buffer>,
}

impl EventImages {
    /// `(object key, JPEG)` of every image present whose key the event names.
    pub fn keyed<'a>(&'a self, ev: &'a PlateEvent) -> Vec<(&'a str, &'a gst::Buffer)> {
        let mut v = Vec::with_capacity(3);
        if let Some(c) = &self.crop {
            v.push((ev.image_key.as_str(), c));
        }
        if let (Some(k), Some(b)) = (&ev.vehicle_image_key, &self.vehicle) {
            v.push((k.as_str(), b));
        }
        if let (Some(k), Some(b)) = (&ev.frame_image_key, &self.frame) {
            v.push((k.as_str(), b));
        }
        v
    }
}

/// The key of an extra image of an event whose crop key is `image_key`: `kind` (`vehicle`,
/// `frame`) is added before the extension (`a/cam_track7.jpg` -> `a/cam_track7_vehicle.jpg`).
pub fn extra_image_key(image_key: &str, kind: &str) -> String {
    let name_start = image_key.rfind('/').map_or(0, |i| i + 1);
    match image_key[name_start..].rfind('.') {
        Some(dot) => {
            let dot = name_start + dot;
            format!("{}_{kind}{}", &image_key[..dot], &image_key[dot..])
        }
        None => format!("{image_key}_{kind}.jpg"),
    }
}

/// A malformed event structure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{EVENT_STRUCT}: field `{field}`: {reason}")]
pub struct EventError {
    pub field: &'static str,
    pub reason: String,
}

fn bbox_structure(b: &BBox) -> gst::Structure {
    gst::Structure::builder("bbox")
        .field("x", b.x as f64)
        .field("y", b.y as f64)
        .field("w", b.w as f64)
        .field("h", b.h as f64)
        .build()
}

fn bbox_from(s: &gst::StructureRef) -> Option<BBox> {
    Some(BBox::new(
        s.get::<f64>("x").ok()? as f32,
        s.get::<f64>("y").ok()? as f32,
        s.get::<f64>("w").ok()? as f32,
        s.get::<f64>("h").ok()? as f32,
    ))
}

impl PlateEvent {
    /// The structure form (meta, bus message); `crop` (JPEG) is attached when given.
    pub fn to_structure(&self, crop: Option<&gst::Buffer>) -> gst::Structure {
        let mut s = self.to_structure_with(&EventImages::default());
        if let Some(crop) = crop {
            s.set("crop", crop);
        }
        s
    }

    /// The structure form with every image of `images` attached (`crop`, `vehicle-image`,
    /// `frame-image`).
    pub fn to_structure_with(&self, images: &EventImages) -> gst::Structure {
        let mut b = gst::Structure::builder(EVENT_STRUCT)
            .field("event-id", self.event_id.as_str())
            .field("camera-id", self.camera_id.as_str())
            .field("track-id", self.track_id)
            .field("revision", self.revision)
            .field("plate-text", self.plate_text.as_str())
            .field("plate-confidence", self.plate_confidence as f64)
            .field(
                "char-confidences",
                gst::Array::new(self.char_confidences.iter().map(|c| *c as f64)),
            )
            .field("reads", self.reads)
            .field("first-seen-ms", self.first_seen_ms)
            .field("last-seen-ms", self.last_seen_ms)
            .field("frame-number", self.frame_number)
            .field("plate-bbox", bbox_structure(&self.plate_bbox))
            .field("quality", self.quality as f64)
            .field("image-key", self.image_key.as_str())
            .field("source", self.source.as_str());
        if let Some(r) = &self.region {
            b = b.field("region", r.as_str());
        }
        if let Some(c) = &self.vehicle_class {
            b = b.field("vehicle-class", c.as_str());
        }
        if let Some(c) = self.vehicle_confidence {
            b = b.field("vehicle-confidence", c as f64);
        }
        if let Some(v) = &self.vehicle_bbox {
            b = b.field("vehicle-bbox", bbox_structure(v));
        }
        if let Some(k) = &self.vehicle_image_key {
            b = b.field("vehicle-image-key", k.as_str());
        }
        if let Some(k) = &self.frame_image_key {
            b = b.field("frame-image-key", k.as_str());
        }
        if let Some(crop) = &images.crop {
            b = b.field("crop", crop);
        }
        if let Some(v) = &images.vehicle {
            b = b.field("vehicle-image", v);
        }
        if let Some(f) = &images.frame {
            b = b.field("frame-image", f);
        }
        b.build()
    }

    /// Parses the structure form with every image it carries.
    pub fn from_structure_with_images(
        s: &gst::StructureRef,
    ) -> Result<(PlateEvent, EventImages), EventError> {
        let (ev, crop) = Self::from_structure(s)?;
        Ok((
            ev,
            EventImages {
                crop,
                vehicle: s.get::<gst::Buffer>("vehicle-image").ok(),
                frame: s.get::<gst::Buffer>("frame-image").ok(),
            },
        ))
    }

    /// Parses the structure form; returns the event and its crop, if any.
    pub fn from_structure(
        s: &gst::StructureRef,
    ) -> Result<(PlateEvent, Option<gst::Buffer>), EventError> {
        fn err<E: std::fmt::Display>(field: &'static str) -> impl Fn(E) -> EventError {
            move |e| EventError {
                field,
                reason: e.to_string(),
            }
        }
        let bbox = |field: &'static str| -> Result<Option<BBox>, EventError> {
            match s.get::<&gst::StructureRef>(field) {
                Ok(st) => bbox_from(st).map(Some).ok_or(EventError {
                    field,
                    reason: "expected a structure with double x, y, w, h".into(),
                }),
                Err(_) => Ok(None),
            }
        };
        let ev = PlateEvent {
            event_id: s.get::<String>("event-id").map_err(err("event-id"))?,
            camera_id: s.get::<String>("camera-id").map_err(err("camera-id"))?,
            track_id: s.get::<u64>("track-id").map_err(err("track-id"))?,
            revision: s.get::<u32>("revision").unwrap_or(0),
            plate_text: s.get::<String>("plate-text").map_err(err("plate-text"))?,
            plate_confidence: s
                .get::<f64>("plate-confidence")
                .map_err(err("plate-confidence"))? as f32,
            char_confidences: s
                .get::<gst::ArrayRef>("char-confidences")
                .map(|a| {
                    a.as_slice()
                        .iter()
                        .filter_map(|v| v.get::<f64>().ok())
                        .map(|v| v as f32)
                        .collect()
                })
                .unwrap_or_default(),
            reads: s.get::<u32>("reads").unwrap_or(0),
            region: s.get::<String>("region").ok(),
            vehicle_class: s.get::<String>("vehicle-class").ok(),
            vehicle_confidence: s.get::<f64>("vehicle-confidence").ok().map(|v| v as f32),
            first_seen_ms: s
                .get::<i64>("first-seen-ms")
                .map_err(err("first-seen-ms"))?,
            last_seen_ms: s.get::<i64>("last-seen-ms").map_err(err("last-seen-ms"))?,
            frame_number: s.get::<u64>("frame-number").unwrap_or(0),
            plate_bbox: bbox("plate-bbox")?.ok_or(EventError {
                field: "plate-bbox",
                reason: "missing".into(),
            })?,
            vehicle_bbox: bbox("vehicle-bbox")?,
            quality: s.get::<f64>("quality").unwrap_or(0.0) as f32,
            image_key: s.get::<String>("image-key").map_err(err("image-key"))?,
            vehicle_image_key: s.get::<String>("vehicle-image-key").ok(),
            frame_image_key: s.get::<String>("frame-image-key").ok(),
            source: s.get::<String>("source").unwrap_or_default(),
        };
        Ok((ev, s.get::<gst::Buffer>("crop").ok()))
    }
}

/// Adds events (with their crops) to `buffer`'s `alpr-events` meta, appending to one already
/// there.
pub fn attach(
    buffer: &mut gst::BufferRef,
    events: &[(PlateEvent, Option<gst::Buffer>)],
) -> Result<(), gst::glib::BoolError> {
    attach_structures(
        buffer,
        events.iter().map(|(e, c)| e.to_structure(c.as_ref())),
    )
}

/// Like [`attach`], with every image of each event.
pub fn attach_with_images(
    buffer: &mut gst::BufferRef,
    events: &[(PlateEvent, EventImages)],
) -> Result<(), gst::glib::BoolError> {
    attach_structures(buffer, events.iter().map(|(e, i)| e.to_structure_with(i)))
}

fn attach_structures(
    buffer: &mut gst::BufferRef,
    new: impl Iterator<Item = gst::Structure>,
) -> Result<(), gst::glib::BoolError> {
    let mut all: Vec<gst::Structure> = read_structures(buffer);
    all.extend(new);
    let arr = gst::Array::new(all);
    match gst::meta::CustomMeta::from_mut_buffer(buffer, EVENTS_META) {
        Ok(mut m) => m.mut_structure().set("events", arr),
        Err(_) => gst::meta::CustomMeta::add(buffer, EVENTS_META)?
            .mut_structure()
            .set("events", arr),
    }
    Ok(())
}

/// The events on `buffer` with every image they carry (see [`EventImages`]).
pub fn read_with_images(
    buffer: &gst::BufferRef,
) -> Result<Vec<(PlateEvent, EventImages)>, EventError> {
    read_structures(buffer)
        .iter()
        .map(|s| PlateEvent::from_structure_with_images(s))
        .collect()
}

fn read_structures(buffer: &gst::BufferRef) -> Vec<gst::Structure> {
    read_meta_structures(buffer, EVENTS_META)
}

fn read_meta_structures(buffer: &gst::BufferRef, meta: &str) -> Vec<gst::Structure> {
    gst::meta::CustomMeta::from_buffer(buffer, meta)
        .ok()
        .and_then(|m| m.structure().get::<gst::Array>("events").ok())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.get::<gst::Structure>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Parses each event structure of `meta` on `buffer` in place (no copies: sinks read every
/// buffer).
fn parse_meta<T>(
    buffer: &gst::BufferRef,
    meta: &str,
    parse: impl Fn(&gst::StructureRef) -> Result<T, EventError>,
) -> Result<Vec<T>, EventError> {
    let Ok(m) = gst::meta::CustomMeta::from_buffer(buffer, meta) else {
        return Ok(Vec::new());
    };
    let Ok(events) = m.structure().get::<gst::ArrayRef>("events") else {
        return Ok(Vec::new());
    };
    events
        .as_slice()
        .iter()
        .filter_map(|v| v.get::<&gst::StructureRef>().ok())
        .map(parse)
        .collect()
}

/// The events on `buffer` (empty when it carries none); a malformed one is an error.
pub fn read(buffer: &gst::BufferRef) -> Result<Vec<(PlateEvent, Option<gst::Buffer>)>, EventError> {
    parse_meta(buffer, EVENTS_META, PlateEvent::from_structure)
}

/// One finished vehicle track: the second event stream (topic `alpr.events.vehicles` in
/// kafkasink). Its Avro schema is `schemas/vehicle_track_event.avsc`; it travels on buffers in
/// the `alpr-vehicle-events` custom meta.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VehicleTrackEvent {
    /// Time-ordered unique id (UUIDv7), stable across retries.
    pub event_id: String,
    pub camera_id: String,
    pub track_id: u64,
    pub vehicle_class: String,
    /// Wall-clock milliseconds since the UNIX epoch.
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Frames in which the track was seen.
    pub frames: u64,
    /// Best plate read of the track, if any.
    pub plate_text: Option<String>,
    pub source: String,
}

impl VehicleTrackEvent {
    pub fn to_structure(&self) -> gst::Structure {
        let mut b = gst::Structure::builder(VEHICLE_EVENT_STRUCT)
            .field("event-id", self.event_id.as_str())
            .field("camera-id", self.camera_id.as_str())
            .field("track-id", self.track_id)
            .field("vehicle-class", self.vehicle_class.as_str())
            .field("first-seen-ms", self.first_seen_ms)
            .field("last-seen-ms", self.last_seen_ms)
            .field("frames", self.frames)
            .field("source", self.source.as_str());
        if let Some(t) = &self.plate_text {
            b = b.field("plate-text", t.as_str());
        }
        b.build()
    }

    pub fn from_structure(s: &gst::StructureRef) -> Result<VehicleTrackEvent, EventError> {
        fn err<E: std::fmt::Display>(field: &'static str) -> impl Fn(E) -> EventError {
            move |e| EventError {
                field,
                reason: e.to_string(),
            }
        }
        Ok(VehicleTrackEvent {
            event_id: s.get::<String>("event-id").map_err(err("event-id"))?,
            camera_id: s.get::<String>("camera-id").map_err(err("camera-id"))?,
            track_id: s.get::<u64>("track-id").map_err(err("track-id"))?,
            vehicle_class: s.get::<String>("vehicle-class").unwrap_or_default(),
            first_seen_ms: s
                .get::<i64>("first-seen-ms")
                .map_err(err("first-seen-ms"))?,
            last_seen_ms: s.get::<i64>("last-seen-ms").map_err(err("last-seen-ms"))?,
            frames: s.get::<u64>("frames").unwrap_or(0),
            plate_text: s.get::<String>("plate-text").ok(),
            source: s.get::<String>("source").unwrap_or_default(),
        })
    }
}

/// Adds vehicle-track events to `buffer`'s `alpr-vehicle-events` meta, appending to one
/// already there.
pub fn attach_vehicles(
    buffer: &mut gst::BufferRef,
    events: &[VehicleTrackEvent],
) -> Result<(), gst::glib::BoolError> {
    let mut all = read_meta_structures(buffer, VEHICLE_EVENTS_META);
    all.extend(events.iter().map(|e| e.to_structure()));
    let arr = gst::Array::new(all);
    match gst::meta::CustomMeta::from_mut_buffer(buffer, VEHICLE_EVENTS_META) {
        Ok(mut m) => m.mut_structure().set("events", arr),
        Err(_) => gst::meta::CustomMeta::add(buffer, VEHICLE_EVENTS_META)?
            .mut_structure()
            .set("events", arr),
    }
    Ok(())
}

/// The vehicle-track events on `buffer` (empty when it carries none).
pub fn read_vehicles(buffer: &gst::BufferRef) -> Result<Vec<VehicleTrackEvent>, EventError> {
    parse_meta(
        buffer,
        VEHICLE_EVENTS_META,
        VehicleTrackEvent::from_structure,
    )
}

/// A new time-ordered unique id (UUIDv7).
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Milliseconds since the UNIX epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) of a UNIX millisecond time.
pub fn utc_date(ms: i64) -> String {
    // Civil-from-days (H. Hinnant), valid for the proleptic Gregorian calendar.
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Checks a key template: only the known placeholders, balanced braces, ending in `.jpg`
/// is not required. The error names the offending placeholder.
pub fn validate_key_template(template: &str) -> Result<(), String> {
    let probe = PlateEvent {
        camera_id: "c".into(),
        ..Default::default()
    };
    render_key(template, &probe).map(|_| ())
}

/// Renders a crop key: `{date}`, `{camera}`, `{track}`, `{frame}`, `{quality}` (2 decimals),
/// `{plate}`, `{event}`. Characters unsafe in object keys are replaced by `_` in values.
pub fn render_key(template: &str, ev: &PlateEvent) -> Result<String, String> {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("key template {template:?}: unclosed '{{'"))?;
        let name = &after[..close];
        match name {
            "date" => out.push_str(&utc_date(ev.last_seen_ms)),
            "camera" => out.push_str(&safe(&ev.camera_id)),
            "track" => out.push_str(&ev.track_id.to_string()),
            "frame" => out.push_str(&ev.frame_number.to_string()),
            "quality" => out.push_str(&format!("{:.2}", ev.quality)),
            "plate" => out.push_str(&safe(&ev.plate_text)),
            "event" => out.push_str(&safe(&ev.event_id)),
            other => {
                return Err(format!(
                    "key template {template:?}: unknown placeholder {{{other}}} (known: date, \
                     camera, track, frame, quality, plate, event)"
                ));
            }
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("key template {template:?}: unmatched '}}'"));
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PlateEvent {
        PlateEvent {
            event_id: new_event_id(),
            camera_id: "gate 1".into(),
            track_id: 7,
            revision: 1,
            plate_text: "4XXF538".into(),
            plate_confidence: 0.93,
            char_confidences: vec![0.9, 0.99, 0.95, 0.97, 0.93, 0.98, 0.96],
            reads: 4,
            region: Some("United States".into()),
            vehicle_class: Some("car".into()),
            vehicle_confidence: Some(0.8),
            first_seen_ms: 1_764_201_600_000,
            last_seen_ms: 1_764_201_601_500,
            frame_number: 123,
            plate_bbox: BBox::new(10.0, 20.0, 60.0, 18.0),
            vehicle_bbox: Some(BBox::new(0.0, 0.0, 300.0, 200.0)),
            quality: 0.8549,
            image_key: String::new(),
            vehicle_image_key: None,
            frame_image_key: None,
            source: "host/pipeline".into(),
        }
    }

    #[test]
    fn extra_image_keys_sit_beside_the_crop_key() {
        assert_eq!(
            extra_image_key("2026-11-27/cam_track7_frame12_q0.85.jpg", "vehicle"),
            "2026-11-27/cam_track7_frame12_q0.85_vehicle.jpg"
        );
        assert_eq!(extra_image_key("a.b/crop", "frame"), "a.b/crop_frame.jpg");
        assert_eq!(extra_image_key("x.jpeg", "frame"), "x_frame.jpeg");
    }

    #[test]
    fn structure_round_trip_with_every_image() {
        gst::init().unwrap();
        register();
        let mut ev = sample();
        ev.image_key = "k.jpg".into();
        ev.vehicle_image_key = Some("k_vehicle.jpg".into());
        ev.frame_image_key = Some("k_frame.jpg".into());
        let img = |b: u8| gst::Buffer::from_slice(vec![0xFF, 0xD8, b, 0xFF, 0xD9]);
        let images = EventImages {
            crop: Some(img(1)),
            vehicle: Some(img(2)),
            frame: Some(img(3)),
        };
        let mut buf = gst::Buffer::new();
        attach_with_images(buf.get_mut().unwrap(), &[(ev.clone(), images)]).unwrap();
        let got = read_with_images(&buf).unwrap();
        assert_eq!(got.len(), 1);
        let (back, images) = &got[0];
        assert_eq!(back.vehicle_image_key, ev.vehicle_image_key);
        assert_eq!(back.frame_image_key, ev.frame_image_key);
        let keyed: Vec<(String, u8)> = images
            .keyed(back)
            .into_iter()
            .map(|(k, b)| (k.to_string(), b.map_readable().unwrap()[2]))
            .collect();
        assert_eq!(
            keyed,
            vec![
                ("k.jpg".to_string(), 1),
                ("k_vehicle.jpg".to_string(), 2),
                ("k_frame.jpg".to_string(), 3)
            ]
        );
        // The crop-only reader still sees the crop.
        assert_eq!(read(&buf).unwrap()[0].1.as_ref().unwrap().size(), 5);
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_764_201_600_000), "2025-11-27");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(-86_400_000), "1969-12-31");
    }

    #[test]
    fn key_template_renders_and_rejects_unknown_placeholders() {
        let ev = sample();
        assert_eq!(
            render_key(DEFAULT_KEY_TEMPLATE, &ev).unwrap(),
            "2025-11-27/gate_1_track7_frame123_q0.85.jpg"
        );
        let e = render_key("{date}/{cam}.jpg", &ev).unwrap_err();
        assert!(e.contains("{cam}") && e.contains("known"), "{e}");
        assert!(render_key("{date", &ev).is_err());
        assert!(render_key("date}", &ev).is_err());
        assert!(validate_key_template(DEFAULT_KEY_TEMPLATE).is_ok());
    }

    #[test]
    fn event_ids_are_unique_and_time_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| new_event_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert!(ids.first() < ids.last());
    }

    #[test]
    fn structure_round_trip_with_crop() {
        gst::init().unwrap();
        register();
        let ev = sample();
        let crop = gst::Buffer::from_slice(vec![0xFFu8, 0xD8, 0xFF, 0xD9]);
        let mut buf = gst::Buffer::new();
        attach(buf.get_mut().unwrap(), &[(ev.clone(), Some(crop.clone()))]).unwrap();
        let mut second = ev.clone();
        second.track_id = 8;
        second.region = None;
        second.vehicle_bbox = None;
        attach(buf.get_mut().unwrap(), &[(second.clone(), None)]).unwrap();
        let got = read(&buf).unwrap();
        assert_eq!(got.len(), 2);
        let close = |a: &PlateEvent, b: &PlateEvent| {
            assert_eq!(a.event_id, b.event_id);
            assert_eq!(a.track_id, b.track_id);
            assert_eq!(a.region, b.region);
            assert_eq!(a.vehicle_bbox, b.vehicle_bbox);
            assert_eq!(a.plate_bbox, b.plate_bbox);
            assert!((a.quality - b.quality).abs() < 1e-6);
        };
        close(&got[0].0, &ev);
        close(&got[1].0, &second);
        assert_eq!(
            got[0]
                .1
                .as_ref()
                .unwrap()
                .map_readable()
                .unwrap()
                .as_slice(),
            &[0xFF, 0xD8, 0xFF, 0xD9]
        );
        assert!(got[1].1.is_none());
    }
}
