#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# immoctl's guided procedures end to end: immod on a private bus, immo-ecusim on a private
# vbus (reset scaled to ~16 s), the reference passcode server with real TLS (certificates
# made here). Unattended runs with --no-ask --json --fetch (approval, reset, add-key,
# erase-keys, history), a reset guided through a pseudo-terminal (pty-driver.py reads the
# seeds off the screen and types the passcodes), attach after the client was killed,
# cancel, and bad input with its exit statuses.
#
# usage: test-immoctl-guided.sh IMMOCTL IMMOD IMMO_ECUSIM IMMO_PASSCODE_SERVER SOURCE_ROOT

set -u -o pipefail

immoctl=$1
immod=$2
ecusim=$3
server=$4
src=$5

PW='Gu1ded-pw-8812'
RUN_MAX=120 # bound of one immoctl run; a reset takes ~16 s here

harness_pids="bg_pid immod_pid sim_pid server_pid bus_pid"
bg_pid= server_pid=
harness_logs=("server log" server.log 30 "ecusim log" ecusim.log 40 "guided screen (pty)" guided.screen 150)
. "$src/tests/lib/harness.sh"
require_tools openssl curl busctl dbus-daemon python3 timeout

# immoctl on the private bus, bounded: stdout and stderr together (ic) or stdout alone, the
# text for people in $tmp/stderr (ic_stdout); exit status in $rc.
ic() {
        out=$(timeout $RUN_MAX "$immoctl" --bus="$addr" "$@" 2>&1)
        rc=$?
}
ic_stdout() {
        out=$(timeout $RUN_MAX "$immoctl" --bus="$addr" "$@" 2>"$tmp/stderr")
        rc=$?
}
# ic_bg OUT ERR ARGS...: immoctl in the background, bounded, stdout to $tmp/OUT and stderr
# to $tmp/ERR (with stdout when ERR is OUT); sets bg_pid. ic_bg_done DESCRIPTION waits for
# it: exit 0 wanted, its stderr shown otherwise.
ic_bg() {
        bg_out=$tmp/$1 bg_err=$tmp/$2
        shift 2
        if [ "$bg_out" = "$bg_err" ]; then
                timeout $RUN_MAX "$immoctl" --bus="$addr" "$@" >"$bg_out" 2>&1 &
        else
                timeout $RUN_MAX "$immoctl" --bus="$addr" "$@" >"$bg_out" 2>"$bg_err" &
        fi
        bg_pid=$!
}
ic_bg_done() {
        wait "$bg_pid"
        expect_rc "$1" 0 $? "$(cat "$bg_err")"
        bg_pid=
}
# Checks JSON lines with python assertions over "events" (the objects, in order); a failed
# assertion shows its message.
expect_events() { # expect_events DESCRIPTION FILE PYTHON-ASSERTIONS
        if python3 -c '
import json, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
exec(sys.argv[2])
' "$2" "$3" 2>"$tmp/events.err"; then pass "$1"; else fail "$1: $(tail -n 3 "$tmp/events.err")"; fi
}
active() { bctl get-property "$DEST" "$OBJ" "$IFACE" ActiveProcedure | sed -n 's/^o "\(.*\)"$/\1/p'; }

# ===== usage errors: no bus needed
"$immoctl" frobnicate >/dev/null 2>"$tmp/err"
expect_rc "unknown verb" 2 $?
expect_match "unknown verb named" 'Unknown verb "frobnicate"' "$(cat "$tmp/err")"
out=$("$immoctl" approval status NOTAVIN 2>&1)
expect_rc "approval status NOTAVIN" 2 $? "$out"
expect_match "approval status NOTAVIN: Invalid VIN" 'Invalid VIN "NOTAVIN"' "$out"
out=$("$immoctl" erase-keys --keys-present 0 2>&1)
expect_rc "--keys-present 0" 2 $? "$out"
expect_match "--keys-present 0 named" '--keys-present' "$out"
out=$("$immoctl" reset --passcode 111111 --passcode 222222 --passcode 333333 2>&1)
expect_rc "--passcode three times" 2 $? "$out"
expect_match "--passcode three times: at most twice" 'at most twice' "$out"

# ===== certificates, the reference passcode server
start_reference_server

# ===== the private bus, the simulated ECU (one key, 11111111), immod
start_bus
start_ecusim --time-scale 60 --window-scale 2 --battery 13.8
start_immod ecu "https://127.0.0.1:$port" 20 || { fail "immod did not take its bus name"; exit 1; }

# q PROPERTY [VALUE]: the active procedure's property, without its type and quotes; with
# VALUE, exit 0 only when it has that value. A script: the pty driver's checks use it too.
cat >"$tmp/q" <<EOF
#!/bin/bash
p=\$(busctl --address='$addr' get-property $DEST $OBJ $IFACE ActiveProcedure | sed -n 's/^o "\\(.*\\)"\$/\\1/p')
[ -n "\$p" ] && [ "\$p" != / ] || { echo "no active procedure"; exit 1; }
v=\$(busctl --address='$addr' get-property $DEST "\$p" $PIFACE "\$1" | sed 's/^[a-z]* //; s/^"\\(.*\\)"\$/\\1/')
[ \$# -lt 2 ] && { echo "\$v"; exit 0; }
[ "\$v" = "\$2" ] || { echo "\$1 is \$v, not \$2"; exit 1; }
EOF
chmod +x "$tmp/q"
q="$tmp/q"
# ctl as a script too
{ echo '#!/bin/bash'; echo "tmp='$tmp'"; declare -f ctl; echo 'ctl "$1"'; } >"$tmp/ctl"
chmod +x "$tmp/ctl"

printf '%s\n' "$PW" >"$tmp/pw"
printf 'not-%s\n' "$PW" >"$tmp/badpw"
chmod 0600 "$tmp/pw" "$tmp/badpw"
LOGIN=(--user tech1 --password-file "$tmp/pw")
FETCH=(--fetch "${LOGIN[@]}" --repair-order RO-77 --customer Smith)

# ===== bad input that needs immod
ic approval request $VIN --no-ask --repair-order RO-77 --customer Smith --attest all "${LOGIN[@]}"
expect_rc "approval request without --approver" 2 $rc "$out"
expect_match "approval request without --approver: says so" '--approver ID twice' "$out"
ic approval status $VIN --no-ask --user tech1 --password-file "$tmp/badpw"
expect_rc "approval status, wrong password" 3 $rc "$out"
expect_match "wrong password: the AuthenticationFailed sentence" \
        'Cannot read the approval: the passcode service refused the user name or password' "$out"

# ===== 1. unattended: approval, reset, add-key, erase-keys, history
ic_stdout approval request $VIN --no-ask --json --repair-order RO-77 --customer Smith --attest all \
        --approver mgr1 --approver mgr2 "${LOGIN[@]}"
expect_rc "approval request --json" 0 $rc "$(cat "$tmp/stderr")"
expect_match "approval request: pending" '^pending$' "$(json_get status "$out")"
request_no=$(json_get request_no "$out")
[ -n "$request_no" ] && [ "${#request_no}" -lt 40 ] && pass "approval request: request_no $request_no" ||
        fail "approval request: no request_no: $out"
ic_stdout approval status $VIN --no-ask --json "${LOGIN[@]}"
expect_match "approval status: pending" '^pending$' "$(json_get status "$out")"

manager_approves "$request_no"
ic_stdout approval status $VIN --no-ask --json "${LOGIN[@]}"
expect_rc "approval status --json" 0 $rc "$(cat "$tmp/stderr")"
expect_match "approval status: approved" '^approved$' "$(json_get status "$out")"
expect_match "approval status: approved by mgr1" '^mgr1$' "$(json_get approved_by "$out")"
expect_match "approval status: the request" "^$request_no\$" "$(json_get request_no "$out")"

expect_match "driver's door opened (control socket)" '"ok": *true' "$(ctl 'door open')"
timeout $RUN_MAX "$immoctl" --bus="$addr" --json reset --no-ask --agree-erase-all "${FETCH[@]}" \
        >"$tmp/reset.json" 2>"$tmp/reset.err"
expect_rc "reset --no-ask --json --fetch" 0 $? "$(cat "$tmp/reset.err")"
expect_events "reset: every stdout line a JSON object" "$tmp/reset.json" 'assert events and all(isinstance(e, dict) for e in events)'
expect_events "reset: step events in order, confirm-erase-all to resetting" "$tmp/reset.json" '
steps = [e["step"] for e in events if e.get("event") == "step"]
want = ["confirm-erase-all", "open-driver-door", "immobilizer-passcode", "confirm-duration", "smart-code-passcode", "resetting"]
assert steps in (want, want + ["done"]), steps'
expect_events "reset: progress events, rising to the end" "$tmp/reset.json" '
p = [e["percentage"] for e in events if e.get("event") == "progress"]
assert len(p) >= 3 and p == sorted(p) and p[-1] >= 90, p'
expect_events "reset: a finished event, succeeded, last" "$tmp/reset.json" '
f = events[-1]
assert f.get("event") == "finished" and f["state"] == "succeeded" and f["exit_status"] == 0, f'
ic_stdout keys --json
expect_match "after the reset: no key registered" '"registered":0' "$out"

# add-key: the two new keys touched when immoctl says it waits for them
ic_bg add.json add.err --json add-key --no-ask --new-keys 2 "${FETCH[@]}"
if wait_for 60 grep -q '"step":"touch-new-keys"' "$tmp/add.json"; then
        pass "add-key: step touch-new-keys"
        expect_match "first new key touched" '"ok": *true' "$(ctl 'touch 22222222')"
        wait_for 20 grep -q '"key_event":"key-registered"' "$tmp/add.json" || fail "add-key: no key-registered event"
        expect_match "second new key touched" '"ok": *true' "$(ctl 'touch 33333333')"
else
        fail "add-key: touch-new-keys not reached: $(cat "$tmp/add.err")"
fi
ic_bg_done "add-key --no-ask --new-keys 2 --fetch"
expect_events "add-key: two key-registered events, slots and keys" "$tmp/add.json" '
k = [e for e in events if e.get("event") == "key"]
assert [e["key_event"] for e in k] == ["key-registered", "key-registered"], k
assert all(e["beeps"] >= 1 and "keys" in e for e in k), k'
expect_events "add-key: finished, succeeded" "$tmp/add.json" '
assert events[-1].get("event") == "finished" and events[-1]["state"] == "succeeded", events[-1]'
ic_stdout keys --json
expect_rc "keys --json" 0 $rc
expect_match "after add-key: 2 registered" '"registered":2' "$out"

# erase-keys: one customer key present and touched, the other deleted
ic_bg erase.json erase.err --json erase-keys --no-ask --keys-present 1 --agree-erase-keys "${FETCH[@]}"
if wait_for 60 grep -q '"step":"touch-keys"' "$tmp/erase.json"; then
        pass "erase-keys: step touch-keys"
        expect_match "the key present touched" '"ok": *true' "$(ctl 'touch 22222222')"
else
        fail "erase-keys: touch-keys not reached: $(cat "$tmp/erase.err")"
fi
ic_bg_done "erase-keys --no-ask --keys-present 1 --agree-erase-keys --fetch"
expect_events "erase-keys: key-kept, then finished succeeded" "$tmp/erase.json" '
assert "key-kept" in [e.get("key_event") for e in events], events
assert events[-1].get("event") == "finished" and events[-1]["state"] == "succeeded", events[-1]'
ic_stdout keys --json
expect_match "after erase-keys: 1 registered" '"registered":1' "$out"

ic_stdout history --json
expect_rc "history --json" 0 $rc "$(cat "$tmp/stderr")"
printf '%s\n' "$out" >"$tmp/history.json"
expect_events "history: the reset, add-key and erase-keys records" "$tmp/history.json" '
got = [(e.get("kind"), e.get("result"), e.get("keys_before"), e.get("keys_after"), e.get("repair_order")) for e in events]
assert got == [("key-erasure", "succeeded", 2, 1, "RO-77"), ("key-registration", "succeeded", 0, 2, "RO-77"),
               ("immobilizer-reset", "succeeded", 1, 0, "RO-77")], got'

# ===== 5. bad input on a procedure
ic reset --no-ask
expect_rc "reset --no-ask without --agree-erase-all" 2 $rc "$out"
expect_match "reset --no-ask: names --agree-erase-all" 'confirm-erase-all.*--agree-erase-all' "$out"
expect_match "reset --no-ask: left waiting at confirm-erase-all" '^waiting$' "$("$q" State)"
ic cancel
expect_rc "cancel the procedure left behind" 0 $rc "$out"

ctl 'door open' >/dev/null
ic reset --no-ask --agree-erase-all --passcode 12ab
expect_rc "reset --passcode 12ab" 2 $rc "$out"
expect_match "reset --passcode 12ab: malformed, says the form, cost no attempt" \
        "That passcode is malformed: an immobilizer passcode is 6 digits \\(0-9\\), 'a' is not one\\. It was not sent and cost no attempt\\." "$out"
if "$q" Step immobilizer-passcode >/dev/null; then pass "--passcode 12ab: still at immobilizer-passcode"; else fail "--passcode 12ab: $("$q" Step)"; fi
if "$q" PasscodeAttemptsLeft 3 >/dev/null; then pass "--passcode 12ab: attempts unchanged (3)"; else fail "--passcode 12ab: attempts $("$q" PasscodeAttemptsLeft)"; fi
ic attach --no-ask --fetch --user tech1 --password-file "$tmp/badpw"
expect_rc "attach --fetch with a wrong password" 3 $rc "$out"
expect_match "attach --fetch, wrong password: the AuthenticationFailed sentence" \
        'Cannot fetch the passcode: the passcode service refused the user name or password' "$out"
if "$q" PasscodeAttemptsLeft 3 >/dev/null; then pass "wrong password: no attempt lost"; else fail "wrong password: attempts $("$q" PasscodeAttemptsLeft)"; fi
ic cancel
expect_rc "cancel at immobilizer-passcode" 0 $rc "$out"

# ===== 4. cancel: add-key --no-ask without a passcode stops at smart-code-passcode
ic add-key --no-ask
expect_rc "add-key --no-ask without --passcode/--fetch" 2 $rc "$out"
expect_match "add-key --no-ask: names --passcode and --fetch" 'smart-code-passcode needs a passcode: give --passcode P or --fetch' "$out"
if "$q" Step smart-code-passcode >/dev/null; then pass "add-key left waiting at smart-code-passcode"; else fail "add-key left at $("$q" Step)"; fi
proc=$(active)
ic cancel
expect_rc "cancel" 0 $rc "$out"
expect_match "cancel says so" "Cancelled $proc" "$out"
expect_match "State cancelled (busctl)" '^s "cancelled"$' "$(pprop State)"
ic cancel
expect_rc "cancel with nothing running" 1 $rc "$out"
expect_match "cancel with nothing running: says so" 'No procedure is running' "$out"

# ===== 2. a reset guided through a pseudo-terminal
ctl 'door closed' >/dev/null
cat >"$tmp/guided.script" <<EOF
expect 30 "asks the repair order" 'Repair order \(Enter for none\): '
send RO-88
expect 10 "asks the customer's name" "Customer's last name \(Enter for none\): "
send Jones
expect 20 "step 1: confirm-erase-all" 'Step 1 of 7: confirm-erase-all'
expect 10 "asks for \"I agree\"" 'Type "I agree" to confirm: '
send yes
expect 10 "a wrong confirmation: Not confirmed" 'Not confirmed: type exactly "I agree"'
check "a wrong confirmation: still at confirm-erase-all" "$q Step confirm-erase-all"
expect 10 "asks for \"I agree\" again" 'Type "I agree" to confirm: '
send 'I agree'
expect 20 "step 2: open-driver-door" 'Step 2 of 7: open-driver-door'
expect 10 "asks for Enter" 'Press Enter when done: '
send ''
expect 20 "door closed: refused, says why" "driver's door is closed"
check "door closed: still at open-driver-door" "$q Step open-driver-door"
expect 10 "asks for Enter again" 'Press Enter when done: '
check "driver's door opened (control socket)" "$tmp/ctl 'door open' | grep -q ok.*true"
send ''
expect 20 "step 3: immobilizer-passcode" 'Step 3 of 7: immobilizer-passcode'
expect 20 "the seed in groups of four, uppercase" 'Immobilizer seed \(96 digits\), for the passcode service:\r*\n(( +([0-9A-F]{4} ){7}[0-9A-F]{4}\r*\n){3})'
expect 10 "asks for the passcode" 'Immobilizer passcode \(6 digits'
check "attempts left: 3" "$q PasscodeAttemptsLeft 3"
send 12ab
expect 10 "a malformed passcode: says the form, no attempt lost" "That passcode is malformed: an immobilizer passcode is 6 digits \\(0-9\\), 'a' is not one\\. It was not sent and cost no attempt\\."
check "a malformed passcode: attempts still 3" "$q PasscodeAttemptsLeft 3"
check "a malformed passcode: still at immobilizer-passcode" "$q Step immobilizer-passcode"
expect 10 "asks for the passcode again" 'Immobilizer passcode \(6 digits'
passcode immobilizer wrong
expect 20 "a wrong passcode: rejected, 2 attempts left" 'rejected the passcode.*2 attempt\(s\) left'
expect 20 "a wrong passcode: a fresh seed" 'The ECU gave a fresh seed'
expect 20 "the fresh seed shown" 'Immobilizer seed \(96 digits\), for the passcode service:\r*\n(( +([0-9A-F]{4} ){7}[0-9A-F]{4}\r*\n){3})'
check "a wrong passcode: attempts left 2" "$q PasscodeAttemptsLeft 2"
check "a wrong passcode: still at immobilizer-passcode" "$q Step immobilizer-passcode"
passcode immobilizer spaced
expect 20 "step 4: confirm-duration" 'Step 4 of 7: confirm-duration'
expect 10 "asks for \"I understand\"" 'Type "I understand" to confirm: '
send 'I understand'
expect 20 "step 5: smart-code-passcode" 'Step 5 of 7: smart-code-passcode'
expect 20 "the VIN/Data1/Data2/Data3 table" 'VIN +$VIN +[0-9A-Z]\r*\n +Data1 .*\n +Data2 .*\n +Data3 [^\n]*\n'
expect 10 "asks for the smart code passcode" 'Smart code passcode \(12 characters'
passcode smart-code lower-spaced
expect 20 "step 6: resetting" 'Step 6 of 7: resetting'
expect 10 "says a closed terminal does not stop it" 'Closing this terminal does not stop the reset'
expect 60 "the progress bar with the battery" '\[###+\.*\] +[0-9]+%  [^\r\n]*left  battery [0-9]+\.[0-9] V'
expect 90 "Done." 'Done\.'
expect 10 "the next step named" 'immoctl add-key'
exit 30 0
EOF
python3 "$src/tests/client/pty-driver.py" --script "$tmp/guided.script" --vectors "$src/tests/test-vectors.json" \
        --vin $VIN --transcript "$tmp/guided.screen" -- "$immoctl" --bus="$addr" reset >"$tmp/guided.out" 2>&1
driver_rc=$?
while IFS= read -r line; do
        case $line in
        ok:*) pass "pty: ${line#ok: }" ;;
        FAIL:*) fail "pty: ${line#FAIL: }" ;;
        *) echo "$line" ;;
        esac
done <"$tmp/guided.out"
[ $driver_rc -eq 0 ] || grep -q '^FAIL:' "$tmp/guided.out" || fail "pty driver exited $driver_rc"
[ "$(active)" = / ] || { echo "# cancelling $(active)"; "$immoctl" --bus="$addr" cancel >/dev/null 2>&1; }
ic_stdout keys --json
expect_match "after the guided reset: no key registered" '"registered":0' "$out"

# ===== 3. attach after the client was killed during the reset
ctl 'door open' >/dev/null
# not under timeout: $! must be immoctl itself, for the kill -9 (wait_for bounds it)
"$immoctl" --bus="$addr" reset --no-ask --agree-erase-all "${FETCH[@]}" >"$tmp/killed.out" 2>&1 &
bg_pid=$!
if wait_for 60 "$q" Step resetting; then
        pass "background reset: step resetting"
        # immoctl shows the step a moment after the bus has it: the kill comes once it did
        # (a loaded CI machine once killed it first; what it printed is checked below)
        wait_for 10 grep -q 'Step 6 of 7: resetting' "$tmp/killed.out"
        kill -9 "$bg_pid"
        wait "$bg_pid" 2>/dev/null
        expect_rc "immoctl killed during the reset" 137 $?
        bg_pid=
        expect_match "the killed immoctl had not finished" 'Step 6 of 7: resetting' "$(cat "$tmp/killed.out")"
        if grep -q 'Done\.' "$tmp/killed.out"; then fail "the killed immoctl finished: $(cat "$tmp/killed.out")"; fi
        if "$q" Step resetting >/dev/null && "$q" State running >/dev/null; then
                pass "after kill -9 of immoctl: still resetting, running (busctl)"
        else
                fail "after kill -9 of immoctl: $("$q" Step), $("$q" State)"
        fi
        ic cancel
        expect_rc "cancel while the ECU resets: refused" 3 $rc "$out"
        ic attach --no-ask
        expect_rc "attach --no-ask follows the reset to its end" 0 $rc "$out"
        expect_match "attach: Done." '^Done\.$' "$out"
        expect_match "attach: the progress lines" 'resetting: [0-9]+%' "$out"
else
        fail "background reset: resetting not reached: $(cat "$tmp/killed.out")"
fi
ic attach
expect_rc "attach with nothing running" 1 $rc "$out"
expect_match "attach with nothing running: says so" 'No procedure is running' "$out"

# ===== key touches and the erasure's countdown as text (not a terminal: plain lines)
ic_bg add.txt add.txt add-key --no-ask --new-keys 2 "${FETCH[@]}"
if wait_for 60 "$q" Step touch-new-keys; then
        ctl 'touch 44444444' >/dev/null
        wait_for 20 grep -q 'key registered in slot 1' "$tmp/add.txt" || fail "text add-key: first key not shown"
        ctl 'touch 55555555' >/dev/null
else
        fail "text add-key: touch-new-keys not reached: $(cat "$tmp/add.txt")"
fi
ic_bg_done "add-key, text"
out=$(cat "$tmp/add.txt")
expect_match "add-key, text: the first touch, live" '^  beep: key registered in slot 1, 6 slots left$' "$out"
expect_match "add-key, text: the second touch, live" '^  beep: key registered in slot 2, 5 slots left$' "$out"
expect_match "add-key, text: Done." '^Done\.$' "$out"
if grep -q $'\e' <<<"$out"; then fail "add-key, text: escape sequences without a terminal"; else pass "add-key, text: no terminal, no escapes"; fi

ic_bg erase.txt erase.txt erase-keys --no-ask --keys-present 1 --agree-erase-keys "${FETCH[@]}"
if wait_for 60 grep -q 's left to touch the keys: 0 of 1 touched' "$tmp/erase.txt"; then
        pass "erase-keys, text: the countdown"
        ctl 'touch 55555555' >/dev/null
else
        fail "erase-keys, text: no countdown: $(cat "$tmp/erase.txt")"
fi
ic_bg_done "erase-keys, text"
out=$(cat "$tmp/erase.txt")
expect_match "erase-keys, text: the keep/delete counts" 'Keys to delete for ever: +1$' "$out"
expect_match "erase-keys, text: the key kept" 'beep: the key in slot 2 will be kept \(1 of 1 touched\)' "$out"
expect_match "erase-keys, text: Done." '^Done\.$' "$out"
ic_stdout keys --json
expect_match "after the text erase-keys: 1 registered" '"registered":1' "$out"

# ===== the password never in immod's log
if grep -qF -- "$PW" "$tmp/immod.log"; then fail "the password appears in immod's log"; else pass "password not in immod's log"; fi

stop_immod
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
