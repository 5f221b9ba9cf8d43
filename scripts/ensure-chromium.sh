#!/usr/bin/env bash
# Makes sure headless Chromium and chromedriver are installed for the browser tests
# (tests/browser): Debian's `chromium` and `chromium-driver`, installed when missing.
set -euo pipefail

if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
  exit 0
fi
echo "installing chromium and chromium-driver for the browser tests" >&2
sudo=()
if [ "$(id -u)" != 0 ]; then
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
