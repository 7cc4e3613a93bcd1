#!/usr/bin/env bash
# Every cargo test of the workspace, run once and instrumented for line coverage, then the
# per-crate figures against their floors (scripts/test.sh runs this; it can also run alone):
#
#   1. installs cargo-llvm-cov and rustc's llvm-cov / llvm-profdata when they are missing
#      (scripts/install-coverage.sh);
#   2. cargo test --workspace --all-targets, then the doc tests, in the environment of
#      `cargo llvm-cov show-env` (scripts/lib/coverage-env.sh): the workspace's crates are
#      built with -C instrument-coverage into <target>/llvm-cov-target (apart from plain
#      builds), and every instrumented process writes a profile there, the `arqonbus` and
#      `arqon` binaries the process tests start included;
#   3. writes the report: <target>/llvm-cov-target/coverage.lcov (every instrumented line
#      of the workspace's sources and how often it ran; `genhtml` makes pages of it, and
#      `cargo llvm-cov report --html` in this environment does too);
#   4. scripts/coverage-check.py: each crate's line coverage, test code left out, and its
#      three files with the most lines never run; exit status 1 naming each crate under
#      its floor in coverage/floors.txt.
#
# Tests that fail fail the script (after every test has run: --no-fail-fast) before any
# figure is checked. The figures and how to raise a floor: docs/COVERAGE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need besides (scripts/test.sh has done it when it runs this).
ARQONBUS_NATS_SERVER="$(scripts/install-nats.sh)"
export ARQONBUS_NATS_SERVER
source scripts/lib/coverage-env.sh
# Profiles of an earlier run would be merged into this one's, and the report reads every
# test binary and binary of the workspace's crates in the target directory, those of an
# earlier build too: their lines that changed since would count as never run. So the
# workspace's crates are built afresh each run (their dependencies are kept).
cargo llvm-cov clean --workspace

cargo test --workspace --all-targets --locked --no-fail-fast
# Doc tests (examples in the documentation must compile). The library code they run
# counts; their own code does not (rustdoc does not instrument it on stable Rust).
cargo test --workspace --doc --locked

report="$CARGO_TARGET_DIR/coverage.lcov"
cargo llvm-cov report --lcov --output-path "$report"
scripts/coverage-check.py "$report" --files 3
