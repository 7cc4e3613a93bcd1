#!/usr/bin/env bash
# Finds or installs what scripts/test-coverage.sh measures line coverage with, and prints
# the settings to use on stdout, for `eval`:
#
#   export LLVM_COV=/usr/bin/llvm-cov-22
#   export LLVM_PROFDATA=/usr/bin/llvm-profdata-22
#
# - llvm-cov and llvm-profdata of the LLVM major version rustc was built with (its profile
#   format changes between majors): $LLVM_COV / $LLVM_PROFDATA if set; the rustup
#   component llvm-tools when installed (cargo-llvm-cov finds it itself); Debian's
#   /usr/bin/llvm-cov-N; otherwise `apt-get install llvm-N` (as root).
# - cargo-llvm-cov $version (`cargo install --locked` into cargo's bin directory, once per
#   machine: a build of about 80 s of CPU, then nothing).
#
# Messages go to stderr; quick when everything is there already.
set -euo pipefail

version="0.9.1"

llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9][0-9]*\).*/\1/p')"
if [ -z "$llvm_major" ]; then
  echo "install-coverage: cannot tell rustc's LLVM version from 'rustc -vV'" >&2
  exit 1
fi

# The major version of an llvm-cov / llvm-profdata binary ("LLVM version 22.1.8").
major_of() {
  "$1" --version 2>/dev/null | sed -n 's/.*LLVM version \([0-9][0-9]*\).*/\1/p' | head -n 1
}

sysroot_bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"

if [ -n "${LLVM_COV:-}" ] || [ -n "${LLVM_PROFDATA:-}" ]; then
  for tool in "${LLVM_COV:-}" "${LLVM_PROFDATA:-}"; do
    if [ -z "$tool" ] || [ "$(major_of "$tool")" != "$llvm_major" ]; then
      echo "install-coverage: LLVM_COV and LLVM_PROFDATA must both be set, to LLVM $llvm_major tools (rustc's); got '${LLVM_COV:-}' and '${LLVM_PROFDATA:-}'" >&2
      exit 1
    fi
  done
  llvm_cov="$LLVM_COV"
  llvm_profdata="$LLVM_PROFDATA"
elif [ -x "$sysroot_bin/llvm-cov" ] && [ -x "$sysroot_bin/llvm-profdata" ]; then
  llvm_cov="$sysroot_bin/llvm-cov"
  llvm_profdata="$sysroot_bin/llvm-profdata"
else
  llvm_cov="/usr/bin/llvm-cov-$llvm_major"
  llvm_profdata="/usr/bin/llvm-profdata-$llvm_major"
  if ! [ -x "$llvm_cov" ] || ! [ -x "$llvm_profdata" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
      cat >&2 <<MSG
install-coverage: no llvm-cov / llvm-profdata of LLVM $llvm_major (the LLVM of $(rustc -V)).
Install one of:
  - rustup:  rustup component add llvm-tools
  - Debian:  apt-get install llvm-$llvm_major
  - or point LLVM_COV and LLVM_PROFDATA at LLVM $llvm_major's binaries,
then run again.
MSG
      exit 1
    fi
    echo "install-coverage: installing llvm-$llvm_major with apt-get (llvm-cov and llvm-profdata of rustc's LLVM)" >&2
    if ! apt-get install -y -qq "llvm-$llvm_major" >&2; then
      apt-get update -qq >&2
      apt-get install -y -qq "llvm-$llvm_major" >&2
    fi
  fi
  for tool in "$llvm_cov" "$llvm_profdata"; do
    if [ "$(major_of "$tool")" != "$llvm_major" ]; then
      echo "install-coverage: $tool is not LLVM $llvm_major" >&2
      exit 1
    fi
  done
fi

# (`|| true`: with no cargo-llvm-cov the pipeline fails, and set -e would stop here.)
installed="$(cargo llvm-cov --version 2>/dev/null | sed -n 's/^cargo-llvm-cov //p' || true)"
if [ "$installed" != "$version" ]; then
  echo "install-coverage: installing cargo-llvm-cov $version with cargo install (was: ${installed:-none})" >&2
  # Without CARGO_TARGET_DIR cargo install builds in a temporary directory it removes.
  env -u CARGO_TARGET_DIR cargo install cargo-llvm-cov --version "$version" --locked --quiet >&2
  installed="$(cargo llvm-cov --version 2>/dev/null | sed -n 's/^cargo-llvm-cov //p' || true)"
  if [ "$installed" != "$version" ]; then
    echo "install-coverage: cargo-llvm-cov $version installed, but 'cargo llvm-cov --version' says '${installed:-nothing}' (is cargo's bin directory on PATH?)" >&2
    exit 1
  fi
fi

printf 'export LLVM_COV=%q\nexport LLVM_PROFDATA=%q\n' "$llvm_cov" "$llvm_profdata"
