#!/bin/bash
# VM smoke test (run by run-vm.sh inside the VM): real SocketCAN works.
# - candump on vcan0 records a frame sent with cansend;
# - a 100-byte ISO-TP message goes through the kernel's CAN_ISOTP with
#   extended addressing 0x57 (can-utils isotpsend -> isotprecv, 758 -> 750);
# - the candump log shows the data frames on 758 and the flow control on 750,
#   each starting with the address byte 57.
set -u

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
say() { echo "smoke: $*"; }

[ "${IMMOD_IN_VM:-}" = 1 ] || say "warning: IMMOD_IN_VM is not set; not run by run-vm.sh?"
for t in ip candump cansend isotpsend isotprecv timeout; do
        command -v "$t" >/dev/null || fail "$t not found (apt-get install can-utils)"
done
ip link show vcan0 2>/dev/null | grep -q '[<,]UP[,>]' || fail "vcan0 is missing or down"

dir=$(mktemp -d) || fail "mktemp failed"
candump_pid=
recv_pid=
cleanup() {
        [ -n "$candump_pid" ] && kill "$candump_pid" 2>/dev/null
        [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null
        rm -rf "$dir"
}
trap cleanup EXIT

# Log format: "(1700000000.000000) vcan0 750#5730000000000000"
candump -L vcan0 > "$dir/candump.log" 2> "$dir/candump.err" &
candump_pid=$!

# cansend; repeat until candump has seen it (it needs a moment to bind).
seen=0
for _ in $(seq 1 100); do
        cansend vcan0 123#DEADBEEF || fail "cansend failed"
        if grep -q ' vcan0 123#DEADBEEF$' "$dir/candump.log"; then seen=1; break; fi
        kill -0 "$candump_pid" 2>/dev/null || fail "candump died: $(cat "$dir/candump.err")"
        sleep 0.1
done
[ "$seen" = 1 ] || fail "candump never showed the frame sent with cansend"
say "cansend -> candump OK"

# ISO-TP: the receiver sends its flow control on 750 and listens on 758.
payload=$(for i in $(seq 0 99); do printf '%02X ' "$i"; done)
timeout 60 isotprecv -s 750 -d 758 -x 57 vcan0 > "$dir/rx.txt" 2> "$dir/rx.err" &
recv_pid=$!
# Wait until the receiver's socket is bound (its filter for 758 shows up).
for _ in $(seq 1 100); do
        grep -qiE 'vcan0 +0*758 ' /proc/net/can/rcvlist_sff 2>/dev/null && break
        kill -0 "$recv_pid" 2>/dev/null || fail "isotprecv died: $(cat "$dir/rx.err")"
        sleep 0.1
done
echo "$payload" | timeout 60 isotpsend -s 758 -d 750 -x 57 -b vcan0 ||
        fail "isotpsend failed (exit $?)"
wait "$recv_pid"
rrc=$?
recv_pid=
[ "$rrc" = 0 ] || fail "isotprecv exited with $rrc: $(cat "$dir/rx.err")"
got=$(tr 'a-f' 'A-F' < "$dir/rx.txt" | tr -s ' \n' ' ' | sed 's/^ //; s/ $//')
want=${payload% }
[ "$got" = "$want" ] || fail "ISO-TP payload differs: sent [$want] got [$got]"
say "ISO-TP 100 bytes, extended addressing 0x57: OK"

# Let candump catch up, then check what went over the bus.
for _ in $(seq 1 50); do
        [ "$(grep -cE ' vcan0 758#57' "$dir/candump.log")" -ge 17 ] && break
        sleep 0.1
done
kill "$candump_pid" 2>/dev/null
wait "$candump_pid" 2>/dev/null
candump_pid=
echo "--- candump -L vcan0"
cat "$dir/candump.log"
echo "---"
fc=$(grep -cE ' vcan0 750#573' "$dir/candump.log")
data=$(grep -cE ' vcan0 758#57' "$dir/candump.log")
ff=$(grep -cE ' vcan0 758#571064' "$dir/candump.log")
[ "$fc" -ge 1 ] || fail "no flow control frame with id 750 and first byte 57 in the candump log"
[ "$ff" = 1 ] || fail "expected one first frame 758#571064... (length 100), found $ff"
# 100 bytes with an address byte: a first frame with 5 bytes + 16 consecutive frames with 6.
[ "$data" = 17 ] || fail "expected 17 data frames with id 758 and first byte 57, found $data"
say "candump: $data data frames on 758, $fc flow control frame(s) on 750, all with address 57: OK"
say "PASS"
