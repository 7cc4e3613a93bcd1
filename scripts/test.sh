#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). On a fresh machine it installs
# what the tests need (nats-server 2.11, into .tools/; Chromium and chromedriver from
# Debian's packages; cargo-llvm-cov and rustc's LLVM tools) and then checks formatting,
# lints and every test: unit, property, conformance (embedded bus and a real
# nats-server), end-to-end, the console in a headless browser, with the line coverage of
# each crate against its floor (scripts/test-coverage.sh), and the containers on a Docker engine
# (scripts/test-containers.sh, which says so and skips when no engine answers).
set -euo pipefail
cd "$(dirname "$0")/.."

nats_server="$(scripts/install-nats.sh)"
export ARQONBUS_NATS_SERVER="$nats_server"
echo "using $("$nats_server" --version) at $nats_server"

# The admin console's browser tests (tests/console) drive a headless Chromium through
# chromedriver, from Debian's packages.
chromedriver="$(scripts/install-browser.sh)"
export ARQONBUS_CHROMEDRIVER="$chromedriver"
echo "using $("$chromedriver" --version) at $chromedriver"

# The 10,000-client process test needs 11,000 open files (below that it says so and
# skips): raise the soft limit up to the hard one, but not past 65,536 (a huge descriptor
# table slows down programs that close every descriptor before an exec).
want=65536
hard="$(ulimit -Hn)"
if [[ "$hard" != unlimited && "$hard" -lt "$want" ]]; then want="$hard"; fi
soft="$(ulimit -Sn)"
if [[ "$soft" != unlimited && "$soft" -lt "$want" ]]; then ulimit -Sn "$want"; fi
echo "open files limit: $(ulimit -Sn) (hard: $hard)"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Every test once (unit, property, conformance, end-to-end, process, doc tests), built for
# line coverage, and each crate's figure against its floor in coverage/floors.txt.
scripts/test-coverage.sh
scripts/test-helm.sh  # the Helm chart: lint, render, golden files, Kubernetes schemas (no cluster)
# The image and the compose files on a real Docker engine. In the coverage environment:
# its test binary is the one scripts/test-coverage.sh built, not a second, plain build.
(source scripts/lib/coverage-env.sh; scripts/test-containers.sh)
