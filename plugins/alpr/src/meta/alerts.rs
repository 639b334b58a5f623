// SPDX-License-Identifier: MIT OR Apache-2.0
//! The watchlist alerts of alprwatch (part of the contract): an `alpr-alerts` custom meta on the
//! buffer whose plate events raised them, holding an `alerts` array of `alpr-alert`
//! structures; the element message alprwatch posts for each alert is the same structure.
//!
//! Fields of `alpr-alert`:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `status` | string | `new`, `updated` (the event now matches another entry of the list), `retracted` (a later revision no longer alerts) |
//! | `list` | string | list name |
//! | `kind` | string | `deny` (the plate matched an entry) or `allow` (it matched none) |
//! | `entry` | string | the pattern as written in the list (empty for allow lists; for `retracted`, the retracted entry) |
//! | `label` | string | the entry's label |
//! | `distance` | gdouble | weighted distance plate -> entry (-1 for allow lists) |
//! | `plate-text` | string | the plate as read in this revision |
//! | `event-id`, `camera-id` | string | of the plate event |
//! | `track-id` | guint64 | of the plate event |
//! | `revision` | guint | revision of the plate event that raised the alert |
//! | `first-seen-ms` | gint64 | the event's first read (wall clock, ms since the epoch) |
//! | `alerted-ms` | gint64 | when the alert was raised (wall clock) |

/// Name of the custom meta (and its structure) that carries alerts on a buffer.
pub const ALERTS_META: &str = "alpr-alerts";
/// Name of each alert structure inside the meta's `alerts` array and of the bus message.
pub const ALERT_STRUCT: &str = "alpr-alert";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertStatus {
    #[default]
    New,
    Updated,
    Retracted,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::New => "new",
            AlertStatus::Updated => "updated",
            AlertStatus::Retracted => "retracted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "new" => Some(AlertStatus::New),
            "updated" => Some(AlertStatus::Updated),
            "retracted" => Some(AlertStatus::Retracted),
            _ => None,
        }
    }
}

/// One watchlist alert.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alert {
    pub status: AlertStatus,
    pub list: String,
    /// `deny` or `allow`.
    pub kind: String,
    pub entry: String,
    pub label: String,
    pub distance: f64,
    pub plate_text: String,
    pub event_id: String,
    pub camera_id: String,
    pub track_id: u64,
    pub revision: u32,
    pub first_seen_ms: i64,
    pub alerted_ms: i64,
}

/// A malformed `alpr-alert` structure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{ALERT_STRUCT}: field `{field}`: {reason}")]
pub struct AlertError {
    pub field: &'static str,
    pub reason: String,
}

impl Alert {
    pub fn to_structure(&self) -> gst::Structure {
        gst::Structure::builder(ALERT_STRUCT)
            .field("status", self.status.as_str())
            .field("list", self.list.as_str())
            .field("kind", self.kind.as_str())
            .field("entry", self.entry.as_str())
            .field("label", self.label.as_str())
            .field("distance", self.distance)
            .field("plate-text", self.plate_text.as_str())
            .field("event-id", self.event_id.as_str())
            .field("camera-id", self.camera_id.as_str())
            .field("track-id", self.track_id)
            .field("revision", self.revision)
            .field("first-seen-ms", self.first_seen_ms)
            .field("alerted-ms", self.alerted_ms)
            .build()
    }

    pub fn from_structure(s: &gst::StructureRef) -> Result<Alert, AlertError> {
        fn get<'a, T: gst::glib::value::FromValue<'a>>(
            s: &'a gst::StructureRef,
            field: &'static str,
        ) -> Result<T, AlertError> {
            s.get::<T>(field).map_err(|e| AlertError {
                field,
                reason: e.to_string(),
            })
        }
        let status: &str = get(s, "status")?;
        Ok(Alert {
            status: AlertStatus::parse(status).ok_or_else(|| AlertError {
                field: "status",
                reason: format!("{status:?}: expected new, updated or retracted"),
            })?,
            list: get(s, "list")?,
            kind: get(s, "kind")?,
            entry: get(s, "entry")?,
            label: get(s, "label")?,
            distance: get(s, "distance")?,
            plate_text: get(s, "plate-text")?,
            event_id: get(s, "event-id")?,
            camera_id: get(s, "camera-id")?,
            track_id: get(s, "track-id")?,
            revision: get(s, "revision")?,
            first_seen_ms: get(s, "first-seen-ms")?,
            alerted_ms: get(s, "alerted-ms")?,
        })
    }

    /// Reads an `alpr-alert` element message; `None` for any other message.
    pub fn of_message(msg: &gst::MessageRef) -> Option<Result<Alert, AlertError>> {
        let s = msg.structure()?;
        (s.name() == ALERT_STRUCT).then(|| Alert::from_structure(s))
    }
}

/// Adds alerts to `buffer`'s `alpr-alerts` meta, appending to one already there.
pub fn attach_alerts(
    buffer: &mut gst::BufferRef,
    alerts: &[Alert],
) -> Result<(), gst::glib::BoolError> {
    let mut all: Vec<gst::Structure> = alert_structures(buffer);
    all.extend(alerts.iter().map(Alert::to_structure));
    let arr = gst::Array::new(all);
    match gst::meta::CustomMeta::from_mut_buffer(buffer, ALERTS_META) {
        Ok(mut m) => m.mut_structure().set("alerts", arr),
        Err(_) => gst::meta::CustomMeta::add(buffer, ALERTS_META)?
            .mut_structure()
            .set("alerts", arr),
    }
    Ok(())
}

fn alert_structures(buffer: &gst::BufferRef) -> Vec<gst::Structure> {
    gst::meta::CustomMeta::from_buffer(buffer, ALERTS_META)
        .ok()
        .and_then(|m| m.structure().get::<gst::Array>("alerts").ok())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.get::<gst::Structure>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The alerts on `buffer` (empty when it carries none); a malformed one is an error.
pub fn read_alerts(buffer: &gst::BufferRef) -> Result<Vec<Alert>, AlertError> {
    alert_structures(buffer)
        .iter()
        .map(|s| Alert::from_structure(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_round_trip_through_the_meta_and_messages() {
        gst::init().unwrap();
        super::super::register_custom_meta(ALERTS_META);
        let a = Alert {
            status: AlertStatus::Updated,
            list: "hot".into(),
            kind: "deny".into(),
            entry: "RK3O0AG".into(),
            label: "stolen".into(),
            distance: 0.3,
            plate_text: "RK300AG".into(),
            event_id: "0190-abc".into(),
            camera_id: "cam1".into(),
            track_id: 7,
            revision: 2,
            first_seen_ms: 1_764_201_600_000,
            alerted_ms: 1_764_201_600_250,
        };
        let mut buf = gst::Buffer::new();
        assert!(read_alerts(&buf).unwrap().is_empty());
        attach_alerts(buf.get_mut().unwrap(), std::slice::from_ref(&a)).unwrap();
        let b = Alert {
            status: AlertStatus::Retracted,
            ..a.clone()
        };
        attach_alerts(buf.get_mut().unwrap(), std::slice::from_ref(&b)).unwrap();
        assert_eq!(read_alerts(&buf).unwrap(), vec![a.clone(), b]);
        let msg = gst::message::Element::new(a.to_structure());
        assert_eq!(Alert::of_message(&msg), Some(Ok(a.clone())));
        let mut bad = a.to_structure();
        bad.set("status", "maybe");
        assert_eq!(Alert::from_structure(&bad).unwrap_err().field, "status");
    }
}
