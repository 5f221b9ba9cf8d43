#!/usr/bin/env bash
# Starts concert-server on 127.0.0.1:8080 with demo concerts. Without DATABASE_URL its data lives
# in ./concert.db (the embedded SQLite store: no database server needed); with
# DATABASE_URL=postgres://… the local PostgreSQL cluster is started first if it is down.
# Extra arguments are passed to the server (see `concert-server --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${DATABASE_URL:-}" in
  postgres://* | postgresql://*) scripts/ensure-postgres.sh ;;
esac
export DEMO_DATA="${DEMO_DATA:-true}"
exec cargo run --release --bin concert-server -- "$@"
