#!/usr/bin/env bash
# Set-up for the browser and JS client tests: Debian's chromium (only if missing) and the
# pinned npm packages (playwright-core, which downloads no browser; ws; typescript for the
# type check) plus client/js itself, linked as @streamer/client to test its `exports`.
set -euo pipefail
cd "$(dirname "$0")"

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
"$chromium" --version 2>/dev/null | grep -i chromium

npm ci --no-audit --no-fund --loglevel=error
