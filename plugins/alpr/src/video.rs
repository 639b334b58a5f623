// SPDX-License-Identifier: MIT OR Apache-2.0
//! Bridges mapped GStreamer video frames to the pre-processor's [`FrameView`].

use gst_video::prelude::*;
use gst_video::{VideoColorMatrix, VideoColorRange, VideoFormat};

use crate::alprdetect::preprocess::{FrameView, Layout, YuvMatrix};

/// Raw formats the pre-processor reads directly.
pub const FORMATS: [VideoFormat; 14] = [
    VideoFormat::Rgb,
    VideoFormat::Bgr,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
    VideoFormat::Argb,
    VideoFormat::Abgr,
    VideoFormat::Xrgb,
    VideoFormat::Xbgr,
    VideoFormat::I420,
    VideoFormat::Yv12,
    VideoFormat::Nv12,
    VideoFormat::Nv21,
];

/// Caps of the raw formats the pre-processor reads.
pub fn caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(FORMATS)
        .build()
}

/// The always `src` and `sink` pads of an in-place analyser with `caps` on both.
pub fn analyser_pad_templates(caps: &gst::Caps) -> Vec<gst::PadTemplate> {
    [gst::PadDirection::Src, gst::PadDirection::Sink]
        .into_iter()
        .map(|dir| {
            let name = if dir == gst::PadDirection::Src {
                "src"
            } else {
                "sink"
            };
            gst::PadTemplate::new(name, dir, gst::PadPresence::Always, caps)
                .expect("valid pad template")
        })
        .collect()
}

/// Memory layout and colour matrix of a negotiated format; `None` if not supported.
pub fn layout_of(info: &gst_video::VideoInfo) -> Option<(Layout, YuvMatrix)> {
    let packed = |r, g, b, bpp| Layout::Packed { r, g, b, bpp };
    let layout = match info.format() {
        VideoFormat::Rgb => packed(0, 1, 2, 3),
        VideoFormat::Bgr => packed(2, 1, 0, 3),
        VideoFormat::Rgba | VideoFormat::Rgbx => packed(0, 1, 2, 4),
        VideoFormat::Bgra | VideoFormat::Bgrx => packed(2, 1, 0, 4),
        VideoFormat::Argb | VideoFormat::Xrgb => packed(1, 2, 3, 4),
        VideoFormat::Abgr | VideoFormat::Xbgr => packed(3, 2, 1, 4),
        VideoFormat::I420 | VideoFormat::Yv12 => Layout::Planar420,
        VideoFormat::Nv12 => Layout::SemiPlanar420 { u_first: true },
        VideoFormat::Nv21 => Layout::SemiPlanar420 { u_first: false },
        _ => return None,
    };
    let colorimetry = info.colorimetry();
    let (kr, kb) = match colorimetry.matrix() {
        VideoColorMatrix::Bt709 => (0.2126, 0.0722),
        VideoColorMatrix::Bt2020 => (0.2627, 0.0593),
        VideoColorMatrix::Smpte240m => (0.212, 0.087),
        VideoColorMatrix::Fcc => (0.30, 0.11),
        _ => (0.299, 0.114),
    };
    let full = colorimetry.range() == VideoColorRange::Range0_255;
    Some((layout, YuvMatrix::new(kr, kb, full)))
}

/// A view of a mapped frame (`layout`/`matrix` from [`layout_of`] on the same info).
pub fn frame_view<'a>(
    vframe: &'a gst_video::VideoFrameRef<&'a gst::BufferRef>,
    layout: Layout,
    matrix: YuvMatrix,
) -> FrameView<'a> {
    let plane = |i: u32| vframe.plane_data(i).unwrap_or(&[]);
    let strides = vframe.plane_stride();
    let stride = |i: usize| strides.get(i).copied().unwrap_or(0).max(0) as usize;
    let (planes, strides) = match vframe.format() {
        // YV12 stores V before U.
        VideoFormat::Yv12 => (
            [plane(0), plane(2), plane(1)],
            [stride(0), stride(2), stride(1)],
        ),
        _ => (
            [plane(0), plane(1), plane(2)],
            [stride(0), stride(1), stride(2)],
        ),
    };
    FrameView {
        layout,
        width: vframe.width() as usize,
        height: vframe.height() as usize,
        planes,
        strides,
        matrix,
    }
}
