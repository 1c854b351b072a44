#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# immod's passcode service client against faulty servers, with real TLS (a CA made with
# openssl here): a small python3 HTTPS fake server answers 500 (retried twice, then
# ServerUnreachable in bounded time), 403 (never retried), an oversized body (with and
# without Content-Length), malformed JSON and JSON without the expected fields; after
# each fault immod is alive, the procedure still waits at its step and the ECU is still
# in its extended session (tester present unaffected). Then against the reference
# server: once the repair is marked complete, FetchPasscode gets approval-expired (ApprovalRequired).
#
# usage: test-passcode-faults.sh IMMOD IMMO_ECUSIM IMMO_PASSCODE_SERVER SOURCE_ROOT

set -u -o pipefail

immod=$1
ecusim=$2
server=$3
src=$4

PW='Tr1cky-pw-4417'

harness_pids="immod_pid sim_pid server_pid fake_pid bus_pid"
server_pid= fake_pid=
harness_logs=("fake server log" fake.log 50 "server log" server.log 50 "ecusim log" ecusim.log 30)
. "$src/tests/lib/harness.sh"
require_tools openssl curl busctl gdbus dbus-daemon python3

now_ms() { date +%s%3N; }

# --- the reference server (and the certificates the fake server uses too)
start_reference_server

# --- the fake server: its answer depends on the mode written in $tmp/mode; it logs
# "METHOD PATH" per request in $tmp/requests
cat >"$tmp/fake.py" <<'PY'
import http.server, json, os, ssl, sys

port, cert, key, tmp, vin = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
BIG = 300 * 1024

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fake: " + (fmt % args) + "\n")

    def reply(self, status, body, length=True):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        with open(os.path.join(tmp, "requests"), "a") as f:
            f.write("%s %s key=%s\n" % (self.command, self.path, self.headers.get("Idempotency-Key") or "-"))
        with open(os.path.join(tmp, "mode")) as f:
            mode = f.read().strip()
        path = self.path.split("?")[0]
        login = path.endswith("/api/v1/login")
        lookup = path.endswith("/api/v1/reset-requests") and self.command == "GET"
        if mode == "e500":
            return self.reply(500, {"error": "internal", "message": "database is locked"})
        if mode == "e403":
            return self.reply(403, {"error": "forbidden", "message": "This box is not enrolled."})
        if mode == "big" and login:
            return self.reply(200, '{"token": "' + "x" * BIG + '"}')
        if mode == "big-nolength" and login:
            return self.reply(200, '{"token": "' + "x" * BIG + '"}', length=False)
        if mode == "malformed" and login:
            return self.reply(200, '{"token": "abc", "expires_at": ')
        if mode == "malformed-4xx" and login:
            return self.reply(401, '<html>Unauthorized</html>')
        if mode == "no-token" and login:
            return self.reply(200, {"expires_at": "2030-01-01T00:00:00Z"})
        if login:
            return self.reply(200, {"token": "tok", "expires_at": "2030-01-01T00:00:00Z"})
        if mode == "no-requests" and lookup:
            return self.reply(200, {"reqs": []})
        if lookup:
            return self.reply(200, {"requests": [{"request_no": "R-1", "vin": vin, "status": "approved",
                                                  "technician": "tech1", "approvers": ["mgr1", "mgr2"],
                                                  "approved_by": "mgr1", "approved_at": "2026-01-01T00:00:00Z",
                                                  "valid_till": "2030-01-01T00:00:00Z"}]})
        if mode == "no-passcode":
            return self.reply(200, {"transaction_id": 7})
        if mode == "passcode-500":
            return self.reply(503, "<html>Service Unavailable</html>")
        if mode == "request-500" and path.endswith("/api/v1/reset-requests") and self.command == "POST":
            return self.reply(500, {"error": "internal", "message": "database is locked"})
        return self.reply(404, {"error": "not-found", "message": "no such path"})

    do_GET = do_POST = handle_any

srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY
fake_port=$(free_port)
echo ok >"$tmp/mode"
: >"$tmp/requests"
python3 "$tmp/fake.py" "$fake_port" "$tmp/server.pem" "$tmp/server.key" "$tmp" "$VIN" >"$tmp/fake.log" 2>&1 &
fake_pid=$!
wait_for 10 listening "$fake_port" || { fail "the fake server did not start"; exit 1; }

# --- the private bus
start_bus

# --- the simulated ECU
start_ecusim --time-scale 60 --window-scale 2 --battery 13.8

CRED="{'user': <'tech1'>, 'password': <'$PW'>}"
unaffected() { # WHAT: immod alive, the procedure waiting at its step, the ECU still in its extended session
        if kill -0 "$immod_pid" 2>/dev/null; then pass "$1: immod alive"; else fail "$1: immod died"; fi
        expect_match "$1: still at immobilizer-passcode" '^s "immobilizer-passcode"$' "$(pprop Step)"
        expect_match "$1: procedure waiting" '^s "waiting"$' "$(pprop State)"
        expect_match "$1: ECU still in the extended session" '"session": *"extended"' "$(ctl state)"
}
nreq() { wc -l <"$tmp/requests"; }
fault() { # MODE: the fake server's mode; the request log emptied
        echo "$1" >"$tmp/mode"
        : >"$tmp/requests"
}
timed_fetch() { # sets $answer and $elapsed_ms
        local t0
        t0=$(now_ms)
        answer=$(gcall "$proc" $PIFACE.FetchPasscode "$CRED")
        elapsed_ms=$(($(now_ms) - t0))
}

# ===== the fake server
start_immod ecu "https://127.0.0.1:$fake_port" 5 || { fail "immod did not start"; exit 1; }
start_reset
sleep 3 # a few tester present periods
expect_match "before any fault: ECU in the extended session" '"session": *"extended"' "$(ctl state)"

# 500 with a JSON error body: two retries, then ServerUnreachable with the server's message
fault e500
timed_fetch
expect_match "500: ServerUnreachable naming HTTP 500 and the server's message" \
        'ServerUnreachable: .*HTTP 500: database is locked.*SubmitPasscode' "$answer"
[ "$(nreq)" -eq 3 ] && pass "500: 3 requests (1 + 2 retries)" || fail "500: $(nreq) requests, wanted 3: $(cat "$tmp/requests")"
[ "$elapsed_ms" -le 10000 ] && pass "500: answered in $elapsed_ms ms" || fail "500: took $elapsed_ms ms"
[ "$elapsed_ms" -ge 1500 ] && pass "500: the retries waited ($elapsed_ms ms)" || fail "500: no back-off between retries ($elapsed_ms ms)"
expect_match "500: Server unreachable" '^s "unreachable"$' "$(prop Server)"
expect_match "500: Problems: server-unreachable" '"server-unreachable"' "$(prop Problems)"
unaffected "500"

# 503 on the passcode request itself (after a good login and lookup): retried there too
fault passcode-500
timed_fetch
expect_match "503 on /passcodes: ServerUnreachable naming HTTP 503" 'ServerUnreachable: .*HTTP 503' "$answer"
n=$(grep -c '/api/v1/passcodes' "$tmp/requests")
[ "$n" -eq 3 ] && pass "503 on /passcodes: 3 passcode requests" || fail "503 on /passcodes: $n passcode requests: $(cat "$tmp/requests")"
[ "$(nreq)" -eq 5 ] && pass "503 on /passcodes: one login, one lookup" || fail "503 on /passcodes: $(nreq) requests: $(cat "$tmp/requests")"
unaffected "503 on /passcodes"

# 500 on the reset request: retried with the same Idempotency-Key, so that the service can
# never make two requests of one (passcode-service.md, issue 13)
fault request-500
answer=$(gcall $OBJ $IFACE.RequestApproval "{'vin': <'$VIN'>, 'repair_order': <'RO-7'>, \
        'customer_last_name': <'Smith'>, 'technician': <'tech1'>, 'approvers': <['mgr1', 'mgr2']>, \
        'attestations': <['customer_authority', 'photo_id', 'registration', 'terms']>}" "$CRED")
expect_match "500 on the reset request: ServerUnreachable" 'ServerUnreachable: .*HTTP 500' "$answer"
keys=$(sed -n 's|^POST /api/v1/reset-requests key=\(.*\)$|\1|p' "$tmp/requests" | sort -u)
n=$(grep -c '^POST /api/v1/reset-requests ' "$tmp/requests")
[ "$n" -eq 3 ] && pass "500 on the reset request: 3 requests (1 + 2 retries)" || fail "reset request: $n requests: $(cat "$tmp/requests")"
[ "$(wc -l <<<"$keys")" -eq 1 ] && [[ $keys =~ ^[0-9a-f]{32}$ ]] &&
        pass "the retries carry one Idempotency-Key ($keys)" || fail "Idempotency-Key of the retries: $keys"
grep -q '^POST /api/v1/login key=-$' "$tmp/requests" && pass "the login carries none" || fail "login: $(cat "$tmp/requests")"

# a 4xx: never retried
fault e403
timed_fetch
expect_match "403: ServerRefused with the server's id and message" \
        'ServerRefused: .*forbidden.*This box is not enrolled' "$answer"
[ "$(nreq)" -eq 1 ] && pass "403: 1 request (no retry)" || fail "403: $(nreq) requests, wanted 1: $(cat "$tmp/requests")"
expect_match "403: Server reachable" '^s "reachable"$' "$(prop Server)"
unaffected "403"

# an oversized body, with a Content-Length and without
for mode in big big-nolength; do
        fault $mode
        timed_fetch
        expect_match "$mode: ServerUnreachable naming the size limit" 'ServerUnreachable: .*larger than 256 KiB' "$answer"
        [ "$(nreq)" -eq 1 ] && pass "$mode: 1 request (no retry)" || fail "$mode: $(nreq) requests"
        [ "$elapsed_ms" -le 10000 ] && pass "$mode: answered in $elapsed_ms ms" || fail "$mode: took $elapsed_ms ms"
        unaffected "$mode"
done

# malformed JSON in a 200, and a 4xx whose body is not JSON
fault malformed
timed_fetch
expect_match "malformed JSON: ServerUnreachable saying so" 'ServerUnreachable: .*not the JSON the API describes' "$answer"
unaffected "malformed JSON"
fault malformed-4xx
timed_fetch
expect_match "401 with HTML: ServerRefused naming HTTP 401" 'ServerRefused: .*HTTP 401' "$answer"
[ "$(nreq)" -eq 1 ] && pass "401 with HTML: 1 request (no retry)" || fail "401 with HTML: $(nreq) requests"
unaffected "401 with HTML"

# a 200 with JSON that lacks the expected fields, at each stage
for mode in no-token no-requests no-passcode; do
        fault $mode
        timed_fetch
        expect_match "$mode: ServerUnreachable saying the answer is not the API's" \
                'ServerUnreachable: .*not the JSON the API describes' "$answer"
        unaffected "$mode"
done
fault no-token
expect_match "GetApproval, no token: ServerUnreachable" 'ServerUnreachable: .*not the JSON the API describes' \
        "$(gcall $OBJ $IFACE.GetApproval "$VIN" "$CRED")"

# and manual entry still works: a wrong passcode typed in is judged by the ECU, not refused by immod
expect_match "manual entry still works: a wrong passcode is rejected by the ECU" 'PasscodeRejected: ' \
        "$(gcall "$proc" $PIFACE.SubmitPasscode 000000)"
pcall Cancel >/dev/null
wait_for 10 bash -c "busctl --address='$addr' get-property $DEST $proc $PIFACE State | grep -q cancelled" &&
        pass "procedure cancelled" || fail "cancel: $(pprop State)"

# ===== the reference server: the repair completed, the approval no longer valid
start_immod ecu "https://127.0.0.1:$port" 10 || { fail "immod did not restart"; exit 1; }
request_approval
manager_approves "$request_no"
expect_match "the repair is marked complete (curl)" '"status": *"completed"' \
        "$(scurl POST "/reset-requests/$request_no/complete" '' "$mgr")"
expect_match "GetApproval: completed" "\"status\" s \"completed\" \"request_no\" s \"$request_no\"" \
        "$(call GetApproval 'sa{sv}' "$VIN" 2 user s tech1 password s "$PW")"
start_reset
# approval-expired: a new request is the way out, as for approval-required
expect_match "FetchPasscode after completion: ApprovalRequired, its own sentence and the service's" \
        "ApprovalRequired: The reset approval for this vehicle no longer holds .*RequestApproval.*$request_no no longer holds" \
        "$(gcall "$proc" $PIFACE.FetchPasscode "$CRED")"
expect_match "after completion: Server reachable" '^s "reachable"$' "$(prop Server)"
unaffected "approval expired"
pcall Cancel >/dev/null

# ===== the password never in immod's log nor its state
if grep -rqF -- "$PW" "$tmp/immod.log" "$tmp/state"; then fail "the password appears in immod's log or state"; else pass "password not in immod's log or state"; fi

stop_immod
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
