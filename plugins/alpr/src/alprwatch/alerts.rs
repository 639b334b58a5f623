// SPDX-License-Identifier: MIT OR Apache-2.0
//! Which alerts a plate event raises, given what earlier revisions of the same event raised:
//! one `new` alert per event and list (not per revision), `updated` when a later revision
//! matches another entry of the list, `retracted` when a later revision no longer alerts for
//! the list.

use std::collections::{HashMap, VecDeque};

use super::lists::Hit;
use crate::event::PlateEvent;
use crate::meta::{Alert, AlertStatus};

/// Events remembered for updates and retractions (the oldest are forgotten first). An event's
/// revisions follow within its track's life, seconds to minutes, so this covers hours of
/// traffic.
pub const DEFAULT_CAPACITY: usize = 10_000;

struct EventState {
    revision: u32,
    /// The alert in force per list.
    alerted: Vec<Hit>,
}

pub struct AlertTracker {
    events: HashMap<String, EventState>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Default for AlertTracker {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

fn alert(ev: &PlateEvent, hit: &Hit, status: AlertStatus, now_ms: i64) -> Alert {
    Alert {
        status,
        list: hit.list.clone(),
        kind: hit.kind.as_str().to_string(),
        entry: hit.entry.clone(),
        label: hit.label.clone(),
        distance: hit.distance as f64,
        plate_text: ev.plate_text.clone(),
        event_id: ev.event_id.clone(),
        camera_id: ev.camera_id.clone(),
        track_id: ev.track_id,
        revision: ev.revision,
        first_seen_ms: ev.first_seen_ms,
        alerted_ms: now_ms,
    }
}

impl AlertTracker {
    pub fn new(capacity: usize) -> Self {
        AlertTracker {
            events: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Events remembered now.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The alerts raised by `ev`, whose plate alerts for `hits` (see
    /// [`super::lists::Watchlists::hits`]). A revision older than one already seen raises
    /// nothing.
    pub fn on_event(&mut self, ev: &PlateEvent, hits: Vec<Hit>, now_ms: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        let Some(state) = self.events.get_mut(&ev.event_id) else {
            if hits.is_empty() {
                return out;
            }
            out.extend(hits.iter().map(|h| alert(ev, h, AlertStatus::New, now_ms)));
            if self.events.len() >= self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.events.remove(&old);
            }
            self.order.push_back(ev.event_id.clone());
            self.events.insert(
                ev.event_id.clone(),
                EventState {
                    revision: ev.revision,
                    alerted: hits,
                },
            );
            return out;
        };
        if ev.revision < state.revision {
            return out;
        }
        state.revision = ev.revision;
        for h in &hits {
            match state.alerted.iter().find(|p| p.list == h.list) {
                None => out.push(alert(ev, h, AlertStatus::New, now_ms)),
                Some(p) if p.entry != h.entry => {
                    out.push(alert(ev, h, AlertStatus::Updated, now_ms))
                }
                Some(_) => {}
            }
        }
        for p in &state.alerted {
            if !hits.iter().any(|h| h.list == p.list) {
                out.push(alert(ev, p, AlertStatus::Retracted, now_ms));
            }
        }
        state.alerted = hits;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alprwatch::lists::ListKind;

    fn ev(id: &str, revision: u32, text: &str) -> PlateEvent {
        PlateEvent {
            event_id: id.into(),
            camera_id: "cam".into(),
            revision,
            plate_text: text.into(),
            first_seen_ms: 1000,
            ..Default::default()
        }
    }

    fn hit(list: &str, entry: &str) -> Hit {
        Hit {
            list: list.into(),
            kind: ListKind::Deny,
            entry: entry.into(),
            label: format!("{entry} label"),
            distance: 0.0,
        }
    }

    fn statuses(a: &[Alert]) -> Vec<(AlertStatus, &str, &str)> {
        a.iter()
            .map(|a| (a.status, a.list.as_str(), a.entry.as_str()))
            .collect()
    }

    #[test]
    fn one_alert_per_event_then_updates_and_retractions() {
        let mut t = AlertTracker::default();
        assert!(t.on_event(&ev("e1", 0, "XX1"), vec![], 5).is_empty());
        assert!(t.is_empty(), "events without alerts are not remembered");
        let a = t.on_event(&ev("e1", 1, "AB123"), vec![hit("hot", "AB123")], 7);
        assert_eq!(statuses(&a), vec![(AlertStatus::New, "hot", "AB123")]);
        assert_eq!(
            (a[0].revision, a[0].alerted_ms, a[0].first_seen_ms),
            (1, 7, 1000)
        );
        // The same match again (a later revision or the track's end): nothing new.
        assert!(
            t.on_event(&ev("e1", 2, "AB123"), vec![hit("hot", "AB123")], 8)
                .is_empty()
        );
        // Another entry of the same list: an update.
        let a = t.on_event(&ev("e1", 3, "AB128"), vec![hit("hot", "AB128")], 9);
        assert_eq!(statuses(&a), vec![(AlertStatus::Updated, "hot", "AB128")]);
        // No match any more: the retraction names the entry it retracts.
        let a = t.on_event(&ev("e1", 4, "ZZ999"), vec![], 10);
        assert_eq!(statuses(&a), vec![(AlertStatus::Retracted, "hot", "AB128")]);
        assert_eq!(a[0].plate_text, "ZZ999");
        // An older revision arriving late changes nothing.
        assert!(
            t.on_event(&ev("e1", 2, "AB123"), vec![hit("hot", "AB123")], 11)
                .is_empty()
        );
        // Matching again after a retraction is a new alert.
        let a = t.on_event(&ev("e1", 5, "AB123"), vec![hit("hot", "AB123")], 12);
        assert_eq!(statuses(&a), vec![(AlertStatus::New, "hot", "AB123")]);
    }

    #[test]
    fn lists_alert_independently() {
        let mut t = AlertTracker::default();
        let a = t.on_event(&ev("e", 0, "A"), vec![hit("a", "A"), hit("b", "A*")], 0);
        assert_eq!(a.len(), 2);
        let a = t.on_event(&ev("e", 1, "A"), vec![hit("b", "A*")], 0);
        assert_eq!(statuses(&a), vec![(AlertStatus::Retracted, "a", "A")]);
        // Another event of the same plate is another car: its own alert.
        let a = t.on_event(&ev("f", 0, "A"), vec![hit("b", "A*")], 0);
        assert_eq!(statuses(&a), vec![(AlertStatus::New, "b", "A*")]);
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let mut t = AlertTracker::new(2);
        for id in ["a", "b", "c"] {
            t.on_event(&ev(id, 0, "X"), vec![hit("l", "X")], 0);
        }
        assert_eq!(t.len(), 2);
        // "a" was forgotten: its retraction can no longer be raised; "c" is remembered.
        assert!(t.on_event(&ev("a", 1, "Y"), vec![], 0).is_empty());
        assert_eq!(t.on_event(&ev("c", 1, "Y"), vec![], 0).len(), 1);
    }
}
