// SPDX-License-Identifier: MIT OR Apache-2.0
//! Replays a detection sequence through the crate's ByteTrack and prints, for every input
//! detection, the track it was assigned to. Used by `scripts/bytetrack-agreement` to compare
//! the tracker with another implementation on identical input.
//!
//!   cargo run --release --example bytetrack-replay -- DETECTIONS.csv
//!       [--fps N] [--track-thresh X] [--new-track-thresh X]
//!
//! Input: one detection per line, `frame,x1,y1,x2,y2,score` (pixels, corner coordinates).
//! Frame numbers must not decrease. The first frame in the file is the tracker's first frame
//! (where ByteTrack confirms new tracks at once); every frame number between the first and the
//! last one is one tracker update, so a frame without detections can be written as `frame,,,,,`
//! or left out. Blank lines, `#` comments and a `frame,...` header line are skipped.
//!
//! Output (stdout): `frame,det_index,track_id` for every input detection, in input order;
//! `det_index` counts the detections of that frame from 0, `track_id` 0 means "no confirmed
//! track". `--track-thresh` alone also sets the new-track threshold to `track_thresh + 0.1`,
//! as the reference does; the other defaults are `ByteTrackConfig::default()` with `--fps 30`.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use gstalpr::alprtrack::bytetrack::{ByteTrackConfig, ByteTracker, Detection};

/// Refuse frame gaps that would mean millions of empty updates (almost surely a typo).
const MAX_FRAME_GAP: u64 = 10_000_000;

const USAGE: &str = "usage: bytetrack-replay DETECTIONS.csv [--fps N] [--track-thresh X] \
                     [--new-track-thresh X]\n  input lines: frame,x1,y1,x2,y2,score \
                     (frame,,,,, = frame without detections)\n  output lines: \
                     frame,det_index,track_id (0 = untracked)";

struct Args {
    path: String,
    config: ByteTrackConfig,
}

enum ArgsError {
    Help,
    Usage(String),
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, ArgsError> {
    let mut path = None;
    let mut fps = 30.0_f32;
    let mut track_thresh = None;
    let mut new_track_thresh = None;
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        match name.as_str() {
            "-h" | "--help" => return Err(ArgsError::Help),
            "--fps" | "--track-thresh" | "--new-track-thresh" => {
                let value = inline
                    .or_else(|| it.next())
                    .ok_or_else(|| ArgsError::Usage(format!("{name} needs a value")))?;
                let v: f32 = value
                    .trim()
                    .parse()
                    .map_err(|_| ArgsError::Usage(format!("{name}: not a number: {value:?}")))?;
                if !v.is_finite() {
                    return Err(ArgsError::Usage(format!("{name}: not finite: {value:?}")));
                }
                match name.as_str() {
                    "--fps" if v <= 0.0 => {
                        return Err(ArgsError::Usage(format!("--fps must be > 0, got {value}")));
                    }
                    "--fps" => fps = v,
                    "--track-thresh" => track_thresh = Some(v),
                    _ => new_track_thresh = Some(v),
                }
            }
            s if s.starts_with('-') && s.len() > 1 => {
                return Err(ArgsError::Usage(format!("unknown option {s}")));
            }
            _ if path.is_none() => path = Some(arg),
            _ => return Err(ArgsError::Usage(format!("unexpected argument {arg:?}"))),
        }
    }
    let path = path.ok_or_else(|| ArgsError::Usage("missing DETECTIONS.csv".into()))?;
    let mut config = ByteTrackConfig {
        frame_rate: fps,
        ..ByteTrackConfig::default()
    };
    if let Some(t) = track_thresh {
        config.track_thresh = t;
        config.new_track_thresh = t + 0.1;
    }
    if let Some(t) = new_track_thresh {
        config.new_track_thresh = t;
    }
    Ok(Args { path, config })
}

/// One parsed input line: a frame number and, unless the line is an empty-frame marker, a box.
fn parse_line(line: &str) -> Result<(u64, Option<Detection>), String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != 6 {
        return Err(format!(
            "expected 6 comma-separated fields (frame,x1,y1,x2,y2,score), got {}",
            fields.len()
        ));
    }
    let frame: u64 = fields[0].parse().map_err(|_| {
        format!(
            "frame number is not a non-negative integer: {:?}",
            fields[0]
        )
    })?;
    if fields[1..].iter().all(|f| f.is_empty()) {
        return Ok((frame, None));
    }
    let mut v = [0.0_f32; 5];
    for (slot, (name, text)) in v
        .iter_mut()
        .zip(["x1", "y1", "x2", "y2", "score"].iter().zip(&fields[1..]))
    {
        let x: f32 = text
            .parse()
            .map_err(|_| format!("{name} is not a number: {text:?}"))?;
        if !x.is_finite() {
            return Err(format!("{name} is not finite: {text:?}"));
        }
        *slot = x;
    }
    let [x1, y1, x2, y2, score] = v;
    // Degenerate boxes (x2 <= x1 ...) are passed on: the tracker ignores them (track id 0).
    let det = Detection {
        x: x1,
        y: y1,
        w: x2 - x1,
        h: y2 - y1,
        score,
        class_id: 0,
        user: 0,
    };
    Ok((frame, Some(det)))
}

fn write_frame(
    out: &mut impl Write,
    tracker: &mut ByteTracker,
    frame: u64,
    dets: &[Detection],
) -> std::io::Result<()> {
    let result = tracker.update(dets);
    for (i, id) in result.assignments.iter().enumerate() {
        writeln!(out, "{frame},{i},{}", id.unwrap_or(0))?;
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), String> {
    let path = &args.path;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut tracker = ByteTracker::new(args.config);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io_err = |e: std::io::Error| format!("writing output: {e}");

    // Frame being collected and its detections.
    let mut current: Option<u64> = None;
    let mut dets: Vec<Detection> = Vec::new();
    let mut seen_data = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !seen_data && line.split(',').next().map(str::trim) == Some("frame") {
            continue; // header
        }
        seen_data = true;
        let lineno = n + 1;
        let (frame, det) = parse_line(line).map_err(|e| format!("{path}:{lineno}: {e}"))?;
        match current {
            Some(cur) if frame < cur => {
                return Err(format!(
                    "{path}:{lineno}: frame {frame} after frame {cur}: frames must not decrease"
                ));
            }
            Some(cur) if frame > cur => {
                if frame - cur > MAX_FRAME_GAP {
                    return Err(format!(
                        "{path}:{lineno}: frame {frame} after frame {cur}: gap larger than \
                         {MAX_FRAME_GAP} frames"
                    ));
                }
                write_frame(&mut out, &mut tracker, cur, &dets).map_err(io_err)?;
                dets.clear();
                // Frames left out of the file are frames without detections.
                for missing in cur + 1..frame {
                    write_frame(&mut out, &mut tracker, missing, &[]).map_err(io_err)?;
                }
            }
            _ => {}
        }
        current = Some(frame);
        dets.extend(det);
    }
    if let Some(cur) = current {
        write_frame(&mut out, &mut tracker, cur, &dets).map_err(io_err)?;
    }
    out.flush().map_err(io_err)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(ArgsError::Usage(msg)) => {
            eprintln!("bytetrack-replay: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("bytetrack-replay: {msg}");
            ExitCode::FAILURE
        }
    }
}
