# syntax=docker/dockerfile:1.7
# adpipe: build the WASM plugins and the host with the repository's own scripts (the
# same commands CI runs: scripts/build-plugins, cargo build -p adpipe), then copy the
# binary, the plugins pipelines.toml names and pipelines.toml into a minimal runtime.
#
#   docker build -t adpipe:0.1.0 .
#   docker run -p 8080:8080 -v adpipe-data:/var/lib/adpipe adpipe:0.1.0
#
# scripts/test-deploy lints this file (hadolint, checkov) and stages the runtime
# layout it describes (/app/pipelines.toml + /app/dist/plugins) to run `adpipe check`.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# The plugins pipelines.toml names (dist/plugins/<name>.wasm); test plugins stay out.
ARG PLUGINS="meta google linkedin tiktok pinterest microsoft metrics-leads metrics-blended"
WORKDIR /src
COPY . .
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-plugins \
 && cargo build --release --locked -p adpipe \
 && install -D -m 0755 target/release/adpipe /out/usr/local/bin/adpipe \
 && install -D -m 0644 pipelines.toml /out/app/pipelines.toml \
 && for p in ${PLUGINS}; do install -D -m 0644 "dist/plugins/$p.wasm" "/out/app/dist/plugins/$p.wasm"; done

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# libssl3: librdkafka's TLS (Kafka mode); ca-certificates: its trust roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 adpipe \
 && useradd --system --uid 10001 --gid adpipe --home-dir /var/lib/adpipe --shell /usr/sbin/nologin adpipe \
 && install -d -o adpipe -g adpipe -m 0750 /var/lib/adpipe
COPY --from=build /out/ /
WORKDIR /app
ENV ADPIPE_SERVER__LISTEN=0.0.0.0:8080 \
    ADPIPE_SERVER__DATA_DIR=/var/lib/adpipe
USER 10001:10001
EXPOSE 8080
VOLUME ["/var/lib/adpipe"]
# No curl in the image: bash speaks HTTP/1.0 to /healthz over /dev/tcp.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["adpipe"]
CMD ["serve", "--config", "/app/pipelines.toml"]
