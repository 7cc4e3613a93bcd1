#!/usr/bin/env bash
# Finds or installs the headless browser the console's tests drive: Chromium and its
# WebDriver (chromedriver), from Debian's packages. Idempotent and quick when both are
# present. Prints the driver's path on stdout; the tests read it from
# $ARQONBUS_CHROMEDRIVER (and the browser from $ARQONBUS_CHROMIUM) or find both on PATH.
#
# Order for each: the variable if set; the binary on PATH; otherwise
# `apt-get install -y chromium chromium-driver` (as root, or with sudo).
set -euo pipefail

find_bin() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}

driver="${ARQONBUS_CHROMEDRIVER:-}"
browser="${ARQONBUS_CHROMIUM:-}"
[ -n "$driver" ] || driver="$(find_bin chromedriver || true)"
[ -n "$browser" ] || browser="$(find_bin chromium chromium-browser || true)"

if [ -z "$driver" ] || [ -z "$browser" ]; then
  echo "Installing chromium and chromium-driver from Debian's packages" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    else
      cat >&2 <<MSG
Cannot find chromium and chromedriver, and cannot install them (not root, no sudo).
Install them:  apt-get install -y chromium chromium-driver
or point ARQONBUS_CHROMIUM and ARQONBUS_CHROMEDRIVER at the binaries.
MSG
      exit 1
    fi
  fi
  # Another apt run may hold the lock for a while (a loaded CI machine): wait for it.
  apt_get=($sudo apt-get -o DPkg::Lock::Timeout=600 -y -q)
  if ! "${apt_get[@]}" install --no-install-recommends chromium chromium-driver >&2; then
    "${apt_get[@]}" update >&2
    "${apt_get[@]}" install --no-install-recommends chromium chromium-driver >&2
  fi
  driver="$(find_bin chromedriver)"
  browser="$(find_bin chromium chromium-browser)"
fi

for bin in "$driver" "$browser"; do
  if [ ! -x "$bin" ]; then
    echo "$bin is not an executable" >&2
    exit 1
  fi
done
echo "$driver"
