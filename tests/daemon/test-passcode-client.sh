#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# immod's passcode service client against the reference server, with real TLS (a CA and
# certificates made with openssl here): the approval flow, immobilizer and smart-code
# passcodes fetched and accepted by immo-ecusim, a wrong password, a server with a
# certificate from another CA, a dead port and a hanging server; the password never in
# immod's log.
#
# usage: test-passcode-client.sh IMMOD IMMO_ECUSIM IMMO_PASSCODE_SERVER SOURCE_ROOT

set -u -o pipefail

immod=$1
ecusim=$2
server=$3
src=$4

for tool in openssl curl busctl gdbus dbus-daemon python3; do
        command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done

VIN=58ADZ1B19LU012345
DEST=org.immod.Immod1
OBJ=/org/immod/Immod1
IFACE=org.immod.Immod1.Manager
PIFACE=org.immod.Immod1.Procedure
PW='Tr1cky-pw-4417'

harness_pids="immod_pid sim_pid server_pid server2_pid hang_pid bus_pid"
server_pid= server2_pid= hang_pid=
harness_logs=("server log" server.log 50 "ecusim log" ecusim.log 30)
. "$src/tests/lib/harness.sh"

# --- certificates
make_ca ca && make_cert ca server && make_ca otherca && make_cert otherca other || { fail "openssl"; exit 1; }

# --- the reference server, and one with a certificate from another CA
write_master_key
chmod 0600 "$tmp/master.key"
port=$(free_port)
port2=$(free_port)
server_config() { # PORT CERT DB
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
server_config "$port" server passcodes.sqlite >"$tmp/server.yaml"
server_config "$port2" other other.sqlite >"$tmp/server2.yaml"
"$server" --config "$tmp/server.yaml" >>"$tmp/server.log" 2>&1 &
server_pid=$!
"$server" --config "$tmp/server2.yaml" >>"$tmp/server2.log" 2>&1 &
server2_pid=$!
wait_for 10 listening "$port" || { fail "the passcode server did not start"; exit 1; }
wait_for 10 listening "$port2" || { fail "the second passcode server did not start"; exit 1; }
# a port that accepts connections and never answers
hang_port=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); time.sleep(600)' "$hang_port" &
hang_pid=$!
wait_for 10 listening "$hang_port" || { fail "the hanging listener did not start"; exit 1; }
dead_port=$(free_port)

# --- the private bus
start_bus

pcall() { bctl --timeout=60 call "$DEST" "$proc" "$PIFACE" "$@" 2>&1; }

# --- the simulated ECU
start_ecusim --time-scale 60 --window-scale 2 --battery 13.8

# --- immod, with the passcode service at URL
mkdir "$tmp/state"
start_immod() { # URL TIMEOUT_S
        [ -n "$immod_pid" ] && { kill "$immod_pid"; wait "$immod_pid" 2>/dev/null; immod_pid=; }
        cat >"$tmp/immod.conf" <<CONF
link: vbus:$tmp/vbus.sock
profiles: $src/conf/profiles
state_dir: $tmp/state
group: $(id -gn)
tester_present_ms: 2000
battery:
  source: ecu
server:
  url: $1
  ca_file: $tmp/ca.pem
  dealer_code: D100
  timeout_s: $2
CONF
        "$immod" --config "$tmp/immod.conf" --bus "$addr" -v >>"$tmp/immod.log" 2>&1 &
        immod_pid=$!
        wait_for 10 bctl status "$DEST"
}
CRED="{'user': <'tech1'>, 'password': <'$PW'>}"
BADCRED="{'user': <'tech1'>, 'password': <'not-$PW'>}"
start_reset() { # runs an immobilizer reset to its immobilizer-passcode step; sets $proc
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

# ===== a server whose certificate comes from another CA
start_immod "https://127.0.0.1:$port2" 5 || { fail "immod did not start"; exit 1; }
expect_match "Server unknown before any call" '^s "unknown"$' "$(prop Server)"
expect_match "another CA: ServerUnreachable naming TLS" 'ServerUnreachable: .*TLS' \
        "$(gcall $OBJ $IFACE.GetApproval "$VIN" "$CRED")"
expect_match "Server unreachable" '^s "unreachable"$' "$(prop Server)"
expect_match "Problems: server-unreachable" '"server-unreachable"' "$(prop Problems)"

# ===== a dead port: a clear error in bounded time, the procedure and tester present unaffected
start_immod "https://127.0.0.1:$dead_port" 5 || { fail "immod did not restart"; exit 1; }
start_reset
t0=$SECONDS
expect_match "dead port: ServerUnreachable" 'ServerUnreachable: .*connection refused' \
        "$(gcall "$proc" $PIFACE.FetchPasscode "$CRED")"
[ $((SECONDS - t0)) -le 10 ] && pass "dead port answered in $((SECONDS - t0)) s" || fail "dead port took $((SECONDS - t0)) s"
expect_match "dead port: still at immobilizer-passcode" '^s "immobilizer-passcode"$' "$(pprop Step)"
expect_match "dead port: procedure waiting" '^s "waiting"$' "$(pprop State)"
expect_match "Problems: server-unreachable" '"server-unreachable"' "$(prop Problems)"
pcall Cancel >/dev/null

# ===== a server that accepts and never answers: the total timeout, D-Bus answering meanwhile
start_immod "https://127.0.0.1:$hang_port" 3 || { fail "immod did not restart"; exit 1; }
start_reset
gcall "$proc" $PIFACE.FetchPasscode "$CRED" >"$tmp/hang.out" &
fetch_pid=$!
sleep 1
expect_match "while a fetch hangs, D-Bus answers" '^s "' "$(prop LinkState)"
expect_match "while a fetch hangs, SubmitPasscode is Busy" 'Busy' "$(gcall "$proc" $PIFACE.SubmitPasscode 000000)"
wait $fetch_pid
expect_match "hanging server: ServerUnreachable after the timeout" 'ServerUnreachable: .*did not answer within 3 seconds' \
        "$(cat "$tmp/hang.out")"
sleep 3 # a few tester present periods
expect_match "hanging server: still at immobilizer-passcode" '^s "immobilizer-passcode"$' "$(pprop Step)"
expect_match "hanging server: procedure waiting" '^s "waiting"$' "$(pprop State)"
pcall Cancel >/dev/null
wait_for 10 bash -c "busctl --address='$addr' get-property $DEST $proc $PIFACE State | grep -q cancelled" &&
        pass "procedure cancelled" || fail "cancel: $(pprop State)"

# ===== the reference server
start_immod "https://127.0.0.1:$port" 10 || { fail "immod did not restart"; exit 1; }
expect_match "wrong password: AuthenticationFailed" 'AuthenticationFailed' \
        "$(gcall $OBJ $IFACE.GetApproval "$VIN" "$BADCRED")"
expect_match "Server reachable" '^s "reachable"$' "$(prop Server)"
expect_match "no request yet: GetApproval status none" '"status" s "none"' \
        "$(call GetApproval 'sa{sv}' "$VIN" 2 user s tech1 password s "$PW")"
expect_match "one approver: InvalidArgs" 'InvalidArgs' "$(gcall $OBJ $IFACE.RequestApproval \
        "{'vin': <'$VIN'>, 'repair_order': <'RO-42'>, 'customer_last_name': <'Smith'>, 'approvers': <['mgr1']>, \
'attestations': <['customer_authority', 'photo_id', 'registration', 'terms']>}" "$CRED")"
expect_match "attestation missing: InvalidArgs" 'InvalidArgs' "$(gcall $OBJ $IFACE.RequestApproval \
        "{'vin': <'$VIN'>, 'repair_order': <'RO-42'>, 'customer_last_name': <'Smith'>, 'approvers': <['mgr1', 'mgr2']>, \
'attestations': <['customer_authority', 'photo_id', 'registration']>}" "$CRED")"
expect_match "bad VIN: InvalidVin" 'InvalidVin' "$(gcall $OBJ $IFACE.RequestApproval \
        "{'vin': <'58ADZ1B19LU01234O'>, 'repair_order': <'RO-42'>, 'customer_last_name': <'Smith'>, 'approvers': <['mgr1', 'mgr2']>, \
'attestations': <['customer_authority', 'photo_id', 'registration', 'terms']>}" "$CRED")"
out=$(call RequestApproval 'a{sv}a{sv}' 5 vin s "$VIN" repair_order s RO-42 customer_last_name s Smith \
        approvers as 2 mgr1 mgr2 attestations as 4 customer_authority photo_id registration terms \
        2 user s tech1 password s "$PW")
expect_match "RequestApproval: pending" '"status" s "pending"' "$out"
request_no=$(sed -n 's/.*"request_no" s "\([^"]*\)".*/\1/p' <<<"$out")
[ -n "$request_no" ] && pass "request_no $request_no" || fail "no request_no: $out"
expect_match "GetApproval: pending" "\"status\" s \"pending\" \"request_no\" s \"$request_no\"" \
        "$(call GetApproval 'sa{sv}' "$VIN" 2 user s tech1 password s "$PW")"

start_reset
expect_match "FetchPasscode while pending: ApprovalPending" 'ApprovalPending' \
        "$(gcall "$proc" $PIFACE.FetchPasscode "$CRED")"

mgr=$(scurl POST /login '{"user": "mgr1", "password": "pw-m1"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
expect_match "a manager approves (curl)" '"status": *"approved"' "$(scurl POST "/reset-requests/$request_no/decision" \
        '{"decision": "approve", "attestations": {"details_verified": true, "nicb_notice": true, "terms": true}}' "$mgr")"
expect_match "GetApproval: approved" "\"status\" s \"approved\" \"request_no\" s \"$request_no\" \"approved_by\" s \"mgr1\" \"valid_till\" s \"[0-9-]+T[0-9:]+Z\"" \
        "$(call GetApproval 'sa{sv}' "$VIN" 2 user s tech1 password s "$PW")"

expect_match "FetchPasscode wrong password: AuthenticationFailed" 'AuthenticationFailed' \
        "$(gcall "$proc" $PIFACE.FetchPasscode "$BADCRED")"
expect_match "FetchPasscode immobilizer" '^OK$' "$(gcall "$proc" $PIFACE.FetchPasscode "$CRED")"
wait_step 10 confirm-duration
pcall Acknowledge s confirm-duration >/dev/null
wait_step 10 smart-code-passcode
expect_match "FetchPasscode smart code" '^OK$' "$(gcall "$proc" $PIFACE.FetchPasscode "$CRED")"
if wait_for 10 bash -c "busctl --address='$addr' get-property $DEST $proc $PIFACE Step | grep -Eq '\"(resetting|done)\"'"; then
        pass "step resetting"
else
        fail "resetting not reached (at $(pprop Step), $(pprop ErrorMessage))"
fi
expect_match "Problems: no server-unreachable" '^as [0-9]+' "$(prop Problems | grep -v server-unreachable)"
n=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from transactions").fetchone()[0])' \
        "$tmp/passcodes.sqlite" 2>/dev/null)
[ "${n:-0}" -ge 2 ] && pass "$n transactions at the server" || fail "transactions at the server: ${n:-?}"

# ===== the password never in immod's log nor its state
if grep -rqF -- "$PW" "$tmp/immod.log" "$tmp/state"; then fail "the password appears in immod's log or state"; else pass "password not in immod's log or state"; fi

kill "$immod_pid"; wait "$immod_pid" 2>/dev/null; immod_pid=
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
