#!/usr/bin/env bash
# Set up aggregame on this machine, then run the main job or the tests.
#
#   bash bootstrap.sh main    set up, cross-check Fig. 4, run short studies + the report
#   bash bootstrap.sh test    set up, then run the test suite (what CI runs)
#   bash bootstrap.sh setup   set up only
#
# Set-up is idempotent: a second run only checks each piece (a few seconds).
#   1. Debian packages: libamplsolver-dev (AMPL Solver Library), cmake, g++
#   2. a virtual environment in .venv with aggregame and its dependencies
#      (cyipopt-wheels carries Ipopt 3.14 with MUMPS)
#   3. Pyomo's PyNumero library, built against Debian's ASL (into ~/.pyomo/lib, or
#      $PYOMO_CONFIG_DIR/lib), which lets Pyomo hand models to cyipopt.
#   4. (test only) Debian's chromium, in which a test renders the studies' report.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
say() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

need_python() {
    local py
    py=$(command -v python3.11 || command -v python3 || true)
    [ -n "$py" ] || die "python3 (3.11 or newer) not found; install it (Debian: apt-get install python3 python3-venv)"
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$py is $("$py" -V 2>&1); aggregame needs Python 3.11 or newer"
    "$py" -c 'import venv, ensurepip' 2>/dev/null \
        || die "$py lacks venv/ensurepip; install it (Debian: apt-get install python3-venv)"
    echo "$py"
}

asl_library() { dpkg -L libamplsolver-dev 2>/dev/null | grep -E '/libamplsolver\.so$' | head -n 1; }
asl_include() { dpkg -L libamplsolver-dev 2>/dev/null | grep -E '/asl\.h$' | head -n 1 | xargs -r dirname; }

debian_packages() {
    local missing=()
    [ -n "$(asl_library)" ] || missing+=(libamplsolver-dev)
    command -v cmake >/dev/null || missing+=(cmake)
    command -v g++ >/dev/null || missing+=(g++)
    [ ${#missing[@]} -eq 0 ] && { say "Debian packages: ok"; return; }
    command -v apt-get >/dev/null \
        || die "missing ${missing[*]} and no apt-get here; install them with your package manager"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq >/dev/null \
        || die "apt-get update failed; install ${missing[*]} by hand (apt-get install ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    [ -n "$(asl_library)" ] || die "libamplsolver-dev installed but libamplsolver.so not found"
}

browser() {
    command -v chromium >/dev/null && { say "chromium: ok"; return; }
    command -v apt-get >/dev/null \
        || die "chromium not found and no apt-get here; install it with your package manager (the report's browser test needs it)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing Debian's chromium (the report's browser test)"
    $sudo apt-get update -qq >/dev/null || die "apt-get update failed; install chromium by hand"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null \
        || die "apt-get install chromium failed"
}

python_env() {
    local py stamp want
    py=$(need_python)
    [ -x "$PY" ] || { say "creating virtual environment .venv"; "$py" -m venv "$VENV"; }
    stamp="$VENV/.aggregame-installed"
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$PY" -c 'import aggregame, cyipopt' 2>/dev/null; then
        say "Python environment: ok"
        return
    fi
    say "installing aggregame and its dependencies into .venv"
    local log
    log=$(mktemp)
    "$PY" -m pip install -q --upgrade pip >"$log" 2>&1 || true
    "$PY" -m pip install -q -e ".[test]" >"$log" 2>&1 \
        || { grep -v "is ignored" "$log" | tail -n 30 >&2; die "pip install failed (log above); PyPI must be reachable"; }
    echo "$want" > "$stamp"
}

pynumero() {
    if "$PY" -c 'from pyomo.contrib.pynumero.asl import AmplInterface as A; import sys; sys.exit(not A.available())' 2>/dev/null; then
        say "PyNumero ASL library: ok"
        return
    fi
    say "building PyNumero against Debian's ASL"
    local log
    log=$(mktemp)
    (cd "$(mktemp -d)" && "$PY" -m pyomo.contrib.pynumero.build \
        -DASL_INCLUDE_DIR="$(asl_include)" -DASL_LIBRARY="$(asl_library)") >"$log" 2>&1 \
        || { tail -n 20 "$log" >&2; die "PyNumero build failed (log above)"; }
    "$PY" -c 'from pyomo.contrib.pynumero.asl import AmplInterface as A; import sys; sys.exit(not A.available())' \
        || die "PyNumero built but Pyomo cannot load it (PYOMO_CONFIG_DIR=${PYOMO_CONFIG_DIR:-~/.pyomo})"
}

setup() {
    debian_packages
    python_env
    pynumero
    "$VENV/bin/aggregame" check >/dev/null || die "Ipopt check failed: run .venv/bin/aggregame check"
    say "ready: activate with 'source .venv/bin/activate'"
}

case "${1:-}" in
    setup) setup ;;
    main)
        setup
        say "main job: the paper's Fig. 4 setting by best response (native and pyomo"
        say "backends) and by the stacked KKT system, side by side; then a short"
        say "version of every Section IV study and the report"
        "$VENV/bin/aggregame" crosscheck fig4
        "$VENV/bin/aggregame" report --quick --out results
        say "output: results/report.html (figures and data in results/fig*/)"
        ;;
    test)
        setup
        browser
        shift
        "$PY" -m pytest "$@"
        ;;
    *) sed -n '2,15p' "$0"; exit 2 ;;
esac
