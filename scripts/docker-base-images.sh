#!/usr/bin/env bash
# Builds local stand-ins for the public images that the Dockerfile and docker-compose.yml
# name, for a machine whose Docker engine cannot pull from a registry (such as the one
# the tests run on). Users with a registry never need this: the defaults are the real
# images.
#
# Prints, on stdout, the variables that point the Dockerfile's build arguments and the
# compose file at the stand-ins (KEY=VALUE lines, for `export` or `--env-file`):
#
#   ARQONBUS_RUST_IMAGE       debootstrap'd Debian 12 + gcc + this machine's Rust toolchain
#                             and its extra CA certificates (crates are fetched inside)
#   ARQONBUS_RUNTIME_IMAGE    distroless-like: glibc, libgcc, CA certificates, user 65532
#   ARQONBUS_NATS_IMAGE       Debian 12 + nats-server (from scripts/install-nats.sh) + wget
#   ARQONBUS_LB_IMAGE         Debian 12 + HAProxy 2.6 (Debian's) + wget
#   ARQONBUS_PROMETHEUS_IMAGE Debian 12 + Prometheus 2.42 (Debian's) + wget
#
# The OpenTelemetry collector, Jaeger and Grafana have no stand-in: neither Debian nor
# PyPI carries them, so they are validated (docker compose config) but not run here.
#
# An image that exists already is kept; ARQONBUS_REBUILD_BASE_IMAGES=1 builds them all
# again. Needs root (debootstrap) and a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix="arqonbus-local"
debian="$prefix/debian:bookworm"
rust_version="$(rustc --version | awk '{print $2}')"
rust="$prefix/rust:$rust_version-bookworm"
runtime="$prefix/distroless-cc:nonroot"
nats_version="2.11"
nats="$prefix/nats:$nats_version"
lb="$prefix/haproxy:2.6"
prometheus="$prefix/prometheus:2.42"

log() { echo "docker-base-images: $*" >&2; }
exists() { [ "${ARQONBUS_REBUILD_BASE_IMAGES:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The Debian mirror this machine uses (its apt sources), else Debian's own.
mirror() {
  local uri
  uri="$(sed -n 's/^URIs:[[:space:]]*\(.*\/debian\)[[:space:]]*$/\1/p' \
    /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

rootfs=""
# One debootstrap (Debian 12, minimal, with CA certificates) serves every stand-in.
bootstrap() {
  [ -n "$rootfs" ] && return
  if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing debootstrap with apt-get"
      (apt-get update -qq && apt-get install -y -qq debootstrap) >&2
    else
      log "needs debootstrap (apt-get install debootstrap) and root"; exit 1
    fi
  fi
  rootfs="$work/rootfs"
  log "debootstrap bookworm from $(mirror) (about 30 s)"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$(mirror)" \
    >"$work/debootstrap.log" 2>&1 || { cat "$work/debootstrap.log" >&2; exit 1; }
}

build_debian() {
  exists "$debian" && return
  bootstrap
  log "importing $debian"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$debian" >/dev/null
}

# A stand-in made by a small Dockerfile on top of $debian: build_on NAME DOCKERFILE [FILE...]
# (the files go into the build context).
build_on() {
  local name="$1" dockerfile="$2"; shift 2
  local context="$work/context-${name//[^a-z0-9]/_}"
  mkdir -p "$context"
  printf '%s\n' "$dockerfile" >"$context/Dockerfile"
  [ $# -gt 0 ] && cp -L "$@" "$context/"
  log "building $name"
  docker build -q -t "$name" "$context" >/dev/null
}

build_rust() {
  exists "$rust" && return
  local sysroot
  sysroot="$(rustc --print sysroot)"
  mkdir -p "$work/rust-context/local-ca"
  # This machine's own CA certificates (a TLS-intercepting egress proxy's, for one): the
  # build inside fetches crates through the same network.
  cp /usr/local/share/ca-certificates/*.crt "$work/rust-context/local-ca/" 2>/dev/null || true
  cat >"$work/rust-context/Dockerfile" <<EOF
FROM $debian
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY local-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
COPY rust /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=$rust_version
EOF
  # The toolchain as rustup installed it here, without its documentation; the context is
  # streamed as a tar so nothing is copied to disk first.
  log "building $rust (this machine's Rust $rust_version)"
  tar -c -C "$work/rust-context" Dockerfile local-ca \
    -C "$sysroot" --transform 's,^\(bin\|lib\|libexec\),rust/\1,' bin lib libexec \
    | docker build -q -t "$rust" - >/dev/null
}

# What gcr.io/distroless/cc-debian12 holds: glibc, libgcc, time zones, the CA bundle, /etc/passwd
# with root, nobody and nonroot (65532), a writable /tmp, no shell and no package manager.
build_runtime() {
  exists "$runtime" && return
  bootstrap
  local out="$work/distroless" files="$work/distroless.files"
  mkdir -p "$out"
  # Debian 12 merges /usr: keep the top-level links so /lib64/ld-linux… resolves.
  for link in bin lib lib64 sbin; do
    mkdir -p "$out/usr/$link"
    cp -a "$rootfs/$link" "$out/"
  done
  local package
  for package in libc6:amd64 libgcc-s1:amd64 base-files tzdata; do
    cat "$rootfs/var/lib/dpkg/info/$package.list"
  done | while read -r path; do
        [ -f "$rootfs$path" ] || [ -L "$rootfs$path" ] && echo "${path#/}"
      done | grep -v '^usr/share/\(doc\|man\|info\|lintian\)/' >"$files" || true
  echo "etc/ssl/certs/ca-certificates.crt" >>"$files"
  tar -C "$rootfs" -c -T "$files" | tar -C "$out" -x --keep-directory-symlink
  mkdir -p "$out/tmp" "$out/home/nonroot" "$out/root"
  chmod 1777 "$out/tmp"
  chown 65532:65532 "$out/home/nonroot"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$out/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$out/etc/group"
  log "importing $runtime"
  tar -C "$out" -c . | docker import -c 'USER 65532:65532' -c 'WORKDIR /home/nonroot' \
    - "$runtime" >/dev/null
}

build_nats() {
  exists "$nats" && return
  local binary
  binary="$(scripts/install-nats.sh)"
  build_on "$nats" "FROM $debian
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends wget \\
 && rm -rf /var/lib/apt/lists/*
COPY nats-server /usr/local/bin/nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT [\"nats-server\"]" "$binary"
}

build_lb() {
  exists "$lb" && return
  build_on "$lb" "FROM $debian
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy wget \\
 && rm -rf /var/lib/apt/lists/*
USER haproxy
CMD [\"haproxy\", \"-W\", \"-db\", \"-f\", \"/usr/local/etc/haproxy/haproxy.cfg\"]"
}

build_prometheus() {
  exists "$prometheus" && return
  build_on "$prometheus" "FROM $debian
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus wget \\
 && rm -rf /var/lib/apt/lists/* && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
ENTRYPOINT [\"/usr/bin/prometheus\"]
CMD [\"--config.file=/etc/prometheus/prometheus.yml\", \"--storage.tsdb.path=/prometheus\"]"
}

if ! docker info >/dev/null 2>&1; then
  log "no Docker engine answers (docker info failed)"; exit 1
fi
build_debian
build_rust
build_runtime
build_nats
build_lb
build_prometheus

cat <<EOF
ARQONBUS_RUST_IMAGE=$rust
ARQONBUS_RUNTIME_IMAGE=$runtime
ARQONBUS_NATS_IMAGE=$nats
ARQONBUS_LB_IMAGE=$lb
ARQONBUS_PROMETHEUS_IMAGE=$prometheus
EOF
