#!/bin/bash
# The README's test command: installs what is missing, fetches the VM kernel, builds,
# and runs the whole test suite (unit, integration and the VM tests on real SocketCAN).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/fetch-vm-kernel.sh --quiet || echo "test: no VM kernel could be fetched; the VM tests will skip" >&2
tools/build.sh
meson test -C build --print-errorlogs "$@"
