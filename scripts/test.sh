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

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== SQLite leg: every test"
(unset TEST_DATABASE_URL; run_tests --workspace --locked)

echo "== PostgreSQL leg: the store contract and the end-to-end tests"
TEST_DATABASE_URL="${TEST_DATABASE_URL:-$(.ci/postgres.sh "${CONVENE_PG_DIR:-/tmp/convene-pg}" | tail -n 1)}"
export TEST_DATABASE_URL
run_tests -p convene-store -p convene-server --locked
