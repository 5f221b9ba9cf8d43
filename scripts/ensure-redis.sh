#!/usr/bin/env bash
# Makes sure `redis-server` (and `redis-benchmark`) are installed for the tests of the line on
# Redis, which start servers of their own on free ports: Debian's `redis-server` (the tools come
# with it), installed when missing. Nothing here starts or uses the machine's own Redis.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  exit 0
fi
echo "installing redis-server for the tests of the line on Redis" >&2
sudo=()
if [ "$(id -u)" != 0 ]; then
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
