#!/usr/bin/env bash
# Install what the test suite needs: ffstream with its dev extras (pytest, ruff, PyAV, Ray,
# OpenCV, pyrealsense2, pyarrow, the static ffmpeg) at the versions of constraints.txt
# (the lock: the same suite on every machine) and, where they are missing and apt and
# root are there (Debian, Ubuntu): libusb-1.0, which pyrealsense2 loads, and Chromium,
# which renders `ffstream report`'s page in the browser tests. Elsewhere those tests are
# skipped, each with its reason. `--latest` installs the newest releases instead (what
# `tools/check.sh --latest` uses to refresh the lock).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
      echo "dev-setup: could not install ${missing[*]}; the tests that need them will be" \
           "skipped" >&2
  else
    echo "dev-setup: ${missing[*]} missing and cannot be installed here (no apt, or not" \
         "root); the tests that need them will be skipped" >&2
  fi
fi
if [ "${1:-}" = "--latest" ]; then
  python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev,static]"
else
  python -m pip install -q -c constraints.txt -e ".[dev,static]"
fi
