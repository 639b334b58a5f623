// SPDX-License-Identifier: MIT OR Apache-2.0
//! A SigV4-signed `PUT /<bucket>` (S3 CreateBucket), for `create-bucket=true` with MinIO-style
//! set-ups: `object_store` has no create-bucket call. Path-style only, empty body (the default
//! location of the endpoint), static credentials. Kept to the one request it signs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{digest, hmac};

/// SHA-256 of the empty body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// The SigV4 signing key of a day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = mac(format!("AWS4{secret}").as_bytes(), date);
    let k = mac(&k, region);
    let k = mac(&k, service);
    mac(&k, "aws4_request")
}

/// `YYYYMMDDTHHMMSSZ` of a UNIX time.
fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let day = crate::event::utc_date(secs * 1000).replace('-', "");
    let s = secs.rem_euclid(86_400);
    format!("{day}T{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The headers (name, value) of a signed `PUT /<bucket>` to `host`, `authorization` last.
pub fn create_bucket_headers(
    host: &str,
    bucket: &str,
    region: &str,
    creds: &Credentials,
    now: SystemTime,
) -> Vec<(String, String)> {
    let date_time = amz_date(now);
    let date = &date_time[..8];
    let mut headers = vec![
        ("host".to_string(), host.to_string()),
        ("x-amz-content-sha256".to_string(), EMPTY_SHA256.to_string()),
        ("x-amz-date".to_string(), date_time.clone()),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token".to_string(), t.clone()));
    }
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let canonical = format!("PUT\n/{bucket}\n\n{canonical_headers}\n{signed}\n{EMPTY_SHA256}");
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let key = signing_key(&creds.secret_access_key, date, region, "s3");
    let signature = hex(&mac(&key, &to_sign));
    headers.push((
        "authorization".to_string(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    headers
}

/// Creates `bucket` at `endpoint` (`http[s]://host[:port]`). An existing bucket owned by the
/// same account is success. Errors name the endpoint and the server's answer, never a secret.
pub fn create_bucket(
    endpoint: &str,
    bucket: &str,
    region: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<(), String> {
    let url = url::Url::parse(endpoint).map_err(|e| format!("endpoint {endpoint}: {e}"))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => return Err(format!("endpoint {endpoint} has no host")),
    };
    let target = format!("{}://{host}/{bucket}", url.scheme());
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.put(&target);
    for (k, v) in create_bucket_headers(&host, bucket, region, creds, SystemTime::now()) {
        if k != "host" {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let mut resp = req
        .send_empty()
        .map_err(|e| format!("CreateBucket {bucket} at {endpoint}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    if (200..300).contains(&status) || body.contains("BucketAlreadyOwnedByYou") {
        return Ok(());
    }
    let code = body
        .split("<Code>")
        .nth(1)
        .and_then(|r| r.split("</Code>").next())
        .unwrap_or("");
    Err(format!(
        "CreateBucket {bucket} at {endpoint} failed: HTTP {status} {code}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_matches_the_aws_example() {
        // docs.aws.amazon.com, "Examples of how to derive a signing key for Signature Version 4".
        let k = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn headers_are_complete_and_hide_the_secret() {
        let creds = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s3cr3t".into(),
            session_token: None,
        };
        let t = UNIX_EPOCH + Duration::from_secs(1_764_201_600 + 3661);
        let h = create_bucket_headers("127.0.0.1:9000", "crops", "us-east-1", &creds, t);
        assert_eq!(h[2], ("x-amz-date".into(), "20251127T010101Z".into()));
        let auth = &h.last().unwrap().1;
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKID/20251127/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
            ),
            "{auth}"
        );
        assert!(!h.iter().any(|(_, v)| v.contains("s3cr3t")));
    }
}
