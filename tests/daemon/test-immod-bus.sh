#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# immod on a private bus against immo-ecusim on a private vbus, driven with busctl
# (and gdbus where the error name matters: busctl prints only the message).
#
# usage: test-immod-bus.sh IMMOD IMMO_ECUSIM SOURCE_ROOT

set -u -o pipefail

immod=$1
ecusim=$2
src=$3

harness_pids="immod_pid mon_pid sim_pid bus_pid"
mon_pid=
. "$src/tests/lib/harness.sh"

# --- the private bus: any uid may connect and call; immod does its own checks.
start_bus

# --- the simulated ECU
start_ecusim

# --- immod
start_immod none || { fail "immod did not take its bus name"; exit 1; }

# --- usage errors
"$immod" --bus "nonsense" >/dev/null 2>&1
expect_match "usage error exits 2" '^2$' "$?"

# --- introspection and properties
expect_match "introspection shows the Manager" "$IFACE" "$(bctl introspect "$DEST" "$OBJ" 2>&1)"
expect_match "Version" '^s "[0-9]+\.[0-9]+\.[0-9]+"$' "$(prop Version)"
expect_match "Link" "^s \"vbus:$tmp/vbus.sock\"$" "$(prop Link)"
wait_for 5 link_up
expect_match "LinkState up" '^s "up"$' "$(prop LinkState)"
expect_match "EcuState unknown at start" '^s "unknown"$' "$(prop EcuState)"
expect_match "Problems: no-vehicle" '"no-vehicle"' "$(prop Problems)"
expect_match "Vehicle empty" '^a\{sv\} 0$' "$(prop Vehicle)"
expect_match "BatteryVoltage NaN" '^d nan$' "$(prop BatteryVoltage)"
expect_match "ActiveProcedure /" '^o "/"$' "$(prop ActiveProcedure)"
expect_match "Server unconfigured" '^s "unconfigured"$' "$(prop Server)"

# --- Identify and ReadKeyStatus
out=$(call Identify)
expect_match "Identify: VIN" "\"vin\" s \"$VIN\"" "$out"
expect_match "Identify: make" '"make" s "Lexus"' "$out"
expect_match "Identify: model" '"model" s "ES 350"' "$out"
expect_match "Identify: year" '"year" u 2020' "$out"
expect_match "Identify: profile" '"profile" s "lexus-es-ux-ls-2018-2021"' "$out"
expect_match "Identify: source" '"source" s "ecu"' "$out"
expect_match "Identify: check digit" '"vin_check_ok" b true' "$out"
vehicle=$(prop Vehicle)
expect_match "Vehicle equals Identify's answer" "^${out//[\{\}]/.}$" "$vehicle"
expect_match "EcuState awake" '^s "awake"$' "$(prop EcuState)"
expect_match "Problems empty" '^as 0$' "$(prop Problems)"

out=$(call ReadKeyStatus)
expect_match "ReadKeyStatus" '"registered" u 1 "available" u 6 "max" u 7' "$out"

# --- SetVehicle
expect_match "SetVehicle bad VIN" 'Error\.InvalidVin$' \
        "$(call_error SetVehicle 58ADZ1B19LU01234I "{'model': <'ES 350'>, 'year': <uint32 2020>}")"
bad_check=58ADZ1B18LU012345
expect_match "SetVehicle wrong check digit refused" 'Error\.InvalidVin$' \
        "$(call_error SetVehicle $bad_check "{'model': <'ES 350'>, 'year': <uint32 2020>}")"
out=$(bctl call $DEST $OBJ $IFACE SetVehicle 'sa{sv}' $bad_check 3 model s 'ES 350' year u 2020 force b true 2>&1)
expect_match "SetVehicle with force accepted" '^$' "$out"
vehicle=$(prop Vehicle)
expect_match "Vehicle manual" "\"vin\" s \"$bad_check\" \"vin_check_ok\" b false .*\"source\" s \"manual\"" "$vehicle"
out=$(bctl call $DEST $OBJ $IFACE SetVehicle 'sa{sv}' $bad_check 3 model s 'ES 350' year u 2020 colour s red 2>&1)
expect_match "SetVehicle unknown option refused" 'Unknown option' "$out"
expect_match "unknown option is InvalidArgs" 'org.freedesktop.DBus.Error.InvalidArgs$' \
        "$(call_error SetVehicle $VIN "{'model': <'ES 350'>, 'year': <uint32 2020>, 'colour': <'red'>}")"
expect_match "wrong option type is InvalidArgs" 'org.freedesktop.DBus.Error.InvalidArgs$' \
        "$(call_error SetVehicle $VIN "{'model': <'ES 350'>, 'year': <'2020'>}")"
long=$(printf 'A%.0s' $(seq 1 5000))
expect_match "overlong VIN refused" 'InvalidArgs$' \
        "$(call_error SetVehicle "$long" "{'model': <'ES 350'>, 'year': <uint32 2020>}")"
out=$(bctl call $DEST $OBJ $IFACE SetVehicle 'sa{sv}' $VIN 2 model s "$long" year u 2020 2>&1)
expect_match "overlong model refused" 'model' "$out"
expect_match "missing year refused" 'InvalidArgs$' \
        "$(call_error SetVehicle $VIN "{'model': <'ES 350'>}")"
expect_match "wrong argument signature refused" 'InvalidArgs$' \
        "$(call_error SetVehicle $VIN)"
expect_match "unknown model is UnsupportedVehicle" 'Error\.UnsupportedVehicle$' \
        "$(call_error SetVehicle $VIN "{'model': <'Corolla'>, 'year': <uint32 2020>}")"
out=$(bctl call $DEST $OBJ $IFACE SetVehicle 'sa{sv}' $VIN 2 model s 'ES 350' year u 2020 2>&1)
expect_match "SetVehicle right VIN accepted" '^$' "$out"

# --- a caller outside the group
as_nobody_error() { # METHOD: call_error, as nobody
        dbus_error as_nobody gdbus call --address="$addr" --dest="$DEST" --object-path="$OBJ" --method="$IFACE.$1"
}
expect_match "nobody: Identify NotAuthorized" 'Error\.NotAuthorized$' "$(as_nobody_error Identify)"
expect_match "nobody: ReadKeyStatus NotAuthorized" 'Error\.NotAuthorized$' "$(as_nobody_error ReadKeyStatus)"
out=$(as_nobody busctl --address="$addr" call $DEST $OBJ $IFACE SetVehicle 'sa{sv}' $VIN 2 model s 'ES 350' year u 2020 2>&1)
expect_match "nobody: SetVehicle refused" 'needs root' "$out"
out=$(as_nobody busctl --address="$addr" get-property $DEST $OBJ $IFACE Version 2>&1)
expect_match "nobody may read properties" '^s "' "$out"
expect_match "refusals are logged" 'Refused Identify\(\) from uid 65534' "$(cat "$tmp/immod.log")"

# --- the ECU falls asleep, and wakes up
expect_match "ecusim sleep" '"ok": *true' "$(ctl sleep)"
out=$(call_error Identify)
expect_match "Identify on a sleeping ECU" 'Error\.(EcuAsleep|EcuUnreachable)$' "$out"
expect_match "EcuState asleep" '^s "(asleep|unreachable)"$' "$(prop EcuState)"
expect_match "Problems: ecu-asleep" '"ecu-(asleep|unreachable)"' "$(prop Problems)"
ecu_awake() { [ "$(prop EcuState)" = 's "awake"' ]; }
# asleep with no procedure: immod asks now and then by itself, no method call needed
sleep 3
expect_match "still asleep before the courtesy switch" '^s "asleep"$' "$(prop EcuState)"
expect_match "ecusim courtesy" '"ok": *true' "$(ctl courtesy)"
if wait_for 15 ecu_awake; then pass "EcuState awake after the courtesy switch, without a call"; else
        fail "EcuState still $(prop EcuState) 15 s after the courtesy switch"; fi
if prop Problems | grep -q ecu-asleep; then fail "Problems still lists ecu-asleep: $(prop Problems)"; else
        pass "Problems: no ecu-asleep any more"; fi
out=$(call Identify)
expect_match "Identify after courtesy" "\"vin\" s \"$VIN\"" "$out"
expect_match "EcuState awake again" '^s "awake"$' "$(prop EcuState)"

# --- StartProcedure asks the bus for the caller's credentials once: the uid its
# authorization judged is the procedure's Owner (each busctl call is a new caller)
owner=$(bctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus GetNameOwner s "$DEST" |
        sed -n 's/^s "\(.*\)"$/\1/p')
bctl monitor --json=short --match "type='method_call',destination='org.freedesktop.DBus',sender='$owner'" \
        >"$tmp/creds.json" 2>/dev/null &
mon_pid=$!
sleep 0.5
creds_asked() { bus_messages "$tmp/creds.json" | cut -f3 | grep -c '^GetConnection'; }
start_procedure key-registration 1 technician s tech1
sleep 0.5
expect_match "StartProcedure asked the bus for the caller's credentials once" '^1$' "$(creds_asked)"
expect_match "Owner is the caller's uid" "^u $(id -u)$" "$(pprop Owner)"
kill "$mon_pid" 2>/dev/null
wait "$mon_pid" 2>/dev/null
mon_pid=
expect_match "Cancel" '^OK$' "$(perr Cancel)"

# --- still alive, and stops cleanly
if kill -0 "$immod_pid" 2>/dev/null; then pass "immod alive"; else fail "immod died"; fi
stop_immod TERM
rc=$?
expect_match "immod exits 0 on SIGTERM" '^0$' "$rc"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
