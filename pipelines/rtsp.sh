#!/usr/bin/env bash
# rtsp.sh: licence plates from an RTSP camera that reconnects by itself; local outputs.
#
#   pipelines/rtsp.sh [RTSP_URL]        (or ALPR_RTSP_URL=...; ALPR_DRY_RUN=1 prints the command)
#
#   alprsrc (rtspsrc + decoder, rebuilt whenever the camera drops) ! queue (leaky)
#     ! videoconvert ! alprdetect ! alprtrack ! alprocr ! tee
#     t. ! queue ! alprcsvsink       t. ! queue ! kafkasink (local outbox)
#   For Kafka + S3 use full-stack.sh with ALPR_SOURCE=rtsp://...
#   No camera at hand: `cargo run --example rtsp-server -- ../shared/media/street-approach.mp4`
#   serves a clip at rtsp://127.0.0.1:8554/camera (the default URL below).
#
# Environment (default):
#   GST_PLUGIN_PATH        <repo>/target/release
#   ALPR_RTSP_URL          rtsp://127.0.0.1:8554/camera  (credentials: rtsp://user:pass@host/...)
#   ALPR_RTSP_LATENCY      200      jitter buffer, ms
#   ALPR_RTSP_TRANSPORT    tcp      tcp, udp or auto
#   ALPR_RTSP_TIMEOUT      10       s without a frame = the camera is gone: reconnect
#   ALPR_RTSP_RETRY        5        s between reconnect attempts
#   ALPR_LIVE_QUEUE        4        frames buffered before alprdetect; older ones are dropped
#   ALPR_OUTPUT_DIR        <repo>/output/rtsp
#   ALPR_CAMERA_ID         rtsp-0
#   ALPR_DETECT_INTERVAL   2        ALPR_THREADS  0
#   ALPR_TRACK_THRESH      0.45     ALPR_NEW_TRACK_THRESH  0.5
#   ALPR_RESTART           1        run under pipelines/supervise, restarted only after a crash (0: no)
#   ALPR_RESTART_DELAY     5        seconds before that restart
#   ALPR_METRICS_ADDRESS, ALPR_MODELS_DIR, ORT_DYLIB_PATH  as in file.sh
#
# Properties used:
#   alprsrc uri            the camera URL (the password never appears in logs or messages)
#   alprsrc latency        ms of RTP jitter buffer: 200 is plenty on a LAN (rtspsrc's 2000 adds 2 s)
#   alprsrc rtsp-transport=tcp  RTP interleaved in the RTSP TCP connection: no lost UDP packets
#                          (grey smears in H.264), passes NAT and firewalls; costs a little latency
#   alprsrc timeout        no frame for this many s (while playing) = stalled camera: reconnect;
#                          also bounds connecting and each RTSP request
#   alprsrc retry-interval s between attempts while the camera is away (one attempt per interval)
#   queue leaky=downstream max-size-buffers=N max-size-bytes=0 max-size-time=0
#                          when detection is slower than the camera, drop the oldest frames here
#                          rather than let the RTP buffers upstream overflow (corrupt frames)
#   alprdetect interval    detect every Nth frame (2: half the inference cost; alprtrack predicts
#                          boxes in between and alprocr reads plates on detected frames only)
#   alprdetect threads, alprtrack track-thresh/new-track-thresh, alprocr camera-id,
#   alprcsvsink location, kafkasink outbox-location: see file.sh
#
# Reconnecting:
#   - alprsrc reconnects inside the running pipeline: when the camera closes the stream, the
#     connection fails or no frame comes for ALPR_RTSP_TIMEOUT, it logs a warning ("RTSP
#     connection lost (will retry in 5s): ..."), tears the inner rtspsrc down and tries again
#     every ALPR_RTSP_RETRY seconds, forever. Downstream sees one stream: no EOS, running time
#     keeps growing, the first frame after a reconnect is DISCONT (alprtrack ends its tracks
#     there: a car seen before and after an outage is two tracks). Its `status` property and
#     `alpr-link-status` bus messages say connected / connecting / disconnected.
#   - A bad URL, a stream without video or a codec without decoder is an error, not a retry loop.
#   - pipelines/supervise stays as the outer guard, for crashes only (ALPR_RESTART_ON=crash):
#     an error exit (status 1: bad URL, models missing...) is not restarted every few seconds.
#     Under Docker or systemd their restart policy (restart: on-failure, Restart=on-failure) is
#     the same guard one level up.
#   - Plain rtspsrc (GStreamer 1.22, Debian 12) does not reconnect: a lost server ends the stream.
#     fallbacksrc (gst-plugins-rs) does but is not packaged in Debian 12; alprsrc is the same idea.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$ROOT/target/release}"
URL="${1:-${ALPR_RTSP_URL:-rtsp://127.0.0.1:8554/camera}}"
LATENCY="${ALPR_RTSP_LATENCY:-200}"
TRANSPORT="${ALPR_RTSP_TRANSPORT:-tcp}"
TIMEOUT="${ALPR_RTSP_TIMEOUT:-10}"
RETRY="${ALPR_RTSP_RETRY:-5}"
LIVE_QUEUE="${ALPR_LIVE_QUEUE:-4}"
OUT="${ALPR_OUTPUT_DIR:-$ROOT/output/rtsp}"
CAMERA_ID="${ALPR_CAMERA_ID:-rtsp-0}"
DETECT_INTERVAL="${ALPR_DETECT_INTERVAL:-2}"
THREADS="${ALPR_THREADS:-0}"
TRACK_THRESH="${ALPR_TRACK_THRESH:-0.45}"
NEW_TRACK_THRESH="${ALPR_NEW_TRACK_THRESH:-0.5}"

CMD=(gst-launch-1.0 -e
  alprsrc uri="$URL" latency="$LATENCY" rtsp-transport="$TRANSPORT" timeout="$TIMEOUT"
    retry-interval="$RETRY" !
  queue leaky=downstream max-size-buffers="$LIVE_QUEUE" max-size-bytes=0 max-size-time=0 !
  videoconvert !
  alprdetect interval="$DETECT_INTERVAL" threads="$THREADS" !
  alprtrack track-thresh="$TRACK_THRESH" new-track-thresh="$NEW_TRACK_THRESH" !
  alprocr camera-id="$CAMERA_ID" ! tee name=t
  t. ! queue ! alprcsvsink location="$OUT/plate_events.csv"
  t. ! queue ! kafkasink outbox-location="$OUT/outbox"
)
if [ "${ALPR_RESTART:-1}" = 1 ]; then
  export ALPR_RESTART_ON="${ALPR_RESTART_ON:-crash}"
  CMD=("$ROOT/pipelines/supervise" "${CMD[@]}")
fi
if [ -n "${ALPR_DRY_RUN:-}" ]; then printf '%q ' "${CMD[@]}"; echo; exit 0; fi
mkdir -p "$OUT"
exec "${CMD[@]}"
