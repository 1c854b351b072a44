#!/bin/bash
# The C unit tests (the cmocka ones, named test-*, of the unit suite) under valgrind's
# memcheck, through meson's "valgrind" test setup: any invalid access, uninitialised read
# or leak fails them. Usage: tools/valgrind-tests.sh [BUILDDIR] (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
command -v valgrind >/dev/null || { echo "valgrind-tests: valgrind is not installed" >&2; exit 1; }
mapfile -t names < <(meson test -C "$build" --list --suite unit 2>/dev/null | sed -n 's|^\(immod:unit / \)\?\(test-[a-z0-9-]*\)$|\2|p')
[ "${#names[@]}" -gt 0 ] || { echo "valgrind-tests: no unit test found in $build" >&2; exit 1; }
echo "valgrind-tests: ${#names[@]} tests: ${names[*]}"
meson test -C "$build" --setup valgrind --print-errorlogs "${names[@]}"
