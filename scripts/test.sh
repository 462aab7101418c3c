#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the OpenAPI check, and every test, once on SQLite and
# once on PostgreSQL. Installs and starts what it needs (PostgreSQL from Debian packages when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/convene-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if cargo nextest --version >/dev/null 2>&1; then
    run_tests() { cargo nextest run --no-fail-fast "$@"; }
else
    run_tests() { cargo test --no-fail-fast "$@"; }
fi

# A real browser for the pages we serve (the docs page test fails without it when this is set).
if ! command -v chromium >/dev/null 2>&1; then
    echo "== installing Chromium from Debian packages"
    sudo=(); [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
export CONVENE_REQUIRE_BROWSER=1
# Playwright's driver (playwright-core, which downloads no browser) for the console test, into the test's own folder.
if ! command -v npm >/dev/null 2>&1; then
    echo "== installing Node.js from Debian packages"
    sudo=(); [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
console_tests=crates/convene/tests/console
echo "== installing the console test's npm packages (as package-lock.json pins them)"
npm ci --prefix "$console_tests" --no-audit --no-fund --loglevel=error

# Python packages some tests drive, in a virtualenv of their own.
CONVENE_VENV="${CONVENE_VENV:-$HOME/.cache/convene-venv}"
if [[ ! -x "$CONVENE_VENV/bin/python" ]]; then
    echo "== creating a Python virtualenv at $CONVENE_VENV"
    if ! python3 -m venv "$CONVENE_VENV" >/dev/null 2>&1; then
        sudo=(); [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
        "${sudo[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        rm -rf "$CONVENE_VENV"
        python3 -m venv "$CONVENE_VENV"
    fi
fi
# Installs NAME==VERSION from PyPI into the virtualenv unless that exact version is there already.
pip_pinned() {
    local installed
    installed="$("$CONVENE_VENV/bin/python" -c \
        "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true)"
    if [[ "$installed" != "$2" ]]; then
        echo "== installing $1 $2"
        "$CONVENE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$1==$2"
    fi
}
# Green API's official Python client, which one test drives against a live server (it fails without it when
# CONVENE_REQUIRE_GREEN_CLIENT is set). Pinned: the version the dialect was checked against.
pip_pinned whatsapp-api-client-python 0.0.55
# The Standard Webhooks reference implementation, which checks our webhook signatures independently of our code.
pip_pinned standardwebhooks 1.1.0
# Two outside checks of openapi.json: a validator of the document itself, and schemathesis, which fuzzes a live
# server from the document (crates/convene/tests/conformance.rs runs both).
pip_pinned openapi-spec-validator 0.9.0
pip_pinned schemathesis 4.32.5
# Prometheus's official Python client, whose parser reads /metrics in crates/convene/tests/metrics.rs.
pip_pinned prometheus-client 0.21.1
export CONVENE_PYTHON="$CONVENE_VENV/bin/python"
export CONVENE_REQUIRE_GREEN_CLIENT=1
export CONVENE_REQUIRE_WEBHOOK_VERIFIER=1
export CONVENE_REQUIRE_OPENAPI_TOOLS=1

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== SQLite leg: every test"
(unset TEST_DATABASE_URL; run_tests --workspace --locked)

echo "== From outside: openapi-spec-validator and schemathesis, Prometheus's parser on /metrics, the console in Chromium"
outside=(--test conformance --test metrics --test console)
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --workspace "${outside[@]}" --run-ignored only --no-capture
else
    cargo test --locked --workspace "${outside[@]}" -- --ignored --nocapture
fi

echo "== PostgreSQL leg: the store contract, the device-key storage contract, the shared sandbox and the end-to-end tests"
TEST_DATABASE_URL="${TEST_DATABASE_URL:-$(.ci/postgres.sh "${CONVENE_PG_DIR:-/tmp/convene-pg}" | tail -n 1)}"
export TEST_DATABASE_URL
# With nextest, the workspace's build from the SQLite leg is reused (a `-p` subset would unify features differently
# and compile everything a third time); the filter picks the same packages.
if cargo nextest --version >/dev/null 2>&1; then
    run_tests --workspace --locked \
        -E 'package(convene-store) | package(convene-whatsapp) | package(convene-server) | binary(failover) | binary(shared)'
else
    run_tests -p convene-store -p convene-whatsapp -p convene-server --locked
    run_tests -p convene --test failover --locked
    run_tests -p convene-sandbox --test shared --locked
fi
