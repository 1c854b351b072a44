#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# immod's passcode service client against the reference server, with real TLS (a CA and
# certificates made with openssl here): the approval flow, immobilizer and smart-code
# passcodes fetched and accepted by immo-ecusim, a wrong password, a server with a
# certificate from another CA, a dead port and a hanging server; the password never in
# immod's log. Every request is made by the helper immod-fetch: immod itself never maps
# libcurl or a TLS library, no helper outlives its request (nor immod, nor a Cancel), and
# a helper that cannot be run, answers garbage, exits without an answer or hangs (fakes
# beside a copy of immod) is a clear error.
#
# usage: test-passcode-client.sh IMMOD IMMO_ECUSIM IMMO_PASSCODE_SERVER SOURCE_ROOT

set -u -o pipefail

immod=$1
ecusim=$2
server=$3
src=$4

PW='Tr1cky-pw-4417'

harness_pids="immod_pid sim_pid server_pid server2_pid hang_pid bus_pid"
server_pid= server2_pid= hang_pid=
harness_logs=("server log" server.log 50 "ecusim log" ecusim.log 30)
. "$src/tests/lib/harness.sh"
require_tools openssl curl busctl gdbus dbus-daemon python3

# --- the reference server, and one with a certificate from another CA
start_reference_server
make_ca otherca && make_cert otherca other || { fail "openssl"; exit 1; }
start_passcode_server server2 other other.sqlite || { fail "the second passcode server did not start"; exit 1; }
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

# --- the simulated ECU
start_ecusim --time-scale 60 --window-scale 2 --battery 13.8

# helpers: immod's child processes; tls_libs: the HTTP and TLS libraries immod has mapped
helpers() { cat /proc/"$immod_pid"/task/*/children 2>/dev/null | xargs; }
have_helper() { [ -n "$(helpers)" ]; }
no_helper() { [ -z "$(helpers)" ]; }
tls_libs() { grep -Eo 'lib(curl|gnutls|ssl|nghttp2|ssh2|gssapi)[^/ ]*\.so[^/ ]*$' /proc/"$immod_pid"/maps | sort -u | xargs; }

CRED="{'user': <'tech1'>, 'password': <'$PW'>}"
BADCRED="{'user': <'tech1'>, 'password': <'not-$PW'>}"

# ===== a server whose certificate comes from another CA
start_immod ecu "https://127.0.0.1:$server2_port" 5 || { fail "immod did not start"; exit 1; }
expect_match "Server unknown before any call" '^s "unknown"$' "$(prop Server)"
expect_match "another CA: ServerUnreachable naming TLS" 'ServerUnreachable: .*TLS' \
        "$(gcall $OBJ $IFACE.GetApproval "$VIN" "$CRED")"
expect_match "Server unreachable" '^s "unreachable"$' "$(prop Server)"
expect_match "Problems: server-unreachable" '"server-unreachable"' "$(prop Problems)"

# ===== a dead port: a clear error in bounded time, the procedure and tester present unaffected
start_immod ecu "https://127.0.0.1:$dead_port" 5 || { fail "immod did not restart"; exit 1; }
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
start_immod ecu "https://127.0.0.1:$hang_port" 3 || { fail "immod did not restart"; exit 1; }
start_reset
gcall "$proc" $PIFACE.FetchPasscode "$CRED" >"$tmp/hang.out" &
fetch_pid=$!
sleep 1
expect_match "while a fetch hangs, D-Bus answers" '^s "' "$(prop LinkState)"
helper=$(helpers)
expect_match "while a fetch hangs, one child: immod-fetch" '^immod-fetch$' "$(cat /proc/"$helper"/comm 2>&1)"
expect_match "while a fetch hangs, immod maps no HTTP or TLS library" '^$' "$(tls_libs)"
expect_match "the helper's argv holds no secret" '^immod-fetch$' "$(tr '\0' ' ' </proc/"$helper"/cmdline | xargs)"
if grep -qzF -- "$PW" /proc/"$helper"/environ; then fail "the password is in the helper's environment"; else pass "password not in the helper's environment"; fi
expect_match "while a fetch hangs, SubmitPasscode is Busy" 'Busy' "$(gcall "$proc" $PIFACE.SubmitPasscode 000000)"
wait $fetch_pid
expect_match "hanging server: ServerUnreachable after the timeout" 'ServerUnreachable: .*did not answer within 3 seconds' \
        "$(cat "$tmp/hang.out")"
expect_match "after the timeout, no helper left (nor a zombie)" '^$' "$(helpers)"
sleep 3 # a few tester present periods
expect_match "hanging server: still at immobilizer-passcode" '^s "immobilizer-passcode"$' "$(pprop Step)"
expect_match "hanging server: procedure waiting" '^s "waiting"$' "$(pprop State)"
pcall Cancel >/dev/null
wait_for 10 bash -c "busctl --address='$addr' get-property $DEST $proc $PIFACE State | grep -q cancelled" &&
        pass "procedure cancelled" || fail "cancel: $(pprop State)"

# ===== Cancel while a fetch hangs (10 s timeout): the helper killed and reaped at once
start_immod ecu "https://127.0.0.1:$hang_port" 10 || { fail "immod did not restart"; exit 1; }
start_reset
gcall "$proc" $PIFACE.FetchPasscode "$CRED" >"$tmp/cancel.out" &
fetch_pid=$!
wait_for 5 have_helper || fail "no helper started for FetchPasscode"
t0=$SECONDS
pcall Cancel >/dev/null
wait $fetch_pid
expect_match "Cancel during a fetch: FetchPasscode cancelled" 'Cancelled' "$(cat "$tmp/cancel.out")"
wait_for 3 no_helper && pass "Cancel during a fetch: the helper gone in $((SECONDS - t0)) s (timeout 10 s)" ||
        fail "Cancel during a fetch: helper still there: $(helpers)"

# ===== immod stopped while a helper hangs: the helper does not outlive it
gcall $OBJ $IFACE.GetApproval "$VIN" "$CRED" >/dev/null &
fetch_pid=$!
wait_for 5 have_helper || fail "no helper started for GetApproval"
helper=$(helpers)
stop_immod
wait $fetch_pid
if [ -n "$helper" ] && kill -0 "$helper" 2>/dev/null; then fail "helper $helper outlived immod"; else pass "no helper outlived immod"; fi

# ===== a helper that cannot be run: immod (a copy) finds immod-fetch beside it, not executable
mkdir -p "$tmp/bin"
cp "$immod" "$tmp/bin/immod"
: >"$tmp/bin/immod-fetch"
chmod 0644 "$tmp/bin/immod-fetch"
immod_built=$immod
immod=$tmp/bin/immod
start_immod ecu "https://127.0.0.1:$port" 10 || { fail "immod (a copy) did not start"; exit 1; }
expect_match "helper not executable: ServerUnreachable, helper cannot be started" \
        'ServerUnreachable: .*HTTPS helper cannot be started' "$(gcall $OBJ $IFACE.GetApproval "$VIN" "$CRED")"
expect_match "helper not executable: the log names the program and its path" \
        "Cannot start the HTTPS helper immod-fetch \\($tmp/bin/immod-fetch\\): Permission denied" "$(cat "$tmp/immod.log")"
stop_immod
# fake helpers: immod checks what comes back and watches the time
fake_helper() { printf '#!/bin/sh\ncat >/dev/null\n%s\n' "$1" >"$tmp/bin/immod-fetch"; chmod 0755 "$tmp/bin/immod-fetch"; }
fake_helper 'printf "garbage, not an answer"'
start_immod ecu "https://127.0.0.1:$port" 1 || { fail "immod (a copy) did not start"; exit 1; }
expect_match "a helper's garbage: ServerUnreachable, helper failed" 'ServerUnreachable: .*HTTPS helper failed' \
        "$(gcall $OBJ $IFACE.GetApproval "$VIN" "$CRED")"
expect_match "a helper's garbage: the log says what was wrong" \
        "answer of immod-fetch \\($tmp/bin/immod-fetch\\) is not valid: it does not start with the answer's magic" \
        "$(cat "$tmp/immod.log")"
fake_helper 'exit 3'
expect_match "a helper that exits 3: ServerUnreachable, helper failed" 'ServerUnreachable: .*HTTPS helper failed' \
        "$(gcall $OBJ $IFACE.GetApproval "$VIN" "$CRED")"
expect_match "a helper that exits 3: the log says so" 'immod-fetch .* exited with status 3 without an answer' \
        "$(cat "$tmp/immod.log")"
# past curl's timeout (1 s) and the grace (5 s), immod kills it
fake_helper 'exec sleep 60'
t0=$SECONDS
expect_match "a helper that hangs: killed, a timeout" 'ServerUnreachable: .*did not answer within 1 seconds' \
        "$(gcall $OBJ $IFACE.GetApproval "$VIN" "$CRED")"
[ $((SECONDS - t0)) -le 10 ] && pass "a helper that hangs: answered in $((SECONDS - t0)) s" ||
        fail "a helper that hangs: answered in $((SECONDS - t0)) s"
expect_match "a helper that hangs: killed and reaped" '^$' "$(helpers)"
stop_immod
immod=$immod_built

# ===== the reference server
start_immod ecu "https://127.0.0.1:$port" 10 || { fail "immod did not restart"; exit 1; }
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
request_approval
expect_match "GetApproval: pending" "\"status\" s \"pending\" \"request_no\" s \"$request_no\"" \
        "$(call GetApproval 'sa{sv}' "$VIN" 2 user s tech1 password s "$PW")"

start_reset
expect_match "FetchPasscode while pending: ApprovalPending" 'ApprovalPending' \
        "$(gcall "$proc" $PIFACE.FetchPasscode "$CRED")"

manager_approves "$request_no"
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
# the old design (libcurl loaded into immod) fails these
expect_match "after the fetches, immod maps no HTTP or TLS library" '^$' "$(tls_libs)"
expect_match "after the fetches, no helper left (nor a zombie)" '^$' "$(helpers)"
n=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from transactions").fetchone()[0])' \
        "$tmp/passcodes.sqlite" 2>/dev/null)
[ "${n:-0}" -ge 2 ] && pass "$n transactions at the server" || fail "transactions at the server: ${n:-?}"

# ===== the password never in immod's log nor its state
if grep -rqF -- "$PW" "$tmp/immod.log" "$tmp/state"; then fail "the password appears in immod's log or state"; else pass "password not in immod's log or state"; fi

stop_immod
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
