#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The system test: the built Debian packages installed with apt under a real systemd,
# immod on the real system bus with the shipped policy, against the packaged immo-ecusim
# on a real vcan0.  Runs as root inside the VM of "tests/vm/run-vm.sh --systemd"
# (testing.md, "A VM with real SocketCAN, kernel ISO-TP and systemd"), started by
# tests/vm/vm-system.sh; it changes the system it runs on, so it refuses to run anywhere
# else.
#
# Checks, each with its own PASS/FAIL lines:
#   install   apt installs immod, immo-ecusim, immo-passcode-server and cockpit-immod
#             from DEBDIR: the users and state folders made, the units enabled,
#             immod started; the installed unit, bus files, sysusers and tmpfiles
#             entries are found
#   a         bus activation starts immod.service
#   b         READY (Type=notify): active/running with a status text, as the user immod
#             with no capability
#   c         a user outside the group is refused by the bus policy, may read
#             properties; a member is served; the daemon's own check refuses too
#   d         a whole key registration on socketcan-isotp:vcan0 (kernel ISO-TP), with a
#             candump capture checked for the ids, the 0x57 address byte and padding
#   e         the same on socketcan:vcan0 (immod's own ISO-TP over CAN_RAW)
#   i         immoctl -H over real SSH (openssh-server's sshd from Debian's archive, keys
#             made here): status, keys and a whole key registration as a member of
#             immo; an outsider refused with immod's words; the connection lost in
#             the middle leaves the procedure waiting, "immoctl -H ... attach" ends it
#   g         systemd-analyze security: exposure level at most 1.5
#   f         watchdog: a stopped (hung) immod is killed and restarted by systemd
#   j         a call to the passcode service (the packaged server, configured here) made
#             by immod-fetch under immod's sandbox: the service's answer comes back,
#             immod maps no HTTP or TLS library, no helper is left
#   h         the packages' life: an upgrade (reinstall) restarts immod and keeps the
#             audit log; remove keeps it and the configuration, purge removes them;
#             the passcode server started once configured, its database kept on
#             remove and removed on purge
# Exit status 0 only when all pass.  With IMMOD_VM_OUTPUT (run-vm.sh --output), the
# candump captures, the VM's journal and immo-ecusim's log are kept there.
#
# Usage: system-test.sh DEBDIR PATH/TO/test-vectors.json [SSHDEBDIR]
# SSHDEBDIR holds openssh-server and libwrap0 .deb files (tests/vm/vm-system.sh fetches
# them); without it, section i is skipped.

set -u -o pipefail

debs=${1:?usage: system-test.sh DEBDIR PATH/TO/test-vectors.json}
vectors=${2:?usage: system-test.sh DEBDIR PATH/TO/test-vectors.json}
sshdebs=${3:-}
ecusim=/usr/bin/immo-ecusim # from the package immo-ecusim

if [ "${IMMOD_IN_VM:-}" != 1 ] || [ "${IMMOD_VM_MODE:-}" != systemd ]; then
        echo "SKIP: system-test.sh changes the system it runs on; run it with tests/vm/run-vm.sh --systemd"
        exit 77
fi
[ "$(id -u)" = 0 ] || { echo "FAIL: system-test.sh must run as root"; exit 1; }
[ -d /run/systemd/system ] || { echo "FAIL: not running under systemd"; exit 1; }

VIN=58ADZ1B19LU012345
DEST=org.immod.Immod1
OBJ=/org/immod/Immod1
IFACE=org.immod.Immod1.Manager
PIFACE=org.immod.Immod1.Procedure
TECH=immotech        # in the group "immo"
OUTSIDER=immoguest   # not in it
out=${IMMOD_VM_OUTPUT:-}
# Debian's python3 rather than a wrapper (pyenv's shim takes seconds under TCG).
python3=/usr/bin/python3
[ -x $python3 ] || python3=python3

work=$(mktemp -d /tmp/system-test.XXXXXX)
chmod 0755 "$work"
sim_pid=
dump_pid=
failures=0

pass() { echo "PASS: $*"; }
failed=() # repeated at the end: the console may lose lines (the watchdog's kill -STOP)
fail() {
        echo "FAIL: $*"
        failures=$((failures + 1))
        failed+=("$*")
}
section() { echo; echo "=== $*"; }

cleanup() {
        [ -n "$dump_pid" ] && kill "$dump_pid" 2>/dev/null
        [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
        wait 2>/dev/null
        if [ "$failures" -ne 0 ]; then
                echo "--- immod's journal (last 60 lines)"
                journalctl -b -u immod.service --no-pager -q -n 60 -o short-monotonic 2>&1
                echo "--- immo-ecusim log (last 30 lines)"
                tail -n 30 "$work/ecusim.log" 2>/dev/null
        fi
        if [ -n "$out" ]; then
                journalctl -b --no-pager -q -o short-monotonic >"$out/journal.txt" 2>&1
                cp "$work/ecusim.log" "$out/ecusim.log" 2>/dev/null
                echo "the VM's journal and immo-ecusim's log are kept in $out"
        fi
        rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds, polled every 0.2 s
        local deadline=$((SECONDS + $1))
        shift
        until "$@" >/dev/null 2>&1; do
                [ $SECONDS -ge $deadline ] && return 1
                sleep 0.2
        done
}

# verdict DESCRIPTION COMMAND...: PASS when COMMAND succeeds
verdict() {
        local d=$1
        shift
        if "$@"; then pass "$d"; else fail "$d"; return 1; fi
}

# check DESCRIPTION PATTERN TEXT: PASS when TEXT matches the extended regex PATTERN
check() {
        if grep -Eq -- "$2" <<<"$3"; then pass "$1"; else fail "$1: wanted /$2/, got: $3"; return 1; fi
}

as_user() { # as_user USER COMMAND...
        local u=$1
        shift
        if [ "$u" = root ]; then "$@"; else runuser -u "$u" -- "$@"; fi
}
# Bus calls on the system bus, as the technician unless said otherwise.
bus() { as_user "${who:-$TECH}" busctl --system --timeout=60 "$@" 2>&1; }
mcall() { bus call "$DEST" "$OBJ" "$IFACE" "$@"; }
mprop() { bus get-property "$DEST" "$OBJ" "$IFACE" "$1"; }
pcall() { bus call "$DEST" "$proc" "$PIFACE" "$@"; }
pprop() { bus get-property "$DEST" "$proc" "$PIFACE" "$1"; }
# The D-Bus error name of a Manager method called by USER, or OK (busctl prints only the
# message, gdbus the name).
error_of() { # error_of USER METHOD [GVARIANT ARGS...]
        local u=$1 m=$2 o
        shift 2
        if o=$(as_user "$u" gdbus call --system --timeout 60 --dest "$DEST" --object-path "$OBJ" \
                --method "$IFACE.$m" "$@" 2>&1); then
                echo OK
        else
                sed -n 's/.*GDBus\.Error:\([A-Za-z0-9_.]*\):.*/\1/p' <<<"$o" | head -n 1
        fi
}

# logged DESCRIPTION UNIT PATTERN: PASS once UNIT's journal of this boot has a line
# matching the extended regex PATTERN (journald may take a moment)
logged() {
        local d=$1 unit=$2 re=$3
        in_journal() { journalctl -b -u "$unit" --no-pager -q | grep -Eq -- "$re"; }
        if wait_for 15 in_journal; then pass "$d"; else fail "$d: no line /$re/ in the journal of $unit"; return 1; fi
}

svc() { systemctl show -P "$1" immod.service; }
# up: the passcode server answers HTTPS on 8443
up() { curl -sk -o /dev/null -w '%{http_code}' https://127.0.0.1:8443/api/v1/ | grep -q '^[1-5]'; }
active() { [ "$(systemctl is-active immod.service)" = active ]; }

ctl() { # one command on immo-ecusim's control socket; prints the answer line
        $python3 - "$work/ctl.sock" "$1" <<'PY'
import socket, sys
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.settimeout(10)
c.connect(sys.argv[1])
c.sendall(sys.argv[2].encode() + b"\n")
line = b""
while not line.endswith(b"\n"):
    chunk = c.recv(1024)
    if not chunk:
        break
    line += chunk
print(line.decode().strip())
PY
}

# start_ecusim LINK: immo-ecusim on LINK; its keys live in $work/ecu.state, so a new
# one (on another link) goes on with the same car.  Registration mode keeps its real
# 60 s idle timeout (--window-scale 1): under TCG a person's steps take seconds.
start_ecusim() {
        rm -f "$work/ctl.sock"
        "$ecusim" --link "$1" --vin $VIN --model "ES 350" --master-key-file "$work/master.key" \
                --keys 11111111 --state "$work/ecu.state" --time-scale 60 --window-scale 1 --battery 13.8 \
                --sleep-after 86400 --control "$work/ctl.sock" >>"$work/ecusim.log" 2>&1 &
        sim_pid=$!
        if wait_for 20 test -S "$work/ctl.sock"; then
                pass "immo-ecusim on $1"
        else
                fail "immo-ecusim did not start on $1"
                exit 1
        fi
}
stop_ecusim() {
        kill "$sim_pid" 2>/dev/null
        wait "$sim_pid" 2>/dev/null
        sim_pid=
}

# write_config LINK [GROUP]: immod's configuration at its installed default path.
write_config() {
        cat >"$config" <<EOF
# written by tests/vm/system-test.sh
link: $1
state_dir: /var/lib/immod
group: ${2:-immo}
tester_present_ms: 2000
battery:
  source: ecu
EOF
}

registered() { # the key count of ReadKeyStatus, as the technician
        mcall ReadKeyStatus | sed -n 's/.*"registered" u \([0-9]*\).*/\1/p'
}

# The passcode for the procedure's current Seed (vehicle-protocol.md §6), from the master
# key of the test vectors, as the passcode service would compute it.
passcode() {
        bus --json=short get-property "$DEST" "$proc" "$PIFACE" Seed | $python3 -c '
import hashlib, hmac, json, struct, sys
master = bytes.fromhex(open(sys.argv[1]).read().strip())
vin = sys.argv[2]
seed = {name: v["data"] for name, v in json.load(sys.stdin)["data"].items()}
kvin = hmac.new(master, ("immod/vin-key/v1:" + vin).encode(), hashlib.sha256).digest()
if seed["kind"] == "immobilizer":
    d = hmac.new(kvin, b"immod/immobilizer-reset/v1:" + bytes.fromhex(seed["seed"]), hashlib.sha256).digest()
    at = d[31] & 0x0F
    print("%06d" % ((struct.unpack(">I", d[at:at + 4])[0] & 0x7FFFFFFF) % 1000000))
else:
    text = ":".join([seed["vin"]] + [seed[f].upper() for f in ("data1", "data2", "data3")])
    print(hmac.new(kvin, ("immod/smart-code/v1:" + text).encode(), hashlib.sha256).digest()[:6].hex().upper())
' "$work/master.key" "$VIN"
}

step_is() { [ "$(pprop Step)" = "s \"$1\"" ]; }
wait_step() { # wait_step STEP: PASS once the procedure is at STEP (generous: TCG is slow)
        if wait_for 60 step_is "$1"; then
                pass "step $1"
        else
                fail "step $1 not reached (at $(pprop Step): $(pprop ErrorMessage))"
                return 1
        fi
}
ack() { check "Acknowledge $1" '^$' "$(pcall Acknowledge s "$1")"; }

# register_key LABEL NEW_KEY: a whole key registration (mode 1: one key is registered)
# under a candump capture of vcan0, then the capture checked.
register_key() {
        local label=$1 key=$2 before after cap=$work/candump-$1.log o
        candump -L vcan0 >"$cap" 2>"$work/candump.err" &
        dump_pid=$!
        sleep 0.5 # candump has bound its socket
        before=$(registered)
        check "ReadKeyStatus before" '^[0-9]+$' "$before"
        check "Identify" "\"vin\" s \"$VIN\"" "$(mcall Identify)"
        o=$(mcall StartProcedure 'sa{sv}' key-registration 2 technician s "T. Tester" repair_order s "RO-VM-$label")
        proc=$(sed -n 's/^o "\(.*\)"$/\1/p' <<<"$o")
        if [ -z "$proc" ]; then
                fail "StartProcedure key-registration: $o"
                kill "$dump_pid"; wait "$dump_pid" 2>/dev/null; dump_pid=
                return
        fi
        pass "StartProcedure key-registration: $proc"
        # Each step after the one before; the first failure ends the walk.
        wait_step confirm-instructions && ack confirm-instructions &&
                wait_step smart-code-passcode &&
                check "SubmitPasscode (smart code)" '^$' "$(pcall SubmitPasscode s "$(passcode)")" &&
                wait_step check-slots && ack check-slots &&
                wait_step place-keys && ack place-keys &&
                wait_step touch-registered-key &&
                check "touch the registered key" '"ok": *true' "$(ctl 'touch 11111111')" &&
                wait_step pre-start-check && ack pre-start-check &&
                wait_step touch-new-keys &&
                check "touch the new key $key" '"ok": *true' "$(ctl "touch $key")" &&
                wait_step function-check && ack function-check &&
                wait_step "done" ||
                echo "the registration on $label stopped at the first failure"
        check "registration State succeeded" '^s "succeeded"$' "$(pprop State)"
        check "registration Keys: 1 added" '"added" u 1' "$(pprop Keys)"
        after=$(registered)
        if [ -n "$before" ] && [ "$after" = $((before + 1)) ]; then
                pass "key count $before -> $after"
        else
                fail "key count did not go up by one: '$before' -> '$after'"
        fi
        sleep 0.3 # the last frames reach candump
        kill "$dump_pid"
        wait "$dump_pid" 2>/dev/null
        dump_pid=
        check_capture "$label" "$cap"
}

# check_capture LABEL FILE: candump -L lines "(1700000000.123456) vcan0 750#5702100300000000"
check_capture() {
        local label=$1 cap=$2 total req resp other noaddr unpadded
        total=$(wc -l <"$cap")
        req=$(grep -c ' vcan0 750#' "$cap")
        resp=$(grep -c ' vcan0 758#' "$cap")
        other=$(grep -c -v -E ' vcan0 (750|758)#' "$cap")
        noaddr=$(grep -E ' vcan0 (750|758)#' "$cap" | grep -c -v -E '#57')
        unpadded=$(grep -c -v -E '#[0-9A-F]{16}$' "$cap")
        echo "candump $label: $total frames, $req on 0x750 (tester), $resp on 0x758 (ECU)," \
                "$other on other ids, $noaddr without the address byte 0x57, $unpadded shorter than 8 bytes"
        echo "first frames:"
        head -n 5 "$cap"
        echo "last frames:"
        tail -n 5 "$cap"
        if [ -n "$out" ] && cp "$cap" "$out/candump-$label.log"; then
                echo "capture kept in $out/candump-$label.log"
        fi
        verdict "capture: requests on 0x750 ($req) and responses on 0x758 ($resp)" \
                [ $((req > 0 && resp > 0)) = 1 ]
        verdict "capture: no other ids ($other)" [ "$other" -eq 0 ]
        verdict "capture: 0x57 is the first data byte of every frame ($noaddr without)" [ "$noaddr" -eq 0 ]
        verdict "capture: every frame padded to 8 bytes ($unpadded shorter)" [ "$unpadded" -eq 0 ]
        # 31 01 A1 02 01: start key registration mode 1, a single frame; its answer 71 01 A1 02
        check "capture: registration start 31 01 A1 02 01 on 0x750" '750#57053101A10201' "$(cat "$cap")"
        check "capture: its answer 71 01 A1 02 on 0x758" '758#57047101A102' "$(cat "$cap")"
        # 67 03 + 33 bytes of smart-code seed: a first frame from the ECU, flow control back
        check "capture: smart-code seed 27 03 and its multi-frame answer" \
                '750#57022703.*758#5710236703' "$(tr '\n' ' ' <"$cap")"
        # 27 04 + 6 bytes: a first frame from the tester, flow control from the ECU
        check "capture: smart-code passcode 27 04 as a first frame, the ECU's flow control" \
                '750#5710082704.*758#5730' "$(tr '\n' ' ' <"$cap")"
}

# ===================================================================== setup
section "install: the packages from $debs"
[ -z "$out" ] || rm -f "$out"/candump-*.log "$out/journal.txt" "$out/ecusim.log" # of an earlier run
ip link show vcan0 2>/dev/null | grep -q '[<,]UP[,>]' ||
        { ip link add dev vcan0 type vcan && ip link set vcan0 up; } ||
        { fail "no vcan0"; exit 1; }
pass "vcan0 is up"
sed -n 's/.*"master_key_hex": *"\([0-9a-fA-F]*\)".*/\1/p' "$vectors" >"$work/master.key"
[ -s "$work/master.key" ] || { fail "no master key in $vectors"; exit 1; }

packages=(immod immo-ecusim immo-passcode-server cockpit-immod)
debfiles=()
for p in "${packages[@]}"; do
        f=$(ls "$debs"/"${p}"_*_*.deb 2>/dev/null | head -n 1)
        [ -n "$f" ] || { fail "no ${p}_*.deb in $debs"; exit 1; }
        debfiles+=("$f")
done
# man-db's trigger would index every manual page over 9p under TCG: minutes.
rm -f /var/lib/man-db/auto-update
# A build host in a container may forbid maintainer scripts to start services
# (policy-rc.d exits 101); this VM is a whole system, where they must.
rm -f /usr/sbin/policy-rc.d
t0=$SECONDS
if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${debfiles[@]}" >"$work/apt.log" 2>&1; then
        pass "apt-get install ${debfiles[*]##*/} ($((SECONDS - t0)) s)"
else
        fail "apt-get install: $(tail -n 20 "$work/apt.log")"
        exit 1
fi
for p in "${packages[@]}"; do
        check "$p installed" '^install ok installed$' "$(dpkg-query -W -f='${Status}' "$p" 2>&1)"
done
check "/etc/immod/immod.conf is a conffile" '^ /etc/immod/immod\.conf ' \
        "$(dpkg-query -W -f='${Conffiles}' immod)"
check "immod.service enabled" '^enabled$' "$(systemctl is-enabled immod.service 2>&1)"
check "immod.service started by the package" '^active$' "$(systemctl is-active immod.service 2>&1)"
check "immod.service never refused its bus name (started once)" '^0$' "$(svc NRestarts)"
check "immo-passcode-server.service enabled" '^enabled$' "$(systemctl is-enabled immo-passcode-server.service 2>&1)"
check "immo-passcode-server.service waits for its configuration" \
        'ConditionResult=no' "$(systemctl show -p ConditionResult immo-passcode-server.service)"
check "user immo-passcode exists" '^immo-passcode:' "$(getent passwd immo-passcode)"
check "/var/lib/immo-passcode-server is 0700 immo-passcode" '^700 immo-passcode$' \
        "$(stat -c '%a %U' /var/lib/immo-passcode-server 2>&1)"
verdict "the Cockpit page is installed" test -s /usr/share/cockpit/immod/manifest.json
verdict "immo-linktest is installed" test -x /usr/bin/immo-linktest
# The test drives immod from here on: it starts by bus activation again.
systemctl stop immod.service

section "setup: the installed files"
check "immod.service is loaded" '^loaded$' "$(svc LoadState)"
echo "unit file: $(svc FragmentPath)"
immod_bin=$(svc ExecStart | sed -n 's/.*path=\([^ ;]*\).*/\1/p')
verdict "ExecStart '$immod_bin' is installed" [ -x "$immod_bin" ] || exit 1
prefix=${immod_bin%/sbin/immod}
config=$("$immod_bin" --help 2>&1 | sed -n 's/.*(default \(\/[^)]*\)).*/\1/p' | head -n 1)
[ -n "$config" ] || { fail "no default configuration path in immod --help"; exit 1; }
echo "prefix $prefix, configuration $config"
activation=$prefix/share/dbus-1/system-services/org.immod.Immod1.service
check "activation file $activation" '^SystemdService=immod\.service$' "$(cat "$activation" 2>&1)"
# dbus-daemon reads policies only from /usr/share/dbus-1/system.d and /etc/dbus-1/system.d
# (activation files also from /usr/local/share): under another prefix, an administrator
# copies the policy to /etc, as dbus/meson.build says.  So does this test.
policy=$prefix/share/dbus-1/system.d/org.immod.Immod1.conf
if [ "$prefix" != /usr ]; then
        verdict "policy copied from $policy to /etc/dbus-1/system.d" cp "$policy" /etc/dbus-1/system.d/
        check "dbus-daemon reloaded" '^$' \
                "$(busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig 2>&1)"
fi
# The shipped sysusers and tmpfiles entries, by name: found only where systemd looks.
check "systemd-sysusers immod.conf" '^$' "$(systemd-sysusers immod.conf 2>&1)"
check "group immo exists" '^immo:' "$(getent group immo)"
check "systemd-tmpfiles --create immod.conf" '^$' "$(systemd-tmpfiles --create immod.conf 2>&1)"
check "user immod exists" '^immod:' "$(getent passwd immod)"
check "user immod is in no group but its own" '^immod$' "$(id -nG immod 2>&1)"
check "/var/lib/immod is 0700 immod" '^700 immod$' "$(stat -c '%a %U' /var/lib/immod 2>&1)"
verdict "useradd $TECH (in immo)" useradd -M -N -g users -G immo -s /usr/sbin/nologin $TECH || exit 1
verdict "useradd $OUTSIDER (not in immo)" useradd -M -N -g users -s /usr/sbin/nologin $OUTSIDER || exit 1
write_config socketcan-isotp:vcan0
start_ecusim socketcan:vcan0

# ===================================================================== a. activation
section "a. bus activation"
state=$(systemctl is-active immod.service)
check "immod is not running before the first call" '^(inactive|failed)$' "$state"
check "Version, read as root, activates immod" '^s "[0-9]' "$(who=root mprop Version)"
check "immod.service is active" '^active$' "$(systemctl is-active immod.service)"
logged "dbus-daemon activated it through systemd (SystemdService=immod.service)" dbus.service \
        "Activating via systemd: service name='$DEST' unit='immod\.service'"

# ===================================================================== b. READY
section "b. READY"
systemctl show -p Type,ActiveState,SubState,StatusText,MainPID,WatchdogUSec immod.service | tr '\n' ' '
echo
check "ActiveState active" '^active$' "$(svc ActiveState)"
check "SubState running" '^running$' "$(svc SubState)"
check "StatusText from sd_notify" '^Ready on socketcan-isotp:vcan0' "$(svc StatusText)"
check "Link" '^s "socketcan-isotp:vcan0"$' "$(mprop Link)"
check "LinkState up" '^s "up"$' "$(mprop LinkState)"
# Without root: its own user, no capability in any set.
pid=$(svc MainPID)
check "immod runs as the user immod" '^immod$' "$(ps -o user= -p "$pid" 2>&1)"
check "immod's group is immod" '^immod$' "$(ps -o group= -p "$pid" 2>&1)"
check "immod runs at nice -5 (tester present first)" '^ *-5$' "$(ps -o ni= -p "$pid" 2>&1)"
for set in CapInh CapPrm CapEff CapBnd CapAmb; do
        check "immod's $set is empty" "^$set:[[:space:]]+0+\$" "$(grep "^$set:" /proc/"$pid"/status 2>&1)"
done
check "the packaged immoctl, as $TECH: status" 'socketcan-isotp:vcan0' "$(as_user $TECH immoctl status 2>&1)"

# ===================================================================== c. authorization
section "c. authorization"
check "$OUTSIDER: ReadKeyStatus refused by the bus policy" '^org\.freedesktop\.DBus\.Error\.AccessDenied$' \
        "$(error_of $OUTSIDER ReadKeyStatus)"
check "$OUTSIDER: Identify refused by the bus policy" '^org\.freedesktop\.DBus\.Error\.AccessDenied$' \
        "$(error_of $OUTSIDER Identify)"
check "$OUTSIDER: may read Version" '^s "[0-9]' "$(who=$OUTSIDER mprop Version)"
check "$OUTSIDER: may read all properties (GetAll)" "'Problems'" \
        "$(as_user $OUTSIDER gdbus call --system --dest $DEST --object-path $OBJ \
                --method org.freedesktop.DBus.Properties.GetAll $IFACE 2>&1)"
# Every refused call is logged: these by dbus-daemon, which never passed them on.
logged "dbus-daemon logged the refused ReadKeyStatus" dbus.service \
        "Rejected send message.*uid=$(id -u $OUTSIDER) .*member=\"ReadKeyStatus\""
check "$TECH: ReadKeyStatus served" '"registered" u 1 "available" u 6 "max" u 7' "$(mcall ReadKeyStatus)"
check "$TECH: Identify served" "\"vin\" s \"$VIN\"" "$(mcall Identify)"
# The second fence: with another group in immod's configuration the policy lets the
# technician through, the daemon refuses.
write_config socketcan-isotp:vcan0 root
systemctl restart immod.service
check "$TECH, immod configured for group root: NotAuthorized from the daemon" \
        '^org\.immod\.Immod1\.Error\.NotAuthorized$' "$(error_of $TECH ReadKeyStatus)"
logged "immod logged the refusal" immod.service "Refused ReadKeyStatus\(\) from uid $(id -u $TECH):"
write_config socketcan-isotp:vcan0
systemctl restart immod.service
check "$TECH served again with group immo" '"registered" u 1' "$(mcall ReadKeyStatus)"

# ===================================================================== d. kernel ISO-TP
section "d. key registration on socketcan-isotp:vcan0"
register_key socketcan-isotp 22222222
check "the audit log is immod's, 0600" '^600 immod$' "$(stat -c '%a %U' /var/lib/immod/audit.log 2>&1)"

# ===================================================================== e. CAN_RAW
section "e. key registration on socketcan:vcan0"
write_config socketcan:vcan0
# immo-ecusim now on the kernel's ISO-TP, so that each side meets the other implementation
stop_ecusim
start_ecusim socketcan-isotp:vcan0
systemctl restart immod.service
check "immod restarted" '^active$' "$(systemctl is-active immod.service)"
check "Link socketcan:vcan0" '^s "socketcan:vcan0"$' "$(mprop Link)"
check "StatusText" '^Ready on socketcan:vcan0' "$(svc StatusText)"
register_key socketcan 33333333

# ===================================================================== i. SSH
section "i. immoctl -H over SSH"
# The technicians log in with a key; the box's sshd is Debian's, unpacked into this
# throw-away root (the host has only the client), with a host key made here.
remote=$TECH@127.0.0.1
ssh_ic() { # ssh_ic USER ARGS...: immoctl on this host's bus through SSH as USER, as a laptop would
        local u=$1
        shift
        timeout 300 immoctl -H "$u@127.0.0.1" --no-pager "$@" 2>&1
}
sshd_root=$work/sshd-root # the packages unpacked here: over / they would undo its merged /usr
sshd=$sshd_root/usr/sbin/sshd
start_sshd() {
        local d f u lib=$sshd_root/usr/lib/x86_64-linux-gnu:$sshd_root/lib/x86_64-linux-gnu
        for d in openssh-server libwrap0; do
                f=$(ls "$sshdebs"/"$d"_*.deb 2>/dev/null | head -n 1)
                [ -n "$f" ] && dpkg-deb -x "$f" "$sshd_root" || { echo "no $d .deb in $sshdebs"; return 1; }
        done
        id sshd >/dev/null 2>&1 || useradd -r -M -d /run/sshd -s /usr/sbin/nologin sshd || return 1
        mkdir -p -m 0755 /run/sshd /etc/ssh/authorized_keys.d || return 1
        ssh-keygen -q -t ed25519 -N '' -f "$work/ssh_host_key" || return 1
        ssh-keygen -q -t ed25519 -N '' -f "$work/client_key" || return 1
        for u in $TECH $OUTSIDER; do
                # a technician's account: a shell, a home (useradd -M gave neither), and
                # no password but not locked ("!" is: sshd would refuse the key too)
                mkdir -p -m 0700 /home/$u && chown $u /home/$u && usermod -s /bin/sh -d /home/$u -p '*' $u &&
                        install -m 0644 "$work/client_key.pub" /etc/ssh/authorized_keys.d/$u || return 1
        done
        printf '%s\n' "ListenAddress 127.0.0.1" "HostKey $work/ssh_host_key" \
                "AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u" "AllowUsers $TECH $OUTSIDER" \
                "PasswordAuthentication no" "KbdInteractiveAuthentication no" "UsePAM no" \
                "PermitRootLogin no" >"$work/sshd_config"
        # The laptop's side: this key, and only this host key is trusted.
        echo "127.0.0.1 $(cut -d' ' -f1,2 "$work/ssh_host_key.pub")" >"$work/known_hosts"
        printf '%s\n' "Host 127.0.0.1" "        IdentityFile $work/client_key" "        IdentitiesOnly yes" \
                "        UserKnownHostsFile $work/known_hosts" "        StrictHostKeyChecking yes" \
                "        BatchMode yes" >/etc/ssh/ssh_config.d/immod-vm-test.conf
        LD_LIBRARY_PATH=$lib "$sshd" -t -f "$work/sshd_config" || return 1
        systemd-run -q --unit=immod-vm-sshd --setenv=LD_LIBRARY_PATH="$lib" \
                "$sshd" -D -e -f "$work/sshd_config" || return 1
        sshd_up() { ssh "$TECH@127.0.0.1" true; }
        wait_for 30 sshd_up
}
if [ -z "$sshdebs" ]; then
        echo "SKIP: section i: no openssh-server .deb (tests/vm/vm-system.sh could not fetch one)"
elif verdict "sshd on 127.0.0.1:22, a key for $TECH and $OUTSIDER" start_sshd; then
        check "ssh $remote: the host key checked, the key accepted" "^$TECH\$" "$(ssh "$remote" id -un 2>&1)"
        check "immoctl -H $remote status" 'socketcan:vcan0' "$(ssh_ic $TECH status)"
        before=$(registered)
        check "immoctl -H $remote keys: $before registered" "$before" "$(ssh_ic $TECH keys)"
        o=$(ssh_ic $OUTSIDER keys)
        rc=$?
        check "immoctl -H $OUTSIDER@127.0.0.1 keys: exit status 3 (refused)" '^3$' "$rc"
        check "immoctl -H $OUTSIDER@127.0.0.1 keys: immod's words" 'not authorized by the bus policy' "$o"
        check "immoctl -H $OUTSIDER@127.0.0.1 keys: what to do" 'member of the group "immo"' "$o"

        # A registration through SSH: add-key stops at the passcode (--no-ask, none given);
        # the passcode from the Seed as the service would give it; attach goes on.
        o=$(ssh_ic $TECH add-key --no-ask --technician "T. Remote" --repair-order RO-VM-SSH)
        rc=$?
        check "immoctl -H add-key --no-ask without a passcode: exit status 2" '^2$' "$rc"
        check "immoctl -H add-key: names the passcode it needs" 'smart-code-passcode needs a passcode' "$o"
        proc=$(mprop ActiveProcedure | sed -n 's/^o "\(.*\)"$/\1/p')
        check "the procedure waits at smart-code-passcode" '^s "smart-code-passcode"$' "$(pprop Step 2>&1)"
        ssh_ic $TECH attach --no-ask --passcode "$(passcode)" >"$work/attach1.txt" &
        ic_pid=$!
        wait_step touch-registered-key
        # The laptop's link drops: its ssh dies, as a lost connection ends it.
        pkill -KILL -x ssh
        wait $ic_pid
        rc=$?
        check "the connection lost: exit status 4 (not reachable)" '^4$' "$rc"
        check "the connection lost: said, with the way back" \
                "goes on at step touch-registered-key: \"immoctl -H $remote attach\" takes it up again" \
                "$(cat "$work/attach1.txt")"
        sleep 2 # immod has seen the client's bus name vanish
        check "the procedure still runs" '^s "(running|waiting)"$' "$(pprop State)"
        check "... and still waits at touch-registered-key" '^s "touch-registered-key"$' "$(pprop Step)"
        ssh_ic $TECH attach --no-ask >"$work/attach2.txt" &
        ic_pid=$!
        sleep 3 # the new client has attached
        check "touch the registered key" '"ok": *true' "$(ctl 'touch 11111111')"
        wait_step touch-new-keys &&
                check "touch the new key 44444444" '"ok": *true' "$(ctl 'touch 44444444')"
        wait $ic_pid
        rc=$?
        check "immoctl -H $remote attach: exit status 0" '^0$' "$rc"
        check "immoctl -H $remote attach: Done." '^Done\.$' "$(cat "$work/attach2.txt")"
        check "registration over SSH: State succeeded" '^s "succeeded"$' "$(pprop State)"
        check "registration over SSH: 1 key added" '"added" u 1' "$(pprop Keys)"
        check "key count $before -> $((before + 1))" "^$((before + 1))\$" "$(registered)"
        echo "--- the first attach, its connection lost:"
        cat "$work/attach1.txt"
        echo "--- the second attach:"
        cat "$work/attach2.txt"
        systemctl stop immod-vm-sshd.service
else
        journalctl -u immod-vm-sshd.service --no-pager -q | tail -n 20
fi

# ===================================================================== g. sandbox
section "g. systemd-analyze security"
sec=$(systemd-analyze security --no-pager immod.service 2>&1)
echo "the settings that add to the exposure:"
grep -E '^(✗|X) ' <<<"$sec"
level=$(sed -n 's/.*Overall exposure level for immod\.service: \([0-9.]*\).*/\1/p' <<<"$sec")
grep 'Overall exposure level' <<<"$sec"
if [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 1.5) }'; then
        pass "exposure level $level (at most 1.5)"
else
        fail "exposure level '${level}' above 1.5 or not found: $(tail -n 3 <<<"$sec")"
fi

# ===================================================================== f. watchdog
section "f. watchdog"
mkdir -p /etc/systemd/system/immod.service.d
printf '[Service]\nWatchdogSec=4s\nTimeoutAbortSec=10s\n' >/etc/systemd/system/immod.service.d/vm-watchdog.conf
systemctl daemon-reload
systemctl restart immod.service
check "WatchdogUSec 4s" '^4s$' "$(svc WatchdogUSec)"
pid=$(svc MainPID)
restarts=$(svc NRestarts)
check "immod active with a main pid" '^[1-9][0-9]*$' "$pid"
kill -STOP "$pid"
echo "stopped immod (pid $pid, NRestarts $restarts) at $(date +%T)"
restarted() {
        local p n
        p=$(svc MainPID)
        n=$(svc NRestarts)
        [ "$n" -gt "$restarts" ] && [ "$p" != 0 ] && [ "$p" != "$pid" ] && active
}
if wait_for 90 restarted; then
        pass "restarted by systemd at $(date +%T): MainPID $pid -> $(svc MainPID), NRestarts $restarts -> $(svc NRestarts)"
else
        fail "not restarted: $(systemctl show -p ActiveState,SubState,Result,MainPID,NRestarts immod.service | tr '\n' ' ')"
fi
logged "systemd logged the watchdog timeout" immod.service 'immod\.service: Watchdog timeout'
check "the new immod answers" '^s "socketcan:vcan0"$' "$(mprop Link)"

# ===================================================================== j. HTTPS
section "j. a call to the passcode service, made by immod-fetch in immod's sandbox"
rm -f /etc/systemd/system/immod.service.d/vm-watchdog.conf
systemctl daemon-reload
verdict "immod-fetch installed in libexec" test -x /usr/libexec/immod/immod-fetch
# the passcode server as its example says, with a certificate for localhost that immod trusts
mkdir -p /etc/immo-passcode-server
(
        cd /etc/immo-passcode-server &&
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
                        -subj /CN=localhost -addext subjectAltName=DNS:localhost \
                        -keyout server.key -out server.pem 2>/dev/null &&
                openssl rand -hex 32 >master.key &&
                chgrp immo-passcode server.key master.key && chmod 0640 server.key master.key &&
                cp /usr/share/doc/immo-passcode-server/examples/server.yaml server.yaml &&
                install -m 0640 -g immod server.pem /etc/immod/passcode-ca.pem
) || fail "cannot configure the passcode server"
systemctl start immo-passcode-server.service
verdict "passcode server: answers HTTPS on 8443" wait_for 20 up
printf 'server:\n  url: https://localhost:8443\n  ca_file: /etc/immod/passcode-ca.pem\n  timeout_s: 30\n' >>"$config"
systemctl restart immod.service
verdict "immod restarted with a passcode service" wait_for 20 active
# nobody is enrolled at the service: its answer (the login refused) proves the helper
# started, connected and checked the server's certificate under immod's sandbox
check "GetApproval reaches the service: AuthenticationFailed" 'AuthenticationFailed' \
        "$(error_of "$TECH" GetApproval "$VIN" "{'user': <'tech1'>, 'password': <'not-enrolled'>}")"
pid=$(svc MainPID)
check "immod maps no HTTP or TLS library" '^$' \
        "$(grep -Eo 'lib(curl|gnutls|ssl|nghttp2)[^/ ]*$' "/proc/$pid/maps" | sort -u | xargs)"
check "no helper left behind" '^$' "$(cat /proc/"$pid"/task/*/children 2>&1 | xargs)"
systemctl stop immo-passcode-server.service
rm -rf /etc/immo-passcode-server /etc/immod/passcode-ca.pem
write_config socketcan:vcan0

# ===================================================================== h. packages
section "h. upgrade, remove, purge"
rm -f /etc/systemd/system/immod.service.d/vm-watchdog.conf
systemctl daemon-reload
systemctl restart immod.service
audit=/var/lib/immod/audit.log
audit_sum=$(sha256sum "$audit" 2>&1 | cut -d' ' -f1)
registrations=3 # d, e and i
[ -n "$sshdebs" ] || registrations=2
check "the audit log has the $registrations registrations" "^$registrations\$" "$(grep -c . "$audit" 2>&1)"
pid=$(svc MainPID)
# Reinstalling the same version takes the upgrade path: prerm upgrade, postinst configure
# with the old version, so the unit is restarted.
# apt installed them (above); dpkg removes and purges, as apt would but without reading
# the package lists again (half a minute each under TCG).
pkg() { dpkg "$@" >"$work/dpkg.log" 2>&1 || tail -n 20 "$work/dpkg.log"; }
check "upgrade (dpkg -i again)" '^$' "$(pkg -i "${debfiles[0]}")"
check "upgrade: immod.service still enabled" '^enabled$' "$(systemctl is-enabled immod.service 2>&1)"
check "upgrade: immod.service restarted" '^active [0-9]+$' "$(systemctl is-active immod.service) $(svc MainPID)"
verdict "upgrade: a new main pid ($pid -> $(svc MainPID))" [ "$(svc MainPID)" != "$pid" ]
check "upgrade: the audit log unchanged" "^$audit_sum\$" "$(sha256sum "$audit" 2>&1 | cut -d' ' -f1)"
check "upgrade: the changed configuration kept" 'written by tests/vm/system-test.sh' "$(cat "$config")"
check "upgrade: immod answers" '^s "socketcan:vcan0"$' "$(mprop Link)"
check "remove immod and cockpit-immod" '^$' "$(pkg -r cockpit-immod immod)"
check "remove: immod.service gone" '^inactive not-found$' "$(systemctl is-active immod.service) $(svc LoadState)"
check "remove: the audit log kept" "^$audit_sum\$" "$(sha256sum "$audit" 2>&1 | cut -d' ' -f1)"
verdict "remove: the configuration kept" test -f "$config"
check "purge immod" '^$' "$(pkg -P immod)"
verdict "purge: /var/lib/immod removed" test ! -e /var/lib/immod
verdict "purge: /etc/immod/immod.conf removed" test ! -e "$config"

# The passcode server, configured as its example says.
mkdir -p /etc/immo-passcode-server
(
        cd /etc/immo-passcode-server &&
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
                        -subj /CN=localhost -keyout server.key -out server.pem 2>/dev/null &&
                openssl rand -hex 32 >master.key &&
                chgrp immo-passcode server.key master.key && chmod 0640 server.key master.key &&
                cp /usr/share/doc/immo-passcode-server/examples/server.yaml server.yaml
) || fail "cannot configure the passcode server"
systemctl start immo-passcode-server.service
verdict "passcode server: answers HTTPS on 8443" wait_for 20 up
check "passcode server: runs as immo-passcode" '^immo-passcode$' \
        "$(ps -o user= -p "$(systemctl show -P MainPID immo-passcode-server.service)" 2>&1)"
verdict "passcode server: its database in /var/lib/immo-passcode-server" \
        test -s /var/lib/immo-passcode-server/passcodes.sqlite
sec=$(systemd-analyze security --no-pager immo-passcode-server.service 2>&1 | grep 'Overall exposure level')
echo "$sec"
check "remove immo-passcode-server" '^$' "$(pkg -r immo-passcode-server)"
verdict "remove: the database kept" test -s /var/lib/immo-passcode-server/passcodes.sqlite
check "purge immo-passcode-server" '^$' "$(pkg -P immo-passcode-server)"
verdict "purge: /var/lib/immo-passcode-server removed" test ! -e /var/lib/immo-passcode-server

echo
echo "$failures failure(s)"
for f in "${failed[@]}"; do echo "FAILED: $f"; done
[ "$failures" -eq 0 ]
