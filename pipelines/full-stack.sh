#!/usr/bin/env bash
# full-stack.sh: one camera (file, RTSP or V4L2) to every output: Kafka (events, Avro through the
# Schema Registry), S3 / MinIO (plate crops) and a local CSV. Prometheus metrics on :8001.
# This is what the `pipeline` service of docker-compose.yml runs.
#
#   pipelines/full-stack.sh [SOURCE]    (or ALPR_SOURCE=...; ALPR_DRY_RUN=1 prints the command)
#
#   <source> ! videoconvert ! alprdetect ! alprtrack ! alprocr ! tee
#     t. ! queue ! kafkasink       events -> SQLite outbox -> Kafka (replayed after outages)
#     t. ! queue ! s3sink          crops  -> local directory -> S3 bucket (uploaded after outages)
#     t. ! queue ! alprcsvsink     events -> CSV file
#
# SOURCE decides the source part:
#   rtsp://... rtsps://...   alprsrc uri=... (reconnects by itself) ! leaky queue (as rtsp.sh)
#   /dev/video*              v4l2src device=... ! video/x-raw,width,height,framerate (as v4l2.sh)
#   other scheme://...       uridecodebin uri=... (http, file://, ...)
#   anything else            a file path: filesrc location=... ! decodebin (as file.sh)
# Live sources get a leaky queue (see rtsp.sh) and run under pipelines/supervise: a V4L2 camera
# with a watchdog, restarted whenever the pipeline ends; an RTSP camera reconnects inside alprsrc,
# so supervise restarts it only after a crash (ALPR_RESTART_ON=crash).
#
# Environment (default):
#   GST_PLUGIN_PATH          <repo>/target/release
#   ALPR_SOURCE              first argument, else $ALPR_MEDIA_DIR/motorway.mp4 (../shared/media)
#   ALPR_DATA_DIR            <repo>/output/full-stack: outbox, crops and CSV (a volume in Docker)
#   ALPR_CAMERA_ID           camera-0      ALPR_SOURCE_NAME  (host name)  `source` of every event
#   ALPR_DETECT_INTERVAL     1 for files, 2 for live sources    ALPR_THREADS  0
#   ALPR_TRACK_THRESH        0.45          ALPR_NEW_TRACK_THRESH  0.5
#   ALPR_KAFKA_BROKERS       localhost:9092                 (kafka:9092 in docker-compose)
#   ALPR_SCHEMA_REGISTRY     http://localhost:8081          (http://schema-registry:8081)
#   ALPR_PLATES_TOPIC        alpr.events.plates   ALPR_VEHICLES_TOPIC  alpr.events.vehicles
#   ALPR_KAFKA_RETRY         30            seconds between Kafka connection attempts
#   ALPR_S3_ENDPOINT         http://localhost:9000          (http://minio:9000)
#   ALPR_S3_BUCKET           alpr-plate-images
#   ALPR_S3_REGION           us-east-1
#   ALPR_S3_ACCESS_KEY_ID, ALPR_S3_SECRET_ACCESS_KEY   set: passed as properties (visible in `ps`
#                            on this host); unset: s3sink's own lookup (AWS_* environment)
#   ALPR_S3_RETRY            30            seconds between S3 connection attempts
#   ALPR_S3_CREATE_BUCKET    false         create the bucket if missing (compose's minio-init does)
#   ALPR_RTSP_LATENCY 200, ALPR_RTSP_TRANSPORT tcp, ALPR_RTSP_TIMEOUT 10, ALPR_RTSP_RETRY 5,
#   ALPR_WATCHDOG_MS 10000, ALPR_LIVE_QUEUE 4, ALPR_V4L2_WIDTH/HEIGHT/FPS 1280/720/30: as in
#   rtsp.sh and v4l2.sh
#   ALPR_RESTART             1 for live sources (pipelines/supervise), 0 for files
#   ALPR_METRICS_ADDRESS     read by the elements: /metrics on 0.0.0.0:8001 ("off" disables)
#
# Properties used (the source part and the analysers: see file.sh, rtsp.sh, v4l2.sh):
#   alprocr camera-id, source  camera name and host/pipeline name put in every event
#   tee name=t                one queue (one thread) per branch, so a slow sink never blocks another
#   kafkasink name=kafka      element name: the `sink` label of the alpr_sink_* series
#   kafkasink brokers, schema-registry   Kafka bootstrap servers and registry URL (both needed)
#   kafkasink plates-topic, vehicles-topic   topics; they must exist (compose's kafka-init makes them)
#   kafkasink retry-interval  seconds between connection attempts while events wait
#   kafkasink outbox-location directory of outbox.sqlite: keep it on a volume, it is the backlog
#   s3sink name=s3            element name: the `sink` label
#   s3sink endpoint, bucket, region      S3 API URL (MinIO), bucket of the crops, signing region
#   s3sink force-path-style   http://endpoint/bucket/key addressing, what MinIO needs
#   s3sink access-key-id, secret-access-key   credentials (optional, see above)
#   s3sink location           local directory every crop is written to before its upload
#   s3sink retry-interval     seconds between connection attempts while crops wait
#   s3sink create-bucket      create the bucket on first connect
#   alprcsvsink location      CSV of every event, a local record independent of the services
#
# s3sink is new: its property names above follow its first version. Check them against
# `gst-inspect-1.0 s3sink` (endpoint, bucket, region, force-path-style, access-key-id,
# secret-access-key, location, retry-interval, create-bucket); plugins/alpr/tests/deploy.rs
# checks them once plugins/alpr/tests/snapshots/s3sink.txt exists.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

export GST_PLUGIN_PATH="${GST_PLUGIN_PATH:-$ROOT/target/release}"
SOURCE="${1:-${ALPR_SOURCE:-${ALPR_MEDIA_DIR:-$ROOT/../shared/media}/motorway.mp4}}"
DATA="${ALPR_DATA_DIR:-$ROOT/output/full-stack}"
CAMERA_ID="${ALPR_CAMERA_ID:-camera-0}"
SOURCE_NAME="${ALPR_SOURCE_NAME:-$HOSTNAME}"
THREADS="${ALPR_THREADS:-0}"
TRACK_THRESH="${ALPR_TRACK_THRESH:-0.45}"
NEW_TRACK_THRESH="${ALPR_NEW_TRACK_THRESH:-0.5}"
BROKERS="${ALPR_KAFKA_BROKERS:-localhost:9092}"
REGISTRY="${ALPR_SCHEMA_REGISTRY:-http://localhost:8081}"
PLATES_TOPIC="${ALPR_PLATES_TOPIC:-alpr.events.plates}"
VEHICLES_TOPIC="${ALPR_VEHICLES_TOPIC:-alpr.events.vehicles}"
KAFKA_RETRY="${ALPR_KAFKA_RETRY:-30}"
S3_ENDPOINT="${ALPR_S3_ENDPOINT:-http://localhost:9000}"
S3_BUCKET="${ALPR_S3_BUCKET:-alpr-plate-images}"
S3_REGION="${ALPR_S3_REGION:-us-east-1}"
S3_RETRY="${ALPR_S3_RETRY:-30}"
S3_CREATE_BUCKET="${ALPR_S3_CREATE_BUCKET:-false}"
LATENCY="${ALPR_RTSP_LATENCY:-200}"
TRANSPORT="${ALPR_RTSP_TRANSPORT:-tcp}"
RTSP_TIMEOUT="${ALPR_RTSP_TIMEOUT:-10}"
RTSP_RETRY="${ALPR_RTSP_RETRY:-5}"
WATCHDOG_MS="${ALPR_WATCHDOG_MS:-10000}"
LIVE_QUEUE="${ALPR_LIVE_QUEUE:-4}"
WIDTH="${ALPR_V4L2_WIDTH:-1280}"
HEIGHT="${ALPR_V4L2_HEIGHT:-720}"
FPS="${ALPR_V4L2_FPS:-30}"

# Live sources: a leaky queue (drop, never stall capture); V4L2 also a watchdog (error when
# frames stop), RTSP has alprsrc's own no-frame timeout instead.
LEAKY=(queue leaky=downstream max-size-buffers="$LIVE_QUEUE" max-size-bytes=0 max-size-time=0)
restart_on=exit
case "$SOURCE" in
  rtsp://* | rtsps://*)
    SRC=(alprsrc uri="$SOURCE" latency="$LATENCY" rtsp-transport="$TRANSPORT"
      timeout="$RTSP_TIMEOUT" retry-interval="$RTSP_RETRY" '!' "${LEAKY[@]}")
    live=1 restart_on=crash ;;
  /dev/video*)
    SRC=(v4l2src device="$SOURCE" '!' "video/x-raw,width=$WIDTH,height=$HEIGHT,framerate=$FPS/1"
      '!' watchdog timeout="$WATCHDOG_MS" '!' "${LEAKY[@]}")
    live=1 ;;
  *://*)
    SRC=(uridecodebin uri="$SOURCE")
    live=0 ;;
  *)
    [ -f "$SOURCE" ] || { echo "full-stack.sh: no video file $SOURCE (set ALPR_SOURCE)" >&2; exit 2; }
    SRC=(filesrc location="$SOURCE" '!' decodebin)
    live=0 ;;
esac
DETECT_INTERVAL="${ALPR_DETECT_INTERVAL:-$((live ? 2 : 1))}"

# Credentials as properties only when given; otherwise s3sink looks them up itself.
S3_CREDENTIALS=()
if [ -n "${ALPR_S3_ACCESS_KEY_ID:-}" ]; then
  S3_CREDENTIALS=(access-key-id="$ALPR_S3_ACCESS_KEY_ID"
    secret-access-key="${ALPR_S3_SECRET_ACCESS_KEY:?ALPR_S3_SECRET_ACCESS_KEY is needed with ALPR_S3_ACCESS_KEY_ID}")
fi

CMD=(gst-launch-1.0 -e
  "${SRC[@]}" ! videoconvert !
  alprdetect interval="$DETECT_INTERVAL" threads="$THREADS" !
  alprtrack track-thresh="$TRACK_THRESH" new-track-thresh="$NEW_TRACK_THRESH" !
  alprocr camera-id="$CAMERA_ID" source="$SOURCE_NAME" ! tee name=t
  t. ! queue ! kafkasink name=kafka brokers="$BROKERS" schema-registry="$REGISTRY"
    plates-topic="$PLATES_TOPIC" vehicles-topic="$VEHICLES_TOPIC" retry-interval="$KAFKA_RETRY"
    outbox-location="$DATA/kafka-outbox"
  t. ! queue ! s3sink name=s3 endpoint="$S3_ENDPOINT" bucket="$S3_BUCKET" region="$S3_REGION"
    force-path-style=true "${S3_CREDENTIALS[@]}" location="$DATA/crops"
    retry-interval="$S3_RETRY" create-bucket="$S3_CREATE_BUCKET"
  t. ! queue ! alprcsvsink location="$DATA/plate_events.csv"
)
if [ "${ALPR_RESTART:-$live}" = 1 ]; then
  export ALPR_RESTART_ON="${ALPR_RESTART_ON:-$restart_on}"
  CMD=("$ROOT/pipelines/supervise" "${CMD[@]}")
fi
if [ -n "${ALPR_DRY_RUN:-}" ]; then printf '%q ' "${CMD[@]}"; echo; exit 0; fi
mkdir -p "$DATA"
exec "${CMD[@]}"
