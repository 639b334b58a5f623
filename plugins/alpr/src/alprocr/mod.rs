// SPDX-License-Identifier: MIT OR Apache-2.0
//! Plate reading: the OCR model's conventions and per-track voting (pure logic, no GStreamer).

pub mod ocrmodel;
pub mod vote;
