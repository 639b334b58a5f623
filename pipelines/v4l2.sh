#!/usr/bin/env bash
# v4l2.sh: licence plates from a V4L2 camera (USB / CSI webcam, HDMI capture card); local outputs.
#
#   pipelines/v4l2.sh [DEVICE]          (or ALPR_V4L2_DEVICE=...; ALPR_DRY_RUN=1 prints the command)
#
#   v4l2src ! <caps> [! jpegdec] ! watchdog ! queue (leaky) ! videoconvert
#     ! alprdetect ! alprtrack ! alprocr ! tee
#     t. ! queue ! alprcsvsink       t. ! queue ! kafkasink (local outbox)
#
# List what the camera offers with `v4l2-ctl --list-formats-ext -d /dev/video0` (package
# v4l-utils) or `gst-device-monitor-1.0 Video/Source`, and pick a format/size/rate it lists:
# caps it cannot produce fail with "not-negotiated".
#
# Environment (default):
#   GST_PLUGIN_PATH        <repo>/target/release
#   ALPR_V4L2_DEVICE       /dev/video0
#   ALPR_V4L2_FORMAT       raw       raw (uncompressed, e.g. YUY2) or mjpeg (most USB cameras give
#                                    1280x720 and more at 30 fps only as MJPEG; decoded by jpegdec)
#   ALPR_V4L2_WIDTH        1280      ALPR_V4L2_HEIGHT  720      ALPR_V4L2_FPS  30
#   ALPR_WATCHDOG_MS       10000     no frame for this long = error = restart
#   ALPR_LIVE_QUEUE        4         frames buffered before alprdetect; older ones are dropped
#   ALPR_OUTPUT_DIR        <repo>/output/v4l2
#   ALPR_CAMERA_ID         v4l2-0
#   ALPR_DETECT_INTERVAL   2         ALPR_THREADS  0
#   ALPR_TRACK_THRESH      0.45      ALPR_NEW_TRACK_THRESH  0.5
#   ALPR_RESTART           1         run under pipelines/supervise (an unplugged camera comes back)
#   ALPR_RESTART_DELAY     5
#   ALPR_METRICS_ADDRESS, ALPR_MODELS_DIR, ORT_DYLIB_PATH  as in file.sh
#
# Properties used:
#   v4l2src device         the video device node
#   video/x-raw,width=,height=,framerate=   (or image/jpeg,...) the mode asked of the camera; plates
#                          need pixels: 1280x720 or more for a lane, 1920x1080 for wide scenes
#   jpegdec                (mjpeg only) decodes the camera's JPEG frames
#   watchdog timeout       error after this many ms without a frame (a hung camera or driver)
#   queue leaky=downstream max-size-buffers=N max-size-bytes=0 max-size-time=0
#                          drop the oldest frames when detection is slower than the camera,
#                          instead of stalling the capture (v4l2src would drop frames anyway)
#   alprdetect interval, threads; alprtrack track-thresh, new-track-thresh; alprocr camera-id;
#   alprcsvsink location; kafkasink outbox-location: see file.sh and rtsp.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$ROOT/target/release}"
DEVICE="${1:-${ALPR_V4L2_DEVICE:-/dev/video0}}"
FORMAT="${ALPR_V4L2_FORMAT:-raw}"
WIDTH="${ALPR_V4L2_WIDTH:-1280}"
HEIGHT="${ALPR_V4L2_HEIGHT:-720}"
FPS="${ALPR_V4L2_FPS:-30}"
WATCHDOG_MS="${ALPR_WATCHDOG_MS:-10000}"
LIVE_QUEUE="${ALPR_LIVE_QUEUE:-4}"
OUT="${ALPR_OUTPUT_DIR:-$ROOT/output/v4l2}"
CAMERA_ID="${ALPR_CAMERA_ID:-v4l2-0}"
DETECT_INTERVAL="${ALPR_DETECT_INTERVAL:-2}"
THREADS="${ALPR_THREADS:-0}"
TRACK_THRESH="${ALPR_TRACK_THRESH:-0.45}"
NEW_TRACK_THRESH="${ALPR_NEW_TRACK_THRESH:-0.5}"

case "$FORMAT" in
  raw) CAPS=("video/x-raw,width=$WIDTH,height=$HEIGHT,framerate=$FPS/1") ;;
  mjpeg) CAPS=("image/jpeg,width=$WIDTH,height=$HEIGHT,framerate=$FPS/1" '!' jpegdec) ;;
  *) echo "v4l2.sh: ALPR_V4L2_FORMAT must be raw or mjpeg, not $FORMAT" >&2; exit 2 ;;
esac

CMD=(gst-launch-1.0 -e
  v4l2src device="$DEVICE" ! "${CAPS[@]}" !
  watchdog timeout="$WATCHDOG_MS" !
  queue leaky=downstream max-size-buffers="$LIVE_QUEUE" max-size-bytes=0 max-size-time=0 !
  videoconvert !
  alprdetect interval="$DETECT_INTERVAL" threads="$THREADS" !
  alprtrack track-thresh="$TRACK_THRESH" new-track-thresh="$NEW_TRACK_THRESH" !
  alprocr camera-id="$CAMERA_ID" ! tee name=t
  t. ! queue ! alprcsvsink location="$OUT/plate_events.csv"
  t. ! queue ! kafkasink outbox-location="$OUT/outbox"
)
if [ "${ALPR_RESTART:-1}" = 1 ]; then CMD=("$ROOT/pipelines/supervise" "${CMD[@]}"); fi
if [ -n "${ALPR_DRY_RUN:-}" ]; then printf '%q ' "${CMD[@]}"; echo; exit 0; fi
mkdir -p "$OUT"
exec "${CMD[@]}"
