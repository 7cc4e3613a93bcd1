# The ArqonBus image: the `arqonbus` server (every service: standalone, edge, policy,
# dispatcher, operators) and the `arqon` command, built from source.
#
#   docker build -t arqonbus .
#   docker run --rm -p 127.0.0.1:9100:9100 -p 127.0.0.1:8080:8080 arqonbus   # standalone
#   docker run --rm arqonbus edge --help
#
# The base images are build arguments; the defaults are the public ones. A machine without
# a registry builds local stand-ins with scripts/docker-base-images.sh and passes them.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# The dependency graph alone (manifests and lock file), so that the dependencies are
# rebuilt only when it changes, not on every source change.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# No symbols in the shipped binaries (a third smaller); panics still name their location.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json -p arqonbus -p arqon-cli
COPY . .
RUN cargo build --release --locked -p arqonbus -p arqon-cli \
 && cp target/release/arqonbus target/release/arqon /usr/local/bin/

# glibc, libgcc and CA certificates; no shell, no package manager.
FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ArqonBus" \
      org.opencontainers.image.description="A self-hosted real-time message bus for people, services and AI agents" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/arqonbus/arqonbus" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /usr/local/bin/arqonbus /usr/local/bin/arqon /usr/local/bin/
# Inside a container every listener is on all interfaces (the defaults outside are
# loopback), and logs are JSON lines.
ENV ARQONBUS_SERVER_HOST=0.0.0.0 \
    ARQONBUS_HTTP_HOST=0.0.0.0 \
    ARQONBUS_GRPC_HOST=0.0.0.0 \
    ARQONBUS_LOG_FORMAT=json
# The distroless `nonroot` user; a fixed id so volume permissions and Kubernetes'
# runAsNonRoot can rely on it.
USER 65532:65532
# WebSocket (edge, standalone), HTTP (/health, /ready, /metrics on every service), gRPC.
EXPOSE 9100 8080 9200
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["arqonbus", "healthcheck"]
ENTRYPOINT ["arqonbus"]
CMD ["standalone"]
