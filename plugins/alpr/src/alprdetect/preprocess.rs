// SPDX-License-Identifier: MIT OR Apache-2.0
//! Building a model's input tensor straight from a raw video frame, in one pass.
//!
//! For every pixel of the letterboxed model input we bilinearly sample the source region (the
//! whole frame or a vehicle box) in its own pixel format, convert to RGB and normalise, writing
//! planar f32. Nothing is converted or copied at frame size first: the cost is proportional to
//! the model input (416x416), not to the frame.

use crate::meta::BBox;

/// An integer source rectangle `(x, y, width, height)` in frame pixels.
pub type SrcRect = (usize, usize, usize, usize);

/// Channel order and value scale a model expects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    pub width: usize,
    pub height: usize,
    /// Planes in B, G, R order instead of R, G, B.
    pub bgr: bool,
    /// Multiplier applied to 0..255 values (1.0 or 1/255).
    pub scale: f32,
    /// Letterbox placement: centred (ultralytics style) or top-left (YOLOX style).
    pub centered: bool,
    /// Value of the padding, in 0..255 units (before `scale`).
    pub pad: f32,
}

/// How a letterboxed model input maps back to frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Scale from source pixels to model pixels.
    pub ratio: f32,
    pub offset_x: f32,
    pub offset_y: f32,
    /// Top-left of the source region in frame pixels.
    pub origin_x: f32,
    pub origin_y: f32,
    /// Size of the scaled image inside the model input (the rest is padding).
    pub content_w: usize,
    pub content_h: usize,
}

impl Letterbox {
    /// Maps a box in model-input pixels back to frame pixels.
    pub fn to_frame(&self, b: BBox) -> BBox {
        BBox::new(
            (b.x - self.offset_x) / self.ratio + self.origin_x,
            (b.y - self.offset_y) / self.ratio + self.origin_y,
            b.w / self.ratio,
            b.h / self.ratio,
        )
    }
}

/// Y'CbCr to R'G'B' conversion for one colour matrix and range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuvMatrix {
    y_off: f32,
    y_mul: f32,
    c_mul: f32,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
}

impl YuvMatrix {
    /// `kr`, `kb`: luma coefficients (BT.601: 0.299/0.114, BT.709: 0.2126/0.0722).
    pub fn new(kr: f32, kb: f32, full_range: bool) -> Self {
        let kg = 1.0 - kr - kb;
        let (y_off, y_mul, c_mul) = if full_range {
            (0.0, 1.0, 1.0)
        } else {
            (16.0, 255.0 / 219.0, 255.0 / 224.0)
        };
        YuvMatrix {
            y_off,
            y_mul,
            c_mul,
            rv: 2.0 * (1.0 - kr),
            gu: -2.0 * kb * (1.0 - kb) / kg,
            gv: -2.0 * kr * (1.0 - kr) / kg,
            bu: 2.0 * (1.0 - kb),
        }
    }

    pub fn bt601_limited() -> Self {
        Self::new(0.299, 0.114, false)
    }

    #[inline(always)]
    fn to_rgb(self, y: f32, u: f32, v: f32) -> [f32; 3] {
        let y = (y - self.y_off) * self.y_mul;
        let u = (u - 128.0) * self.c_mul;
        let v = (v - 128.0) * self.c_mul;
        [
            (y + self.rv * v).clamp(0.0, 255.0),
            (y + self.gu * u + self.gv * v).clamp(0.0, 255.0),
            (y + self.bu * u).clamp(0.0, 255.0),
        ]
    }
}

/// Memory layout of a supported raw format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Packed 8-bit RGB family: byte offsets of R, G, B within a pixel and bytes per pixel.
    Packed { r: u8, g: u8, b: u8, bpp: u8 },
    /// Three planes Y, U, V, chroma halved both ways (I420; YV12 with planes swapped by caller).
    Planar420,
    /// Y plane + interleaved chroma plane, halved both ways; `u_first` false for NV21.
    SemiPlanar420 { u_first: bool },
}

/// A read-only view of a mapped frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    pub layout: Layout,
    pub width: usize,
    pub height: usize,
    /// Planes in Y, U, V order for planar formats (the caller swaps YV12's).
    pub planes: [&'a [u8]; 3],
    pub strides: [usize; 3],
    pub matrix: YuvMatrix,
}

/// Per-output-coordinate sampling positions for one axis (reused between frames).
#[derive(Debug, Default, Clone)]
struct Axis {
    i0: Vec<u32>,
    i1: Vec<u32>,
    f: Vec<f32>,
}

impl Axis {
    /// Source positions for `n` outputs covering `len` source pixels starting at `start`,
    /// with OpenCV's half-pixel convention (`cv2.resize`, INTER_LINEAR) and edge clamping.
    fn fill(&mut self, n: usize, start: usize, len: usize) {
        self.i0.clear();
        self.i1.clear();
        self.f.clear();
        let scale = len as f32 / n as f32;
        let last = (start + len - 1) as f32;
        for d in 0..n {
            let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0) + start as f32;
            let s = s.min(last);
            let i0 = s.floor();
            let f = s - i0;
            let i0 = i0 as u32;
            let i1 = (i0 + 1).min(last as u32);
            self.i0.push(i0);
            self.i1.push(i1);
            self.f.push(f);
        }
    }
}

/// Reusable pre-processor: owns the sampling tables so a frame allocates nothing.
#[derive(Debug, Default)]
pub struct Preprocessor {
    xs: Axis,
    ys: Axis,
    cx: Axis,
    cy: Axis,
}

#[inline(always)]
fn lerp(a: f32, b: f32, f: f32) -> f32 {
    a + (b - a) * f
}

impl Preprocessor {
    /// Fills `out` (planar `3 x spec.height x spec.width`) with the letterboxed `roi` of `frame`.
    ///
    /// `roi` is clipped to the frame; it must keep at least one pixel in each direction.
    pub fn fill(
        &mut self,
        frame: &FrameView<'_>,
        roi: BBox,
        spec: &InputSpec,
        out: &mut [f32],
    ) -> Option<Letterbox> {
        let plane = spec.width * spec.height;
        assert_eq!(out.len(), 3 * plane, "tensor buffer size");
        let roi = roi.clip(frame.width as u32, frame.height as u32);
        let x0 = roi.x.floor() as usize;
        let y0 = roi.y.floor() as usize;
        let x1 = (roi.x2().ceil() as usize).min(frame.width);
        let y1 = (roi.y2().ceil() as usize).min(frame.height);
        if x1 <= x0 || y1 <= y0 {
            return None;
        }
        let (rw, rh) = (x1 - x0, y1 - y0);
        let ratio = (spec.width as f32 / rw as f32).min(spec.height as f32 / rh as f32);
        let nw = ((rw as f32 * ratio).round() as usize).clamp(1, spec.width);
        let nh = ((rh as f32 * ratio).round() as usize).clamp(1, spec.height);
        let (ox, oy) = if spec.centered {
            let dw = (spec.width - nw) as f32 / 2.0;
            let dh = (spec.height - nh) as f32 / 2.0;
            (
                (dw - 0.1).round().max(0.0) as usize,
                (dh - 0.1).round().max(0.0) as usize,
            )
        } else {
            (0, 0)
        };

        // Padding only where the content does not go: the content is written next.
        let pad = spec.pad * spec.scale;
        for plane_out in out.chunks_exact_mut(plane) {
            for (y, row) in plane_out.chunks_exact_mut(spec.width).enumerate() {
                if (oy..oy + nh).contains(&y) {
                    row[..ox].fill(pad);
                    row[ox + nw..].fill(pad);
                } else {
                    row.fill(pad);
                }
            }
        }
        let scale = spec.scale;
        let (p0, rest) = out.split_at_mut(plane);
        let (p1, p2) = rest.split_at_mut(plane);
        let (r_out, g_out, b_out) = if spec.bgr { (p2, p1, p0) } else { (p0, p1, p2) };
        let width = spec.width;
        self.sample(frame, (x0, y0, rw, rh), (nw, nh), |dx, dy, [r, g, b]| {
            let i = (dy + oy) * width + ox + dx;
            r_out[i] = r * scale;
            g_out[i] = g * scale;
            b_out[i] = b * scale;
        });

        Some(Letterbox {
            ratio,
            offset_x: ox as f32,
            offset_y: oy as f32,
            origin_x: x0 as f32,
            origin_y: y0 as f32,
            content_w: nw,
            content_h: nh,
        })
    }

    /// Renders `roi` of `frame` as packed 8-bit RGB at its own size (no letterbox), scaled down
    /// to fit `max_side` pixels if larger. Used for plate crops (OCR input, event JPEGs).
    /// Returns the width, height and the integer source rectangle `(x, y, w, h)`.
    pub fn crop_rgb(
        &mut self,
        frame: &FrameView<'_>,
        roi: BBox,
        max_side: usize,
        out: &mut Vec<u8>,
    ) -> Option<(usize, usize, SrcRect)> {
        let roi = roi.clip(frame.width as u32, frame.height as u32);
        if !roi.is_finite() {
            return None;
        }
        let x0 = roi.x.floor() as usize;
        let y0 = roi.y.floor() as usize;
        let x1 = (roi.x2().ceil() as usize).min(frame.width);
        let y1 = (roi.y2().ceil() as usize).min(frame.height);
        if x1 <= x0 || y1 <= y0 {
            return None;
        }
        let (rw, rh) = (x1 - x0, y1 - y0);
        let k = (max_side.max(1) as f32 / rw.max(rh) as f32).min(1.0);
        let nw = ((rw as f32 * k).round() as usize).max(1);
        let nh = ((rh as f32 * k).round() as usize).max(1);
        out.clear();
        out.resize(nw * nh * 3, 0);
        self.sample(frame, (x0, y0, rw, rh), (nw, nh), |dx, dy, [r, g, b]| {
            let i = (dy * nw + dx) * 3;
            out[i] = (r + 0.5) as u8;
            out[i + 1] = (g + 0.5) as u8;
            out[i + 2] = (b + 0.5) as u8;
        });
        Some((nw, nh, (x0, y0, rw, rh)))
    }

    /// Bilinearly samples the source rectangle `(x0, y0, rw, rh)` onto an `nw x nh` grid and
    /// hands each output pixel's RGB (0..255, unrounded) to `put(dx, dy, rgb)`.
    fn sample(
        &mut self,
        frame: &FrameView<'_>,
        (x0, y0, rw, rh): (usize, usize, usize, usize),
        (nw, nh): (usize, usize),
        mut put: impl FnMut(usize, usize, [f32; 3]),
    ) {
        self.xs.fill(nw, x0, rw);
        self.ys.fill(nh, y0, rh);
        if !matches!(frame.layout, Layout::Packed { .. }) {
            // Chroma sample positions: centre-sited 4:2:0 (MPEG-1/JPEG), the common case.
            let cw = frame.width.div_ceil(2);
            let ch = frame.height.div_ceil(2);
            fill_chroma_axis(&mut self.cx, nw, x0, rw, cw);
            fill_chroma_axis(&mut self.cy, nh, y0, rh, ch);
        }
        for dy in 0..nh {
            let (sy0, sy1, fy) = (
                self.ys.i0[dy] as usize,
                self.ys.i1[dy] as usize,
                self.ys.f[dy],
            );
            match frame.layout {
                Layout::Packed { r, g, b, bpp } => {
                    let st = frame.strides[0];
                    let row0 = &frame.planes[0][sy0 * st..];
                    let row1 = &frame.planes[0][sy1 * st..];
                    let (r, g, b, bpp) = (r as usize, g as usize, b as usize, bpp as usize);
                    for dx in 0..nw {
                        let a = self.xs.i0[dx] as usize * bpp;
                        let c = self.xs.i1[dx] as usize * bpp;
                        let fx = self.xs.f[dx];
                        let sample = |o: usize| {
                            let top = lerp(row0[a + o] as f32, row0[c + o] as f32, fx);
                            let bot = lerp(row1[a + o] as f32, row1[c + o] as f32, fx);
                            lerp(top, bot, fy)
                        };
                        put(dx, dy, [sample(r), sample(g), sample(b)]);
                    }
                }
                Layout::Planar420 | Layout::SemiPlanar420 { .. } => {
                    let sty = frame.strides[0];
                    let y_row0 = &frame.planes[0][sy0 * sty..];
                    let y_row1 = &frame.planes[0][sy1 * sty..];
                    let (cy0, cy1, fcy) = (
                        self.cy.i0[dy] as usize,
                        self.cy.i1[dy] as usize,
                        self.cy.f[dy],
                    );
                    // This row's chroma rows, and where U and V sit in them, chosen once per
                    // row rather than per pixel.
                    let (u_rows, v_rows, step, ou, ov) = match frame.layout {
                        Layout::SemiPlanar420 { u_first } => {
                            let s = frame.strides[1];
                            let rows = (&frame.planes[1][cy0 * s..], &frame.planes[1][cy1 * s..]);
                            let (ou, ov) = if u_first { (0, 1) } else { (1, 0) };
                            (rows, rows, 2, ou, ov)
                        }
                        _ => {
                            let (su, sv) = (frame.strides[1], frame.strides[2]);
                            (
                                (&frame.planes[1][cy0 * su..], &frame.planes[1][cy1 * su..]),
                                (&frame.planes[2][cy0 * sv..], &frame.planes[2][cy1 * sv..]),
                                1,
                                0,
                                0,
                            )
                        }
                    };
                    let chroma = |rows: (&[u8], &[u8]), a: usize, c: usize, fx: f32| {
                        lerp(
                            lerp(rows.0[a] as f32, rows.0[c] as f32, fx),
                            lerp(rows.1[a] as f32, rows.1[c] as f32, fx),
                            fcy,
                        )
                    };
                    let matrix = frame.matrix;
                    let luma = self.xs.i0.iter().zip(&self.xs.i1).zip(&self.xs.f);
                    let chroma_taps = self.cx.i0.iter().zip(&self.cx.i1).zip(&self.cx.f);
                    for (dx, (((&a, &c), &fx), ((&ca, &cc), &fcx))) in
                        luma.zip(chroma_taps).take(nw).enumerate()
                    {
                        let (a, c) = (a as usize, c as usize);
                        let yv = lerp(
                            lerp(y_row0[a] as f32, y_row0[c] as f32, fx),
                            lerp(y_row1[a] as f32, y_row1[c] as f32, fx),
                            fy,
                        );
                        let (ca, cc) = (ca as usize * step, cc as usize * step);
                        let u = chroma(u_rows, ca + ou, cc + ou, fcx);
                        let v = chroma(v_rows, ca + ov, cc + ov, fcx);
                        put(dx, dy, matrix.to_rgb(yv, u, v));
                    }
                }
            }
        }
    }

    /// Builds the input of a second model from one already filled for the same region and input
    /// size: the scaled pixels are the same, only channel order, value scale and placement
    /// differ. This saves a second resampling of the frame (vehicle and plate full-frame passes).
    /// Returns `None` when the input sizes differ.
    pub fn derive(
        src: &[f32],
        src_spec: &InputSpec,
        src_lb: &Letterbox,
        spec: &InputSpec,
        out: &mut [f32],
    ) -> Option<Letterbox> {
        if (src_spec.width, src_spec.height) != (spec.width, spec.height) {
            return None;
        }
        let (w, h) = (spec.width, spec.height);
        let plane = w * h;
        let (nw, nh) = (src_lb.content_w, src_lb.content_h);
        let (ox, oy) = if spec.centered {
            let dw = (w - nw) as f32 / 2.0;
            let dh = (h - nh) as f32 / 2.0;
            (
                (dw - 0.1).round().max(0.0) as usize,
                (dh - 0.1).round().max(0.0) as usize,
            )
        } else {
            (0, 0)
        };
        let (sox, soy) = (src_lb.offset_x as usize, src_lb.offset_y as usize);
        let k = spec.scale / src_spec.scale;
        out.fill(spec.pad * spec.scale);
        for c in 0..3 {
            // Channel c of the output in RGB terms lives in plane `rgb_plane(c)` of each tensor.
            let sp = if src_spec.bgr { 2 - c } else { c };
            let dp = if spec.bgr { 2 - c } else { c };
            for y in 0..nh {
                let s0 = sp * plane + (y + soy) * w + sox;
                let d0 = dp * plane + (y + oy) * w + ox;
                for (d, s) in out[d0..d0 + nw].iter_mut().zip(&src[s0..s0 + nw]) {
                    *d = *s * k;
                }
            }
        }
        Some(Letterbox {
            offset_x: ox as f32,
            offset_y: oy as f32,
            ..*src_lb
        })
    }
}

/// Chroma positions for luma-domain outputs: a luma coordinate `s` sits at chroma `(s+0.5)/2-0.5`.
fn fill_chroma_axis(axis: &mut Axis, n: usize, start: usize, len: usize, clen: usize) {
    axis.i0.clear();
    axis.i1.clear();
    axis.f.clear();
    let scale = len as f32 / n as f32;
    let last = (clen - 1) as f32;
    for d in 0..n {
        let s = ((d as f32 + 0.5) * scale - 0.5).max(0.0) + start as f32;
        let c = ((s + 0.5) / 2.0 - 0.5).clamp(0.0, last);
        let i0 = c.floor();
        axis.f.push(c - i0);
        let i0 = i0 as u32;
        axis.i0.push(i0);
        axis.i1.push((i0 + 1).min(last as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(w: usize, h: usize, centered: bool) -> InputSpec {
        InputSpec {
            width: w,
            height: h,
            bgr: false,
            scale: 1.0,
            centered,
            pad: 114.0,
        }
    }

    #[test]
    fn identity_size_copies_pixels_and_maps_back() {
        // 4x2 RGB frame, model input 4x4: ratio 1, letterbox pads the bottom rows (top-left).
        let data: Vec<u8> = (0..4 * 2 * 3).map(|i| i as u8).collect();
        let frame = FrameView {
            layout: Layout::Packed {
                r: 0,
                g: 1,
                b: 2,
                bpp: 3,
            },
            width: 4,
            height: 2,
            planes: [&data, &[], &[]],
            strides: [12, 0, 0],
            matrix: YuvMatrix::bt601_limited(),
        };
        let mut out = vec![0.0; 3 * 16];
        let lb = Preprocessor::default()
            .fill(
                &frame,
                BBox::new(0.0, 0.0, 4.0, 2.0),
                &spec(4, 4, false),
                &mut out,
            )
            .unwrap();
        assert_eq!(lb.ratio, 1.0);
        assert_eq!(out[0], 0.0); // R of pixel (0,0)
        assert_eq!(out[16 + 1], 4.0); // G of pixel (1,0)
        assert_eq!(out[32 + 4], 14.0); // B of pixel (0,1)
        assert_eq!(out[8], 114.0); // padding row
        let b = lb.to_frame(BBox::new(1.0, 1.0, 2.0, 1.0));
        assert_eq!(b, BBox::new(1.0, 1.0, 2.0, 1.0));
    }

    #[test]
    fn centred_letterbox_offsets_and_roi_origin() {
        let data = vec![200u8; 100 * 50 * 4];
        let frame = FrameView {
            layout: Layout::Packed {
                r: 2,
                g: 1,
                b: 0,
                bpp: 4,
            },
            width: 100,
            height: 50,
            planes: [&data, &[], &[]],
            strides: [400, 0, 0],
            matrix: YuvMatrix::bt601_limited(),
        };
        let mut out = vec![0.0; 3 * 20 * 20];
        let lb = Preprocessor::default()
            .fill(
                &frame,
                BBox::new(10.0, 10.0, 40.0, 20.0),
                &spec(20, 20, true),
                &mut out,
            )
            .unwrap();
        assert!((lb.ratio - 0.5).abs() < 1e-6);
        assert_eq!(lb.offset_y, 5.0);
        assert_eq!((lb.origin_x, lb.origin_y), (10.0, 10.0));
        let b = lb.to_frame(BBox::new(0.0, 5.0, 20.0, 10.0));
        assert_eq!(b, BBox::new(10.0, 10.0, 40.0, 20.0));
        assert_eq!(out[20 * 10], 200.0);
        assert_eq!(out[0], 114.0);
    }

    #[test]
    fn yuv_grey_and_colour() {
        // Limited-range mid grey and pure red (BT.601: Y=81, U=90, V=240).
        let m = YuvMatrix::bt601_limited();
        let g = m.to_rgb(126.0, 128.0, 128.0);
        assert!((g[0] - 128.0).abs() < 1.0 && (g[1] - 128.0).abs() < 1.0);
        let r = m.to_rgb(81.0, 90.0, 240.0);
        assert!(r[0] > 250.0 && r[1] < 5.0 && r[2] < 5.0, "{r:?}");
    }

    #[test]
    fn derived_input_equals_a_direct_fill() {
        let data: Vec<u8> = (0..64 * 40 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let frame = FrameView {
            layout: Layout::Packed {
                r: 0,
                g: 1,
                b: 2,
                bpp: 3,
            },
            width: 64,
            height: 40,
            planes: [&data, &[], &[]],
            strides: [64 * 3, 0, 0],
            matrix: YuvMatrix::bt601_limited(),
        };
        let roi = BBox::new(0.0, 0.0, 64.0, 40.0);
        let yolox = InputSpec {
            width: 32,
            height: 32,
            bgr: true,
            scale: 1.0,
            centered: false,
            pad: 114.0,
        };
        let yolo9 = InputSpec {
            bgr: false,
            scale: 1.0 / 255.0,
            centered: true,
            ..yolox
        };
        let mut p = Preprocessor::default();
        let mut a = vec![0.0; 3 * 32 * 32];
        let lb_a = p.fill(&frame, roi, &yolox, &mut a).unwrap();
        let mut direct = vec![0.0; 3 * 32 * 32];
        let lb_direct = p.fill(&frame, roi, &yolo9, &mut direct).unwrap();
        let mut derived = vec![0.0; 3 * 32 * 32];
        let lb = Preprocessor::derive(&a, &yolox, &lb_a, &yolo9, &mut derived).unwrap();
        assert_eq!(lb, lb_direct);
        let worst = direct
            .iter()
            .zip(&derived)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "worst difference {worst}");
        let other_size = InputSpec { width: 16, ..yolo9 };
        assert!(Preprocessor::derive(&a, &yolox, &lb_a, &other_size, &mut derived).is_none());
    }

    #[test]
    fn empty_roi_is_rejected() {
        let data = vec![0u8; 12];
        let frame = FrameView {
            layout: Layout::Packed {
                r: 0,
                g: 1,
                b: 2,
                bpp: 3,
            },
            width: 2,
            height: 2,
            planes: [&data, &[], &[]],
            strides: [6, 0, 0],
            matrix: YuvMatrix::bt601_limited(),
        };
        let mut out = vec![0.0; 3 * 4];
        let mut p = Preprocessor::default();
        assert!(
            p.fill(
                &frame,
                BBox::new(5.0, 5.0, 3.0, 3.0),
                &spec(2, 2, false),
                &mut out
            )
            .is_none()
        );
        assert!(
            p.fill(
                &frame,
                BBox::new(0.0, 0.0, 0.0, 1.0),
                &spec(2, 2, false),
                &mut out
            )
            .is_none()
        );
    }
}
