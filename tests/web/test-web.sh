#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The Cockpit page end to end in a real browser: a private bus, immo-ecusim (reset scaled to
# ~16 s), immod, the reference passcode server with real TLS, and cockpit-ws with a local
# session serving the page from the build tree (XDG_DATA_HOME). Headless Debian Chromium,
# driven by Selenium (browser.py), clicks and types the three procedures as a technician
# would, while the key touches are made at the simulated car through its control socket.
# Screenshots of every screen at 800x1280 and 390x844 are left in SHOTS_DIR.
#
# usage: test-web.sh IMMOD IMMO_ECUSIM IMMO_PASSCODE_SERVER SOURCE_ROOT WEB_BUILD_DIR SHOTS_DIR

set -u -o pipefail

immod=$1
ecusim=$2
server=$3
src=$4
webdir=$5
shots=$6

PW='W3b-test-pw-5521'

# Skipped only where the browser or Cockpit cannot be had (tools/install-deps.sh installs them).
skip() { echo "SKIP: $*"; exit 77; }
for f in /usr/lib/chromium/chromium /usr/bin/chromedriver /usr/lib/cockpit/cockpit-ws /usr/bin/cockpit-bridge; do
        [ -x "$f" ] || skip "$f is not installed (Debian: chromium chromium-driver cockpit-ws cockpit-bridge)"
done
/usr/bin/python3 -c 'import selenium' 2>/dev/null || skip "python3-selenium is not installed"

harness_pids="cw_pid immod_pid sim_pid server_pid bus_pid"
cw_pid= server_pid=
harness_logs=("server log" server.log 20 "ecusim log" ecusim.log 30 "cockpit-ws log" cw.log 30)
. "$src/tests/lib/harness.sh"
require_tools openssl busctl dbus-daemon

start_reference_server
start_bus
start_ecusim --time-scale 60 --window-scale 2 --battery 13.8
start_immod ecu "https://127.0.0.1:$port" 20 || { fail "immod did not take its bus name"; exit 1; }

# cockpit-ws (web.md): no TLS, no login, bound to loopback; the page of the build tree; the
# bridge on the private bus, without a session bus or ssh-agent of its own.
mkdir -p "$tmp/xdg/cockpit"
ln -s "$webdir" "$tmp/xdg/cockpit/immod"
cport=$(free_port)
env XDG_DATA_HOME="$tmp/xdg" DBUS_SYSTEM_BUS_ADDRESS="$addr" DBUS_SESSION_BUS_ADDRESS="unix:path=$tmp/no-session-bus" \
        SSH_AUTH_SOCK=/dev/null \
        /usr/lib/cockpit/cockpit-ws --no-tls --address 127.0.0.1 --port "$cport" --local-session=cockpit-bridge \
        >"$tmp/cw.log" 2>&1 &
cw_pid=$!
wait_for 10 listening "$cport" || { fail "cockpit-ws did not listen"; exit 1; }
pass "cockpit-ws on 127.0.0.1:$cport"

rm -rf "$shots"
mkdir -p "$shots"
start=$SECONDS
env -u DBUS_SYSTEM_BUS_ADDRESS -u DBUS_SESSION_BUS_ADDRESS \
        WEB_URL="http://127.0.0.1:$cport/cockpit/@localhost/immod/index.html" \
        BUS_ADDRESS="$addr" CTL_SOCKET="$tmp/ctl.sock" SERVER_URL="https://127.0.0.1:$port" CA_FILE="$tmp/ca.pem" \
        TECH_PASSWORD="$PW" VIN="$VIN" MASTER_KEY_FILE="$tmp/master.key" SHOTS_DIR="$shots" PROFILE_DIR="$tmp/chromium" \
        timeout 400 /usr/bin/python3 "$src/tests/web/browser.py"
rc=$?
echo "browser run: $((SECONDS - start)) s; screenshots in $shots"
[ $rc -eq 0 ] || fail "browser.py exited $rc"

[ "$failures" -eq 0 ] || exit 1
echo "test-web: all checks passed"
