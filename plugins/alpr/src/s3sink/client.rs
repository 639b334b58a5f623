// SPDX-License-Identifier: MIT OR Apache-2.0
//! The object store side of s3sink: building the `object_store` client from the element's
//! settings (S3 with endpoint / path-style / credentials, or any object_store URL), the
//! connection probe, and one upload. Every call runs on the plugin's tokio runtime
//! ([`crate::tokio_runtime`]) and is abandoned at once when the element stops.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::prefix::PrefixStore;
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, PutOptions, PutPayload, RetryConfig,
};

use super::sigv4;

/// One request (connect and transfer) gives up after this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where crops go: a snapshot of the element's settings at `start` (secrets included: never
/// log it, use [`Target::describe`]).
#[derive(Clone)]
pub enum Target {
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: String,
        path_style: bool,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        session_token: Option<String>,
        create_bucket: bool,
    },
    /// Any object_store URL (`file:///dir`, `memory://`, `s3://bucket/prefix` with credentials
    /// from the environment).
    Url(url::Url),
}

impl Target {
    /// The service name in log lines: "MinIO" for an S3 endpoint of our own, "S3" for AWS.
    pub fn service(&self) -> &'static str {
        match self {
            Target::S3 {
                endpoint: Some(_), ..
            } => "MinIO",
            Target::S3 { .. } => "S3",
            Target::Url(_) => "object store",
        }
    }

    /// "endpoint http://..., bucket crops" / "url file:///..." (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Target::S3 {
                bucket,
                endpoint,
                region,
                ..
            } => match endpoint {
                Some(e) => format!("endpoint {e}, bucket {bucket}"),
                None => format!("region {region}, bucket {bucket}"),
            },
            Target::Url(u) => {
                let mut u = u.clone();
                let _ = u.set_password(None);
                let _ = u.set_username("");
                format!("url {u}")
            }
        }
    }

    /// Whether the store keeps attributes (content type, metadata): S3 does, the local file
    /// system and memory stores reject them.
    pub fn supports_attributes(&self) -> bool {
        match self {
            Target::S3 { .. } => true,
            Target::Url(u) => u.scheme() == "s3" || u.scheme() == "s3a",
        }
    }

    fn client_options(&self) -> ClientOptions {
        let o = ClientOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(CONNECT_TIMEOUT);
        match self {
            Target::S3 {
                endpoint: Some(e), ..
            } => o.with_allow_http(e.starts_with("http://")),
            _ => o,
        }
    }

    /// The client. Fails only on settings (a bad URL, an unknown scheme), never on the network.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, String> {
        // object_store's own retries are kept short: the element's queue and link state
        // machine bridge outages, and a long retry inside one request would hold stop().
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(3),
            ..Default::default()
        };
        match self {
            Target::S3 {
                bucket,
                endpoint,
                region,
                path_style,
                access_key_id,
                secret_access_key,
                session_token,
                ..
            } => {
                // from_env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ...;
                // properties that are set win.
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_virtual_hosted_style_request(!path_style)
                    .with_client_options(self.client_options())
                    .with_retry(retry);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(k) = access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(s) = secret_access_key {
                    b = b.with_secret_access_key(s);
                }
                if let Some(t) = session_token {
                    b = b.with_token(t);
                }
                let s = b
                    .build()
                    .map_err(|e| format!("S3 settings: {}", one_line(&e)))?;
                Ok(Arc::new(s))
            }
            Target::Url(u) => {
                let (store, prefix) = if u.scheme() == "s3" || u.scheme() == "s3a" {
                    let s = AmazonS3Builder::from_env()
                        .with_url(u.as_str())
                        .with_client_options(self.client_options())
                        .with_retry(retry)
                        .build()
                        .map_err(|e| format!("url {}: {}", self.describe(), one_line(&e)))?;
                    let prefix = ObjPath::from_url_path(u.path())
                        .map_err(|e| format!("url {}: {e}", self.describe()))?;
                    (Arc::new(s) as Arc<dyn ObjectStore>, prefix)
                } else {
                    let (s, p) = object_store::parse_url(u)
                        .map_err(|e| format!("url {}: {}", self.describe(), one_line(&e)))?;
                    (Arc::from(s), p)
                };
                if prefix.as_ref().is_empty() {
                    Ok(store)
                } else {
                    Ok(Arc::new(PrefixStore::new(store, prefix)))
                }
            }
        }
    }

    /// What `create-bucket` needs: an S3 endpoint and static credentials.
    pub fn create_bucket_if_asked(&self) -> Result<(), String> {
        let Target::S3 {
            bucket,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            create_bucket: true,
            ..
        } = self
        else {
            return Ok(());
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| env("AWS_ENDPOINT"))
            .ok_or("create-bucket needs an endpoint (it is meant for MinIO-style servers)")?;
        let creds = sigv4::Credentials {
            access_key_id: access_key_id
                .clone()
                .or_else(|| env("AWS_ACCESS_KEY_ID"))
                .ok_or("create-bucket needs access-key-id (or AWS_ACCESS_KEY_ID)")?,
            secret_access_key: secret_access_key
                .clone()
                .or_else(|| env("AWS_SECRET_ACCESS_KEY"))
                .ok_or("create-bucket needs secret-access-key (or AWS_SECRET_ACCESS_KEY)")?,
            session_token: session_token.clone().or_else(|| env("AWS_SESSION_TOKEN")),
        };
        sigv4::create_bucket(&endpoint, bucket, region, &creds, CONNECT_TIMEOUT)
    }
}

/// An error and its sources on one line, whitespace collapsed, at most 400 characters.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    let mut s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Why a request failed, for the user: the cause first, then the store's own words.
pub fn reason(target: &Target, e: &object_store::Error) -> String {
    let text = one_line(e);
    let bucket = match target {
        Target::S3 { bucket, .. } => bucket.as_str(),
        Target::Url(u) => u.host_str().unwrap_or(""),
    };
    // Transport failures first: their text carries URLs, whose port numbers must not be
    // mistaken for HTTP status codes.
    let unreachable = [
        "onnection refused",
        "error sending request",
        "dns error",
        "timed out",
    ]
    .iter()
    .any(|c| text.contains(c));
    let cause = if unreachable {
        "endpoint unreachable".to_string()
    } else if text.contains("NoSuchBucket") || matches!(e, object_store::Error::NotFound { .. }) {
        format!(
            "bucket {bucket} does not exist (create it, or set create-bucket=true for a \
             MinIO-style server)"
        )
    } else if [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "status 403",
    ]
    .iter()
    .any(|c| text.contains(c))
        || matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
    {
        "credentials rejected (check access-key-id / secret-access-key)".to_string()
    } else {
        return text;
    };
    format!("{cause}: {text}")
}

/// Checks that the bucket exists and the credentials work: a list of a prefix that is never
/// used (cheap, and refused with the right error for a missing bucket or bad credentials).
pub async fn probe(store: &dyn ObjectStore) -> Result<(), object_store::Error> {
    store
        .list_with_delimiter(Some(&ObjPath::from("alpr-s3sink-probe")))
        .await
        .map(|_| ())
}

/// Metadata attached to every crop (S3 `x-amz-meta-*`): header-safe values only.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Uploads one crop.
pub async fn put(
    store: &dyn ObjectStore,
    key: &str,
    data: Vec<u8>,
    meta: Option<(&str, &str, &str)>,
) -> Result<(), object_store::Error> {
    let path = ObjPath::parse(key).map_err(|e| object_store::Error::Generic {
        store: "s3sink",
        source: Box::new(e),
    })?;
    let mut attributes = Attributes::new();
    if let Some((event_id, camera, plate)) = meta {
        attributes.insert(Attribute::ContentType, "image/jpeg".into());
        attributes.insert(
            Attribute::Metadata("event-id".into()),
            header_safe(event_id).into(),
        );
        attributes.insert(
            Attribute::Metadata("camera".into()),
            header_safe(camera).into(),
        );
        attributes.insert(
            Attribute::Metadata("plate".into()),
            header_safe(plate).into(),
        );
    }
    let opts = PutOptions {
        attributes,
        ..Default::default()
    };
    store
        .put_opts(&path, PutPayload::from(data), opts)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: msg.to_string().into(),
        }
    }

    #[test]
    fn causes_are_named_and_ports_are_not_status_codes() {
        let t = Target::Url(url::Url::parse("s3://alpr-crops").unwrap());
        // Port 40379 contains "403": a refused connection is still "unreachable".
        let r = reason(
            &t,
            &generic(
                "GET http://127.0.0.1:40379/alpr-crops: tcp connect error: Connection refused",
            ),
        );
        assert!(r.starts_with("endpoint unreachable"), "{r}");
        let r = reason(
            &t,
            &generic("Client error with status 403 Forbidden: SignatureDoesNotMatch"),
        );
        assert!(r.starts_with("credentials rejected"), "{r}");
        let r = reason(
            &t,
            &generic("NoSuchBucket: The specified bucket does not exist"),
        );
        assert!(r.starts_with("bucket alpr-crops does not exist"), "{r}");
    }
}
