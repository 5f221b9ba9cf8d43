#!/usr/bin/env bash
# Starts concert-server on 127.0.0.1:8080 over the local PostgreSQL with demo concerts.
# Extra arguments are passed to the server (see `concert-server --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
export DEMO_DATA="${DEMO_DATA:-true}"
exec cargo run --release --bin concert-server -- "$@"
