#!/usr/bin/env bash
# file.sh: licence plates from a video file, with local outputs only (no service needed).
#
#   pipelines/file.sh [VIDEO]          (or ALPR_VIDEO=...; ALPR_DRY_RUN=1 prints the command)
#
#   filesrc ! decodebin ! videoconvert ! alprdetect ! alprtrack ! alprocr ! tee
#     t. ! queue ! alprcsvsink        one CSV row per plate event
#     t. ! queue ! kafkasink          local mode (no brokers): events kept in the SQLite outbox,
#                                     delivered later if the same outbox is reused with brokers
#
# Environment (default):
#   GST_PLUGIN_PATH        <repo>/target/release (where `cargo build --release` puts libgstalpr.so)
#   ALPR_VIDEO             first argument, else $ALPR_MEDIA_DIR/motorway.mp4 (../shared/media)
#   ALPR_OUTPUT_DIR        <repo>/output/file
#   ALPR_CAMERA_ID         file-0
#   ALPR_DETECT_INTERVAL   1       (a file is not live: detect on every frame)
#   ALPR_THREADS           0       (ONNX Runtime threads per model, 0 = one per core)
#   ALPR_TRACK_THRESH      0.45    ALPR_NEW_TRACK_THRESH  0.5   (tuned for YOLOX-Nano, see README)
#   ALPR_METRICS_ADDRESS   read by the elements themselves: /metrics on 0.0.0.0:8001, "off" disables
#   ALPR_MODELS_DIR, ORT_DYLIB_PATH   as printed by scripts/setup
#
# Properties used:
#   filesrc location          the video file; decodebin picks demuxer and decoder
#   videoconvert              (no property) lets alprdetect receive a raw format it accepts
#   alprdetect interval       run the detectors on every Nth frame; alprtrack predicts in between
#   alprdetect threads        ONNX Runtime intra-op threads per model (0 = one per core)
#   alprtrack track-thresh    score above which a detection is in the first association
#   alprtrack new-track-thresh  minimum score that starts a track
#   alprocr camera-id         camera name put in every event (Kafka key, crop key, CSV column)
#   tee name=t                splits the stream; every branch starts with its own queue (thread)
#   alprcsvsink location      CSV file the events are appended to (header first, fsync per buffer)
#   kafkasink outbox-location directory of outbox.sqlite; no brokers set = local mode
#
# gst-launch-1.0 -e turns Ctrl-C into an EOS, so alprocr decides every open track before exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$ROOT/target/release}"
VIDEO="${1:-${ALPR_VIDEO:-${ALPR_MEDIA_DIR:-$ROOT/../shared/media}/motorway.mp4}}"
OUT="${ALPR_OUTPUT_DIR:-$ROOT/output/file}"
CAMERA_ID="${ALPR_CAMERA_ID:-file-0}"
DETECT_INTERVAL="${ALPR_DETECT_INTERVAL:-1}"
THREADS="${ALPR_THREADS:-0}"
TRACK_THRESH="${ALPR_TRACK_THRESH:-0.45}"
NEW_TRACK_THRESH="${ALPR_NEW_TRACK_THRESH:-0.5}"

[ -f "$VIDEO" ] || { echo "file.sh: no video file $VIDEO (give a path or set ALPR_VIDEO)" >&2; exit 2; }

CMD=(gst-launch-1.0 -e
  filesrc location="$VIDEO" ! decodebin ! videoconvert !
  alprdetect interval="$DETECT_INTERVAL" threads="$THREADS" !
  alprtrack track-thresh="$TRACK_THRESH" new-track-thresh="$NEW_TRACK_THRESH" !
  alprocr camera-id="$CAMERA_ID" ! tee name=t
  t. ! queue ! alprcsvsink location="$OUT/plate_events.csv"
  t. ! queue ! kafkasink outbox-location="$OUT/outbox"
)
if [ -n "${ALPR_DRY_RUN:-}" ]; then printf '%q ' "${CMD[@]}"; echo; exit 0; fi
mkdir -p "$OUT"
exec "${CMD[@]}"
