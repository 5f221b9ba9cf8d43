#!/usr/bin/env bash
# Runs every test of the workspace against the local PostgreSQL (started if it is down), the
# browser tests in headless Chromium (installed if missing).
# Each test creates its own database from a migrated template and drops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
scripts/ensure-chromium.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432}"
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast "$@"
