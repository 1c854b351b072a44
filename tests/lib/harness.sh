# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The common harness of the integration test scripts (tests/daemon/*.sh, tests/client/*.sh):
# a temporary directory removed on exit (with the logs printed on failure), the assertion
# helpers, a private dbus-daemon, busctl/gdbus wrappers, immo-ecusim and its control socket,
# immod and its configuration, the procedure helpers (passcodes computed from the Seed), and
# the reference passcode server with real TLS.
#
# Sourced by a bash script after it has set (each as far as it uses the helpers named):
#   src            the source root
#   ecusim         the immo-ecusim binary (start_ecusim)
#   immod          the immod binary (start_immod)
#   server         the immo-passcode-server binary (start_passcode_server)
#   PW             tech1's password at the passcode server (passcode_server_yaml,
#                  request_approval)
# and optionally, before sourcing:
#   VIN            the VIN of the simulated ECU (default 58ADZ1B19LU012345)
#   DEST OBJ IFACE immod's D-Bus name, manager object and interface, for call/prop/call_error
#                  (default org.immod.Immod1, /org/immod/Immod1, org.immod.Immod1.Manager)
#   PIFACE         the procedure interface (default org.immod.Immod1.Procedure)
#   harness_pids   names of the variables holding the pids cleanup kills, in that order
#                  (default: immod_pid sim_pid bus_pid); each is set empty here if unset
#   harness_logs   an array of LABEL FILE LINES triples: the logs in $tmp printed (their
#                  last LINES lines) after immod's log when a check failed or KEEP_TMP is set
#                  (default: ecusim log, 50 lines)
#
# Sets tmp (named after the script), failures=0 and the EXIT trap. The helpers, each
# documented where it is defined:
#   checks           pass fail expect_match expect_rc json_get require_tools wait_for
#   the bus          start_bus bctl call prop link_up dbus_error call_error as_nobody gcall
#                    bus_messages
#   procedures       (on the object path in proc) pprop pjson pcall perr step_is state_is
#                    wait_step passcode start_procedure start_reset
#   immo-ecusim      ctl write_master_key start_ecusim
#   immod            write_immod_conf start_immod stop_immod
#   passcode server  free_port listening make_ca make_cert passcode_server_yaml
#                    start_passcode_server start_reference_server scurl manager_approves
#                    request_approval

# Every script drives the same daemon and the same simulated vehicle.
: "${VIN:=58ADZ1B19LU012345}"
: "${DEST:=org.immod.Immod1}"
: "${OBJ:=/org/immod/Immod1}"
: "${IFACE:=org.immod.Immod1.Manager}"
: "${PIFACE:=org.immod.Immod1.Procedure}"

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
expect_rc() { # expect_rc DESCRIPTION WANTED GOT [OUTPUT]: an exit status
        if [ "$2" -eq "$3" ]; then pass "$1 (exit $3)"; else fail "$1: wanted exit $2, got $3: ${4:-}"; fi
}
json_get() { # json_get KEY TEXT: the value of KEY in the first line's object
        python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())[sys.argv[1]])' "$1" <<<"$2" 2>&1
}

# require_tools TOOL...: the test is skipped (exit 77) unless every TOOL is installed.
require_tools() {
        local tool
        for tool in "$@"; do
                command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
        done
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
# call (immod does its own checks; the socket is made world-writable for the callers of
# another uid); sets addr and bus_pid (and out).
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
        chmod 0777 "$tmp/bus.sock" 2>/dev/null
}

bctl() { busctl --address="$addr" "$@"; }
call() { bctl call "$DEST" "$OBJ" "$IFACE" "$@" 2>&1; }
prop() { bctl get-property "$DEST" "$OBJ" "$IFACE" "$1" 2>&1; }
link_up() { prop LinkState | grep -q '"up"'; }
# dbus_error COMMAND...: runs COMMAND (a gdbus call) and prints "OK", or the name of the
# D-Bus error it failed with.
dbus_error() {
        local out
        if out=$("$@" 2>&1); then
                echo OK
        else
                sed -n 's/.*GDBus\.Error:\([A-Za-z0-9_.]*\):.*/\1/p' <<<"$out" | head -n 1
        fi
}
# The error name of a failing manager call, or "OK"; arguments in GVariant text.
call_error() { # METHOD ARGS...
        local method=$1
        shift
        dbus_error gdbus call --address="$addr" --dest="$DEST" --object-path="$OBJ" --method="$IFACE.$method" "$@"
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
# A command run as uid 65534 (nobody), outside the configured group.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# bus_messages FILE: what `busctl monitor --json=short` wrote to FILE, a message a line:
# SENDER PATH MEMBER (tab-separated; "-" where a message has none)
bus_messages() {
        python3 -c '
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    print("\t".join(str(m.get(k) or "-") for k in ("sender", "path", "member")))' "$1"
}

# --- the procedure object $proc
pprop() { bctl get-property "$DEST" "$proc" "$PIFACE" "$1" 2>&1; }
pjson() { bctl --json=short get-property "$DEST" "$proc" "$PIFACE" "$1" 2>&1; }
pcall() { bctl --timeout=60 call "$DEST" "$proc" "$PIFACE" "$@" 2>&1; }
perr() { # METHOD ARGS...: the error name of a Procedure method, or OK; arguments in GVariant text
        local method=$1
        shift
        dbus_error gdbus call --timeout 60 --address="$addr" --dest="$DEST" --object-path="$proc" --method="$PIFACE.$method" "$@"
}
step_is() { [ "$(pprop Step)" = "s \"$1\"" ]; }
state_is() { [ "$(pprop State)" = "s \"$1\"" ]; }
wait_step() { # wait_step SECONDS STEP
        if wait_for "$1" step_is "$2"; then pass "step $2"; else fail "step $2 not reached (at $(pprop Step), $(pprop ErrorMessage))"; fi
}
# The passcode for the Seed shown now (vehicle-protocol.md §6), from $tmp/master.key and $VIN.
passcode() {
        pjson Seed | python3 -c '
import hashlib, hmac, json, sys
m = bytes.fromhex(open(sys.argv[1]).read().strip())
seed = {k: v["data"] for k, v in json.load(sys.stdin)["data"].items()}
kvin = hmac.new(m, b"immod/vin-key/v1:" + sys.argv[2].encode(), hashlib.sha256).digest()
if seed["kind"] == "immobilizer":
    h = hmac.new(kvin, b"immod/immobilizer-reset/v1:" + bytes.fromhex(seed["seed"]), hashlib.sha256).digest()
    o = h[31] & 0x0f
    v = ((h[o] & 0x7f) << 24 | h[o + 1] << 16 | h[o + 2] << 8 | h[o + 3]) % 1000000
    print("%06d" % v)
else:
    msg = "immod/smart-code/v1:%s:%s:%s:%s" % (seed["vin"], seed["data1"].upper(), seed["data2"].upper(), seed["data3"].upper())
    print(hmac.new(kvin, msg.encode(), hashlib.sha256).digest()[:6].hex().upper())
' "$tmp/master.key" "$VIN"
}
# start_procedure KIND N [NAME TYPE VALUE]...: StartProcedure of KIND with its N options;
# sets proc.
start_procedure() {
        local out
        out=$(call StartProcedure 'sa{sv}' "$@")
        proc=$(sed -n 's/^o "\(.*\)"$/\1/p' <<<"$out")
        if [ -n "$proc" ]; then pass "StartProcedure $1: $proc"; else fail "StartProcedure $1: $out"; fi
}
# start_reset: Identify, then an immobilizer reset (tech1, RO-42, customer Smith) taken to its
# immobilizer-passcode step, the driver's door opened on the way; sets proc.
start_reset() {
        local out
        expect_match "Identify" "\"vin\" s \"$VIN\"" "$(call Identify)"
        out=$(call StartProcedure 'sa{sv}' immobilizer-reset 3 technician s tech1 repair_order s RO-42 \
                customer_last_name s Smith)
        proc=$(sed -n 's/^o "\(.*\)"$/\1/p' <<<"$out")
        [ -n "$proc" ] && pass "StartProcedure: $proc" || fail "StartProcedure: $out"
        pcall Acknowledge s confirm-erase-all >/dev/null
        ctl 'door open' >/dev/null
        pcall Acknowledge s open-driver-door >/dev/null
        wait_step 10 immobilizer-passcode
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

# start_ecusim [OPTION...]: immo-ecusim on $tmp/vbus.sock with one key (11111111) and the
# master key (write_master_key), the options added, its control socket on $tmp/ctl.sock;
# sets sim_pid.
start_ecusim() {
        write_master_key
        "$ecusim" --link "vbus:$tmp/vbus.sock" --vin "$VIN" --model "ES 350" --master-key-file "$tmp/master.key" \
                --keys 11111111 "$@" --control "$tmp/ctl.sock" >"$tmp/ecusim.log" 2>&1 &
        sim_pid=$!
        wait_for 10 test -S "$tmp/ctl.sock" || { fail "immo-ecusim did not start"; exit 1; }
}

# --- immod
# write_immod_conf BATTERY_SOURCE [URL TIMEOUT_S]: $tmp/immod.conf: the link $tmp/vbus.sock,
# the profiles of the source tree, the state in $tmp/state (created), our group, tester
# present every 2 s, the battery source; with URL, the passcode service there (the CA
# $tmp/ca.pem, dealer D100, TIMEOUT_S).
write_immod_conf() {
        mkdir -p "$tmp/state"
        {
                cat <<CONF
link: vbus:$tmp/vbus.sock
profiles: $src/conf/profiles
state_dir: $tmp/state
group: $(id -gn)
tester_present_ms: 2000
battery:
  source: $1
CONF
                [ $# -lt 2 ] || cat <<CONF
server:
  url: $2
  ca_file: $tmp/ca.pem
  dealer_code: D100
  timeout_s: $3
CONF
        } >"$tmp/immod.conf"
}
# start_immod [BATTERY_SOURCE [URL TIMEOUT_S]]: immod on the private bus with $tmp/immod.conf,
# written first by write_immod_conf when arguments are given, its log appended to
# $tmp/immod.log; a running immod is stopped first. Sets immod_pid; returns 1 when immod
# has not taken its bus name within 10 s.
start_immod() {
        [ -z "$immod_pid" ] || stop_immod
        [ $# -eq 0 ] || write_immod_conf "$@"
        "$immod" --config "$tmp/immod.conf" --bus "$addr" -v >>"$tmp/immod.log" 2>&1 &
        immod_pid=$!
        wait_for 10 bctl status "$DEST"
}
# stop_immod [SIGNAL]: sends immod SIGNAL (default TERM), waits for it and empties immod_pid;
# returns immod's exit status.
stop_immod() {
        local rc
        kill -"${1:-TERM}" "$immod_pid" 2>/dev/null
        wait "$immod_pid" 2>/dev/null
        rc=$?
        immod_pid=
        return $rc
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
# passcode_server_yaml PORT CERT DB: the reference server's configuration: 127.0.0.1:PORT, TLS
# with $tmp/CERT.pem and .key, the database $tmp/DB, the master key $tmp/master.key; dealer
# D100 with the technician tech1 (password $PW) and the managers mgr1 (pw-m1), mgr2 (pw-m2).
passcode_server_yaml() {
        cat <<CONF
listen:
  address: 127.0.0.1
  port: $1
tls:
  certificate: $tmp/$2.pem
  key: $tmp/$2.key
database: $tmp/$3
master_key_file: $tmp/master.key
approval_validity_hours: 72
dealers:
  - code: D100
    name: "Example Motors"
users:
  - {id: tech1, name: Tom Tech, dealer: D100, role: technician, title: Technician, password: $PW}
  - {id: mgr1, name: Mia Manager, dealer: D100, role: manager, title: Service Manager, password: pw-m1}
  - {id: mgr2, name: Max Manager, dealer: D100, role: manager, title: General Manager, password: pw-m2}
CONF
}
# start_passcode_server NAME CERT DB: the reference server ($server) on a free port with
# passcode_server_yaml in $tmp/NAME.yaml, its log in $tmp/NAME.log; sets NAME_port and
# NAME_pid; returns 1 when it does not listen within 10 s. Needs the certificate (make_cert)
# and $tmp/master.key (mode 0600).
start_passcode_server() {
        local p
        p=$(free_port)
        passcode_server_yaml "$p" "$2" "$3" >"$tmp/$1.yaml"
        "$server" --config "$tmp/$1.yaml" >>"$tmp/$1.log" 2>&1 &
        printf -v "$1_pid" %s $!
        printf -v "$1_port" %s "$p"
        wait_for 10 listening "$p"
}
# start_reference_server: the passcode server most tests use: a CA "ca" ($tmp/ca.pem, immod's
# ca_file) and its certificate "server", the master key, start_passcode_server server server
# passcodes.sqlite; sets port (the one scurl calls) and server_pid. A failure fails the test
# and exits.
start_reference_server() {
        make_ca ca && make_cert ca server || { fail "openssl"; exit 1; }
        write_master_key
        chmod 0600 "$tmp/master.key"
        start_passcode_server server server passcodes.sqlite || { fail "the passcode server did not start"; exit 1; }
        port=$server_port
}
scurl() { # METHOD PATH [BODY [TOKEN]]: the passcode server on $port directly, as a manager would
        local args=(-sS --max-time 20 --cacert "$tmp/ca.pem" -X "$1" "https://127.0.0.1:$port/api/v1$2"
                -H "Content-Type: application/json")
        [ -n "${4:-}" ] && args+=(-H "Authorization: Bearer $4")
        [ -n "${3:-}" ] && args+=(--data-binary "$3")
        curl "${args[@]}"
}
# manager_approves REQUEST_NO: mgr1 logs in at the server directly and approves the request;
# sets mgr (mgr1's token).
manager_approves() {
        mgr=$(scurl POST /login '{"user": "mgr1", "password": "pw-m1"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
        expect_match "a manager approves (curl)" '"status": *"approved"' "$(scurl POST "/reset-requests/$1/decision" \
                '{"decision": "approve", "attestations": {"details_verified": true, "nicb_notice": true, "terms": true}}' "$mgr")"
}
# request_approval: RequestApproval through immod, as tech1, for $VIN (RO-42, Smith, approvers
# mgr1 and mgr2, every attestation); checks it is pending and sets request_no.
request_approval() {
        local out
        out=$(call RequestApproval 'a{sv}a{sv}' 5 vin s "$VIN" repair_order s RO-42 customer_last_name s Smith \
                approvers as 2 mgr1 mgr2 attestations as 4 customer_authority photo_id registration terms \
                2 user s tech1 password s "$PW")
        expect_match "RequestApproval: pending" '"status" s "pending"' "$out"
        request_no=$(sed -n 's/.*"request_no" s "\([^"]*\)".*/\1/p' <<<"$out")
        [ -n "$request_no" ] && pass "request_no $request_no" || fail "no request_no: $out"
}
