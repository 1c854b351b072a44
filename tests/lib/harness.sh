# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The common harness of the integration test scripts (tests/daemon/*.sh, tests/client/*.sh):
# a temporary directory removed on exit (with the logs printed on failure), the assertion
# helpers, a private dbus-daemon, busctl/gdbus wrappers, immo-ecusim and its control socket.
#
# Sourced by a bash script after it has set:
#   src            the source root
#   VIN            the VIN of the simulated ECU (start_ecusim)
#   ecusim         the immo-ecusim binary (start_ecusim)
#   DEST OBJ IFACE the D-Bus destination, object and interface of call/prop/call_error
#   PIFACE proc    the procedure interface and object of pprop/step_is/wait_step
# and optionally, before sourcing:
#   harness_pids   names of the variables holding the pids cleanup kills, in that order
#                  (default: immod_pid sim_pid bus_pid); each is set empty here if unset
#   harness_logs   an array of LABEL FILE LINES triples: the logs in $tmp printed (their
#                  last LINES lines) after immod's log when a check failed or KEEP_TMP is set
#                  (default: ecusim log, 50 lines)
#
# Sets tmp (named after the script), failures=0 and the EXIT trap.

harness_pids=${harness_pids:-immod_pid sim_pid bus_pid}
if ! declare -p harness_logs >/dev/null 2>&1; then
        harness_logs=("ecusim log" ecusim.log 50)
fi
for _v in $harness_pids; do
        [ -n "${!_v+set}" ] || printf -v "$_v" ''
done
unset _v

tmp=$(mktemp -d "/tmp/$(basename "$0" .sh).XXXXXX")
chmod 0755 "$tmp" # a caller of another uid must reach the bus socket
failures=0

cleanup() {
        local v pids= i
        for v in $harness_pids; do
                pids+=" ${!v:-}"
        done
        for p in $pids; do
                kill "$p" 2>/dev/null
        done
        wait 2>/dev/null
        if [ "$failures" -ne 0 ] || [ -n "${KEEP_TMP:-}" ]; then
                echo "--- immod log"; cat "$tmp/immod.log" 2>/dev/null
                for ((i = 0; i + 2 < ${#harness_logs[@]}; i += 3)); do
                        echo "--- ${harness_logs[i]}"; tail -n "${harness_logs[i + 2]}" "$tmp/${harness_logs[i + 1]}" 2>/dev/null
                done
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
        echo "FAIL: $*"
        failures=$((failures + 1))
}
pass() {
        echo "ok: $*"
}

# expect_match DESCRIPTION PATTERN TEXT
expect_match() {
        if grep -Eq -- "$2" <<<"$3"; then pass "$1"; else fail "$1: wanted /$2/, got: $3"; fi
}

wait_for() { # wait_for SECONDS COMMAND...
        local deadline=$((SECONDS + $1))
        shift
        until "$@" >/dev/null 2>&1; do
                [ $SECONDS -ge $deadline ] && return 1
                sleep 0.1
        done
}

# start_bus: a private dbus-daemon on $tmp/bus.sock that lets any uid connect, own and
# call (immod does its own checks); sets addr and bus_pid (and out).
start_bus() {
        cat >"$tmp/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$tmp/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
CONF
        out=$(dbus-daemon --config-file="$tmp/bus.conf" --fork --print-address=1 --print-pid=1) || { echo "dbus-daemon failed"; exit 1; }
        addr=$(sed -n 1p <<<"$out")
        bus_pid=$(sed -n 2p <<<"$out")
}

bctl() { busctl --address="$addr" "$@"; }
call() { bctl call "$DEST" "$OBJ" "$IFACE" "$@" 2>&1; }
prop() { bctl get-property "$DEST" "$OBJ" "$IFACE" "$1" 2>&1; }
# The error name of a failing call, or "OK"; arguments in GVariant text.
call_error() {
        local method=$1
        shift
        local out
        if out=$(gdbus call --address="$addr" --dest="$DEST" --object-path="$OBJ" --method="$IFACE.$method" "$@" 2>&1); then
                echo OK
        else
                sed -n 's/.*GDBus\.Error:\([A-Za-z0-9_.]*\):.*/\1/p' <<<"$out" | head -n 1
        fi
}

# The procedure object $proc.
pprop() { bctl get-property "$DEST" "$proc" "$PIFACE" "$1" 2>&1; }
step_is() { [ "$(pprop Step)" = "s \"$1\"" ]; }
wait_step() { # wait_step SECONDS STEP
        if wait_for "$1" step_is "$2"; then pass "step $2"; else fail "step $2 not reached (at $(pprop Step), $(pprop ErrorMessage))"; fi
}

ctl() { # one control socket command of immo-ecusim; prints the answer line
        python3 - "$tmp/ctl.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
buf = b""
while not buf.endswith(b"\n"):
    d = s.recv(4096)
    if not d:
        break
    buf += d
print(buf.decode().strip())
PY
}

# write_master_key: the master key of tests/test-vectors.json, in hex, to $tmp/master.key.
write_master_key() {
        sed -n 's/.*"master_key_hex": *"\([0-9a-fA-F]*\)".*/\1/p' "$src/tests/test-vectors.json" >"$tmp/master.key"
}

# start_ecusim [OPTION...]: immo-ecusim on $tmp/vbus.sock with one key, the options added,
# its control socket on $tmp/ctl.sock; sets sim_pid.
start_ecusim() {
        "$ecusim" --link "vbus:$tmp/vbus.sock" --vin "$VIN" --model "ES 350" --master-key-file "$tmp/master.key" \
                --keys 11111111 "$@" --control "$tmp/ctl.sock" >"$tmp/ecusim.log" 2>&1 &
        sim_pid=$!
        wait_for 10 test -S "$tmp/ctl.sock" || { fail "immo-ecusim did not start"; exit 1; }
}

# --- the passcode service tests: TLS, ports, the server directly.
free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
listening() { python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$1"; }
make_ca() {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$tmp/$1.key" \
                -out "$tmp/$1.pem" -subj "/CN=$1" -days 2 >/dev/null 2>&1
}
make_cert() { # CA NAME
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$tmp/$2.key" \
                -out "$tmp/$2.csr" -subj /CN=localhost >/dev/null 2>&1 &&
        echo "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$tmp/$2.ext" &&
        openssl x509 -req -in "$tmp/$2.csr" -CA "$tmp/$1.pem" -CAkey "$tmp/$1.key" -CAcreateserial \
                -out "$tmp/$2.pem" -days 2 -extfile "$tmp/$2.ext" >/dev/null 2>&1
}
scurl() { # METHOD PATH [BODY [TOKEN]]: the passcode server on $port directly, as a manager would
        local args=(-sS --max-time 20 --cacert "$tmp/ca.pem" -X "$1" "https://127.0.0.1:$port/api/v1$2"
                -H "Content-Type: application/json")
        [ -n "${4:-}" ] && args+=(-H "Authorization: Bearer $4")
        [ -n "${3:-}" ] && args+=(--data-binary "$3")
        curl "${args[@]}"
}
gcall() { # OBJECT IFACE.METHOD ARGS...: "OK" or "ERRORNAME: message"
        local o=$1 m=$2 out
        shift 2
        if out=$(gdbus call --timeout 60 --address="$addr" --dest="$DEST" --object-path="$o" --method="$m" "$@" 2>&1); then
                echo OK
        else
                sed -n 's/.*GDBus\.Error:\([A-Za-z0-9_.]*\): \(.*\)/\1: \2/p' <<<"$out" | head -n 1
        fi
}
