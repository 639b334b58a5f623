// SPDX-License-Identifier: MIT OR Apache-2.0
//! S3 test support: the s3s-fs server as a real process (SigV4 checked, a bucket is a directory
//! of its data dir, data survives SIGKILL), a read-back client, and events with crops.
#![allow(dead_code)]

#[path = "net.rs"]
mod net;
#[allow(unused_imports)]
pub use net::{free_port, server_bin, wait_for};

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use gstalpr::event::PlateEvent;
use gstalpr::meta::BBox;

pub const ACCESS_KEY: &str = "alpr-test";
pub const SECRET_KEY: &str = "alpr-test-secret-key";

/// `$ALPR_S3S_FS`, `../shared/bin/s3s-fs` or the cargo-install cache of scripts/lib.sh.
pub fn s3s_fs_bin() -> PathBuf {
    server_bin("ALPR_S3S_FS", "s3s-fs", "the s3s-fs S3 server")
}

/// An s3s-fs server on 127.0.0.1; `data` holds one directory per bucket.
pub struct S3sFs {
    pub port: u16,
    pub data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl S3sFs {
    /// Starts a server whose data dir already has `buckets`.
    pub fn start(dir: &Path, port: u16, buckets: &[&str]) -> S3sFs {
        let data = dir.join("data");
        for b in buckets {
            std::fs::create_dir_all(data.join(b)).unwrap();
        }
        std::fs::create_dir_all(&data).unwrap();
        let mut s = S3sFs {
            port,
            data,
            log: dir.join("s3s-fs.log"),
            child: None,
        };
        s.restart();
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "s3s-fs already running");
        let (port, data) = (self.port.to_string(), self.data.clone());
        self.child = Some(net::spawn_listening("s3s-fs", self.port, &self.log, || {
            let mut c = Command::new(s3s_fs_bin());
            c.args(["--host", "127.0.0.1", "--port", &port])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&data);
            c
        }));
    }

    /// SIGKILL: the outage of a crashed server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The stored object, read from the server's data dir.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.data.join(bucket).join(key)).ok()
    }

    /// An object_store client for this server (to read back through the S3 API).
    pub fn client(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .unwrap()
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plate event whose image key is rendered from the default template.
pub fn plate_event(camera: &str, seq: u64) -> PlateEvent {
    let mut e = PlateEvent {
        event_id: gstalpr::event::new_event_id(),
        camera_id: camera.to_string(),
        track_id: seq,
        plate_text: format!("AB{seq:04}"),
        plate_confidence: 0.9,
        reads: 3,
        first_seen_ms: 1_764_201_600_000 + seq as i64 * 1000,
        last_seen_ms: 1_764_201_600_500 + seq as i64 * 1000,
        frame_number: 100 + seq,
        plate_bbox: BBox::new(10.0, 20.0, 60.0, 18.0),
        quality: 0.5 + (seq % 50) as f32 / 100.0,
        source: "test/pipeline".into(),
        ..Default::default()
    };
    e.image_key = gstalpr::event::render_key(gstalpr::event::DEFAULT_KEY_TEMPLATE, &e).unwrap();
    e
}

/// Deterministic pseudo-JPEG bytes of `len` (the sink never decodes them).
pub fn crop_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    while v.len() < len.saturating_sub(2) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

/// A buffer carrying `events`, each with its crop.
pub fn buffer_with_crops(events: &[(PlateEvent, Vec<u8>)]) -> gst::Buffer {
    let mut buf = gst::Buffer::new();
    {
        let b = buf.get_mut().unwrap();
        let with: Vec<_> = events
            .iter()
            .map(|(e, c)| (e.clone(), Some(gst::Buffer::from_mut_slice(c.clone()))))
            .collect();
        gstalpr::event::attach(b, &with).unwrap();
    }
    buf
}

/// `n` events over three cameras, with crops of about `size` bytes.
pub fn events_with_crops(n: u64, size: usize) -> Vec<(PlateEvent, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let e = plate_event(["gate-a", "gate-b", "gate-c"][(i % 3) as usize], i);
            (e, crop_bytes(i, size + (i as usize % 7) * 100))
        })
        .collect()
}
