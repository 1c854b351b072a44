#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The D-Bus fuzzer (immod-bus-fuzz.c) against immod on a private bus, immo-ecusim on a
# private vbus: every call must get a reply or a documented error, immod must stay up,
# then run a whole immobilizer reset correctly, and exit cleanly (under ASan: no leak).
# IMMOD_BUS_FUZZ_SEED and IMMOD_BUS_FUZZ_CALLS change the stream (default 16 and 1000).
#
# usage: test-immod-bus-fuzz.sh IMMOD IMMO_ECUSIM IMMOD_BUS_FUZZ SOURCE_ROOT

set -u -o pipefail

immod=$1
ecusim=$2
fuzzer=$3
src=$4

. "$src/tests/lib/harness.sh"

start_bus
start_ecusim --time-scale 60 --window-scale 2 --battery 13.8
start_immod ecu || { fail "immod did not take its bus name"; exit 1; }
wait_for 5 link_up

seed=${IMMOD_BUS_FUZZ_SEED:-16}
calls=${IMMOD_BUS_FUZZ_CALLS:-1000}
out=$("$fuzzer" "$addr" "$seed" "$calls" 2>&1)
rc=$?
echo "$out" | tail -n 30
if [ "$rc" -eq 0 ]; then pass "$calls calls (seed $seed): each a reply or a documented error"; else fail "immod-bus-fuzz (seed $seed) exit status $rc"; fi
if kill -0 "$immod_pid" 2>/dev/null; then pass "immod alive after the fuzzing"; else fail "immod died"; exit 1; fi

# --- a whole procedure afterwards
ecu_awake() { [ "$(prop EcuState)" = 's "awake"' ]; }
ctl courtesy >/dev/null
expect_match "Identify" "\"vin\" s \"$VIN\"" "$(call Identify)"
expect_match "no procedure left running" '^o "/"$' "$(prop ActiveProcedure)"
start_procedure immobilizer-reset 2 technician s "T. Tester" repair_order s "RO-16"
expect_match "Acknowledge confirm-erase-all" '^$' "$(pcall Acknowledge s confirm-erase-all)"
expect_match "door open" '"ok": *true' "$(ctl 'door open')"
expect_match "Acknowledge open-driver-door" '^$' "$(pcall Acknowledge s open-driver-door)"
expect_match "SubmitPasscode immobilizer" '^$' "$(pcall SubmitPasscode s "$(passcode)")"
expect_match "Acknowledge confirm-duration" '^$' "$(pcall Acknowledge s confirm-duration)"
expect_match "SubmitPasscode smart code" '^$' "$(pcall SubmitPasscode s "$(passcode)")"
wait_step 60 done
expect_match "reset succeeded" '^s "succeeded"$' "$(pprop State)"

stop_immod
rc=$?
expect_match "immod exits 0 (under ASan: no leak)" '^0$' "$rc"
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
