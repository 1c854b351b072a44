#!/bin/bash
# Installs the Debian 12 packages immod needs to build, run and test.
# Does nothing (and needs no network) when they are all there already.
set -euo pipefail

packages=(
        # build
        meson ninja-build pkg-config gcc clang
        libsystemd-dev libsocketcan-dev libcurl4-openssl-dev libssl-dev libyaml-dev libjansson-dev
        libsqlite3-dev libmicrohttpd-dev libpq-dev
        # the passcode server on PostgreSQL: its tests start a private server (tests/server/pgtest.py)
        postgresql-15
        # the C files' layout (tools/check-format.sh): Debian 12's clang-format is version 14
        clang-format
        # tests
        libcmocka-dev dbus systemd can-utils openssl curl python3 libxml2-utils libglib2.0-bin util-linux valgrind
        # the VM with real SocketCAN and kernel ISO-TP
        qemu-system-x86 busybox-static cpio kmod iproute2
        # immoctl -H in the VM: the laptop's ssh (the box's sshd is fetched for the VM only)
        openssh-client
        # the Debian packages (debian/, tools/build-debs.sh) and their check
        debhelper dpkg-dev lintian bash-completion
        # the web page (web/) and its browser test (tests/web/): Cockpit, headless Chromium, Selenium
        cockpit-ws cockpit-bridge chromium chromium-driver python3-selenium
)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
