#!/bin/bash
# Configures (once) and builds immod into ./build, with warnings as errors and the tests.
# A build/ configured with other options (by hand, or by an older checkout) is noticed,
# said, and set back to these, so that what is tested is what CI builds.
set -euo pipefail
cd "$(dirname "$0")/.."
want=(werror=true tests=enabled b_sanitize=none buildtype=debugoptimized)
if [ ! -d build ]; then
        meson setup build "${want[@]/#/-D}"
else
        differ=$(meson introspect build --buildoptions | python3 -c '
import json, sys
have = {o["name"]: o["value"] for o in json.load(sys.stdin)}
for w in sys.argv[1:]:
    name, value = w.split("=", 1)
    got = have.get(name)
    got = str(got).lower() if isinstance(got, bool) else str(got)
    if got != value:
        print("%s=%s (wanted %s)" % (name, got, value))' "${want[@]}")
        if [ -n "$differ" ]; then
                echo "build: build/ was configured with other options: $(echo $differ); setting them back" >&2
                meson configure build "${want[@]/#/-D}"
        fi
fi
ninja -C build
