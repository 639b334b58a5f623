// SPDX-License-Identifier: MIT OR Apache-2.0
//! The unit tests of alpr-eval's drive-by scorer (`examples/common/driveby.rs`, pure Rust): the
//! module is compiled here so that `cargo test` runs its `#[cfg(test)]` tests.

#[allow(dead_code)]
#[path = "../examples/common/driveby.rs"]
mod driveby;
