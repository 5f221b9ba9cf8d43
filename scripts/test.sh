#!/usr/bin/env bash
# Runs every test of the workspace against the local PostgreSQL (started if it is down), the
# browser tests in headless Chromium (installed if missing), then the end-to-end suite once more
# on the embedded SQLite store (E2E_STORE=sqlite).
# Each test creates its own database (or SQLite file) and removes it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
scripts/ensure-chromium.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
cargo build --workspace --all-targets
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?
E2E_STORE=sqlite cargo test -p concert-e2e --test e2e --no-fail-fast "$@" || status=$?
exit "$status"
