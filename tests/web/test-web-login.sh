#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The page through a real Cockpit login (PAM, no local session): a user in immod's group
# logs in and can start a procedure; a user outside it sees the status but is refused with
# immod's words. Makes two users and a group for the run (so it needs root) and removes
# them. The bridge of a logged-in user has a reset environment: ~/.pam_environment points
# it at the private bus and at the page of the build tree (web.md).
#
# usage: test-web-login.sh IMMOD IMMO_ECUSIM SOURCE_ROOT WEB_BUILD_DIR SHOTS_DIR

set -u -o pipefail

immod=$1
ecusim=$2
src=$3
webdir=$4
shots=$5

skip() { echo "SKIP: $*"; exit 77; }
for f in /usr/lib/chromium/chromium /usr/bin/chromedriver /usr/lib/cockpit/cockpit-ws /usr/lib/cockpit/cockpit-session /usr/bin/cockpit-bridge; do
        [ -x "$f" ] || skip "$f is not installed (Debian: chromium chromium-driver cockpit-ws cockpit-bridge)"
done
/usr/bin/python3 -c 'import selenium' 2>/dev/null || skip "python3-selenium is not installed"
[ "$(id -u)" -eq 0 ] || skip "making the test users needs root"

GROUP=immo-webtest
TECH=immo-webtech
GUEST=immo-webguest
PWU='Login-t3st-pw'

harness_pids="cw_pid immod_pid sim_pid bus_pid"
cw_pid=
harness_logs=("ecusim log" ecusim.log 30 "cockpit-ws log" cw.log 40)
. "$src/tests/lib/harness.sh"
require_tools busctl dbus-daemon useradd groupadd chpasswd

remove_users() {
        userdel -r -f "$TECH" 2>/dev/null; userdel -r -f "$GUEST" 2>/dev/null; groupdel "$GROUP" 2>/dev/null
        return 0
}
trap 'remove_users; cleanup' EXIT
remove_users
groupadd "$GROUP" && useradd -m -s /bin/bash -G "$GROUP" "$TECH" && useradd -m -s /bin/bash "$GUEST" &&
        printf '%s:%s\n%s:%s\n' "$TECH" "$PWU" "$GUEST" "$PWU" | chpasswd || { fail "cannot make the test users"; exit 1; }

start_bus
start_ecusim --battery 13.8
write_immod_conf ecu
sed -i "s/^group: .*/group: $GROUP/" "$tmp/immod.conf"
start_immod || { fail "immod did not take its bus name"; exit 1; }

# the page where the users' bridges find it, and their environment
mkdir -p "$tmp/xdg/cockpit/immod"
cp -L "$webdir"/* "$tmp/xdg/cockpit/immod/"
chmod -R a+rX "$tmp/xdg"
for u in "$TECH" "$GUEST"; do
        cat >"/home/$u/.pam_environment" <<EOF
DBUS_SYSTEM_BUS_ADDRESS DEFAULT=unix:path=$tmp/bus.sock
DBUS_SESSION_BUS_ADDRESS DEFAULT=unix:path=$tmp/no-session-bus
SSH_AUTH_SOCK DEFAULT=/dev/null
XDG_DATA_HOME DEFAULT=$tmp/xdg
EOF
done

cport=$(free_port)
/usr/lib/cockpit/cockpit-ws --no-tls --address 127.0.0.1 --port "$cport" >"$tmp/cw.log" 2>&1 &
cw_pid=$!
wait_for 10 listening "$cport" || { fail "cockpit-ws did not listen"; exit 1; }
pass "cockpit-ws (login) on 127.0.0.1:$cport"

mkdir -p "$shots"
env -u DBUS_SYSTEM_BUS_ADDRESS -u DBUS_SESSION_BUS_ADDRESS \
        BASE_URL="http://127.0.0.1:$cport" TECH="$TECH" GUEST="$GUEST" USER_PASSWORD="$PWU" VIN="$VIN" \
        BUS_ADDRESS="$addr" SHOTS_DIR="$shots" PROFILE_DIR="$tmp/chromium" \
        timeout 200 /usr/bin/python3 "$src/tests/web/browser-login.py"
[ $? -eq 0 ] || fail "browser-login.py failed"

[ "$failures" -eq 0 ] || exit 1
echo "test-web-login: all checks passed"
