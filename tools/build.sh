#!/bin/bash
# Configures (once) and builds immod into ./build, with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d build ] || meson setup build -Dwerror=true -Dtests=enabled
ninja -C build
