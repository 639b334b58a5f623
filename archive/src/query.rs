// SPDX-License-Identifier: MIT OR Apache-2.0
//! Read side: the search queries behind the API, every value a bound parameter.

use serde_json::Value as Json;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::search::{Cursor, MAX_FUZZY_DISTANCE, Match, like_pattern, ocr_distance, plate_norm};

/// Fuzzy candidates fetched (plates within one edit of the query once OCR confusions are
/// folded, found by the `alpr_plate_keys` GIN index; the same normalised plate first, then the
/// newest) before the OCR-aware ranking.
pub const FUZZY_CANDIDATES: i64 = 200;

/// A time bound: epoch milliseconds or anything PostgreSQL reads as a timestamptz.
#[derive(Debug, Clone)]
pub enum Time {
    Millis(i64),
    Text(String),
}

#[derive(Debug, Clone, Default)]
pub struct Search {
    /// A cleaned plate (see `search::clean_plate`) and how to match it.
    pub plate: Option<(Match, String)>,
    pub camera: Option<String>,
    pub from: Option<Time>,
    pub to: Option<Time>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

/// One found event: its Avro record as stored.
#[derive(Debug, Clone)]
pub struct Found {
    pub record: Json,
    pub first_seen_ms: i64,
    pub event_id: String,
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

fn push(params: &mut Params, v: impl ToSql + Sync + Send + 'static) -> String {
    params.push(Box::new(v));
    format!("${}", params.len())
}

fn filters(s: &Search, params: &mut Params) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(c) = &s.camera {
        w.push(format!("camera_id = {}", push(params, c.clone())));
    }
    for (bound, op) in [(&s.from, ">="), (&s.to, "<")] {
        match bound {
            Some(Time::Millis(ms)) => w.push(format!("first_seen_ms {op} {}", push(params, *ms))),
            Some(Time::Text(t)) => w.push(format!(
                "first_seen {op} {}::text::timestamptz",
                push(params, t.clone())
            )),
            None => {}
        }
    }
    w
}

fn found(rows: Vec<tokio_postgres::Row>) -> Vec<Found> {
    rows.into_iter()
        .map(|r| Found {
            record: r.get(0),
            first_seen_ms: r.get(1),
            event_id: r.get(2),
        })
        .collect()
}

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// One page of results and the cursor of the next one.
pub async fn search(
    client: &Client,
    s: &Search,
) -> Result<(Vec<Found>, Option<Cursor>), tokio_postgres::Error> {
    let mut params: Params = Vec::new();
    let mut w = filters(s, &mut params);
    if let Some((Match::Fuzzy, plate)) = &s.plate {
        let norm = push(&mut params, plate_norm(plate));
        w.push(format!(
            "alpr_plate_keys(plate_norm) && alpr_plate_keys({norm})"
        ));
        let sql = format!(
            "SELECT record, first_seen_ms, event_id, plate_text FROM plate_events {} \
             ORDER BY plate_norm = {norm} DESC, first_seen_ms DESC LIMIT {FUZZY_CANDIDATES}",
            where_clause(&w)
        );
        let rows = client.query(&sql, &refs(&params)).await?;
        let mut ranked: Vec<(f64, Found)> = rows
            .into_iter()
            .filter_map(|r| {
                let text: String = r.get(3);
                let d = ocr_distance(plate, &text);
                (d <= MAX_FUZZY_DISTANCE).then(|| {
                    (
                        d,
                        Found {
                            record: r.get(0),
                            first_seen_ms: r.get(1),
                            event_id: r.get(2),
                        },
                    )
                })
            })
            .collect();
        ranked.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(b.1.first_seen_ms.cmp(&a.1.first_seen_ms))
        });
        let skip = match &s.cursor {
            Some(Cursor::Offset(n)) => *n,
            _ => 0,
        };
        let total = ranked.len();
        let page: Vec<Found> = ranked
            .into_iter()
            .skip(skip)
            .take(s.limit)
            .map(|(_, f)| f)
            .collect();
        let next = (skip + s.limit < total).then_some(Cursor::Offset(skip + s.limit));
        return Ok((page, next));
    }
    match &s.plate {
        Some((Match::Exact, plate)) => {
            w.push(format!("plate_text = {}", push(&mut params, plate.clone())))
        }
        Some((Match::Wildcard, plate)) => w.push(format!(
            "plate_text LIKE {}",
            push(&mut params, like_pattern(plate))
        )),
        _ => {}
    }
    if let Some(Cursor::After {
        first_seen_ms,
        event_id,
    }) = &s.cursor
    {
        let ms = push(&mut params, *first_seen_ms);
        let id = push(&mut params, event_id.clone());
        w.push(format!("(first_seen_ms, event_id) < ({ms}, {id})"));
    }
    let sql = format!(
        "SELECT record, first_seen_ms, event_id FROM plate_events {} \
         ORDER BY first_seen_ms DESC, event_id DESC LIMIT {}",
        where_clause(&w),
        s.limit + 1
    );
    let mut page = found(client.query(&sql, &refs(&params)).await?);
    let next = if page.len() > s.limit {
        page.truncate(s.limit);
        page.last().map(|f| Cursor::After {
            first_seen_ms: f.first_seen_ms,
            event_id: f.event_id.clone(),
        })
    } else {
        None
    };
    Ok((page, next))
}

fn where_clause(w: &[String]) -> String {
    if w.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", w.join(" AND "))
    }
}

/// One event by id.
pub async fn event(client: &Client, id: &str) -> Result<Option<Found>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT record, first_seen_ms, event_id FROM plate_events WHERE event_id = $1",
            &[&id],
        )
        .await?;
    Ok(found(rows).into_iter().next())
}
