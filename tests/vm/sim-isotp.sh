#!/bin/bash
# Runs inside the VM (tests/vm/run-vm.sh) on a real vcan0: immo-ecusim on our ISO-TP over
# CAN_RAW, a tester on the KERNEL's ISO-TP socket (python3, extended address 0x57, padding
# 0x55) following only vehicle-protocol.md: session, VIN, both security levels with their
# passcodes (HMAC computed here from the spec), registration with touches, erasure, the
# whole reset, a lockout. Proves the wire format and the protocol are standard.
# Usage: sim-isotp.sh PATH/TO/immo-ecusim PATH/TO/test-vectors.json [socketcan|socketcan-isotp]
set -euo pipefail

ecusim=${1:?usage: sim-isotp.sh PATH/TO/immo-ecusim PATH/TO/test-vectors.json}
vectors=${2:?usage: sim-isotp.sh PATH/TO/immo-ecusim PATH/TO/test-vectors.json}
kind=${3:-socketcan}
work=$(mktemp -d /tmp/sim-isotp.XXXXXX)
sim=
trap '[ -n "$sim" ] && kill $sim 2>/dev/null; rm -rf "$work"' EXIT

vin=58ADZ1B16MU000123
python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['master_key_hex'])" "$vectors" > "$work/master.key"
chmod 600 "$work/master.key"

"$ecusim" --link "$kind:vcan0" --vin $vin --model "ES 250" --master-key-file "$work/master.key" \
        --keys 11111111 --time-scale 100 --control "$work/ctl.sock" 2> "$work/ecusim.log" &
sim=$!
for _ in $(seq 50); do [ -S "$work/ctl.sock" ] && break; sleep 0.1; done
[ -S "$work/ctl.sock" ] || { cat "$work/ecusim.log"; echo "FAIL: immo-ecusim did not start"; exit 1; }

status=0
python3 - "$work/master.key" "$vin" "$work/ctl.sock" <<'PY' || status=$?
import hashlib, hmac, socket, struct, sys

master = bytes.fromhex(open(sys.argv[1]).read().strip())
vin = sys.argv[2]
ctl_path = sys.argv[3]

# linux/can/isotp.h: SOL_CAN_ISOTP = SOL_CAN_BASE + CAN_ISOTP = 100 + 6
SOL_CAN_ISOTP = 106
CAN_ISOTP_OPTS = 1
CAN_ISOTP_EXTEND_ADDR = 0x002
CAN_ISOTP_TX_PADDING = 0x004
CAN_ISOTP_RX_EXT_ADDR = 0x200

s = socket.socket(socket.AF_CAN, socket.SOCK_DGRAM, socket.CAN_ISOTP)
# struct can_isotp_options: u32 flags, u32 frame_txtime, u8 ext_address, u8 txpad_content,
# u8 rxpad_content, u8 rx_ext_address; set before bind()
flags = CAN_ISOTP_EXTEND_ADDR | CAN_ISOTP_TX_PADDING | CAN_ISOTP_RX_EXT_ADDR
s.setsockopt(SOL_CAN_ISOTP, CAN_ISOTP_OPTS, struct.pack("=IIBBBB", flags, 0, 0x57, 0x55, 0, 0x57))
s.bind(("vcan0", 0x758, 0x750))  # (interface, rx id, tx id)
s.settimeout(2.0)

def uds(req, expect_nrc=None):
    s.send(bytes(req))
    while True:
        a = s.recv(4095)
        if len(a) == 3 and a[0] == 0x7F and a[2] == 0x78:
            continue  # responsePending
        break
    if expect_nrc is not None:
        assert a == bytes([0x7F, req[0], expect_nrc]), f"{bytes(req).hex()}: expected NRC {expect_nrc:#x}, got {a.hex()}"
        return a
    assert a[0] == req[0] + 0x40, f"{bytes(req).hex()}: negative or wrong answer {a.hex()}"
    return a

def ctl(cmd):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(ctl_path)
    c.sendall(cmd.encode() + b"\n")
    line = c.makefile().readline()
    c.close()
    assert '"ok": true' in line or '"ok":true' in line, f"control {cmd}: {line}"

kvin = hmac.new(master, b"immod/vin-key/v1:" + vin.encode(), hashlib.sha256).digest()

a = uds([0x10, 0x03]); assert a == bytes([0x50, 0x03, 0x00, 0x32, 0x01, 0xF4]), a.hex()
a = uds([0x22, 0xF1, 0x90]); assert a[3:] == vin.encode(), a.hex()     # multi-frame answer
uds([0x27, 0x02] + list(b"000000"), expect_nrc=0x24)

a = uds([0x27, 0x01]); assert len(a) == 50
seed = a[2:]
h = hmac.new(kvin, b"immod/immobilizer-reset/v1:" + seed, hashlib.sha256).digest()
off = h[31] & 0x0F
code = "%06d" % ((struct.unpack(">I", h[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)
uds([0x27, 0x02] + list(code.encode()))

a = uds([0x27, 0x03]); assert len(a) == 2 + 17 + 6 + 6 + 4
d1 = a[19:25].hex().upper()[1:]; d2 = a[25:31].hex().upper(); d3 = a[31:35].hex().upper()
msg = b"immod/smart-code/v1:" + f"{vin}:{d1}:{d2}:{d3}".encode()
sc = hmac.new(kvin, msg, hashlib.sha256).digest()[:6]
uds([0x27, 0x04] + list(sc))

# a routine: key registration mode 1 with touches at the car
uds([0x31, 0x01, 0xA1, 0x02, 0x01])
ctl("touch 11111111")
ctl("touch 22222222")
a = uds([0x31, 0x03, 0xA1, 0x02])
assert a[4] == 3 and a[5] == 2 and a[7] == 2, a.hex()
assert a[8:14] == bytes([1, 1, 0x11, 0x11, 0x11, 0x11]) and a[14:20] == bytes([2, 2, 0x22, 0x22, 0x22, 0x22]), a.hex()
uds([0x31, 0x01, 0xA1, 0x09], expect_nrc=0x31)
uds([0x3E, 0x00])
# a long request through the kernel's sender (first frame + consecutive frames)
uds([0x22, 0xF1, 0x90] + [0] * 30, expect_nrc=0x13)

import time
def key_status():
    a = uds([0x22, 0xA0, 0x01]); return a[3], a[4], a[5]
assert key_status() == (2, 5, 7), key_status()

# undesignated key erasure: keep 1 of 2, touch it, delete the other
uds([0x31, 0x01, 0xA1, 0x03, 0x01])
ctl("touch 11111111")
uds([0x31, 0x02, 0xA1, 0x03, 0x02], expect_nrc=0x22)   # delete count must be registered - touched
uds([0x31, 0x02, 0xA1, 0x03, 0x01])
assert key_status() == (1, 6, 7), key_status()

# the smart code reset (960 s / 100): door open, both levels unlocked in this session
uds([0x31, 0x01, 0xA1, 0x01], expect_nrc=0x22)         # driver's door closed
ctl("door open")
uds([0x31, 0x01, 0xA1, 0x01])
uds([0x31, 0x02, 0xA1, 0x01], expect_nrc=0x22)         # not while running
deadline = time.time() + 60
while True:
    a = uds([0x31, 0x03, 0xA1, 0x01])
    if a[4] != 1:
        break
    assert time.time() < deadline, "reset did not end"
    time.sleep(0.5)                                     # each poll also keeps the session
assert a[4] == 2 and a[5] == 100 and a[8] == 0, a.hex()
assert key_status() == (0, 7, 7), key_status()
a = uds([0x22, 0xA0, 0x02]); assert a[3] == 2, a.hex()  # reset done: no keys
uds([0x27, 0x04] + [0] * 6, expect_nrc=0x24)            # unlocks ended with the reset

# lockout: three wrong immobilizer passcodes
for expected in (0x35, 0x35, 0x36):
    uds([0x27, 0x01])
    uds([0x27, 0x02] + list(b"000000"), expect_nrc=expected)
uds([0x27, 0x01], expect_nrc=0x37)
a = uds([0x22, 0xA0, 0x04]); assert a[3] == 0 and struct.unpack(">H", a[5:7])[0] > 0, a.hex()
print("kernel ISO-TP tester: all exchanges conform")
PY

kill $sim; wait $sim 2>/dev/null || true
sim=
if [ $status -ne 0 ]; then
        echo "--- immo-ecusim log"; cat "$work/ecusim.log"
        echo "FAIL"
        exit 1
fi
echo "PASS: immo-ecusim on $kind:vcan0 against the kernel's ISO-TP"
