# shellcheck shell=bash
# Shared helpers for the gst-alpr scripts: sourced, never run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/gst-alpr"
ORT_VERSION="${ORT_VERSION:-1.32.0}"

log() { printf '\033[1m[gst-alpr]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[gst-alpr] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $*"; fi
}

APT_PACKAGES=(
  pkg-config build-essential curl ca-certificates python3 python3-pip
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav
  libgstrtspserver-1.0-dev
  prometheus
  libssl-dev zlib1g-dev
)

# Installs the Debian packages that are missing (no apt call at all when none is).
ensure_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null || die "cargo not found: install Rust >= 1.92 with rustup (https://rustup.rs)"
}

# ONNX Runtime: the shared library from the PyPI wheel, extracted once into the cache.
ensure_onnxruntime() {
  if [ -n "${ORT_DYLIB_PATH:-}" ]; then
    [ -f "$ORT_DYLIB_PATH" ] || die "ORT_DYLIB_PATH=$ORT_DYLIB_PATH does not exist"
    return
  fi
  local dir="$CACHE/onnxruntime"
  if [ ! -f "$dir/libonnxruntime.so.$ORT_VERSION" ]; then
    log "fetching libonnxruntime.so $ORT_VERSION from the PyPI onnxruntime wheel"
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip download -q --no-deps --only-binary=:all: --dest "$tmp" "onnxruntime==$ORT_VERSION" \
      || die "pip could not download onnxruntime==$ORT_VERSION"
    mkdir -p "$dir"
    python3 - "$tmp"/onnxruntime-*.whl "$dir" <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with z.open(n) as src, open(os.path.join(dest, base), "wb") as dst:
                dst.write(src.read())
PY
    rm -rf "$tmp"
    [ -f "$dir/libonnxruntime.so.$ORT_VERSION" ] || die "the onnxruntime wheel had no libonnxruntime.so.$ORT_VERSION"
  fi
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$dir/libonnxruntime.so"
  export ORT_DYLIB_PATH="$dir/libonnxruntime.so.$ORT_VERSION"
}

# Models: $ALPR_MODELS_DIR, ../shared/models, or the cache (downloaded and checked).
ensure_models() {
  if [ -z "${ALPR_MODELS_DIR:-}" ] && [ -d "$ROOT/../shared/models" ]; then
    export ALPR_MODELS_DIR="$(cd "$ROOT/../shared/models" && pwd)"
  fi
  "$ROOT/scripts/fetch-models" --check-or-fetch
}

# Test media: $ALPR_MEDIA_DIR or ../shared/media.
ensure_media() {
  if [ -z "${ALPR_MEDIA_DIR:-}" ] && [ -d "$ROOT/../shared/media" ]; then
    export ALPR_MEDIA_DIR="$(cd "$ROOT/../shared/media" && pwd)"
  fi
  if [ -z "${ALPR_DATA_DIR:-}" ] && [ -d "$ROOT/../shared/data" ]; then
    export ALPR_DATA_DIR="$(cd "$ROOT/../shared/data" && pwd)"
  fi
  [ -n "${ALPR_MEDIA_DIR:-}" ] || die "no test media: set ALPR_MEDIA_DIR (the sample clips of ../shared/media)"
}

# The tansu Kafka broker the kafkasink tests start: $ALPR_TANSU, the prebuilt ../shared/bin/tansu,
# or a cached `cargo install` (~20 min on 2 cores, once per machine).
TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
ensure_tansu() {
  if [ -n "${ALPR_TANSU:-}" ]; then
    [ -x "$ALPR_TANSU" ] || die "ALPR_TANSU=$ALPR_TANSU is not an executable"
    return
  fi
  if [ -x "$ROOT/../shared/bin/tansu" ]; then
    export ALPR_TANSU="$(cd "$ROOT/../shared/bin" && pwd)/tansu"
    return
  fi
  local root="$CACHE/tansu"
  if [ ! -x "$root/bin/tansu" ] || ! "$root/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    log "building the tansu Kafka broker $TANSU_VERSION into $root (once; ~20 min on 2 cores)"
    cargo install tansu --version "$TANSU_VERSION" --features dynostore,libsql --root "$root" \
      || die "cargo install tansu $TANSU_VERSION failed"
  fi
  export ALPR_TANSU="$root/bin/tansu"
}

# The s3s-fs S3 server the s3sink tests start: $ALPR_S3S_FS, the prebuilt ../shared/bin/s3s-fs,
# or a cached `cargo install` (a few minutes, once per machine; 0.17 needs a newer rustc).
S3S_FS_VERSION="${S3S_FS_VERSION:-0.14.1}"
ensure_s3s_fs() {
  if [ -n "${ALPR_S3S_FS:-}" ]; then
    [ -x "$ALPR_S3S_FS" ] || die "ALPR_S3S_FS=$ALPR_S3S_FS is not an executable"
    return
  fi
  if [ -x "$ROOT/../shared/bin/s3s-fs" ]; then
    export ALPR_S3S_FS="$(cd "$ROOT/../shared/bin" && pwd)/s3s-fs"
    return
  fi
  local root="$CACHE/s3s-fs"
  if [ ! -x "$root/bin/s3s-fs" ] || ! "$root/bin/s3s-fs" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
    log "building the s3s-fs S3 server $S3S_FS_VERSION into $root (once)"
    cargo install s3s-fs --version "$S3S_FS_VERSION" --features binary --root "$root" \
      || die "cargo install s3s-fs $S3S_FS_VERSION failed"
  fi
  export ALPR_S3S_FS="$root/bin/s3s-fs"
}

# Starts the local test services on 127.0.0.1, data and logs under DIR: the tansu Kafka broker
# on KAFKA_PORT (topics alpr.events.plates and alpr.events.vehicles created), the Schema
# Registry example (target/release/examples/schema-registry, built by the caller) on
# REGISTRY_PORT and, when S3_PORT is given, s3s-fs (access key alpr-demo, secret
# alpr-demo-secret-key). Stops them when the calling script exits, unless
# ALPR_DEMO_KEEP_SERVICES=1.
#   start_local_services DIR KAFKA_PORT REGISTRY_PORT [S3_PORT]
SERVICE_PIDS=()
start_local_services() {
  local dir="$1" kafka_port="$2" registry_port="$3" s3_port="${4:-}" p
  mkdir -p "$dir/kafka"
  for p in "$kafka_port" "$registry_port" $s3_port; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "port $p on 127.0.0.1 is already in use: stop what listens there or choose other ports (see the header of the calling script)"
    fi
  done
  trap stop_local_services EXIT
  local url="tcp://127.0.0.1:$kafka_port"
  (cd "$dir/kafka" && RUST_LOG=warn exec "$ALPR_TANSU" broker --listener-url "$url" \
    --advertised-listener-url "$url" --storage-engine sqlite://tansu.db) >"$dir/kafka.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_port "tansu (Kafka)" "$kafka_port" "$!" "$dir/kafka.log"
  "$ROOT/target/release/examples/schema-registry" "$registry_port" >"$dir/registry.log" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_port "schema registry" "$registry_port" "$!" "$dir/registry.log"
  if [ -n "$s3_port" ]; then
    mkdir -p "$dir/s3"
    RUST_LOG=warn "$ALPR_S3S_FS" --host 127.0.0.1 --port "$s3_port" --access-key alpr-demo \
      --secret-key alpr-demo-secret-key "$dir/s3" >"$dir/s3.log" 2>&1 &
    SERVICE_PIDS+=($!)
    wait_port "s3s-fs (S3)" "$s3_port" "$!" "$dir/s3.log"
  fi
  local topic
  for topic in alpr.events.plates alpr.events.vehicles; do
    "$ALPR_TANSU" topic create "$topic" --partitions 1 --broker "$url" >>"$dir/kafka.log" 2>&1 \
      || die "creating Kafka topic $topic failed: see $dir/kafka.log"
  done
}

# A PostgreSQL cluster in $1 on 127.0.0.1:$2 (Debian's server binaries; run as the postgres user
# when we are root: the server refuses root). Its postmaster joins SERVICE_PIDS.
start_local_postgres() {
  local dir="$1" port="$2" bin run=()
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$bin/initdb" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt install postgresql)"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is already in use: stop what listens there or choose another port (see the header of the calling script)"
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; run=(runuser -u postgres --); fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 \
    || die "initdb failed: see $dir/initdb.log"
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null \
    || die "PostgreSQL did not start: see $dir/postgres.log"
  SERVICE_PIDS+=("$(head -1 "$dir/data/postmaster.pid")")
}

stop_local_services() {
  [ ${#SERVICE_PIDS[@]} -gt 0 ] || return 0
  if [ "${ALPR_DEMO_KEEP_SERVICES:-0}" = 1 ]; then
    log "services left running (pids ${SERVICE_PIDS[*]}): kill ${SERVICE_PIDS[*]} to stop them"
  else
    kill "${SERVICE_PIDS[@]}" 2>/dev/null || true
    wait "${SERVICE_PIDS[@]}" 2>/dev/null || true
  fi
}

# Waits until NAME listens on 127.0.0.1:PORT; dies when process PID exits or after 15 s.
#   wait_port NAME PORT PID LOG
wait_port() {
  local _
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || die "$1 exited at start: see $4"
    sleep 0.1
  done
  die "$1 did not listen on 127.0.0.1:$2 within 15 s: see $4"
}

# The Python reference pipeline of scripts/bench (scripts/bench-reference): OpenCV, ONNX Runtime
# (the same version as the elements load) and supervision's ByteTrack, in a venv created once.
BENCH_PY_REQUIREMENTS="onnxruntime==$ORT_VERSION supervision==0.25.1 numpy pyyaml"
ensure_bench_venv() {
  local venv="$CACHE/py-bench/venv"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating the Python venv of the bench reference in $venv"
    python3 -m venv "$venv" || die "python3 -m venv $venv failed (Debian: apt install python3-venv)"
  fi
  if [ "$(cat "$venv/.gst-alpr-stamp" 2>/dev/null)" != "$BENCH_PY_REQUIREMENTS" ]; then
    log "installing $BENCH_PY_REQUIREMENTS into $venv (once)"
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install -q --disable-pip-version-check $BENCH_PY_REQUIREMENTS \
      || die "pip install $BENCH_PY_REQUIREMENTS failed"
    echo "$BENCH_PY_REQUIREMENTS" > "$venv/.gst-alpr-stamp"
  fi
  export ALPR_BENCH_PYTHON="$venv/bin/python"
}

setup_all() {
  ensure_apt "$@"
  ensure_rust
  ensure_onnxruntime
  ensure_models
  ensure_media
  ensure_tansu
  ensure_s3s_fs
}
