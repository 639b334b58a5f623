// SPDX-License-Identifier: MIT OR Apache-2.0
//! The third stream of kafkasink: alprwatch's watchlist alerts (`alpr-alerts` meta), topic
//! `alerts-topic` (default `alpr.alerts`), schema `schemas/watchlist_alert.avsc`, subject
//! `<topic>-value`, through the same outbox as the events.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;

use super::avro::Stream;
use super::outbox::NewRecord;
use crate::meta::{Alert, AlertStatus};

pub const ALERT_SCHEMA: &str = include_str!("../../schemas/watchlist_alert.avsc");
pub const DEFAULT_ALERTS_TOPIC: &str = "alpr.alerts";

pub fn schema() -> &'static Schema {
    static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
        Schema::parse_str(ALERT_SCHEMA).expect("watchlist_alert.avsc is valid (unit-tested)")
    });
    &SCHEMA
}

pub(super) fn writer() -> &'static GenericDatumWriter<'static> {
    static WRITER: LazyLock<GenericDatumWriter<'static>> = LazyLock::new(|| {
        GenericDatumWriter::builder(schema())
            .build()
            .expect("watchlist_alert.avsc resolves (unit-tested)")
    });
    &WRITER
}

/// `<event_id>/<list>/<revision>/<status>`: the same alert delivered twice has the same id.
pub fn alert_id(a: &Alert) -> String {
    format!(
        "{}/{}/{}/{}",
        a.event_id,
        a.list,
        a.revision,
        a.status.as_str()
    )
}

pub fn alert_value(a: &Alert) -> Value {
    let (idx, sym) = match a.status {
        AlertStatus::New => (0, "NEW"),
        AlertStatus::Updated => (1, "UPDATED"),
        AlertStatus::Retracted => (2, "RETRACTED"),
    };
    Value::Record(vec![
        ("alert_id".into(), Value::String(alert_id(a))),
        ("status".into(), Value::Enum(idx, sym.into())),
        ("list".into(), Value::String(a.list.clone())),
        ("kind".into(), Value::String(a.kind.clone())),
        ("entry".into(), Value::String(a.entry.clone())),
        ("label".into(), Value::String(a.label.clone())),
        ("distance".into(), Value::Double(a.distance)),
        ("plate_text".into(), Value::String(a.plate_text.clone())),
        ("event_id".into(), Value::String(a.event_id.clone())),
        ("camera_id".into(), Value::String(a.camera_id.clone())),
        ("track_id".into(), Value::Long(a.track_id as i64)),
        ("revision".into(), Value::Int(a.revision as i32)),
        ("first_seen".into(), Value::TimestampMillis(a.first_seen_ms)),
        ("alerted".into(), Value::TimestampMillis(a.alerted_ms)),
    ])
}

/// The Avro body (no framing) of an alert.
pub fn encode_alert(a: &Alert) -> Result<Vec<u8>, apache_avro::Error> {
    writer().write_value_to_vec(alert_value(a))
}

/// The alerts of a buffer, encoded for the outbox.
pub fn records(buffer: &gst::BufferRef) -> Result<Vec<NewRecord>, String> {
    crate::meta::read_alerts(buffer)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|a| {
            let body = encode_alert(&a)
                .map_err(|err| format!("alert {}: Avro encoding: {err}", alert_id(&a)))?;
            Ok(NewRecord {
                stream: Stream::Alerts,
                first_seen_ms: Some(a.first_seen_ms),
                event_id: alert_id(&a),
                key: a.camera_id,
                body,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_round_trip_through_their_schema() {
        let a = Alert {
            status: AlertStatus::Retracted,
            list: "hot".into(),
            kind: "deny".into(),
            entry: "RK3O0AG".into(),
            label: "stolen".into(),
            distance: 0.3,
            plate_text: "RK300AX".into(),
            event_id: "e1".into(),
            camera_id: "cam".into(),
            track_id: 4,
            revision: 2,
            first_seen_ms: 1_764_201_600_000,
            alerted_ms: 1_764_201_600_200,
        };
        let body = encode_alert(&a).unwrap();
        let back = super::super::avro::decode(schema(), &body).unwrap();
        assert_eq!(back, alert_value(&a));
        assert_eq!(alert_id(&a), "e1/hot/2/retracted");
        assert!(
            Stream::Alerts
                .registered_schema()
                .contains("WatchlistAlert")
        );
    }
}
