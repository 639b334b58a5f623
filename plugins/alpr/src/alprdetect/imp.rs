// SPDX-License-Identifier: MIT OR Apache-2.0
use std::sync::{LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::AlprPlateMode;
use super::engine::{Engine, EngineConfig};
use super::idle::{Decision, IdleConfig, IdleGate};
use super::model::Detector;
use super::preprocess::{Layout, YuvMatrix};
use crate::meta::AlprFrame;
use crate::meta::Settled;
use crate::models;
use crate::runtime::Provider;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "alprdetect",
        gst::DebugColorFlags::empty(),
        Some("ALPR vehicle and plate detector"),
    )
});

const DEFAULT_VEHICLE_THRESHOLD: f32 = 0.35;
const DEFAULT_PLATE_THRESHOLD: f32 = 0.25;
const DEFAULT_NMS_IOU: f32 = 0.45;
const DEFAULT_THREADS: u32 = 0;
const DEFAULT_INTERVAL: u32 = 1;
const DEFAULT_MAX_VEHICLE_CROPS: u32 = 8;
const DEFAULT_MIN_VEHICLE_WIDTH: u32 = 100;
const DEFAULT_SKIP_SETTLED: bool = true;
/// Off: every frame runs the detectors unless `interval` says otherwise.
const DEFAULT_MOTION_THRESHOLD: f32 = 0.0;
const DEFAULT_MOTION_HEARTBEAT: f64 = 2.0;

#[derive(Debug, Clone)]
struct Settings {
    vehicle_model: Option<String>,
    plate_model: Option<String>,
    plate_mode: AlprPlateMode,
    vehicle_threshold: f32,
    plate_threshold: f32,
    nms_iou: f32,
    threads: u32,
    execution_provider: Provider,
    interval: u32,
    max_vehicle_crops: u32,
    min_vehicle_width: u32,
    skip_settled: bool,
    motion_threshold: f32,
    motion_heartbeat: f64,
    metrics_address: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            vehicle_model: None,
            plate_model: None,
            plate_mode: AlprPlateMode::default(),
            vehicle_threshold: DEFAULT_VEHICLE_THRESHOLD,
            plate_threshold: DEFAULT_PLATE_THRESHOLD,
            nms_iou: DEFAULT_NMS_IOU,
            threads: DEFAULT_THREADS,
            execution_provider: Provider::default(),
            interval: DEFAULT_INTERVAL,
            max_vehicle_crops: DEFAULT_MAX_VEHICLE_CROPS,
            min_vehicle_width: DEFAULT_MIN_VEHICLE_WIDTH,
            skip_settled: DEFAULT_SKIP_SETTLED,
            motion_threshold: DEFAULT_MOTION_THRESHOLD,
            motion_heartbeat: DEFAULT_MOTION_HEARTBEAT,
            metrics_address: None,
        }
    }
}

impl Settings {
    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            vehicle_threshold: self.vehicle_threshold,
            plate_threshold: self.plate_threshold,
            nms_iou: self.nms_iou,
            plate_mode: self.plate_mode.into(),
            max_vehicle_crops: self.max_vehicle_crops as usize,
            min_vehicle_width: self.min_vehicle_width as f32,
        }
    }

    fn idle_config(&self) -> IdleConfig {
        IdleConfig {
            threshold: self.motion_threshold,
            heartbeat: std::time::Duration::from_secs_f64(self.motion_heartbeat),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    frames: u64,
    detected_frames: u64,
    vehicles: u64,
    plates: u64,
}

struct State {
    engine: Engine,
    info: Option<gst_video::VideoInfo>,
    layout: Option<(Layout, YuvMatrix)>,
    frame: AlprFrame,
    idle: IdleGate,
    counters: Counters,
    series: crate::metrics::ElementSeries,
}

#[derive(Default)]
pub struct AlprDetect {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The last alpr-plates-settled event from downstream (alprocr). Not in `state`: behind a
    /// queue it arrives from another thread, which must not wait for a frame's inference.
    /// Lock order: `state`, then `settled`.
    settled: Mutex<Option<Settled>>,
}

impl AlprDetect {
    fn load_engine(&self, settings: &Settings) -> Result<Engine, gst::ErrorMessage> {
        let vehicle_path = models::resolve(
            settings.vehicle_model.as_deref(),
            "vehicle-model",
            &[models::VEHICLE_MODEL],
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("{e}")))?;
        let plate_path = models::resolve(
            settings.plate_model.as_deref(),
            "plate-model",
            &models::PLATE_MODELS,
        )
        .map_err(|e| gst::error_msg!(gst::ResourceError::NotFound, ("{e}")))?;
        crate::runtime::ensure().map_err(|e| gst::error_msg!(gst::LibraryError::Init, ("{e}")))?;

        let names = models::sibling(&vehicle_path, "coco_classes.txt");
        let provider = settings.execution_provider;
        let (vehicle, v_fallback) =
            Detector::load_on(&vehicle_path, settings.threads, provider, names.as_deref())
                .map_err(|e| {
                    gst::error_msg!(gst::ResourceError::OpenRead, ("vehicle-model: {e}"))
                })?;
        let (plate, p_fallback) = Detector::load_on(&plate_path, settings.threads, provider, None)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("plate-model: {e}")))?;
        if let Some(why) = v_fallback.or(p_fallback) {
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
            "vehicle model {} ({}, {}x{}, session shared by {} elements), plate model {} ({}, \
             {}x{}, session shared by {} elements)",
            vehicle.path.display(),
            vehicle.family.name(),
            vehicle.spec.width,
            vehicle.spec.height,
            vehicle.session.users(),
            plate.path.display(),
            plate.family.name(),
            plate.spec.width,
            plate.spec.height,
            plate.session.users()
        );
        Ok(Engine::new(vehicle, plate, settings.engine_config()))
    }

    fn stats(&self) -> gst::Structure {
        let state = crate::lock(&self.state);
        let (c, t, idle_skipped) = state
            .as_ref()
            .map(|s| (s.counters, s.engine.times, s.idle.skipped))
            .unwrap_or_default();
        // Elements in this process sharing each model (0 when stopped), and its pool size.
        let (vehicle_users, plate_users, sessions) = state
            .as_ref()
            .map(|s| s.engine.session_users())
            .unwrap_or_default();
        let ms_per = |d: std::time::Duration, n: u64| {
            if n > 0 {
                d.as_secs_f64() * 1000.0 / n as f64
            } else {
                0.0
            }
        };
        let per_input = |d| ms_per(d, t.model_inputs);
        let plate_inputs = t.model_inputs - t.vehicle_inputs;
        gst::Structure::builder("alprdetect-stats")
            .field("frames", c.frames)
            .field("detected-frames", c.detected_frames)
            .field("idle-frames", idle_skipped)
            .field("vehicles", c.vehicles)
            .field("plates", c.plates)
            .field("model-inputs", t.model_inputs)
            .field("preprocess-ms-per-input", per_input(t.preprocess))
            .field("inference-ms-per-input", per_input(t.inference))
            .field("vehicle-inputs", t.vehicle_inputs)
            .field(
                "vehicle-inference-ms-per-input",
                ms_per(t.vehicle_inference, t.vehicle_inputs),
            )
            .field("plate-inputs", plate_inputs)
            .field(
                "plate-inference-ms-per-input",
                ms_per(t.inference - t.vehicle_inference, plate_inputs),
            )
            .field("settled-vehicles", t.settled_vehicles)
            .field("skipped-plate-passes", t.skipped_plate_passes)
            .field("vehicle-session-users", vehicle_users as u64)
            .field("plate-session-users", plate_users as u64)
            .field("sessions-open", sessions as u64)
            .build()
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AlprDetect {
    const NAME: &'static str = "GstAlprDetect";
    type Type = super::AlprDetect;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for AlprDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("vehicle-model")
                    .nick("Vehicle model")
                    .blurb(
                        "Path of the vehicle detector ONNX model (YOLOX raw head or YOLO end2end). \
                         NULL: vehicle/yolox_nano.onnx from $ALPR_MODELS_DIR, ../shared/models \
                         or ~/.cache/gst-alpr/models",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("plate-model")
                    .nick("Plate model")
                    .blurb(
                        "Path of the licence-plate detector ONNX model (YOLO end2end or YOLOX raw \
                         head). NULL: plate/yolo-v9-t-416-license-plates-end2end-int8.onnx from \
                         the model search path",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("plate-mode", AlprPlateMode::default())
                    .nick("Plate mode")
                    .blurb("Where the plate model looks")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("vehicle-threshold")
                    .nick("Vehicle threshold")
                    .blurb("Minimum vehicle score (objectness x class probability), 0..1")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_VEHICLE_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("plate-threshold")
                    .nick("Plate threshold")
                    .blurb("Minimum licence-plate score, 0..1")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_PLATE_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("nms-iou")
                    .nick("NMS IoU")
                    .blurb(
                        "Intersection over union above which overlapping boxes are merged \
                         (non-maximum suppression), 0..1",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(DEFAULT_NMS_IOU)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Inference threads")
                    .blurb("ONNX Runtime intra-op threads per model; 0 = one per core")
                    .maximum(256)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
                Provider::param_spec(),
                glib::ParamSpecUInt::builder("interval")
                    .nick("Detection interval")
                    .blurb(
                        "Run the detectors on every Nth frame (frames in between carry an \
                         alpr-frame meta with detected=false, for alprtrack to predict)",
                    )
                    .minimum(1)
                    .maximum(1000)
                    .default_value(DEFAULT_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-vehicle-crops")
                    .nick("Max vehicle crops")
                    .blurb(
                        "Most vehicle boxes (largest first) searched for plates per frame in \
                         plate-mode vehicles/both/auto; bounds the cost of busy scenes",
                    )
                    .minimum(1)
                    .maximum(64)
                    .default_value(DEFAULT_MAX_VEHICLE_CROPS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("min-vehicle-width")
                    .nick("Min vehicle width")
                    .blurb(
                        "plate-mode auto: narrowest vehicle box (pixels) searched for a plate in \
                         its own crop; narrower vehicles carry plates too small to read. 0 = \
                         every vehicle",
                    )
                    .maximum(8192)
                    .default_value(DEFAULT_MIN_VEHICLE_WIDTH)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("skip-settled")
                    .nick("Skip settled vehicles")
                    .blurb(
                        "Do not search a vehicle for its plate again once alprocr has read it \
                         (alprocr settle-reads; told by its upstream alpr-plates-settled event), \
                         and skip the full-frame plate pass when every vehicle in view is read",
                    )
                    .default_value(DEFAULT_SKIP_SETTLED)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecFloat::builder("motion-threshold")
                    .nick("Motion threshold")
                    .blurb(
                        "Idle frames: skip inference on a frame when no part of it (cells of a \
                         64-cell-wide grey thumbnail, noise averaged out) changed by more than \
                         this many grey levels (0-255) since the last detected frame and \
                         everything then in view was read (alprocr's settled vehicles); skipped \
                         frames are marked detected=false like interval's. 0 = off; 8 suits \
                         most cameras",
                    )
                    .minimum(0.0)
                    .maximum(255.0)
                    .default_value(DEFAULT_MOTION_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("motion-heartbeat")
                    .nick("Motion heartbeat")
                    .blurb(
                        "Idle frames: run the detectors at least this often (seconds of stream \
                         time) on a still scene anyway",
                    )
                    .minimum(0.0)
                    .maximum(3600.0)
                    .default_value(DEFAULT_MOTION_HEARTBEAT)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("metrics-address")
                    .nick("Metrics address")
                    .blurb(
                        "host:port of the process-wide Prometheus endpoint (/metrics), opened by \
                         the first ALPR element that starts; \"off\" disables it. NULL: \
                         $ALPR_METRICS_ADDRESS, else 0.0.0.0:8001",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb(
                        "Frames, detected frames, vehicles, plates, model inputs, and mean \
                         pre-processing and inference time per model input (ms); inputs and \
                         inference time per model as well; vehicles matched to settled plates \
                         and the plate passes skipped for them",
                    )
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = crate::lock(&self.settings);
        macro_rules! set {
            ($field:ident, $ty:ty) => {{
                let new: $ty = value.get().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "Changing {} from {:?} to {:?}",
                    pspec.name(),
                    s.$field,
                    new
                );
                s.$field = new;
            }};
        }
        match pspec.name() {
            "vehicle-model" => set!(vehicle_model, Option<String>),
            "plate-model" => set!(plate_model, Option<String>),
            "plate-mode" => set!(plate_mode, AlprPlateMode),
            "vehicle-threshold" => set!(vehicle_threshold, f32),
            "plate-threshold" => set!(plate_threshold, f32),
            "nms-iou" => set!(nms_iou, f32),
            "threads" => set!(threads, u32),
            "execution-provider" => set!(execution_provider, Provider),
            "interval" => set!(interval, u32),
            "max-vehicle-crops" => set!(max_vehicle_crops, u32),
            "min-vehicle-width" => set!(min_vehicle_width, u32),
            "skip-settled" => set!(skip_settled, bool),
            "motion-threshold" => set!(motion_threshold, f32),
            "motion-heartbeat" => set!(motion_heartbeat, f64),
            "metrics-address" => set!(metrics_address, Option<String>),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.stats().to_value();
        }
        let s = crate::lock(&self.settings);
        match pspec.name() {
            "vehicle-model" => s.vehicle_model.to_value(),
            "plate-model" => s.plate_model.to_value(),
            "plate-mode" => s.plate_mode.to_value(),
            "vehicle-threshold" => s.vehicle_threshold.to_value(),
            "plate-threshold" => s.plate_threshold.to_value(),
            "nms-iou" => s.nms_iou.to_value(),
            "threads" => s.threads.to_value(),
            "execution-provider" => s.execution_provider.to_value(),
            "interval" => s.interval.to_value(),
            "max-vehicle-crops" => s.max_vehicle_crops.to_value(),
            "min-vehicle-width" => s.min_vehicle_width.to_value(),
            "skip-settled" => s.skip_settled.to_value(),
            "motion-threshold" => s.motion_threshold.to_value(),
            "motion-heartbeat" => s.motion_heartbeat.to_value(),
            "metrics-address" => s.metrics_address.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for AlprDetect {}

impl ElementImpl for AlprDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "ALPR detector",
                "Filter/Analyzer/Video",
                "Detects vehicles and licence plates with ONNX models and attaches alpr-frame \
                 and region-of-interest metas",
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

impl BaseTransformImpl for AlprDetect {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = crate::lock(&self.settings).clone();
        let engine = self.load_engine(&settings)?;
        crate::metrics::start_for(self.obj().upcast_ref(), settings.metrics_address.as_deref());
        *crate::lock(&self.state) = Some(State {
            engine,
            info: None,
            layout: None,
            frame: AlprFrame::default(),
            idle: IdleGate::default(),
            counters: Counters::default(),
            series: crate::metrics::ElementSeries::new(&self.obj().name()),
        });
        *crate::lock(&self.settled) = None;
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(state) = crate::lock(&self.state).take() {
            let c = state.counters;
            gst::info!(
                CAT,
                imp = self,
                "stopped after {} frames ({} detected): {} vehicles, {} plates",
                c.frames,
                c.detected_frames,
                c.vehicles,
                c.plates
            );
        }
        Ok(())
    }

    fn accept_caps(&self, direction: gst::PadDirection, caps: &gst::Caps) -> bool {
        let ok = self.parent_accept_caps(direction, caps);
        if !ok {
            // Not an error on the bus: decodebin and friends probe with caps they may not use.
            gst::warning!(
                CAT,
                imp = self,
                "cannot take {caps}: alprdetect reads raw video in one of {} (put videoconvert \
                 before alprdetect)",
                crate::video::FORMATS
                    .iter()
                    .map(|f| f.to_str().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        ok
    }

    fn src_event(&self, event: gst::Event) -> bool {
        if let Some(settled) = Settled::of(&event) {
            gst::trace!(
                CAT,
                imp = self,
                "{} settled vehicles, {} settled plates at {:?}",
                settled.vehicles.len(),
                settled.plates.len(),
                settled.pts
            );
            *crate::lock(&self.settled) = Some(settled);
            // Meant for the detector; elements further upstream have no use for it.
            return true;
        }
        self.parent_src_event(event)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if matches!(
            event.view(),
            gst::EventView::FlushStop(_) | gst::EventView::StreamStart(_)
        ) {
            if let Some(state) = crate::lock(&self.state).as_mut() {
                state.engine.forget_settled();
                state.idle.reset();
            }
            *crate::lock(&self.settled) = None;
        }
        self.parent_sink_event(event)
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
        gst::debug!(CAT, imp = self, "negotiated {incaps}");
        state.info = Some(info);
        state.layout = Some(layout);
        state.idle.reset();
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let cfg = {
            let s = crate::lock(&self.settings);
            (
                s.engine_config(),
                s.interval.max(1) as u64,
                s.skip_settled,
                s.idle_config(),
            )
        };
        let (engine_cfg, interval, skip_settled, idle_cfg) = cfg;
        let mut guard = crate::lock(&self.state);
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let (Some(info), Some((layout, matrix))) = (state.info.as_ref(), state.layout) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("received a buffer before caps were negotiated")
            );
            return Err(gst::FlowError::NotNegotiated);
        };

        let started = std::time::Instant::now();
        let frame_number = state.counters.frames;
        state.counters.frames += 1;
        state.series.frames.inc();
        let mut detect = frame_number % interval == 0;
        let mut still = false;
        state.frame.frame_number = frame_number;
        state.frame.width = info.width();
        state.frame.height = info.height();
        state.frame.ended_tracks.clear();
        state.frame.objects.clear();

        if detect {
            let vframe =
                gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info).map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "cannot map a {} buffer of {} bytes as {info:?}",
                            info.format().to_str(),
                            buf.size()
                        )
                    );
                    gst::FlowError::Error
                })?;
            let view = crate::video::frame_view(&vframe, layout, matrix);
            let pts = buf
                .pts()
                .map(|t| std::time::Duration::from_nanos(t.nseconds()));
            let fps = info.fps();
            let fps = if fps.denom() > 0 {
                fps.numer() as f64 / fps.denom() as f64
            } else {
                0.0
            };
            let decision = state.idle.decide(&idle_cfg, &view, pts, fps);
            gst::trace!(CAT, imp = self, "frame {frame_number}: {decision:?}");
            if decision == Decision::Skip {
                detect = false;
                still = true;
            } else {
                state.engine.cfg = engine_cfg;
                state.engine.settled.clear();
                {
                    let settled = crate::lock(&self.settled);
                    let usable = settled
                        .as_ref()
                        .filter(|s| s.usable_for(info.width(), info.height(), buf.pts()));
                    if skip_settled && let Some(s) = usable {
                        state.engine.settled.extend_from_slice(&s.vehicles);
                    }
                    state.idle.note_settled(&idle_cfg, usable);
                }
                let State { engine, frame, .. } = state;
                if let Err(e) = engine.run(&view, &mut frame.objects) {
                    drop(vframe);
                    drop(guard);
                    gst::element_imp_error!(self, gst::StreamError::Failed, ("{e}"));
                    return Err(gst::FlowError::Error);
                }
                drop(vframe);
                state.idle.detected_objects(&idle_cfg, pts, &state.frame);
                state.counters.detected_frames += 1;
                let (nv, np) = (
                    state.frame.vehicles().count() as u64,
                    state.frame.plates().count() as u64,
                );
                state.counters.vehicles += nv;
                state.counters.plates += np;
                state.series.vehicles.inc_by(nv);
                state.series.plates.inc_by(np);
            }
        }
        state.frame.detected = detect;
        state.frame.still = still;
        state
            .series
            .processing
            .observe(started.elapsed().as_secs_f64());

        gst::trace!(
            CAT,
            imp = self,
            "frame {frame_number}: {} objects",
            state.frame.objects.len()
        );
        state.frame.write(buf).map_err(|e| {
            gst::element_imp_error!(self, gst::CoreError::Failed, ("cannot attach meta: {e}"));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
