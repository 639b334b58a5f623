// SPDX-License-Identifier: MIT OR Apache-2.0
//! Confluent wire format -> event record, with the writer schema fetched from the registry by
//! id (cached per id) and resolved against the plugin's `.avsc` (any compatible version of our
//! subjects reads into the current field set).

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use gstalpr::kafkasink::avro::{Stream, unframe};
use gstalpr::kafkasink::registry::{RegistryClient, RegistryError};
use serde_json::{Map, Value as Json};

/// A decoded event: its stream and its fields by Avro name, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub stream: Stream,
    pub record: Map<String, Json>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// The message itself is bad (not framed, unknown schema id, not our record, bad body):
    /// it goes to the dead-letter table.
    Poison(String),
    /// The registry cannot be reached: retry the same message later.
    Unavailable(String),
}

/// Writer schemas by id, with the stream each one is.
pub struct Decoder {
    registry: RegistryClient,
    schemas: HashMap<u32, (Arc<Schema>, Stream)>,
}

fn stream_of(schema: &Schema) -> Option<Stream> {
    let Schema::Record(r) = schema else {
        return None;
    };
    match r.name.name() {
        "PlateEvent" => Some(Stream::Plates),
        "VehicleTrackEvent" => Some(Stream::Vehicles),
        _ => None,
    }
}

impl Decoder {
    pub fn new(registry: RegistryClient) -> Decoder {
        Decoder {
            registry,
            schemas: HashMap::new(),
        }
    }

    pub fn registry_url(&self) -> &str {
        self.registry.redacted()
    }

    fn schema(&mut self, id: u32) -> Result<(Arc<Schema>, Stream), DecodeError> {
        if let Some(s) = self.schemas.get(&id) {
            return Ok(s.clone());
        }
        let text = match self.registry.schema_by_id(id) {
            Ok(t) => t,
            Err(e @ RegistryError::Unreachable { .. }) => {
                return Err(DecodeError::Unavailable(e.to_string()));
            }
            Err(e) => return Err(DecodeError::Poison(format!("schema id {id}: {e}"))),
        };
        let schema = Schema::parse_str(&text)
            .map_err(|e| DecodeError::Poison(format!("schema id {id} is not valid Avro: {e}")))?;
        let stream = stream_of(&schema).ok_or_else(|| {
            DecodeError::Poison(format!(
                "schema id {id} is not a gst-alpr PlateEvent or VehicleTrackEvent"
            ))
        })?;
        let entry = (Arc::new(schema), stream);
        self.schemas.insert(id, entry.clone());
        Ok(entry)
    }

    /// Decodes one message payload.
    pub fn decode(&mut self, payload: Option<&[u8]>) -> Result<Decoded, DecodeError> {
        let payload =
            payload.ok_or_else(|| DecodeError::Poison("message without a value".into()))?;
        let (id, mut body) = unframe(payload).ok_or_else(|| {
            DecodeError::Poison(
                "not in the Confluent wire format (magic byte 0 + 4-byte schema id)".into(),
            )
        })?;
        let (writer, stream) = self.schema(id)?;
        let value = GenericDatumReader::builder(&writer)
            .reader_schema(stream.schema())
            .build()
            .and_then(|r| r.read_value(&mut body))
            .map_err(|e| DecodeError::Poison(format!("Avro body (schema id {id}): {e}")))?;
        if !body.is_empty() {
            return Err(DecodeError::Poison(format!(
                "{} bytes after the Avro record (schema id {id})",
                body.len()
            )));
        }
        match to_json(value) {
            Json::Object(record) => Ok(Decoded { stream, record }),
            other => Err(DecodeError::Poison(format!("not a record: {other}"))),
        }
    }
}

/// Avro -> JSON with the Avro field names; floats keep their shortest decimal form (0.91, not
/// 0.9100000262), timestamps stay epoch milliseconds.
pub fn to_json(v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Int(i) => Json::from(i),
        Value::Long(i) | Value::TimestampMillis(i) | Value::TimestampMicros(i) => Json::from(i),
        Value::Float(f) => format!("{f}")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Json::Null, Json::Number),
        Value::Double(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        Value::String(s) | Value::Enum(_, s) => Json::String(s),
        Value::Union(_, inner) => to_json(*inner),
        Value::Array(a) => Json::Array(a.into_iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(m.into_iter().map(|(k, v)| (k, to_json(v))).collect()),
        Value::Record(fields) => {
            Json::Object(fields.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
        other => Json::String(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstalpr::event::PlateEvent;
    use gstalpr::kafkasink::avro::{encode_plate, plate_value};

    #[test]
    fn plate_record_as_json() {
        let e = PlateEvent {
            event_id: "e1".into(),
            camera_id: "gate".into(),
            plate_text: "AB123CD".into(),
            plate_confidence: 0.91,
            region: Some("eu".into()),
            first_seen_ms: 1_764_201_600_000,
            ..Default::default()
        };
        let v = to_json(plate_value(&e));
        assert_eq!(v["plate_text"], "AB123CD");
        assert_eq!(v["plate_confidence"], 0.91);
        assert_eq!(v["region"], "eu");
        assert_eq!(v["vehicle_class"], Json::Null);
        assert_eq!(v["first_seen"], 1_764_201_600_000i64);
        assert!(v["plate_bbox"].is_object());
        assert!(!encode_plate(&e).unwrap().is_empty());
    }

    #[test]
    fn schema_names_pick_the_stream() {
        assert_eq!(stream_of(Stream::Plates.schema()), Some(Stream::Plates));
        assert_eq!(stream_of(Stream::Vehicles.schema()), Some(Stream::Vehicles));
        let other = Schema::parse_str(r#"{"type":"record","name":"X","fields":[]}"#).unwrap();
        assert_eq!(stream_of(&other), None);
    }
}
