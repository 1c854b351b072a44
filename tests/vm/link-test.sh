#!/bin/bash
# Runs inside the VM (tests/vm/run-vm.sh) on a real vcan0: our ISO-TP on CAN_RAW against
# the kernel's CAN_ISOTP, in both roles, and our UDS client over the kernel's ISO-TP.
# A candump capture of the whole exchange shows the frames crossing vcan0.
# Usage: link-test.sh PATH/TO/immo-linktest
set -euo pipefail

linktest=${1:?usage: link-test.sh PATH/TO/immo-linktest}
log=$(mktemp -d /tmp/link-test.XXXXXX)
trap 'kill $dump 2>/dev/null || true' EXIT

candump -L vcan0 > "$log/candump.log" &
dump=$!
sleep 0.2

run() {
        echo "=== immo-linktest $*"
        local start=$(date +%s%N)
        "$linktest" "$@"
        echo "=== passed in $(( ($(date +%s%N) - start) / 1000000 )) ms"
}

# 1. tester on the kernel's ISO-TP, ECU on ours over CAN_RAW (it also sends FC.WAIT)
run --tester-link socketcan-isotp:vcan0 --ecu-link socketcan:vcan0
# 2. the other way round: our ISO-TP sends and receives against the kernel's
run --tester-link socketcan:vcan0 --ecu-link socketcan-isotp:vcan0
# 3. normal addressing, both directions once more
run --tester-link socketcan:vcan0 --ecu-link socketcan-isotp:vcan0 --normal-addressing --pending 3
run --tester-link socketcan-isotp:vcan0 --ecu-link socketcan:vcan0 --normal-addressing --pending 3

sleep 0.2
kill $dump
wait $dump 2>/dev/null || true

# candump -L lines look like: (1700000000.123456) vcan0 750#5710xxxxxxxxxxxx
total=$(wc -l < "$log/candump.log")
tester_ext=$(grep -c ' vcan0 750#57' "$log/candump.log" || true)
ecu_ext=$(grep -c ' vcan0 758#57' "$log/candump.log" || true)
other=$(grep -v -c -E ' vcan0 (750|758)#' "$log/candump.log" || true)
echo "candump on vcan0: $total frames; 0x750 with address byte 0x57: $tester_ext; 0x758 with 0x57: $ecu_ext"
echo "first frames of the capture:"
head -n 6 "$log/candump.log"

fail=0
[ "$tester_ext" -gt 1000 ] || { echo "FAIL: too few tester frames with 0x57 on vcan0"; fail=1; }
[ "$ecu_ext" -gt 1000 ] || { echo "FAIL: too few ECU frames with 0x57 on vcan0"; fail=1; }
[ "$other" -eq 0 ] || { echo "FAIL: $other frames with unexpected ids"; fail=1; }
# every frame is padded to 8 bytes with 0x55 (16 hex digits of data)
unpadded=$(grep -c -v -E '#[0-9A-F]{16}$' "$log/candump.log" || true)
[ "$unpadded" -eq 0 ] || { echo "FAIL: $unpadded frames not padded to 8 bytes"; fail=1; }
rm -rf "$log"
exit $fail
