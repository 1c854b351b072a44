#!/bin/bash
# The README's run command: installs what is missing, builds, and runs the main job.
# Until the daemon and the simulator exist, the main job is the link self-test on the
# local virtual bus: a tester and an ECU responder exchanging ISO-TP and UDS.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh >/dev/null
exec build/tools/immo-linktest "$@"
