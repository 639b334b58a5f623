// SPDX-License-Identifier: MIT OR Apache-2.0
//! `alprtrack`: ByteTrack multi-object tracking over the alpr-frame metadata.

pub mod bytetrack;
mod lap;
