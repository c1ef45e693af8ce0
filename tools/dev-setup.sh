#!/usr/bin/env bash
# Install what the test suite needs: ffstream with its dev extras (pytest, ruff, PyAV, Ray,
# OpenCV, pyrealsense2, the static ffmpeg) and, where it is missing, libusb-1.0, which
# pyrealsense2 loads. On a machine without apt (or without root) the RealSense tests are
# skipped with a reason instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "dev-setup: libusb-1.0 is missing and cannot be installed here;" \
         "the RealSense tests will be skipped" >&2
  fi
fi
python -m pip install -q -e ".[dev,static]"
