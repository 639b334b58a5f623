// SPDX-License-Identifier: MIT OR Apache-2.0
//! `s3sink`: saves every plate crop (the JPEG of each `alpr-events` event) under a local
//! directory, then uploads it to S3 / MinIO or any object_store URL through a durable upload
//! queue, so that neither an outage nor a killed process loses an accepted crop.

use gst::glib;
use gst::prelude::*;

pub mod client;
mod imp;
pub mod queue;
pub mod sigv4;
mod worker;

glib::wrapper! {
    pub struct S3Sink(ObjectSubclass<imp::S3Sink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    crate::sink::Overflow::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    crate::link::LinkStatus::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "s3sink",
        gst::Rank::NONE,
        S3Sink::static_type(),
    )
}

/// Checks an S3 bucket name (3-63 of a-z 0-9 . -, starting and ending alphanumeric).
pub fn validate_bucket(b: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{b:?} is not a valid bucket name (3-63 characters of a-z 0-9 . -, starting and \
             ending with a letter or digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        assert!(validate_bucket("alpr-crops").is_ok());
        assert!(validate_bucket("a.b.c").is_ok());
        for bad in ["ab", "Crops", "-crops", "crops-", "cr_ops", ""] {
            assert!(validate_bucket(bad).is_err(), "{bad}");
        }
    }
}
