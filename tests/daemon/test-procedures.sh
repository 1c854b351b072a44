#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# immod on a private bus against immo-ecusim on a private vbus, driven with busctl
# (and gdbus where the error name matters: busctl prints only the message).
#
# usage: test-procedures.sh IMMOD IMMO_ECUSIM SOURCE_ROOT

set -u -o pipefail

immod=$1
ecusim=$2
src=$3

. "$src/tests/lib/harness.sh"

# --- the private bus: any uid may connect and call; immod does its own checks.
start_bus

# --- the simulated ECU
start_ecusim --time-scale 60 --window-scale 2 --battery 13.8
# --- immod
start_immod ecu || { fail "immod did not take its bus name"; exit 1; }

start() { start_procedure "$1" 2 technician s "T. Tester" repair_order s "RO-42"; } # start KIND: sets $proc
keys_prop() { pprop Keys; }

expect_match "StartProcedure without a vehicle: NoVehicle" 'Error\.NoVehicle$' \
        "$(call_error StartProcedure immobilizer-reset "@a{sv} {}")"
expect_match "Identify" "\"vin\" s \"$VIN\"" "$(call Identify)"
expect_match "StartProcedure unknown kind: InvalidArgs" 'InvalidArgs$' \
        "$(call_error StartProcedure self-destruct "@a{sv} {}")"

# ===== immobilizer reset
start immobilizer-reset
expect_match "ActiveProcedure" "^o \"$proc\"$" "$(prop ActiveProcedure)"
expect_match "Problems: procedure-running" '"procedure-running"' "$(prop Problems)"
expect_match "StartProcedure while one runs: Busy" 'Error\.Busy$' \
        "$(call_error StartProcedure key-erasure "@a{sv} {}")"
expect_match "Step confirm-erase-all" '^s "confirm-erase-all"$' "$(pprop Step)"
expect_match "StepIndex 1 of 7" '^u 1$' "$(pprop StepIndex)"
expect_match "StepCount 7" '^u 7$' "$(pprop StepCount)"
expect_match "State waiting" '^s "waiting"$' "$(pprop State)"
expect_match "Keys before" '"registered" u 1 "available" u 6 "max" u 7' "$(keys_prop)"
expect_match "Acknowledge wrong step: WrongStep" 'Error\.WrongStep$' "$(perr Acknowledge resetting)"
expect_match "SubmitPasscode at an ack step: WrongStep" 'Error\.WrongStep$' "$(perr SubmitPasscode 123456)"
expect_match "Acknowledge confirm-erase-all" '^$' "$(pcall Acknowledge s confirm-erase-all)"
expect_match "Step open-driver-door" '^s "open-driver-door"$' "$(pprop Step)"
expect_match "door closed: EcuRefused" 'Error\.EcuRefused$' "$(perr Acknowledge open-driver-door)"
expect_match "door open" '"ok": *true' "$(ctl 'door open')"
expect_match "Acknowledge open-driver-door" '^$' "$(pcall Acknowledge s open-driver-door)"
expect_match "Step immobilizer-passcode" '^s "immobilizer-passcode"$' "$(pprop Step)"
seed1=$(pprop Seed)
expect_match "immobilizer Seed: 96 lowercase hex" '"kind" s "immobilizer" "seed" s "[0-9a-f]{96}"' "$seed1"
expect_match "PasscodeAttemptsLeft 3" '^u 3$' "$(pprop PasscodeAttemptsLeft)"
expect_match "malformed passcode: InvalidPasscodeFormat" 'InvalidPasscodeFormat$' "$(perr SubmitPasscode 12ab)"
pc=$(passcode)
wrong=$(printf '%06d' $(( (10#$pc + 1) % 1000000 )))
expect_match "wrong passcode: PasscodeRejected" 'Error\.PasscodeRejected$' "$(perr SubmitPasscode "$wrong")"
expect_match "wrong passcode: attempts left 2" '^u 2$' "$(pprop PasscodeAttemptsLeft)"
seed2=$(pprop Seed)
if [ "$seed1" != "$seed2" ] && grep -q '"seed" s' <<<"$seed2"; then pass "fresh Seed after rejection"; else fail "Seed not renewed"; fi
expect_match "still at immobilizer-passcode" '^s "immobilizer-passcode"$' "$(pprop Step)"
pc=$(passcode)
expect_match "SubmitPasscode immobilizer (with spaces)" '^$' "$(pcall SubmitPasscode s " ${pc:0:3} ${pc:3} ")"
expect_match "Step confirm-duration" '^s "confirm-duration"$' "$(pprop Step)"
expect_match "Acknowledge confirm-duration" '^$' "$(pcall Acknowledge s confirm-duration)"
expect_match "Step smart-code-passcode" '^s "smart-code-passcode"$' "$(pprop Step)"
seed=$(pprop Seed)
expect_match "smart-code Seed" "\"kind\" s \"smart-code\" \"vin\" s \"$VIN\" \"data1\" s \"[0-9A-F]{11}\" \"data2\" s \"[0-9A-F]{12}\" \"data3\" s \"[0-9A-F]{8}\" \"cd_vin\" s \"[0-9A-Z]\"" "$seed"
pc=$(passcode)
expect_match "battery 12.2" '"ok": *true' "$(ctl 'battery 12.2')"
expect_match "low battery: BatteryLow" 'Error\.BatteryLow$' "$(perr SubmitPasscode "$pc")"
expect_match "still at smart-code-passcode" '^s "smart-code-passcode"$' "$(pprop Step)"
expect_match "battery 13.8" '"ok": *true' "$(ctl 'battery 13.8')"
expect_match "SubmitPasscode smart-code (lowercase)" '^$' "$(pcall SubmitPasscode s "${pc,,}")"
expect_match "Step resetting" '^s "resetting"$' "$(pprop Step)"
expect_match "Cancel while resetting: NotCancellable" 'Error\.NotCancellable$' "$(perr Cancel)"
sleep 3
expect_match "Percentage moving" '^u ([1-9][0-9]?)$' "$(pprop Percentage)"
expect_match "RemainingSeconds" '^u [0-9]+$' "$(pprop RemainingSeconds)"
wait_step 40 done
expect_match "reset State succeeded" '^s "succeeded"$' "$(pprop State)"
expect_match "reset Percentage 100" '^u 100$' "$(pprop Percentage)"
expect_match "reset: keys 0" '"registered" u 0 "available" u 7' "$(keys_prop)"
expect_match "BatteryMinimum (the refused 12.2 V counts)" '^d 12\.2$' "$(pprop BatteryMinimum)"
expect_match "ActiveProcedure / again" '^o "/"$' "$(prop ActiveProcedure)"
expect_match "Cancel after the end: WrongStep" 'Error\.WrongStep$' "$(perr Cancel)"

# ===== key registration, mode 2: two keys
start key-registration
expect_match "StepCount 9" '^u 9$' "$(pprop StepCount)"
expect_match "Acknowledge confirm-instructions" '^$' "$(pcall Acknowledge s confirm-instructions)"
pc=$(passcode)
expect_match "SubmitPasscode (registration)" '^$' "$(pcall SubmitPasscode s "$pc")"
expect_match "Step check-slots" '^s "check-slots"$' "$(pprop Step)"
expect_match "Acknowledge check-slots" '^$' "$(pcall Acknowledge s check-slots)"
expect_match "Acknowledge place-keys" '^$' "$(pcall Acknowledge s place-keys)"
expect_match "touch-registered-key skipped" '^s "pre-start-check"$' "$(pprop Step)"
expect_match "StepIndex 6" '^u 6$' "$(pprop StepIndex)"
expect_match "Acknowledge pre-start-check" '^$' "$(pcall Acknowledge s pre-start-check)"
expect_match "Step touch-new-keys" '^s "touch-new-keys"$' "$(pprop Step)"
bctl monitor --match "type='signal',interface='$PIFACE',member='KeyEvent'" >"$tmp/keyevents.log" 2>&1 &
mon_pid=$!
sleep 0.5
expect_match "touch new key 1" '"ok": *true' "$(ctl 'touch 33333333')"
wait_for 5 bash -c "busctl --address='$addr' get-property $DEST $proc $PIFACE Keys | grep -q '\"added\" u 1'"
expect_match "touch new key 2" '"ok": *true' "$(ctl 'touch 44444444')"
wait_for 5 bash -c "busctl --address='$addr' get-property $DEST $proc $PIFACE Keys | grep -q '\"added\" u 2'"
expect_match "Keys: 2 added" '"registered" u 2 .*"added" u 2' "$(keys_prop)"
sleep 0.5
kill $mon_pid 2>/dev/null; wait $mon_pid 2>/dev/null
expect_match "KeyEvent key-registered" 'key-registered' "$(cat "$tmp/keyevents.log")"
expect_match "Finish" '^$' "$(pcall Finish)"
expect_match "Step function-check" '^s "function-check"$' "$(pprop Step)"
expect_match "Acknowledge function-check" '^$' "$(pcall Acknowledge s function-check)"
wait_step 5 done
expect_match "registration succeeded" '^s "succeeded"$' "$(pprop State)"

# ===== key erasure: keep 1 of 2
start key-erasure
expect_match "Acknowledge confirm-warning" '^$' "$(pcall Acknowledge s confirm-warning)"
expect_match "SetKeyCount 3: CountMismatch" 'Error\.CountMismatch$' "$(perr SetKeyCount 'uint32 3')"
expect_match "SetKeyCount 1" '^$' "$(pcall SetKeyCount u 1)"
expect_match "confirm-counts shows keep/delete" 'Keep 1 key\(s\) and permanently delete 1' "$(pprop Prompt)"
expect_match "Acknowledge confirm-counts" '^$' "$(pcall Acknowledge s confirm-counts)"
expect_match "Acknowledge confirm-agree" '^$' "$(pcall Acknowledge s confirm-agree)"
# the ECU falls asleep at the passcode step, and comes back after the courtesy switch
seed1=$(pprop Seed)
expect_match "ecusim sleep" '"ok": *true' "$(ctl sleep)"
ecu_is() { [ "$(prop EcuState)" = "s \"$1\"" ]; }
if wait_for 10 ecu_is asleep; then pass "EcuState asleep"; else fail "EcuState not asleep: $(prop EcuState)"; fi
expect_match "Problems: ecu-asleep" '"ecu-asleep"' "$(prop Problems)"
expect_match "Prompt: courtesy switch, never the engine switch" 'courtesy switch.*Do NOT cycle the engine switch' "$(pprop Prompt)"
expect_match "ecusim courtesy" '"ok": *true' "$(ctl courtesy)"
if wait_for 10 ecu_is awake; then pass "EcuState awake again"; else fail "EcuState not awake: $(prop EcuState)"; fi
seed_renewed() { local s; s=$(pprop Seed); [ "$s" != "$seed1" ] && grep -q '"data2"' <<<"$s"; }
if wait_for 10 seed_renewed; then pass "new Seed after the ECU woke"; else fail "Seed not renewed after waking"; fi
expect_match "Prompt says why" 'fell asleep.*new seed' "$(pprop Prompt)"
pc=$(passcode)
expect_match "SubmitPasscode (erasure)" '^$' "$(pcall SubmitPasscode s "$pc")"
expect_match "Step touch-keys" '^s "touch-keys"$' "$(pprop Step)"
expect_match "Deadline set" '^t [1-9][0-9]{15}$' "$(pprop Deadline)"
expect_match "Erase before touching: CountMismatch" 'Error\.CountMismatch$' "$(perr Erase 'uint32 1')"
expect_match "touch kept key" '"ok": *true' "$(ctl 'touch 33333333')"
wait_for 5 bash -c "busctl --address='$addr' get-property $DEST $proc $PIFACE Keys | grep -q '\"touched\" u 1'"
expect_match "Erase 2: CountMismatch" 'Error\.CountMismatch$' "$(perr Erase 'uint32 2')"
expect_match "Erase 1" '^$' "$(pcall Erase u 1)"
wait_step 5 done
expect_match "erasure succeeded" '^s "succeeded"$' "$(pprop State)"
expect_match "erasure: 1 key left" '"registered" u 1 ' "$(keys_prop)"

# ===== a reset interrupted by SIGKILL of immod, resumed after the restart
start immobilizer-reset
kill_proc=$proc
pcall Acknowledge s confirm-erase-all >/dev/null
pcall Acknowledge s open-driver-door >/dev/null
pcall SubmitPasscode s "$(passcode)" >/dev/null
pcall Acknowledge s confirm-duration >/dev/null
pcall SubmitPasscode s "$(passcode)" >/dev/null
expect_match "second reset running" '^s "resetting"$' "$(pprop Step)"
sleep 2
stop_immod KILL
start_immod || fail "immod did not restart"
proc=$kill_proc
expect_match "resumed procedure at resetting" '^s "(resetting|done)"$' "$(pprop Step)"
wait_step 40 done
expect_match "resumed reset succeeded" '^s "succeeded"$' "$(pprop State)"

# ===== history
hist=$(call GetHistory u 0)
expect_match "GetHistory: 4 records" '^aa\{sv\} 4 ' "$hist"
expect_match "GetHistory: technician and repair order" '"technician" s "T. Tester".*"repair_order" s "RO-42"' "$hist"
expect_match "GetHistory: erasure keys 2 -> 1" '"kind" s "key-erasure".*"keys_before" i 2 "keys_after" i 1' "$hist"
n=$(grep -c '"kind":"immobilizer-reset"' "$tmp/state/audit.log" 2>/dev/null || grep -o 'immobilizer-reset' "$tmp/state/audit.log" | wc -l)
expect_match "exactly 2 reset audit records (one per reset)" '^2$' "$n"
expect_match "ListProcedures" '^ao ' "$(call ListProcedures)"

if kill -0 "$immod_pid" 2>/dev/null; then pass "immod alive"; else fail "immod died"; fi
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
