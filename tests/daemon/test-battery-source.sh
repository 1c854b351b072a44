#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# immod's battery monitoring: the hwmon source (a file of millivolts) and the ecu source
# (DID A010 read from immo-ecusim during procedures and after method calls).
#
# usage: test-battery-source.sh IMMOD IMMO_ECUSIM SOURCE_ROOT

set -u -o pipefail

immod=$1
ecusim=$2
src=$3

. "$src/tests/lib/harness.sh"

# --- the private bus: any uid may connect and call; immod does its own checks.
start_bus

# --- the simulated ECU
start_ecusim

# wait_prop SECONDS PROPERTY PATTERN: until the property matches
wait_prop() {
        local deadline=$((SECONDS + $1))
        until grep -Eq -- "$3" <<<"$(prop "$2")"; do
                [ $SECONDS -ge $deadline ] && return 1
                sleep 0.2
        done
}
expect_prop() { # expect_prop SECONDS PROPERTY PATTERN
        if wait_prop "$1" "$2" "$3"; then pass "$2 ~ /$3/"; else fail "$2: wanted /$3/, got: $(prop "$2")"; fi
}

# --- hwmon
echo 13800 >"$tmp/in0_input"
start_immod "hwmon:$tmp/in0_input" || { fail "immod did not take its bus name"; exit 1; }
expect_match "Identify" '"profile" s "lexus-es-ux-ls-2018-2021"' "$(call Identify)"
expect_prop 5 BatteryState '^s "ok"$'
expect_prop 5 BatteryVoltage '^d 13\.8$'
expect_match "no battery problem" '^as 0$' "$(prop Problems)"

echo 12800 >"$tmp/in0_input"
expect_prop 5 BatteryState '^s "low"$'
expect_prop 5 BatteryVoltage '^d 12\.8$'
expect_match "Problems: battery-low" '"battery-low"' "$(prop Problems)"

echo 12000 >"$tmp/in0_input"
expect_prop 5 BatteryState '^s "critical"$'
expect_prop 5 BatteryVoltage '^d 12$'
out=$(prop Problems)
expect_match "Problems: battery-critical" '"battery-critical"' "$out"
if grep -q '"battery-low"' <<<"$out"; then fail "battery-low and battery-critical together: $out"; else pass "only battery-critical"; fi

echo 13600 >"$tmp/in0_input"
expect_prop 5 BatteryState '^s "ok"$'

echo "twelve volts" >"$tmp/in0_input"
if wait_for 5 grep -q "Battery: cannot read a voltage from $tmp/in0_input" "$tmp/immod.log"; then
        pass "a garbage file is logged"
else
        fail "no log line for the garbage file"
fi
expect_prop 15 BatteryState '^s "unknown"$'
expect_prop 2 BatteryVoltage '^d nan$'

# --- ecu: A010 from the simulator, only with traffic
ctl "battery 13.1" >/dev/null
start_immod ecu || { fail "immod did not take its bus name"; exit 1; }
expect_match "ecu: BatteryState unknown before any traffic" '^s "unknown"$' "$(prop BatteryState)"
expect_match "ecu: Identify" '"profile" s "lexus-es-ux-ls-2018-2021"' "$(call Identify)"
expect_prop 5 BatteryVoltage '^d 13\.1$'
expect_prop 2 BatteryState '^s "ok"$'

out=$(call StartProcedure 'sa{sv}' key-registration 2 technician s "T. Tester" repair_order s "RO-42")
proc=$(sed -n 's/^o "\(.*\)"$/\1/p' <<<"$out")
if [ -n "$proc" ]; then pass "StartProcedure: $proc"; else fail "StartProcedure: $out"; fi
ctl "battery 12.9" >/dev/null
expect_prop 8 BatteryVoltage '^d 12\.9$'
expect_prop 2 BatteryState '^s "low"$'
if [ -n "$proc" ]; then
        expect_match "BatteryMinimum follows the readings" '^d 12\.9$' "$(pprop BatteryMinimum)"
        ctl "battery 13.4" >/dev/null
        expect_prop 8 BatteryVoltage '^d 13\.4$'
        expect_match "BatteryMinimum keeps the minimum" '^d 12\.9$' "$(pprop BatteryMinimum)"
        pcall Cancel >/dev/null
fi

if [ "$failures" -ne 0 ]; then
        echo "$failures failure(s)"
        exit 1
fi
echo "all passed"
