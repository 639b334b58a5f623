#!/usr/bin/env bash
# rtsp.sh: licence plates from an RTSP camera, restarted when the stream drops; local outputs.
#
#   pipelines/rtsp.sh [RTSP_URL]        (or ALPR_RTSP_URL=...; ALPR_DRY_RUN=1 prints the command)
#
#   rtspsrc ! application/x-rtp,media=video ! decodebin ! watchdog ! queue (leaky)
#     ! videoconvert ! alprdetect ! alprtrack ! alprocr ! tee
#     t. ! queue ! alprcsvsink       t. ! queue ! kafkasink (local outbox)
#   For Kafka + S3 use full-stack.sh with ALPR_SOURCE=rtsp://...
#
# Environment (default):
#   GST_PLUGIN_PATH        <repo>/target/release
#   ALPR_RTSP_URL          rtsp://127.0.0.1:8554/camera  (credentials: rtsp://user:pass@host/...)
#   ALPR_RTSP_LATENCY      200      jitter buffer, ms
#   ALPR_RTSP_TCP_TIMEOUT  10000000 µs (10 s)
#   ALPR_WATCHDOG_MS       10000    no frame for this long = error = restart
#   ALPR_LIVE_QUEUE        4        frames buffered before alprdetect; older ones are dropped
#   ALPR_OUTPUT_DIR        <repo>/output/rtsp
#   ALPR_CAMERA_ID         rtsp-0
#   ALPR_DETECT_INTERVAL   2        ALPR_THREADS  0
#   ALPR_TRACK_THRESH      0.45     ALPR_NEW_TRACK_THRESH  0.5
#   ALPR_RESTART           1        run under pipelines/supervise: restart whenever it ends (0: once)
#   ALPR_RESTART_DELAY     5        seconds between restarts
#   ALPR_METRICS_ADDRESS, ALPR_MODELS_DIR, ORT_DYLIB_PATH  as in file.sh
#
# Properties used:
#   rtspsrc location       the camera URL
#   rtspsrc latency        ms of RTP jitter buffer: 200 is plenty on a LAN (default 2000 adds 2 s)
#   rtspsrc protocols=tcp  RTP interleaved in the RTSP TCP connection: no lost UDP packets (grey
#                          smears in H.264), passes NAT and firewalls; costs a little latency
#   rtspsrc tcp-timeout    fail connecting / requests after this many µs instead of hanging
#   rtspsrc drop-on-latency  the jitter buffer never holds more than `latency`: stay live
#   application/x-rtp,media=video  links only the video stream (cameras often add audio)
#   watchdog timeout       (gst-plugins-bad) posts an error when no frame came for this many ms:
#                          a camera that stops sending without closing the connection otherwise
#                          stalls the pipeline for as long as TCP keeps the socket open
#   queue leaky=downstream max-size-buffers=N max-size-bytes=0 max-size-time=0
#                          when detection is slower than the camera, drop the oldest frames here
#                          rather than let the RTP buffers upstream overflow (corrupt frames)
#   alprdetect interval    detect every Nth frame (2: half the inference cost; alprtrack predicts
#                          boxes in between and alprocr reads plates on detected frames only)
#   alprdetect threads, alprtrack track-thresh/new-track-thresh, alprocr camera-id,
#   alprcsvsink location, kafkasink outbox-location: see file.sh
#
# Reconnecting, and what GStreamer 1.22 (Debian 12) offers:
#   - rtspsrc has no automatic reconnect: when the server goes away the stream ends (EOS when the
#     TCP connection is closed, an error when it cannot connect or the watchdog fires) and
#     gst-launch-1.0 exits. Its `retry` property is the number of retries when allocating RTP *ports*, not
#     reconnects; `timeout` is how long to wait for UDP data before retrying over TCP (irrelevant
#     with protocols=tcp); `tcp-timeout` bounds connection attempts and requests;
#     `udp-reconnect` only re-opens a closed RTSP connection while streaming over UDP.
#   - So this script restarts the whole pipeline whenever it ends (pipelines/supervise), which is
#     what Debian's packages allow. Accepted events are in the kafkasink outbox and survive it;
#     tracks open when the camera dropped are decided on EOS but lost on an error.
#   - For reconnect inside one process, `fallbacksrc` (gst-plugins-rs, plugin fallbackswitch) wraps
#     `uridecodebin3`, restarts the source on errors and stalls and can show a fallback image:
#       fallbacksrc uri=rtsp://... enable-audio=false timeout=5000000000 ! videoconvert ! alprdetect ...
#     It is not packaged in Debian 12 (build gst-plugins-rs yourself). `uridecodebin3` alone
#     (in 1.22) does not reconnect either.
#   - Under Docker or systemd, their restart policy (restart: on-failure, Restart=on-failure) is
#     the same supervisor one level up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$ROOT/target/release}"
URL="${1:-${ALPR_RTSP_URL:-rtsp://127.0.0.1:8554/camera}}"
LATENCY="${ALPR_RTSP_LATENCY:-200}"
TCP_TIMEOUT="${ALPR_RTSP_TCP_TIMEOUT:-10000000}"
WATCHDOG_MS="${ALPR_WATCHDOG_MS:-10000}"
LIVE_QUEUE="${ALPR_LIVE_QUEUE:-4}"
OUT="${ALPR_OUTPUT_DIR:-$ROOT/output/rtsp}"
CAMERA_ID="${ALPR_CAMERA_ID:-rtsp-0}"
DETECT_INTERVAL="${ALPR_DETECT_INTERVAL:-2}"
THREADS="${ALPR_THREADS:-0}"
TRACK_THRESH="${ALPR_TRACK_THRESH:-0.45}"
NEW_TRACK_THRESH="${ALPR_NEW_TRACK_THRESH:-0.5}"

CMD=(gst-launch-1.0 -e
  rtspsrc location="$URL" latency="$LATENCY" protocols=tcp tcp-timeout="$TCP_TIMEOUT"
    drop-on-latency=true ! application/x-rtp,media=video ! decodebin !
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
