#!/bin/bash
# The README's run command: installs what is missing, builds, and runs the main job:
# a guided all-keys-lost recovery (approval, Immobilizer Reset, registration of two new
# keys) by immod on the simulated car, with passcodes from the reference passcode
# service over HTTPS. tools/demo.sh --interactive lets you play the person at the car.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
if ! build_log=$(tools/build.sh 2>&1); then
        tail -n 40 <<<"$build_log" >&2
        echo "demo: the build failed (tools/build.sh), so the demo cannot run" >&2
        exit 1
fi
exec python3 tools/demo/demo.py "$@"
