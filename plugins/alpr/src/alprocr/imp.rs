// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::engine::OcrEngine;
use super::ocrmodel::{self, RgbView};
use super::settings::Settings;
use super::tracks::{
    Crop, Emission, Extras, MergeConfig, Observation, Tracks, Unread, VehicleInfo,
};
use super::vehicles::VehicleTracks;
use super::vote::VoteRead;
use crate::alprdetect::preprocess::{Layout, Preprocessor, YuvMatrix};
use crate::event::{self, EventImages, PlateEvent, VehicleTrackEvent};
use crate::meta::Settled;
use crate::meta::{AlprFrame, BBox, ObjectKind};
use crate::models;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "alprocr",
        gst::DebugColorFlags::empty(),
        Some("ALPR plate reader"),
    )
});

/// Crops larger than this (pixels, longest side) are scaled down before OCR and JPEG encoding.
const MAX_CROP_SIDE: usize = 320;
/// Reads below this confidence do not count against `settle-unread`: plates too small or too
/// blurred to read give reads of 0.1-0.3 (roundabout.mp4: 90% under 0.23), readable ones about
/// 1.0 (the EU slideshow: 96% at 0.7 or more).
const PROMISING_READ: f32 = 0.5;

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    plates: u64,
    reads: u64,
    events: u64,
    ocr_batches: u64,
    ocr_time: std::time::Duration,
}

struct State {
    engine: OcrEngine,
    tracks: Tracks,
    settings: Settings,
    source: String,
    layout: Option<(Layout, YuvMatrix)>,
    info: Option<gst_video::VideoInfo>,
    pre: Preprocessor,
    crop: Vec<u8>,
    /// The last frame's memories and timestamp (references, not copies): the events decided at
    /// EOS ride on a buffer made of them.
    last_memories: Vec<gst::Memory>,
    last_pts: Option<gst::ClockTime>,
    /// The last frame's video meta (format, size, plane offsets and strides), when it had one:
    /// padded layouts must travel with the memories.
    last_layout: Option<VideoLayout>,
    /// Events decided outside a buffer (tracks ended by an event), sent with the next buffer
    /// or at EOS.
    pending: Vec<(PlateEvent, EventImages)>,
    /// Vehicle tracks (with `vehicle-events`) and their finished events not yet sent.
    vehicles: VehicleTracks,
    pending_vehicles: Vec<VehicleTrackEvent>,
    counters: Counters,
    series: crate::metrics::ElementSeries,
    events_series: prometheus::IntCounter,
    /// The vehicles of the last frame whose plates are settled (reused), and whether the last
    /// event sent upstream named any.
    settled: Settled,
    settled_sent: bool,
    /// Vehicle tracks that got a promising read in the current frame (reused).
    read_tracks: Vec<u64>,
    /// Vehicle tracks searched in vain (`settle-unread`).
    unread: Unread,
}

#[derive(Debug, Clone, Copy)]
struct VideoLayout {
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    planes: usize,
    offset: [usize; 4],
    stride: [i32; 4],
}

impl VideoLayout {
    fn of(buf: &gst::BufferRef) -> Option<Self> {
        let m = buf.meta::<gst_video::VideoMeta>()?;
        let planes = (m.n_planes() as usize).min(4);
        let mut l = VideoLayout {
            format: m.format(),
            width: m.width(),
            height: m.height(),
            planes,
            offset: [0; 4],
            stride: [0; 4],
        };
        l.offset[..planes].copy_from_slice(&m.offset()[..planes]);
        l.stride[..planes].copy_from_slice(&m.stride()[..planes]);
        Some(l)
    }
}

#[derive(Default)]
pub struct AlprOcr {
    settings: Mutex<Settings>,
    reader: crate::meta::FrameReader,
    state: Mutex<Option<State>>,
}

fn default_source() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl AlprOcr {
    fn load(&self, settings: &Settings) -> Result<OcrEngine, gst::ErrorMessage> {
        let model = models::resolve(
            settings.ocr_model.as_deref(),
            "ocr-model",
            &[models::OCR_MODEL],
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("{e}")))?;
        // The config lives beside the model unless given.
        let config = match settings.ocr_config.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => models::resolve(Some(c), "ocr-config", &[]),
            None => models::sibling(&model, "cct_xs_v2_global_plate_config.yaml")
                .or_else(|| {
                    let stem = model.file_stem()?.to_string_lossy().to_string();
                    models::sibling(&model, &format!("{stem}_plate_config.yaml"))
                })
                .ok_or(())
                .or_else(|()| models::resolve(None, "ocr-config", &[models::OCR_CONFIG])),
        }
        .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("{e}")))?;
        crate::runtime::ensure().map_err(|e| gst::error_msg!(gst::LibraryError::Init, ("{e}")))?;
        let provider = settings.execution_provider;
        let (engine, fallback) = OcrEngine::load_on(&model, &config, settings.threads, provider)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("ocr-model: {e}")))?;
        if let Some(why) = fallback {
            // Not fatal: the models run, only slower.
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Init,
                (
                    "execution-provider={} is not available, running on the CPU: {why}",
                    provider.name()
                )
            );
        }
        gst::info!(
            CAT,
            imp = self,
            "OCR model {} with config {} ({} slots, {}x{} input, session shared by {} elements)",
            model.display(),
            config.display(),
            engine.cfg.max_plate_slots(),
            engine.cfg.img_width(),
            engine.cfg.img_height(),
            engine.session.users()
        );
        Ok(engine)
    }

    /// Fills id, camera, source and keys; encodes the crop (and the extra images) as JPEG.
    fn finalize(&self, state: &State, e: Emission) -> Option<(PlateEvent, EventImages)> {
        let mut ev = e.event;
        if ev.event_id.is_empty() {
            ev.event_id = event::new_event_id();
        }
        ev.camera_id = state.settings.camera_id.clone();
        ev.source = state.source.clone();
        ev.image_key = match event::render_key(&state.settings.key_template, &ev) {
            Ok(k) => k,
            Err(err) => {
                gst::element_imp_error!(self, gst::LibraryError::Settings, ("{err}"));
                return None;
            }
        };
        let quality = state.settings.jpeg_quality;
        let images = EventImages {
            crop: e.crop.and_then(|c| self.encode_jpeg(&c, quality)),
            vehicle: e.extras.vehicle.and_then(|c| self.encode_jpeg(&c, quality)),
            frame: e.extras.frame.and_then(|c| self.encode_jpeg(&c, quality)),
        };
        // A key is only named when its image exists: whoever follows it finds the object.
        if images.vehicle.is_some() {
            ev.vehicle_image_key = Some(event::extra_image_key(&ev.image_key, "vehicle"));
        }
        if images.frame.is_some() {
            ev.frame_image_key = Some(event::extra_image_key(&ev.image_key, "frame"));
        }
        Some((ev, images))
    }

    /// Fills id, camera and source of a vehicle-track event.
    fn finalize_vehicle(&self, state: &State, mut v: VehicleTrackEvent) -> VehicleTrackEvent {
        v.event_id = event::new_event_id();
        v.camera_id = state.settings.camera_id.clone();
        v.source = state.source.clone();
        v
    }

    fn encode_jpeg(&self, crop: &Crop, quality: u32) -> Option<gst::Buffer> {
        let mut out = Vec::new();
        let enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100) as u8);
        match enc.encode(
            &crop.rgb,
            crop.width as u16,
            crop.height as u16,
            jpeg_encoder::ColorType::Rgb,
        ) {
            Ok(()) => Some(gst::Buffer::from_mut_slice(out)),
            Err(e) => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "cannot encode a {}x{} crop: {e}",
                    crop.width,
                    crop.height
                );
                None
            }
        }
    }

    fn post_events(&self, events: &[(PlateEvent, EventImages)]) {
        for (ev, images) in events {
            gst::info!(
                CAT,
                imp = self,
                "plate {} (track {}, revision {}, confidence {:.2}, {} reads) -> {}",
                ev.plate_text,
                ev.track_id,
                ev.revision,
                ev.plate_confidence,
                ev.reads,
                ev.image_key
            );
            let msg = gst::message::Element::builder(ev.to_structure_with(images))
                .src(&*self.obj())
                .build();
            let _ = self.obj().post_message(msg);
        }
    }

    /// The upstream event naming this frame's vehicles whose plates are settled, and its settled
    /// plates tracked without a vehicle: sent while there are any, and once, empty, when the last
    /// one is gone.
    fn settled_event(
        state: &mut State,
        frame: &AlprFrame,
        pts: Option<gst::ClockTime>,
    ) -> Option<gst::Event> {
        let (reads, unread) = (state.settings.settle_reads, state.settings.settle_unread);
        if (reads == 0 && unread == 0) || !frame.tracked {
            return None;
        }
        if frame.detected && unread > 0 {
            let (read, tracks) = (&state.read_tracks, &state.tracks);
            state.unread.update(
                frame
                    .vehicles()
                    .filter(|v| v.track_id != 0 && !v.predicted)
                    .map(|v| {
                        let done = read.contains(&v.track_id) || tracks.is_settled(v.track_id);
                        (v.track_id, v.bbox.area(), done)
                    }),
                |id| frame.vehicles().any(|v| v.track_id == id),
            );
        }
        let settled = &mut state.settled;
        settled.vehicles.clear();
        settled.vehicles.extend(
            frame
                .vehicles()
                .filter(|v| {
                    v.track_id != 0
                        && (state.tracks.is_settled(v.track_id)
                            || (unread > 0 && state.unread.frames(v.track_id) >= unread))
                })
                .map(|v| (v.track_id, v.bbox)),
        );
        // Plates tracked on their own (no vehicle track carries them: a car the vehicle model
        // misses or does not confirm) whose text is settled.
        settled.plates.clear();
        settled.plates.extend(
            frame
                .plates()
                .filter(|p| {
                    p.track_id != 0
                        && !frame.vehicles().any(|v| v.track_id == p.track_id)
                        && state.tracks.is_settled(p.track_id)
                })
                .map(|p| (p.track_id, p.bbox)),
        );
        let any = !settled.vehicles.is_empty() || !settled.plates.is_empty();
        if !any && !state.settled_sent {
            return None;
        }
        state.settled_sent = any;
        settled.pts = pts;
        settled.width = frame.width;
        settled.height = frame.height;
        Some(settled.to_event())
    }

    /// Reads the plates of one frame; returns the events decided on it.
    fn process(
        &self,
        state: &mut State,
        buf: &gst::BufferRef,
        frame: &mut AlprFrame,
    ) -> Result<Vec<(PlateEvent, EventImages)>, String> {
        let now = event::now_ms();
        let plates: Vec<usize> = frame
            .objects
            .iter()
            .enumerate()
            .filter(|(_, o)| o.kind == Some(ObjectKind::Plate) && !o.predicted)
            .map(|(i, _)| i)
            .collect();
        let mut emissions = Vec::new();
        state.read_tracks.clear();
        if !plates.is_empty() {
            let (Some(info), Some((layout, matrix))) = (state.info.as_ref(), state.layout) else {
                return Err("received a buffer before caps were negotiated".into());
            };
            let vframe = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info)
                .map_err(|_| format!("cannot map a {} byte buffer as {:?}", buf.size(), info))?;
            let view = crate::video::frame_view(&vframe, layout, matrix);
            state.engine.clear();
            let mut batch: Vec<(usize, Crop, f32)> = Vec::with_capacity(plates.len());
            let pad = state.settings.crop_padding;
            for &i in &plates {
                let b = frame.objects[i].bbox;
                if !b.is_finite() || b.w < 2.0 || b.h < 2.0 {
                    gst::debug!(CAT, imp = self, "skipping degenerate plate box {b:?}");
                    continue;
                }
                let roi = b.padded(pad);
                let Some((w, h, _)) =
                    state
                        .pre
                        .crop_rgb(&view, roi, MAX_CROP_SIDE, &mut state.crop)
                else {
                    gst::debug!(CAT, imp = self, "plate box {b:?} is outside the frame");
                    continue;
                };
                let src = RgbView {
                    data: &state.crop,
                    width: w,
                    height: h,
                    stride: w * 3,
                };
                let det_conf = frame.objects[i].confidence;
                let filled = state.engine.push_with(|cfg, slot| {
                    ocrmodel::crop_to_input(&src, (0.0, 0.0, w as f32, h as f32), 0.0, cfg, slot)?;
                    Ok::<f32, ocrmodel::OcrModelError>(
                        ocrmodel::crop_quality(slot, cfg, b.h, det_conf)
                            .map(|q| q.score)
                            .unwrap_or(0.0),
                    )
                });
                let quality = match filled {
                    Ok(q) => q,
                    Err(e) => {
                        gst::debug!(CAT, imp = self, "plate box {b:?}: {e}");
                        continue;
                    }
                };
                batch.push((
                    i,
                    Crop {
                        rgb: state.crop.clone(),
                        width: w,
                        height: h,
                    },
                    quality,
                ));
            }
            let t0 = Instant::now();
            let reads = state.engine.run()?;
            state.counters.ocr_time += t0.elapsed();
            state.counters.ocr_batches += u64::from(!batch.is_empty());
            state.counters.plates += batch.len() as u64;
            let min_chars = state.settings.min_chars as usize;
            for ((i, crop, quality), read) in batch.into_iter().zip(reads) {
                // Fewer characters than any plate has: a fragment or not a plate at all.
                if read.text.chars().count() < min_chars {
                    continue;
                }
                state.counters.reads += 1;
                let obj = &mut frame.objects[i];
                obj.text = Some(read.text.clone());
                obj.text_confidence = read.confidence;
                obj.char_confidences = read.char_confidences.clone();
                let vehicle = obj.parent_id.and_then(|p| {
                    frame
                        .objects
                        .iter()
                        .find(|v| v.id == p)
                        .map(|v| VehicleInfo {
                            class: v.class.clone(),
                            confidence: v.confidence,
                            bbox: v.bbox,
                        })
                });
                let obj = &frame.objects[i];
                let mut obs = Observation {
                    read: VoteRead {
                        text: read.text,
                        confidence: read.confidence,
                        char_confidences: read.char_confidences,
                        char_alternatives: Some(read.char_alternatives),
                        quality,
                        detector_confidence: obj.confidence,
                        frame: frame.frame_number,
                        timestamp_ns: buf.pts().map(|t| t.nseconds()),
                        region: read.region,
                    },
                    plate_bbox: obj.bbox,
                    vehicle,
                    crop: Some(crop),
                    extras: Extras::default(),
                    seen_ms: now,
                };
                // Behind a tracker, an untracked plate is a one-off detection (too weak to start
                // a track): reading it is fine, an event per such read is noise.
                if frame.tracked && obj.track_id == 0 {
                    continue;
                }
                let want = (state.settings.vehicle_image, state.settings.frame_image);
                if (want.0 || want.1) && state.tracks.admits(obj.track_id, quality) {
                    let max_side = state.settings.image_max_side as usize;
                    let mut grab = |roi: BBox| {
                        let mut rgb = Vec::new();
                        state
                            .pre
                            .crop_rgb(&view, roi, max_side, &mut rgb)
                            .map(|(width, height, _)| Crop { rgb, width, height })
                    };
                    if want.0 {
                        obs.extras.vehicle = obs.vehicle.as_ref().and_then(|v| grab(v.bbox));
                    }
                    if want.1 {
                        let (w, h) = (view.width as f32, view.height as f32);
                        obs.extras.frame = grab(BBox::new(0.0, 0.0, w, h));
                    }
                }
                gst::log!(
                    CAT,
                    imp = self,
                    "frame {}: track {} read {} (confidence {:.2}, quality {:.2})",
                    frame.frame_number,
                    obj.track_id,
                    obs.read.text,
                    obs.read.confidence,
                    quality
                );
                if obs.read.confidence >= PROMISING_READ {
                    state.read_tracks.push(obj.track_id);
                }
                if let Some(e) = state.tracks.observe(obj.track_id, obs) {
                    emissions.push(e);
                }
            }
        }
        for v in frame.vehicles() {
            if v.track_id != 0 && !v.predicted {
                state.tracks.vehicle_seen(v.track_id, frame.frame_number);
            }
        }
        if state.settings.vehicle_events {
            state.vehicles.observe(frame, now);
        }
        for id in &frame.ended_tracks {
            let replaced = frame.replaced_tracks.contains(id);
            emissions.extend(state.tracks.end(*id, frame.frame_number, replaced));
        }
        emissions.extend(state.tracks.tick(frame.frame_number));
        self.release_vehicles(state, &emissions, false);
        Ok(emissions
            .into_iter()
            .filter_map(|e| self.finalize(state, e))
            .collect())
    }

    /// Vehicle-track events: notes the plates just decided, then ends the vehicle tracks whose
    /// plate reading is over (or hands their sightings to the track their reads merged into);
    /// `all` ends every vehicle track (EOS).
    fn release_vehicles(&self, state: &mut State, emissions: &[Emission], all: bool) {
        let released = state.tracks.take_released();
        if !state.settings.vehicle_events {
            return;
        }
        for e in emissions {
            state
                .vehicles
                .plate_decided(e.event.track_id, &e.event.plate_text);
        }
        let mut ended = Vec::new();
        for (id, into) in released {
            match into {
                Some(into) => state.vehicles.merge(id, into),
                None => ended.extend(state.vehicles.end(id)),
            }
        }
        if all {
            ended.extend(state.vehicles.end_all());
        }
        for v in ended {
            let v = self.finalize_vehicle(state, v);
            state.pending_vehicles.push(v);
        }
    }

    /// Ends `ids` (or all tracks) outside a buffer; the events wait for the next buffer or EOS.
    fn end_tracks(&self, ids: Option<Vec<u64>>) {
        let mut guard = crate::lock(&self.state);
        let Some(state) = guard.as_mut() else { return };
        let emissions: Vec<Emission> = match &ids {
            Some(ids) => state.tracks.end_now(ids),
            None => state.tracks.end_all(),
        };
        self.release_vehicles(state, &emissions, ids.is_none());
        let finalized: Vec<_> = emissions
            .into_iter()
            .filter_map(|e| self.finalize(state, e))
            .collect();
        state.pending.extend(finalized);
    }

    /// Pushes the pending events on a copy of the last frame (flagged GAP + DROPPABLE, zero
    /// duration) so that sinks downstream get them before EOS.
    fn flush_pending(&self) {
        let (carrier, events, vehicles) = {
            let mut guard = crate::lock(&self.state);
            let Some(state) = guard.as_mut() else { return };
            if state.pending.is_empty() && state.pending_vehicles.is_empty() {
                return;
            }
            let events = std::mem::take(&mut state.pending);
            let vehicles = std::mem::take(&mut state.pending_vehicles);
            state.counters.events += events.len() as u64;
            state.events_series.inc_by(events.len() as u64);
            let carrier = (!state.last_memories.is_empty()).then(|| {
                let mut b = gst::Buffer::new();
                {
                    let b = b.get_mut().expect("new buffer is writable");
                    for m in &state.last_memories {
                        b.append_memory(m.clone());
                    }
                    b.set_pts(state.last_pts);
                    if let Some(l) = state.last_layout {
                        let _ = gst_video::VideoMeta::add_full(
                            b,
                            gst_video::VideoFrameFlags::empty(),
                            l.format,
                            l.width,
                            l.height,
                            &l.offset[..l.planes],
                            &l.stride[..l.planes],
                        );
                    }
                }
                b
            });
            (carrier, events, vehicles)
        };
        self.post_events(&events);
        let Some(last) = carrier else {
            gst::warning!(
                CAT,
                imp = self,
                "{} events decided before any frame: posted on the bus only ({} vehicle-track \
                 events not sent)",
                events.len(),
                vehicles.len()
            );
            return;
        };
        let mut buf = last;
        {
            let b = buf.make_mut();
            b.set_flags(gst::BufferFlags::GAP | gst::BufferFlags::DROPPABLE);
            b.set_duration(gst::ClockTime::ZERO);
            // The carrier repeats the last frame's pixels, not its detections.
            let (width, height) = crate::lock(&self.state)
                .as_ref()
                .and_then(|s| s.info.as_ref().map(|i| (i.width(), i.height())))
                .unwrap_or_default();
            let _ = AlprFrame {
                detected: false,
                width,
                height,
                ..Default::default()
            }
            .write(b);
            let attached = event::attach_with_images(b, &events)
                .and_then(|()| event::attach_vehicles(b, &vehicles));
            if let Err(e) = attached {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("cannot attach events: {e}")
                );
                return;
            }
        }
        if let Err(e) = self.obj().src_pad().push(buf) {
            gst::warning!(
                CAT,
                imp = self,
                "downstream refused the final events: {e:?}"
            );
        }
    }

    fn stats(&self) -> gst::Structure {
        let state = crate::lock(&self.state);
        let (c, open, merge) = state
            .as_ref()
            .map(|s| (s.counters, s.tracks.open_tracks(), s.tracks.stats()))
            .unwrap_or_default();
        // Elements in this process sharing the OCR model (0 when stopped), and its pool size.
        let (users, sessions) = state
            .as_ref()
            .map(|s| (s.engine.session.users(), s.engine.session.sessions()))
            .unwrap_or_default();
        gst::Structure::builder("alprocr-stats")
            .field("merged-tracks", merge.merged)
            .field("dropped-fragments", merge.fragments_dropped)
            .field("plates", c.plates)
            .field("reads", c.reads)
            .field("events", c.events)
            .field("open-tracks", open as u64)
            .field("ocr-batches", c.ocr_batches)
            .field(
                "ocr-ms-per-plate",
                if c.plates > 0 {
                    c.ocr_time.as_secs_f64() * 1000.0 / c.plates as f64
                } else {
                    0.0
                },
            )
            .field("session-users", users as u64)
            .field("sessions-open", sessions as u64)
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AlprOcr {
    const NAME: &'static str = "GstAlprOcr";
    type Type = super::AlprOcr;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AlprOcr {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(Settings::param_specs);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let change = crate::lock(&self.settings).set(pspec.name(), value);
        gst::info!(CAT, imp = self, "Changing {} {change}", pspec.name());
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.stats().to_value();
        }
        crate::lock(&self.settings).get(pspec.name())
    }
}

impl GstObjectImpl for AlprOcr {}

impl ElementImpl for AlprOcr {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ALPR plate reader",
                "Filter/Analyzer/Video",
                "Reads licence plates found by alprdetect, decides one plate per vehicle track \
                 and emits plate events (alpr-events meta and bus messages)",
                "gst-alpr developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::video::analyser_pad_templates(&crate::video::caps()));
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for AlprOcr {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        crate::metrics::start_for(self.obj().upcast_ref(), None);
        self.reader.reset();
        let settings = crate::lock(&self.settings).clone();
        let voter = settings
            .voter_config()
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{e}")))?;
        event::validate_key_template(&settings.key_template).map_err(|e| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ("property `key-template`: {e}")
            )
        })?;
        let engine = self.load(&settings)?;
        let source = settings.source.clone().unwrap_or_else(default_source);
        let settings_camera = settings.camera_id.clone();
        *crate::lock(&self.state) = Some(State {
            engine,
            tracks: {
                let mut t = Tracks::with_merge(
                    voter,
                    MergeConfig {
                        linger_frames: u64::from(settings.merge_frames),
                        fragment_confidence: settings.fragment_confidence,
                    },
                );
                t.set_settle_reads(settings.settle_reads as usize);
                t
            },
            settings,
            source,
            layout: None,
            info: None,
            pre: Preprocessor::default(),
            crop: Vec::new(),
            last_memories: Vec::new(),
            last_pts: None,
            last_layout: None,
            pending: Vec::new(),
            vehicles: VehicleTracks::default(),
            pending_vehicles: Vec::new(),
            counters: Counters::default(),
            series: crate::metrics::ElementSeries::new(&self.obj().name()),
            events_series: crate::metrics::get()
                .events
                .with_label_values(&[self.obj().name().as_str(), settings_camera.as_str()]),
            settled: Settled::default(),
            settled_sent: false,
            read_tracks: Vec::new(),
            unread: Unread::default(),
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(s) = crate::lock(&self.state).take() {
            gst::info!(
                CAT,
                imp = self,
                "stopped: {} plates, {} reads, {} events, {} tracks left open",
                s.counters.plates,
                s.counters.reads,
                s.counters.events,
                s.tracks.open_tracks()
            );
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let layout = crate::video::layout_of(&info).ok_or_else(|| {
            gst::loggable_error!(CAT, "unsupported video format {}", info.format().to_str())
        })?;
        let mut state = crate::lock(&self.state);
        let state = state
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps set before the element started"))?;
        state.info = Some(info);
        state.layout = Some(layout);
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::CustomDownstream(_) => {
                if let Some(ids) = crate::meta::ended_tracks_of(&event) {
                    self.end_tracks(Some(ids));
                }
            }
            gst::EventView::Eos(_) => {
                // The last car of a file must not be lost: finish every track before EOS.
                self.end_tracks(None);
                self.flush_pending();
            }
            gst::EventView::FlushStop(_) => {
                if let Some(s) = crate::lock(&self.state).as_mut() {
                    s.tracks.clear();
                    s.pending.clear();
                    s.vehicles.clear();
                    s.pending_vehicles.clear();
                    s.last_memories.clear();
                    s.unread.clear();
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(mut frame) = self.reader.read(self.obj().upcast_ref(), buf)? else {
            return Ok(gst::FlowSuccess::Ok);
        };

        let started = std::time::Instant::now();
        let mut guard = crate::lock(&self.state);
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        state.series.frames.inc();
        let reads_before = state.counters.reads;
        let mut events = match self.process(state, buf, &mut frame) {
            Ok(ev) => ev,
            Err(e) => {
                drop(guard);
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{e}"));
                return Err(gst::FlowError::Error);
            }
        };
        events.splice(0..0, std::mem::take(&mut state.pending));
        let vehicles = std::mem::take(&mut state.pending_vehicles);
        state.counters.events += events.len() as u64;
        state.events_series.inc_by(events.len() as u64);
        state
            .series
            .reads
            .inc_by(state.counters.reads - reads_before);
        state
            .series
            .processing
            .observe(started.elapsed().as_secs_f64());
        let settled = Self::settled_event(state, &frame, buf.pts());
        drop(guard);

        // Before the frame goes on: in a plain chain alprdetect has it for the next frame.
        if let Some(ev) = settled
            && !self.obj().sink_pad().push_event(ev)
        {
            gst::trace!(
                CAT,
                imp = self,
                "nobody upstream takes {}",
                crate::meta::SETTLED_EVENT
            );
        }
        frame.write(buf).map_err(|e| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("cannot attach meta: {e}"));
            gst::FlowError::Error
        })?;
        if !events.is_empty() {
            event::attach_with_images(buf, &events).map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("cannot attach events: {e}")
                );
                gst::FlowError::Error
            })?;
            self.post_events(&events);
        }
        if !vehicles.is_empty() {
            event::attach_vehicles(buf, &vehicles).map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("cannot attach vehicle-track events: {e}")
                );
                gst::FlowError::Error
            })?;
        }
        // Remember the frame's memories (references) to carry the events decided at EOS.
        if let Some(s) = crate::lock(&self.state).as_mut() {
            s.last_memories.clear();
            s.last_memories.extend(buf.iter_memories_owned());
            s.last_pts = buf.pts();
            s.last_layout = VideoLayout::of(buf);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
