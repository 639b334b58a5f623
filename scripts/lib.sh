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
