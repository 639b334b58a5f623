// SPDX-License-Identifier: MIT OR Apache-2.0
//! The HTTP API (JSON), the image endpoint and the login check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use object_store::ObjectStoreExt;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use subtle::ConstantTimeEq;

use crate::config::Crops;
use crate::db::Db;
use crate::query::{self, Found, Search, Time};
use crate::search::{Cursor, Match, clean_plate};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;
const MAX_CAMERA_LEN: usize = 128;
const MAX_TIME_LEN: usize = 64;
const MAX_ID_LEN: usize = 128;
const MAX_KEY_LEN: usize = 512;
/// Largest image served (crops are a few KB; a frame a few hundred).
const MAX_IMAGE_BYTES: u64 = 16 << 20;
/// An image read from the object store gives up after this (the page shows it missing).
const IMAGE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AppState {
    pub db: Arc<Db>,
    pub password: Option<String>,
    pub crops: Crops,
}

pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/", get(crate::web::page))
        .route("/api/events", get(events))
        .route("/api/events/{event_id}", get(event))
        .route("/api/plates/{plate}", get(plate))
        .route("/images/{*key}", get(image))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .with_state(state)
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn db_error(e: tokio_postgres::Error) -> ApiError {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c)
            if *c == SqlState::INVALID_DATETIME_FORMAT
                || *c == SqlState::DATETIME_FIELD_OVERFLOW
                || *c == SqlState::INVALID_TIME_ZONE_DISPLACEMENT_VALUE =>
        {
            bad("from/to: not a time (epoch milliseconds or ISO 8601)")
        }
        _ => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database: {}", crate::store::error_text(&e)),
        ),
    }
}

fn client(st: &AppState) -> Result<Arc<tokio_postgres::Client>, ApiError> {
    st.db.get().ok_or(ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "database not connected (retrying)".into(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Login

fn b64decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// The password or token a request presents: `Authorization: Bearer TOKEN` or HTTP basic auth
/// (any user name).
fn presented(headers: &HeaderMap) -> Option<Vec<u8>> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if v.len() > 4096 {
        return None;
    }
    if let Some(t) = v.strip_prefix("Bearer ") {
        return Some(t.trim().as_bytes().to_vec());
    }
    let raw = b64decode(v.strip_prefix("Basic ")?.trim())?;
    let colon = raw.iter().position(|b| *b == b':')?;
    Some(raw[colon + 1..].to_vec())
}

/// True when `given` is the password; the comparison takes the same time wherever they differ.
pub fn password_ok(expected: &str, given: &[u8]) -> bool {
    bool::from(expected.as_bytes().ct_eq(given))
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(expected) = st.password.as_deref().filter(|p| !p.is_empty()) else {
        return next.run(req).await;
    };
    if presented(req.headers()).is_some_and(|g| password_ok(expected, &g)) {
        return next.run(req).await;
    }
    let mut r = ApiError(StatusCode::UNAUTHORIZED, "login required".into()).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"alpr-archive\", charset=\"UTF-8\""),
    );
    r
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    let services = json!({
        "kafka": crate::status::is_connected("kafka"),
        "registry": crate::status::is_connected("registry"),
        "database": crate::status::is_connected("database"),
    });
    let up = st.db.get().is_some();
    let code = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(json!({"status": if up {"ok"} else {"degraded"}, "services": services})),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    plate: Option<String>,
    #[serde(rename = "match")]
    mode: Option<String>,
    camera: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn time(name: &str, v: &str) -> Result<Time, ApiError> {
    if v.len() > MAX_TIME_LEN {
        return Err(bad(format!("{name}: at most {MAX_TIME_LEN} characters")));
    }
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse()
            .map(Time::Millis)
            .map_err(|_| bad(format!("{name}: out of range")));
    }
    Ok(Time::Text(v.to_string()))
}

/// Checks and bounds every parameter (a client cannot make the server scan or allocate more
/// than MAX_LIMIT rows or hold more than a few hundred bytes per parameter).
pub fn parse_search(q: &EventsQuery) -> Result<Search, ApiError> {
    let mode = Match::parse(q.mode.as_deref()).map_err(bad)?;
    let plate = match q.plate.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => Some((mode, clean_plate(p, mode == Match::Wildcard).map_err(bad)?)),
        None => None,
    };
    let camera = match q.camera.as_deref().filter(|c| !c.is_empty()) {
        Some(c) if c.chars().count() > MAX_CAMERA_LEN => {
            return Err(bad(format!("camera: at most {MAX_CAMERA_LEN} characters")));
        }
        c => c.map(str::to_string),
    };
    let limit = match q.limit.as_deref().filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("limit: a number from 1 to {MAX_LIMIT}"))),
        },
    };
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(Cursor::parse(c).map_err(bad)?),
        None => None,
    };
    Ok(Search {
        plate,
        camera,
        from: q
            .from
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| time("from", v))
            .transpose()?,
        to: q
            .to
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| time("to", v))
            .transpose()?,
        limit,
        cursor,
    })
}

/// An event as the API shows it: the Avro fields plus `image_url`.
fn show(st: &AppState, f: Found) -> Json {
    let mut record = f.record;
    let key = record
        .get("image_key")
        .and_then(Json::as_str)
        .map(str::to_string);
    let url = match (key, &st.crops) {
        (Some(k), Crops::Dir(_) | Crops::Store { .. }) => Json::String(format!("/images/{k}")),
        (Some(k), Crops::Link(base)) => Json::String(format!("{base}/{k}")),
        _ => Json::Null,
    };
    if let Some(o) = record.as_object_mut() {
        o.insert("image_url".into(), url);
    }
    record
}

async fn events(
    State(st): State<Arc<AppState>>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let s = parse_search(&q)?;
    let c = client(&st)?;
    let (page, next) = query::search(&c, &s).await.map_err(db_error)?;
    let events: Vec<Json> = page.into_iter().map(|f| show(&st, f)).collect();
    Ok(axum::Json(json!({"events": events, "next": next.map(|c| c.encode())})).into_response())
}

async fn event(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if id.len() > MAX_ID_LEN {
        return Err(bad(format!("event_id: at most {MAX_ID_LEN} characters")));
    }
    let c = client(&st)?;
    match query::event(&c, &id).await.map_err(db_error)? {
        Some(f) => Ok(axum::Json(show(&st, f)).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "no such event".into())),
    }
}

async fn plate(
    State(st): State<Arc<AppState>>,
    Path(plate): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let mut s = parse_search(&EventsQuery {
        plate: Some(plate),
        mode: None,
        ..q
    })?;
    s.limit = s.limit.max(1);
    let c = client(&st)?;
    let text = s.plate.as_ref().map(|p| p.1.clone());
    let (page, next) = query::search(&c, &s).await.map_err(db_error)?;
    let sightings: Vec<Json> = page.into_iter().map(|f| show(&st, f)).collect();
    Ok(axum::Json(json!({
        "plate": text,
        "sightings": sightings,
        "next": next.map(|c| c.encode()),
    }))
    .into_response())
}

/// A crop key as a path under the crops folder: plain segments only (no `..`, no absolute
/// paths, no hidden files).
pub fn safe_key(key: &str) -> Option<PathBuf> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return None;
    }
    let mut p = PathBuf::new();
    for seg in key.split('/') {
        let ok = !seg.is_empty()
            && !seg.starts_with('.')
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return None;
        }
        p.push(seg);
    }
    Some(p)
}

async fn image(
    State(st): State<Arc<AppState>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError(StatusCode::NOT_FOUND, "no such image".into());
    let rel = safe_key(&key).ok_or_else(|| bad("image key: plain path segments only"))?;
    let bytes = match &st.crops {
        Crops::Dir(dir) => {
            let path = dir.join(rel);
            let meta = tokio::fs::metadata(&path).await.map_err(|_| not_found())?;
            if !meta.is_file() || meta.len() > MAX_IMAGE_BYTES {
                return Err(not_found());
            }
            tokio::fs::read(&path).await.map_err(|_| not_found())?
        }
        Crops::Store { store, describe } => {
            let unreachable = |e: object_store::Error| match e {
                object_store::Error::NotFound { .. } => not_found(),
                e => ApiError(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "crop images ({describe}): {}",
                        gstalpr::s3sink::client::one_line(&e)
                    ),
                ),
            };
            let path = object_store::path::Path::from(key.as_str());
            let got = tokio::time::timeout(IMAGE_TIMEOUT, async {
                let got = store.get(&path).await?;
                if got.meta.size > MAX_IMAGE_BYTES {
                    return Ok(None);
                }
                got.bytes().await.map(Some)
            })
            .await
            .map_err(|_| {
                ApiError(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("crop images ({describe}): no answer in {IMAGE_TIMEOUT:?}"),
                )
            })?
            .map_err(unreachable)?;
            got.ok_or_else(not_found)?.to_vec()
        }
        Crops::None | Crops::Link(_) => return Err(not_found()),
    };
    let ct = match key.rsplit_once('.').map(|(_, ext)| ext) {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    Ok(([(header::CONTENT_TYPE, ct)], bytes).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_credentials() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert_eq!(presented(&h).unwrap(), b"s3cret");
        // "op:s3cret"
        h.insert(header::AUTHORIZATION, "Basic b3A6czNjcmV0".parse().unwrap());
        assert_eq!(presented(&h).unwrap(), b"s3cret");
        assert!(password_ok("s3cret", b"s3cret"));
        assert!(!password_ok("s3cret", b"s3cres"));
        assert!(!password_ok("s3cret", b"s3cret2"));
        h.insert(header::AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert!(presented(&h).is_none());
    }

    #[test]
    fn image_keys_stay_inside_the_folder() {
        assert!(safe_key("2026-12-03/gate_track7_frame10_q0.81.jpg").is_some());
        assert!(safe_key("../etc/passwd").is_none());
        assert!(safe_key("/etc/passwd").is_none());
        assert!(safe_key("a/./b.jpg").is_none());
        assert!(safe_key("a/.hidden").is_none());
        assert!(safe_key(&"a".repeat(600)).is_none());
    }

    #[test]
    fn parameters_are_bounded() {
        let q = |f: fn(&mut EventsQuery)| {
            let mut q = EventsQuery::default();
            f(&mut q);
            parse_search(&q)
        };
        assert!(q(|_| {}).is_ok());
        assert!(q(|q| q.limit = Some("501".into())).is_err());
        assert!(q(|q| q.limit = Some("0".into())).is_err());
        assert!(q(|q| q.plate = Some("A".repeat(10_000))).is_err());
        assert!(q(|q| q.camera = Some("c".repeat(10_000))).is_err());
        assert!(q(|q| q.from = Some("1".repeat(10_000))).is_err());
        assert!(q(|q| q.cursor = Some("k".repeat(10_000))).is_err());
        assert!(q(|q| q.mode = Some("regex".into())).is_err());
        let s = q(|q| {
            q.plate = Some("ab?2*".into());
            q.mode = Some("wildcard".into());
        })
        .unwrap();
        assert_eq!(s.plate, Some((Match::Wildcard, "AB?2*".into())));
    }
}
