#!/usr/bin/env bash
# Instructions per message of the message pipeline's parts, counted under callgrind
# (docs/BENCHMARKS.md, "Pipeline CPU (issue 16)"). Counts repeat whatever else the machine
# does, unlike wall-clock time; they are of debug builds (the tests' profile), so compare
# them with each other, not with release figures.
#
# Usage: scripts/pipeline-cpu.sh [text bytes...]   (default: 64 1024)
# Each size is the length of the text in every message's payload. Prints one line per
# stage: its instructions per message (per join for stage_annotate).
# Needs: valgrind, jq.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(64 1024)
messages=1000
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The test binary of a crate's library (built if needed).
lib_tests() {
  cargo test -p "$1" --lib --no-run --message-format=json 2>/dev/null |
    jq -r 'select(.profile.test == true and .target.kind == ["lib"]) | .executable'
}

cargo build -q -p arqon-proto --example pipeline_cpu
target=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
binaries=("$target/debug/examples/pipeline_cpu $messages")
for crate in arqon-edge arqon-operators arqon-dispatcher; do
  binaries+=("$(lib_tests "$crate") cpu_ --ignored --test-threads=1")
done

for size in "${sizes[@]}"; do
  echo "== payload text of $size bytes, instructions per message"
  for i in "${!binaries[@]}"; do
    file="$out/$size-$i.callgrind"
    # shellcheck disable=SC2086 # the command line is split on purpose
    ARQON_CPU_TEXT_BYTES=$size valgrind --tool=callgrind --callgrind-out-file="$file" \
      ${binaries[$i]} $([ "$i" = 0 ] && echo "$size") >/dev/null 2>&1
    # "<count> (<share>)  <file>:<crate>::<module>::cpu::stage_<x> [<binary>]": one line
    # per stage function, its inclusive count over all messages.
    callgrind_annotate --inclusive=yes --threshold=100 "$file" 2>/dev/null |
      perl -ne 'printf "%-28s %8.0f\n", "$2$3$4", ($1 =~ s/,//gr) / '"$messages"' if
        /^\s*([\d,]+) \(\s*[\d.]+%\)\s+\S+:(?:(?:\w+::)*(\w+::)cpu::(stage_\w+)|pipeline_cpu::((?:edge|policy|dispatcher)_\w+)) \[/'
  done
done
