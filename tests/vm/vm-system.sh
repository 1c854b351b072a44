#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The vm-system test, on the host: builds the Debian packages of this tree
# (tools/build-debs.sh --nocheck into BUILDDIR/debs), unless IMMOD_VM_DEBS names a
# folder of packages already built, then boots the VM under systemd and runs
# system-test.sh there, which installs them with apt.
#
# Usage: vm-system.sh BUILDDIR OUTPUT_DIR
set -uo pipefail
build=${1:?usage: vm-system.sh BUILDDIR OUTPUT_DIR}
output=${2:?usage: vm-system.sh BUILDDIR OUTPUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

command -v dpkg-buildpackage >/dev/null && command -v dh >/dev/null ||
        { echo "SKIP: dpkg-buildpackage or debhelper missing (tools/install-deps.sh installs them)"; exit 77; }
debs=${IMMOD_VM_DEBS:-}
if [ -z "$debs" ]; then
        debs=$build/debs
        "$repo/tools/build-debs.sh" --nocheck "$debs" || exit 1
fi
debs=$(cd "$debs" && pwd -P) || exit 1
# The box's sshd for immoctl -H: Debian's openssh-server, unpacked in the VM only (this
# host needs just the client).  Fetched once into the VM cache; without it the test's
# SSH section is skipped, and says so.
sshdebs=${IMMOD_VM_CACHE:-$repo/vm-cache}/sshd
if ! ls "$sshdebs"/openssh-server_*.deb "$sshdebs"/libwrap0_*.deb >/dev/null 2>&1; then
        mkdir -p "$sshdebs" && (cd "$sshdebs" && apt-get download -q openssh-server libwrap0 2>&1) ||
                { echo "vm-system: cannot fetch openssh-server from Debian's archive"; sshdebs=; }
fi
[ -z "$sshdebs" ] || sshdebs=$(cd "$sshdebs" && pwd -P)
exec "$here/run-vm.sh" --systemd --timeout 840 --output "$output" -- \
        "$here/system-test.sh" "$debs" "$repo/tests/test-vectors.json" $sshdebs
