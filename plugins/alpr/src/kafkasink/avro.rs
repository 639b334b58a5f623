// SPDX-License-Identifier: MIT OR Apache-2.0
//! Avro encoding of the two event streams and the Confluent wire format around it.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use crate::event::{PlateEvent, VehicleTrackEvent};
use crate::meta::BBox;

pub const PLATE_SCHEMA: &str = include_str!("../../schemas/plate_event.avsc");
pub const VEHICLE_SCHEMA: &str = include_str!("../../schemas/vehicle_track_event.avsc");

/// The event streams, each with its own topic and schema. The discriminant is stored in the
/// outbox: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Plates = 0,
    Vehicles = 1,
    /// alprwatch's watchlist alerts (see `super::alerts`).
    Alerts = 2,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Plates, Stream::Vehicles, Stream::Alerts];

    pub fn from_i64(v: i64) -> Option<Stream> {
        match v {
            0 => Some(Stream::Plates),
            1 => Some(Stream::Vehicles),
            2 => Some(Stream::Alerts),
            _ => None,
        }
    }

    pub fn schema_text(self) -> &'static str {
        match self {
            Stream::Plates => PLATE_SCHEMA,
            Stream::Vehicles => VEHICLE_SCHEMA,
            Stream::Alerts => super::alerts::ALERT_SCHEMA,
        }
    }

    pub fn schema(self) -> &'static Schema {
        static PLATE: LazyLock<Schema> = LazyLock::new(|| {
            Schema::parse_str(PLATE_SCHEMA).expect("plate_event.avsc is valid (unit-tested)")
        });
        static VEHICLE: LazyLock<Schema> = LazyLock::new(|| {
            Schema::parse_str(VEHICLE_SCHEMA)
                .expect("vehicle_track_event.avsc is valid (unit-tested)")
        });
        match self {
            Stream::Plates => &PLATE,
            Stream::Vehicles => &VEHICLE,
            Stream::Alerts => super::alerts::schema(),
        }
    }

    /// The schema text as registered: the `.avsc` in compact JSON, docs and defaults kept (the
    /// Parsing Canonical Form would drop defaults, which the registry's compatibility checks
    /// need). Also the key of the on-disk schema id cache.
    pub fn registered_schema(self) -> String {
        serde_json::from_str::<serde_json::Value>(self.schema_text())
            .map(|v| v.to_string())
            .unwrap_or_else(|_| self.schema_text().to_string())
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Plates => "plates",
            Stream::Vehicles => "vehicles",
            Stream::Alerts => "alerts",
        }
    }

    /// The `content-type` header value of this stream's messages.
    pub fn content_type(self) -> &'static str {
        match self {
            Stream::Plates => "application/vnd.gstalpr.plate-event.v1+avro",
            Stream::Vehicles => "application/vnd.gstalpr.vehicle-track-event.v1+avro",
            Stream::Alerts => "application/vnd.gstalpr.watchlist-alert.v1+avro",
        }
    }
}

fn bbox(b: &BBox) -> Value {
    Value::Record(vec![
        ("x".into(), Value::Float(b.x)),
        ("y".into(), Value::Float(b.y)),
        ("w".into(), Value::Float(b.w)),
        ("h".into(), Value::Float(b.h)),
    ])
}

fn opt(v: Option<Value>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

pub fn plate_value(e: &PlateEvent) -> Value {
    Value::Record(vec![
        ("event_id".into(), Value::String(e.event_id.clone())),
        ("camera_id".into(), Value::String(e.camera_id.clone())),
        ("track_id".into(), Value::Long(e.track_id as i64)),
        ("revision".into(), Value::Int(e.revision as i32)),
        ("plate_text".into(), Value::String(e.plate_text.clone())),
        ("plate_confidence".into(), Value::Float(e.plate_confidence)),
        (
            "char_confidences".into(),
            Value::Array(
                e.char_confidences
                    .iter()
                    .map(|c| Value::Float(*c))
                    .collect(),
            ),
        ),
        ("reads".into(), Value::Int(e.reads as i32)),
        ("region".into(), opt(e.region.clone().map(Value::String))),
        (
            "vehicle_class".into(),
            opt(e.vehicle_class.clone().map(Value::String)),
        ),
        (
            "vehicle_confidence".into(),
            opt(e.vehicle_confidence.map(Value::Float)),
        ),
        ("first_seen".into(), Value::TimestampMillis(e.first_seen_ms)),
        ("last_seen".into(), Value::TimestampMillis(e.last_seen_ms)),
        ("frame_number".into(), Value::Long(e.frame_number as i64)),
        ("plate_bbox".into(), bbox(&e.plate_bbox)),
        (
            "vehicle_bbox".into(),
            opt(e.vehicle_bbox.as_ref().map(bbox)),
        ),
        ("quality".into(), Value::Float(e.quality)),
        ("image_key".into(), Value::String(e.image_key.clone())),
        ("source".into(), Value::String(e.source.clone())),
        (
            "vehicle_image_key".into(),
            opt(e.vehicle_image_key.clone().map(Value::String)),
        ),
        (
            "frame_image_key".into(),
            opt(e.frame_image_key.clone().map(Value::String)),
        ),
    ])
}

pub fn vehicle_value(e: &VehicleTrackEvent) -> Value {
    Value::Record(vec![
        ("event_id".into(), Value::String(e.event_id.clone())),
        ("camera_id".into(), Value::String(e.camera_id.clone())),
        ("track_id".into(), Value::Long(e.track_id as i64)),
        (
            "vehicle_class".into(),
            Value::String(e.vehicle_class.clone()),
        ),
        ("first_seen".into(), Value::TimestampMillis(e.first_seen_ms)),
        ("last_seen".into(), Value::TimestampMillis(e.last_seen_ms)),
        ("frames".into(), Value::Long(e.frames as i64)),
        (
            "plate_text".into(),
            opt(e.plate_text.clone().map(Value::String)),
        ),
        ("source".into(), Value::String(e.source.clone())),
    ])
}

/// The Avro binary body (no container, no framing) of `value` under `schema`.
pub fn encode(schema: &Schema, value: Value) -> Result<Vec<u8>, apache_avro::Error> {
    GenericDatumWriter::builder(schema)
        .build()?
        .write_value_to_vec(value)
}

/// Decodes an Avro binary body written with `schema`.
pub fn decode(schema: &Schema, mut body: &[u8]) -> Result<Value, apache_avro::Error> {
    GenericDatumReader::builder(schema)
        .build()?
        .read_value(&mut body)
}

/// One writer per stream: resolving a schema costs more than encoding an event. The schemas
/// are constants checked by the unit tests, so resolving them cannot fail at run time.
fn writer(stream: Stream) -> &'static GenericDatumWriter<'static> {
    static PLATE: LazyLock<GenericDatumWriter<'static>> = LazyLock::new(|| {
        GenericDatumWriter::builder(Stream::Plates.schema())
            .build()
            .expect("plate_event.avsc resolves (unit-tested)")
    });
    static VEHICLE: LazyLock<GenericDatumWriter<'static>> = LazyLock::new(|| {
        GenericDatumWriter::builder(Stream::Vehicles.schema())
            .build()
            .expect("vehicle_track_event.avsc resolves (unit-tested)")
    });
    match stream {
        Stream::Plates => &PLATE,
        Stream::Vehicles => &VEHICLE,
        Stream::Alerts => super::alerts::writer(),
    }
}

/// The Avro body (no framing) of a plate event.
pub fn encode_plate(e: &PlateEvent) -> Result<Vec<u8>, apache_avro::Error> {
    writer(Stream::Plates).write_value_to_vec(plate_value(e))
}

/// The Avro body (no framing) of a vehicle-track event.
pub fn encode_vehicle(e: &VehicleTrackEvent) -> Result<Vec<u8>, apache_avro::Error> {
    writer(Stream::Vehicles).write_value_to_vec(vehicle_value(e))
}

/// Confluent wire format: magic byte 0, the schema id (4 bytes, big-endian), the Avro body.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + body.len());
    v.push(0);
    v.extend_from_slice(&schema_id.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Splits a Confluent-framed message into (schema id, Avro body).
pub fn unframe(msg: &[u8]) -> Option<(u32, &[u8])> {
    if msg.len() < 5 || msg[0] != 0 {
        return None;
    }
    let id = u32::from_be_bytes([msg[1], msg[2], msg[3], msg[4]]);
    Some((id, &msg[5..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_parse_and_events_round_trip() {
        let e = PlateEvent {
            event_id: crate::event::new_event_id(),
            camera_id: "gate".into(),
            track_id: 3,
            plate_text: "AB123".into(),
            char_confidences: vec![0.5, 0.6],
            vehicle_bbox: Some(BBox::new(1.0, 2.0, 3.0, 4.0)),
            region: Some("eu".into()),
            frame_image_key: Some("k_frame.jpg".into()),
            ..Default::default()
        };
        let body = encode_plate(&e).unwrap();
        let framed = frame(42, &body);
        let (id, b) = unframe(&framed).unwrap();
        assert_eq!(id, 42);
        let v = decode(Stream::Plates.schema(), b).unwrap();
        assert_eq!(v, plate_value(&e));

        let v = VehicleTrackEvent {
            event_id: "x".into(),
            camera_id: "gate".into(),
            track_id: 9,
            vehicle_class: "car".into(),
            frames: 12,
            plate_text: None,
            ..Default::default()
        };
        let body = encode_vehicle(&v).unwrap();
        let back = decode(Stream::Vehicles.schema(), &body).unwrap();
        assert_eq!(back, vehicle_value(&v));
        assert!(unframe(&[1, 0, 0, 0, 1]).is_none());
        assert!(Stream::Plates.registered_schema().contains("PlateEvent"));
    }
}
