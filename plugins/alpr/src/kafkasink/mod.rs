// SPDX-License-Identifier: MIT OR Apache-2.0
//! `kafkasink`: delivers plate and vehicle-track events and watchlist alerts to Kafka (Avro, Confluent wire format)
//! through a durable local outbox, so that neither a broker outage nor a killed process loses an
//! accepted event.

use gst::glib;
use gst::prelude::*;

pub mod alerts;
pub mod avro;
mod imp;
pub mod outbox;
pub mod registry;
mod worker;

/// What the outbox does when full (property `outbox-overflow`): the sinks' one policy enum.
pub use crate::sink::Overflow as OutboxOverflow;

glib::wrapper! {
    pub struct KafkaSink(ObjectSubclass<imp::KafkaSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::sink::Overflow::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    crate::link::LinkStatus::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "kafkasink",
        gst::Rank::NONE,
        KafkaSink::static_type(),
    )
}

/// Checks a bootstrap list (`host:port[,host:port...]`, each optionally `PROTOCOL://host:port`).
/// The error names the offending entry.
pub fn validate_brokers(list: &str) -> Result<(), String> {
    if list.trim().is_empty() {
        return Err("empty broker list: expected host:port[,host:port...]".into());
    }
    for entry in list.split(',') {
        let e = entry.trim();
        let hostport = e.split_once("://").map(|(_, r)| r).unwrap_or(e);
        let bad = || {
            format!(
                "`{e}` is not host:port (expected host:port[,host:port...], e.g. 127.0.0.1:9092)"
            )
        };
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:".contains(c));
        match port.parse::<u16>() {
            Ok(p) if p > 0 && host_ok => {}
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// librdkafka settings whose values are secrets: never logged, read back as `*****`.
pub fn is_secret_setting(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "oauthbearer.config",
        "token",
        "key.pem",
        "credentials",
    ]
    .iter()
    .any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_lists() {
        assert!(validate_brokers("127.0.0.1:9092").is_ok());
        assert!(validate_brokers("a.example:9092, b.example:9093").is_ok());
        assert!(validate_brokers("SSL://kafka:9093").is_ok());
        assert!(validate_brokers("[::1]:9092").is_ok());
        let e = validate_brokers("127.0.0.1:9092,localhost").unwrap_err();
        assert!(e.contains("`localhost`"), "{e}");
        assert!(validate_brokers("host:notaport").is_err());
        assert!(validate_brokers("host:0").is_err());
        assert!(validate_brokers("").is_err());
        assert!(validate_brokers("a b:1").is_err());
    }

    #[test]
    fn secret_settings() {
        assert!(is_secret_setting("sasl.password"));
        assert!(is_secret_setting("ssl.key.password"));
        assert!(is_secret_setting("ssl.key.pem"));
        assert!(is_secret_setting("sasl.oauthbearer.client.secret"));
        assert!(!is_secret_setting("security.protocol"));
        assert!(!is_secret_setting("sasl.username"));
    }
}
