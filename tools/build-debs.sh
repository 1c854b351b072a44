#!/bin/bash
# Builds the Debian packages (debian/) of this working tree into a folder, with
# dpkg-buildpackage -us -uc -b, from a copy of the tree (its tracked and untracked,
# not ignored, files) so that the tree itself stays clean.
#
# Usage: tools/build-debs.sh [--nocheck] [--lintian] [OUTDIR]   (default OUTDIR: build/debs)
#   --nocheck  skip the unit tests of the package build (the caller runs them)
#   --lintian  run lintian on the result; any tag not overridden fails the build
# Prints the packages' names and sizes, and the time taken.
set -euo pipefail
cd "$(dirname "$0")/.."
nocheck=
lintian=
while [ $# -gt 0 ]; do
        case "$1" in
        --nocheck) nocheck=1; shift ;;
        --lintian) lintian=1; shift ;;
        -*) echo "usage: $0 [--nocheck] [--lintian] [OUTDIR]" >&2; exit 2 ;;
        *) break ;;
        esac
done
out=${1:-build/debs}
start=$(date +%s)
version=$(dpkg-parsechangelog -S Version)
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
rm -rf "$out/src" "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
src=$out/src/immod-$version
mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
        [ -e "$f" ] && printf '%s\0' "$f"
done | cpio --quiet -0 -pdm "$src"
(
        cd "$src"
        export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} ${nocheck:+nocheck}"
        dpkg-buildpackage -us -uc -b ${nocheck:+-Pnocheck} >"$out/build.log" 2>&1
) || { tail -n 40 "$out/build.log" >&2; echo "build-debs: dpkg-buildpackage failed, see $out/build.log" >&2; exit 1; }
mv "$out"/src/*.deb "$out"/src/*.changes "$out"/src/*.buildinfo "$out"/
rm -rf "$out/src"
echo "build-debs: built in $(( $(date +%s) - start )) s into $out:"
for f in "$out"/*.deb; do
        printf '  %-44s %7s bytes, %6s KiB installed\n' "${f##*/}" "$(stat -c %s "$f")" \
                "$(dpkg-deb -f "$f" Installed-Size)"
done
if [ -n "$lintian" ]; then
        # lintian refuses to run as root only with a warning; tags not overridden
        # (debian/*.lintian-overrides, each with its reason) fail.
        rc=0
        lintian --fail-on error,warning,info,pedantic -I --pedantic "$out"/*.changes >"$out/lintian.log" 2>&1 || rc=$?
        grep -v '^running with root privileges is not recommended!$' "$out/lintian.log" || true
        [ $rc -eq 0 ] || { echo "build-debs: lintian found tags (above)" >&2; exit 1; }
        echo "build-debs: lintian clean (-I --pedantic)"
fi
