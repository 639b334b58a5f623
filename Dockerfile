# syntax=docker/dockerfile:1
# gst-alpr pipeline image: the plugin (libgstalpr.so), GStreamer 1.22 from Debian 12, ONNX Runtime
# from the PyPI wheel, the models, and pipelines/. Runs pipelines/full-stack.sh (see
# docker-compose.yml and the Deployment section of README.md).
#
#   docker build -t gst-alpr .                          # models downloaded at build time
#   docker build --build-arg FETCH_MODELS=0 -t gst-alpr .   # no models: mount them at /models

ARG RUST_VERSION=1.92
ARG ORT_VERSION=1.32.0

# --- build: the same Debian packages as scripts/lib.sh (APT_PACKAGES) ---------------------------
FROM rust:${RUST_VERSION}-bookworm AS build
ARG ORT_VERSION
ARG FETCH_MODELS=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      pkg-config build-essential curl ca-certificates python3 python3-pip \
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav \
      libgstrtspserver-1.0-dev \
      prometheus \
      libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

# libonnxruntime.so from the onnxruntime wheel (the ort crate loads it at run time, ORT_DYLIB_PATH).
RUN python3 -m pip download -q --no-deps --only-binary=:all: --dest /tmp/ort "onnxruntime==${ORT_VERSION}" \
 && mkdir -p /out/onnxruntime \
 && python3 -c 'import sys, zipfile, os; z = zipfile.ZipFile(sys.argv[1]); [open(os.path.join(sys.argv[2], os.path.basename(n)), "wb").write(z.read(n)) for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime")]' \
      /tmp/ort/onnxruntime-*.whl /out/onnxruntime \
 && test -f "/out/onnxruntime/libonnxruntime.so.${ORT_VERSION}" \
 && rm -rf /tmp/ort

WORKDIR /src
# Models into /out/models, checked against models/manifest.tsv (before COPY . . so that a source
# change does not download them again). The int8 plate model has no public URL: --trust-unpinned
# fetches the float upstream one, which alprdetect falls back to.
COPY models/manifest.tsv models/manifest.tsv
COPY scripts/fetch-models scripts/fetch-models
RUN mkdir -p /out/models \
 && if [ "$FETCH_MODELS" = 1 ]; then \
      XDG_CACHE_HOME=/tmp/cache scripts/fetch-models --trust-unpinned \
      && cp -r /tmp/cache/gst-alpr/models/. /out/models/ && rm -rf /tmp/cache; \
    fi

COPY . .

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p gst-plugin-alpr -p alpr-archive \
 && mkdir -p /out/plugins /out/bin \
 && cp target/release/libgstalpr.so /out/plugins/ \
 && cp target/release/alpr-archive /out/bin/ \
 && strip --strip-debug /out/plugins/libgstalpr.so /out/bin/alpr-archive

# --- runtime -------------------------------------------------------------------------------------
FROM debian:bookworm-slim
ARG ORT_VERSION
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
      gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
      libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 \
      libssl3 zlib1g ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/alpr --shell /usr/sbin/nologin alpr

COPY --from=build /out/plugins/ /opt/gst-alpr/plugins/
# The archive (Kafka -> PostgreSQL, search API and page): the compose `archive` service runs it.
COPY --from=build /out/bin/ /opt/gst-alpr/bin/
COPY --from=build /out/onnxruntime/ /opt/onnxruntime/
COPY --from=build /out/models/ /models/
COPY pipelines/ /opt/gst-alpr/pipelines/

# Models: baked in at /models (FETCH_MODELS=1), or mount your own folder there (same layout as
# models/manifest.tsv: vehicle/, plate/, ocr/). GST_PLUGIN_PATH points at the plugin; the
# registry cache lives in the alpr home.
ENV GST_PLUGIN_PATH=/opt/gst-alpr/plugins \
    ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.${ORT_VERSION} \
    ALPR_MODELS_DIR=/models \
    ALPR_DATA_DIR=/var/lib/alpr \
    ALPR_METRICS_ADDRESS=0.0.0.0:8001

USER alpr
WORKDIR /var/lib/alpr
VOLUME ["/var/lib/alpr"]
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8001/metrics >/dev/null || exit 1
ENTRYPOINT ["/opt/gst-alpr/pipelines/full-stack.sh"]
