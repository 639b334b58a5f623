// SPDX-License-Identifier: MIT OR Apache-2.0
//! A Confluent Schema Registry client: the two calls a producer needs, on the standard REST API
//! (so Confluent, Karapace and Redpanda registries all work unchanged).
//!
//! Credentials may be given in the URL (`https://key:secret@host`): they are sent as HTTP basic
//! auth and never shown; [`RegistryClient::redacted`] is what logs print.

use std::time::Duration;

pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Connection refused, timeout, 5xx: worth retrying.
    #[error("schema registry {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    /// The registry answered with a 4xx: retrying the same request will not help.
    #[error("schema registry {url} rejected the schema of subject {subject} (HTTP {status}{}): {message}", .code.map(|c| format!(", error code {c}")).unwrap_or_default())]
    Rejected {
        url: String,
        subject: String,
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("schema registry {url}: unexpected answer: {reason}")]
    Protocol { url: String, reason: String },
}

pub struct RegistryClient {
    base: String,
    redacted: String,
    auth: Option<String>,
    agent: ureq::Agent,
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for c in input.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn encode_path_segment(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

/// Splits `scheme://user:pass@host/path` into the URL without credentials and the credentials.
/// Errors name what is wrong without echoing a secret.
pub fn split_credentials(url: &str) -> Result<(String, Option<(String, String)>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "expected http://host:port or https://host:port".to_string())?;
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "unsupported scheme {scheme:?}: expected http or https"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (creds, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let creds = creds.map(|c| match c.split_once(':') {
        Some((u, p)) => (percent_decode(u), percent_decode(p)),
        None => (percent_decode(c), String::new()),
    });
    let path = path.trim_end_matches('/');
    Ok((format!("{scheme}://{host}{path}"), creds))
}

impl RegistryClient {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let (base, creds) = split_credentials(url)?;
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .build()
            .into();
        Ok(RegistryClient {
            redacted: base.clone(),
            base,
            auth: creds.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes()))),
            agent,
        })
    }

    /// The URL without credentials, for logs.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> RegistryError {
        RegistryError::Unreachable {
            url: self.redacted.clone(),
            reason: reason.to_string(),
        }
    }

    fn protocol(&self, reason: impl std::fmt::Display) -> RegistryError {
        RegistryError::Protocol {
            url: self.redacted.clone(),
            reason: reason.to_string(),
        }
    }

    fn finish(
        &self,
        subject: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<serde_json::Value, RegistryError> {
        let mut resp = resp.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.unreachable(e))?;
        let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        if status >= 500 {
            return Err(self.unreachable(format!("HTTP {status}: {}", text.trim())));
        }
        if !(200..300).contains(&status) {
            let code = json
                .as_ref()
                .and_then(|j| j.get("error_code"))
                .and_then(|c| c.as_i64());
            let message = json
                .as_ref()
                .and_then(|j| j.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| text.trim().to_string());
            return Err(RegistryError::Rejected {
                url: self.redacted.clone(),
                subject: subject.to_string(),
                status,
                code,
                message,
            });
        }
        json.ok_or_else(|| self.protocol(format!("not JSON: {}", text.trim())))
    }

    /// Registers `schema` (Avro) under `subject` (or finds it there): its global id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!(
            "{}/subjects/{}/versions",
            self.base,
            encode_path_segment(subject)
        );
        let body = serde_json::json!({"schema": schema, "schemaType": "AVRO"}).to_string();
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", CONTENT_TYPE)
            .header("Accept", CONTENT_TYPE);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let json = self.finish(subject, req.send(body))?;
        json.get("id")
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| self.protocol(format!("no schema id in {json}")))
    }

    /// The schema text of a global id (what consumers call).
    pub fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let url = format!("{}/schemas/ids/{id}", self.base);
        let mut req = self.agent.get(&url).header("Accept", CONTENT_TYPE);
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let json = self.finish(&format!("id {id}"), req.call())?;
        json.get("schema")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| self.protocol(format!("no schema in {json}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_off_and_decoded() {
        let (u, c) = split_credentials("https://key:s%40cret@reg.example:8081/").unwrap();
        assert_eq!(u, "https://reg.example:8081");
        assert_eq!(c, Some(("key".into(), "s@cret".into())));
        let (u, c) = split_credentials("http://127.0.0.1:8081").unwrap();
        assert_eq!((u.as_str(), c), ("http://127.0.0.1:8081", None));
        assert!(split_credentials("127.0.0.1:8081").is_err());
        assert!(split_credentials("ftp://x").is_err());
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"key:secret"), "a2V5OnNlY3JldA==");
    }

    #[test]
    fn closed_port_is_unreachable_not_rejected() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = RegistryClient::new(
            &format!("http://u:pw@127.0.0.1:{port}"),
            Duration::from_secs(2),
        )
        .unwrap();
        let e = c.register("t-value", "\"string\"").unwrap_err();
        assert!(matches!(e, RegistryError::Unreachable { .. }), "{e}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}
