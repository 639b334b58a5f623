// SPDX-License-Identifier: MIT OR Apache-2.0
//! alprdetect cost on a 1280x720 frame, one inference thread:
//! - pre-processing time per model input, per raw format;
//! - the element's time per frame (Harness, real buffers) against bare ONNX Runtime `run` time
//!   for the same model inputs; the difference is the element's overhead.
//!
//!   cargo bench --bench detect

use std::path::Path;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_video::prelude::*;
use gstalpr::alprdetect::model::Detector;
use gstalpr::alprdetect::preprocess::{FrameView, Layout, YuvMatrix};
use gstalpr::meta::BBox;
use ort::value::TensorRef;

fn media(name: &str) -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("ALPR_MEDIA_DIR") {
        return Path::new(&d).join(name);
    }
    let m = Path::new(env!("CARGO_MANIFEST_DIR"));
    m.ancestors()
        .map(|a| a.join("shared/media").join(name))
        .find(|p| p.is_file())
        .expect("sample media: set ALPR_MEDIA_DIR")
}

/// A frame of the slideshow (1280x720) in `format`, taken `seek_frames` frames in.
fn frame(format: &str) -> (gst::Caps, gst::Buffer) {
    let desc = format!(
        "filesrc location=\"{}\" ! decodebin ! videoconvert ! video/x-raw,format={format} ! \
         appsink name=sink sync=false",
        media("openalpr_eu_slideshow.mp4").display()
    );
    let p = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = p
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut sample = None;
    for _ in 0..12 {
        sample = Some(sink.pull_sample().unwrap());
    }
    p.set_state(gst::State::Null).unwrap();
    let s = sample.unwrap();
    (s.caps().unwrap().to_owned(), s.buffer().unwrap().to_owned())
}

fn view<'a>(f: &'a gst_video::VideoFrameRef<&'a gst::BufferRef>, layout: Layout) -> FrameView<'a> {
    let st = f.plane_stride();
    let plane = |i: u32| f.plane_data(i).unwrap_or(&[]);
    let stride = |i: usize| st.get(i).copied().unwrap_or(0) as usize;
    FrameView {
        layout,
        width: f.width() as usize,
        height: f.height() as usize,
        planes: [plane(0), plane(1), plane(2)],
        strides: [stride(0), stride(1), stride(2)],
        matrix: YuvMatrix::bt601_limited(),
    }
}

fn bare_run(session: &mut ort::session::Session, tensor: &[f32], n: usize) -> Duration {
    let shape = [1usize, 3, 416, 416];
    let t0 = Instant::now();
    for _ in 0..n {
        let input = TensorRef::from_array_view((shape, tensor)).unwrap();
        let out = session.run(ort::inputs![input]).unwrap();
        std::hint::black_box(&out);
    }
    t0.elapsed() / n as u32
}

fn main() {
    gst::init().unwrap();
    gstalpr::plugin_register_static().unwrap();
    let models: Vec<_> = gstalpr::models::search_dirs();
    let find = |rel: &str| {
        models
            .iter()
            .map(|d| d.join(rel))
            .find(|p| p.is_file())
            .expect("models: set ALPR_MODELS_DIR")
    };
    let vehicle_path = find(gstalpr::models::VEHICLE_MODEL);
    let plate_path = find(gstalpr::models::PLATE_MODELS[0]);
    let mut vehicle = Detector::load(&vehicle_path, 1, None).unwrap();
    let mut plate = Detector::load(&plate_path, 1, None).unwrap();

    println!("pre-processing one 416x416 model input from a 1280x720 frame:");
    let formats = [
        (
            "RGB",
            Layout::Packed {
                r: 0,
                g: 1,
                b: 2,
                bpp: 3,
            },
        ),
        (
            "BGRx",
            Layout::Packed {
                r: 2,
                g: 1,
                b: 0,
                bpp: 4,
            },
        ),
        ("I420", Layout::Planar420),
        ("NV12", Layout::SemiPlanar420 { u_first: true }),
    ];
    for (name, layout) in formats {
        let (caps, buf) = frame(name);
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        let f = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &info).unwrap();
        let v = view(&f, layout);
        let full = BBox::new(0.0, 0.0, 1280.0, 720.0);
        let n = 200;
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(vehicle.prepare(&v, full));
        }
        let full_t = t0.elapsed() / n;
        let crop = BBox::new(400.0, 200.0, 500.0, 350.0);
        let t0 = Instant::now();
        for _ in 0..n {
            std::hint::black_box(plate.prepare(&v, crop));
        }
        let crop_t = t0.elapsed() / n;
        println!(
            "  {name:<5} full frame {:>6.3} ms   500x350 vehicle crop {:>6.3} ms",
            full_t.as_secs_f64() * 1e3,
            crop_t.as_secs_f64() * 1e3
        );
    }

    // The element on real frames, one thread per model.
    let (caps, buf) = frame("I420");
    let mut h = gst_check::Harness::new("alprdetect");
    h.element().unwrap().set_property("threads", 1u32);
    h.play();
    h.set_src_caps(caps);
    let frames = 30u32;
    for _ in 0..3 {
        h.push_and_pull(buf.clone()).unwrap();
    }
    let t0 = Instant::now();
    for _ in 0..frames {
        h.push_and_pull(buf.clone()).unwrap();
    }
    let element = t0.elapsed() / frames;
    let stats = h.element().unwrap().property::<gst::Structure>("stats");
    let inputs = stats.get::<u64>("model-inputs").unwrap();
    let seen = stats.get::<u64>("detected-frames").unwrap();
    let plate_inputs_per_frame = inputs as f64 / seen as f64 - 1.0;

    // Bare ONNX Runtime on the same inputs: the session alone, no pre/post-processing.
    let info =
        gst_video::VideoInfo::from_caps(&h.srcpad().unwrap().current_caps().unwrap()).unwrap();
    let f = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), &info).unwrap();
    let v = view(&f, Layout::Planar420);
    let full = BBox::new(0.0, 0.0, 1280.0, 720.0);
    vehicle.prepare(&v, full);
    plate.prepare(&v, full);
    let mut vs = gstalpr::runtime::open_session(&vehicle_path, 1).unwrap();
    let mut ps = gstalpr::runtime::open_session(&plate_path, 1).unwrap();
    bare_run(&mut vs, vehicle.tensor(), 3);
    bare_run(&mut ps, plate.tensor(), 3);
    let tv = bare_run(&mut vs, vehicle.tensor(), frames as usize);
    let tp = bare_run(&mut ps, plate.tensor(), frames as usize);
    // The model-only bound of the same workload: per frame the same sequence of runs as the
    // element (vehicle, then each plate input), so both pay the same cache cost of switching
    // between two models.
    let plate_runs = plate_inputs_per_frame.round() as usize;
    let shape = [1usize, 3, 416, 416];
    let t0 = Instant::now();
    for _ in 0..frames {
        let input = TensorRef::from_array_view((shape, vehicle.tensor())).unwrap();
        std::hint::black_box(vs.run(ort::inputs![input]).unwrap());
        for _ in 0..plate_runs {
            let input = TensorRef::from_array_view((shape, plate.tensor())).unwrap();
            std::hint::black_box(ps.run(ort::inputs![input]).unwrap());
        }
    }
    let bare = t0.elapsed().as_secs_f64() / frames as f64;
    let el = element.as_secs_f64();
    println!("element vs bare ONNX Runtime on a 1280x720 I420 frame (1 thread per model):");
    println!(
        "  model inputs per frame {:.2} (1 vehicle + {plate_inputs_per_frame:.2} plate)",
        1.0 + plate_inputs_per_frame
    );
    println!(
        "  bare ONNX Runtime: vehicle {:.2} ms, plate {:.2} ms alone; the frame's sequence of \
         runs {:.2} ms per frame",
        tv.as_secs_f64() * 1e3,
        tp.as_secs_f64() * 1e3,
        bare * 1e3
    );
    println!(
        "  inside the element per model input: pre-processing {:.2} ms, inference + decode {:.2} ms",
        stats.get::<f64>("preprocess-ms-per-input").unwrap(),
        stats.get::<f64>("inference-ms-per-input").unwrap()
    );
    println!(
        "  element: {:.2} ms per frame -> overhead {:.2} ms ({:.1}% of model time)",
        el * 1e3,
        (el - bare) * 1e3,
        (el - bare) / bare * 100.0
    );
}
