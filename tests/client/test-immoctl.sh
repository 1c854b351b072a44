#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# immoctl against immod on a private bus and immo-ecusim on a private vbus: every verb,
# plain and --json, usage errors, exit statuses, a caller outside the group.
#
# usage: test-immoctl.sh IMMOCTL IMMOD IMMO_ECUSIM SOURCE_ROOT

set -u -o pipefail

immoctl=$1
immod=$2
ecusim=$3
src=$4

BAD_CHECK=58ADZ1B18LU012345

harness_pids="mon_pid immod_pid sim_pid bus_pid"
mon_pid=
. "$src/tests/lib/harness.sh"

# Every line of the text is one JSON object.
expect_json_lines() {
        if python3 -c '
import json, sys
lines = [l for l in sys.stdin.read().split("\n") if l]
assert lines, "no output"
for l in lines:
    assert isinstance(json.loads(l), dict), l
' <<<"$2" 2>"$tmp/json.err"; then pass "$1 is JSON"; else fail "$1 is not JSON lines: $2 ($(cat "$tmp/json.err"))"; fi
}

# --- the private bus: any uid may connect and call; immod does its own checks.
start_bus

# immoctl on the private bus; stdout and stderr together, exit status in $rc.
ic() {
        out=$("$immoctl" --bus="$addr" "$@" 2>&1)
        rc=$?
}
# The same, stdout only (for JSON).
ic_stdout() {
        out=$("$immoctl" --bus="$addr" "$@" 2>"$tmp/stderr")
        rc=$?
}

# --- usage errors need no bus
"$immoctl" frobnicate >/dev/null 2>"$tmp/err"
expect_rc "unknown verb" 2 $?
expect_match "unknown verb named" 'Unknown verb "frobnicate"' "$(cat "$tmp/err")"
"$immoctl" status --frobnicate >/dev/null 2>"$tmp/err"
expect_rc "unknown option" 2 $?
"$immoctl" keys --model 'ES 350' >/dev/null 2>&1
expect_rc "option of another verb" 2 $?
"$immoctl" --bus=nonsense status >/dev/null 2>&1
expect_rc "bad --bus" 2 $?
out=$("$immoctl" --version)
expect_match "--version" '^immoctl [0-9]+\.[0-9]+\.[0-9]+$' "$out"
out=$("$immoctl" --help)
expect_rc "--help" 0 $?
expect_match "--help lists the exit statuses" '4  not reachable' "$out"
expect_match "--help shows a long verb line whole" 'approval request VIN .* --approver=ID --approver=ID$' "$out"
for verb in status identify "vehicle set" "vehicle show" keys history monitor; do
        # shellcheck disable=SC2086
        out=$("$immoctl" $verb --help 2>&1)
        expect_rc "$verb --help" 0 $? "$out"
        expect_match "$verb --help names the verb" "immoctl \[OPTIONS...\] $verb" "$out"
done

# --- the simulated ECU
start_ecusim

# --- immod
start_immod none || { fail "immod did not take its bus name"; exit 1; }
wait_for 5 link_up

# --- status before anything is known
ic status
expect_rc "status" 0 $rc "$out"
expect_match "status: link" "Link: vbus:$tmp/vbus.sock \(up\)" "$out"
expect_match "status: ECU" 'ECU: unknown' "$out"
expect_match "status: battery" 'Battery: voltage unknown \(unknown\)' "$out"
expect_match "status: no vehicle, as what to do" 'Problems: no vehicle is known: run "immoctl identify"' "$out"
expect_match "status: no procedure" 'Procedure: none' "$out"
ic_stdout status --json
expect_rc "status --json" 0 $rc
expect_json_lines "status --json" "$out"
expect_match "status --json: LinkState" '"LinkState":"up"' "$out"
expect_match "status --json: NaN voltage is null" '"BatteryVoltage":null' "$out"

# --- monitor, in the background, while identify runs
"$immoctl" --bus="$addr" monitor --json >"$tmp/monitor.json" 2>"$tmp/monitor.err" &
mon_pid=$!
wait_for 10 grep -q 'Following immod' "$tmp/monitor.err" || fail "monitor did not start: $(cat "$tmp/monitor.err")"
"$immoctl" --bus="$addr" monitor >"$tmp/monitor.txt" 2>"$tmp/monitor-plain.err" &
mon_plain_pid=$!
wait_for 10 grep -q 'Following immod' "$tmp/monitor-plain.err" || fail "plain monitor did not start"

# --- identify
ic identify
expect_rc "identify" 0 $rc "$out"
expect_match "identify: VIN" "VIN: $VIN$" "$out"
expect_match "identify: make" 'Make: Lexus' "$out"
expect_match "identify: model" 'Model: ES 350' "$out"
expect_match "identify: year" 'Year: 2020' "$out"
expect_match "identify: profile" 'Profile: lexus-es-ux-ls-2018-2021' "$out"
ic_stdout identify --json
expect_rc "identify --json" 0 $rc
expect_json_lines "identify --json" "$out"
expect_match "identify --json: vin" "^$VIN\$" "$(json_get vin "$out")"
expect_match "identify --json: year" '^2020$' "$(json_get year "$out")"

wait_for 5 grep -q '"changed":{"Vehicle"' "$tmp/monitor.json"
wait_for 5 grep -q 'EcuState="awake"' "$tmp/monitor.txt"
kill -INT "$mon_pid"
wait "$mon_pid"
expect_rc "monitor ends on SIGINT" 0 $?
mon_pid=
kill -INT "$mon_plain_pid"
wait "$mon_plain_pid"
out=$(cat "$tmp/monitor.json")
expect_json_lines "monitor --json" "$out"
expect_match "monitor --json: PropertiesChanged of Vehicle" \
        '"changed":\{"Vehicle":\{"vin":"'"$VIN"'".*"event":"PropertiesChanged"' "$out"
expect_match "monitor --json: EcuState awake" '"EcuState":"awake"' "$out"
expect_match "monitor plain: a line per change" \
        '^[0-9:.]+ manager PropertiesChanged .*EcuState="awake"' "$(cat "$tmp/monitor.txt")"

ic status
expect_match "status: vehicle" "Vehicle: Lexus ES 350 2020, VIN $VIN" "$out"
expect_match "status: ECU awake" 'ECU: awake' "$out"
expect_match "status: no problems" 'Problems: none' "$out"

# --- keys
ic keys
expect_rc "keys" 0 $rc "$out"
expect_match "keys: registered" 'Registered: 1 key$' "$out"
expect_match "keys: available" 'Available: 6 free slots' "$out"
expect_match "keys: max" 'Max: 7 slots' "$out"
ic_stdout keys --json
expect_json_lines "keys --json" "$out"
expect_match "keys --json" '^\{"registered":1,"available":6,"max":7\}$' "$out"

# --- vehicle set
ic vehicle set 58ADZ1B19LU01234I --model 'ES 350' --year 2020
expect_rc "vehicle set: bad VIN" 2 $rc "$out"
expect_match "vehicle set: bad VIN names the problem" "'I' at position 17" "$out"
ic vehicle set 58ADZ1B19LU0123 --model 'ES 350' --year 2020
expect_rc "vehicle set: short VIN" 2 $rc "$out"
expect_match "vehicle set: short VIN names the problem" '17' "$out"
ic vehicle set $BAD_CHECK --model 'ES 350' --year 2020
expect_rc "vehicle set: wrong check digit refused" 2 $rc "$out"
expect_match "vehicle set: check digit named" "position 9 holds '8'.*'9'" "$out"
ic vehicle set $VIN --year 2020
expect_rc "vehicle set: --model missing" 2 $rc "$out"
ic vehicle set $VIN --model 'ES 350' --year 20x0
expect_rc "vehicle set: bad year" 2 $rc "$out"
ic vehicle set $BAD_CHECK --model 'ES 350' --year 2020 --force
expect_rc "vehicle set: --force" 0 $rc "$out"
expect_match "vehicle set: shows the vehicle" "VIN: $BAD_CHECK \(the check digit is wrong\)" "$out"
expect_match "vehicle set: manual" 'Source: set by hand' "$out"
ic_stdout vehicle show --json
expect_json_lines "vehicle show --json" "$out"
expect_match "vehicle show --json: manual" '^manual$' "$(json_get source "$out")"
ic vehicle set $VIN --model 'Corolla' --year 2020
expect_rc "vehicle set: unknown model refused" 3 $rc "$out"
expect_match "vehicle set: unsupported said" 'not supported' "$out"
ic_stdout vehicle set $VIN --model 'ES 350' --year 2020 --json
expect_rc "vehicle set --json" 0 $rc
expect_json_lines "vehicle set --json" "$out"

# --- history: GetHistory may not be there yet
ic history -n 5
if [ $rc -eq 0 ]; then
        pass "history (exit 0)"
        ic_stdout history --json
        expect_rc "history --json" 0 $rc
        [ -z "$out" ] && pass "history --json: no records yet" || expect_json_lines "history --json" "$out"
else
        expect_rc "history without GetHistory" 1 $rc "$out"
        expect_match "history: says it is not supported" 'this immod does not support history yet' "$out"
fi
ic history -n x
expect_rc "history -n x" 2 $rc "$out"

# --- a caller outside the group
cp "$immoctl" "$tmp/immoctl"
chmod 0755 "$tmp/immoctl"
out=$(as_nobody "$tmp/immoctl" --bus="$addr" identify 2>&1)
rc=$?
expect_rc "nobody: identify refused" 3 $rc "$out"
expect_match "nobody: says not authorized" 'not authorized: Identify\(\) needs root' "$out"
out=$(as_nobody "$tmp/immoctl" --bus="$addr" keys 2>&1)
expect_rc "nobody: keys refused" 3 $? "$out"
out=$(as_nobody "$tmp/immoctl" --bus="$addr" status 2>&1)
expect_rc "nobody may read the status" 0 $? "$out"

# --- the ECU falls asleep
expect_match "ecusim sleep" '"ok": *true' "$(ctl sleep)"
ic identify
expect_rc "identify on a sleeping ECU" 4 $rc "$out"
expect_match "identify: courtesy switch advice" "[Pp]ress the driver's door courtesy switch \(do not cycle the engine switch\)" "$out"
ic status
expect_match "status: courtesy switch advice" \
        "the ECU is asleep: press the driver's door courtesy switch \(do not cycle the engine switch\)" "$out"
ic keys
expect_rc "keys on a sleeping ECU" 4 $rc "$out"
expect_match "ecusim courtesy" '"ok": *true' "$(ctl courtesy)"
ic identify
expect_rc "identify after the courtesy switch" 0 $rc "$out"

# --- immod gone
stop_immod TERM
ic status
expect_rc "status without immod" 1 $rc "$out"
expect_match "status without immod says so" 'immod is not running' "$out"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
