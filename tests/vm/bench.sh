#!/bin/bash
# The ISO-TP benchmark on a real vcan0: immo-bench runs the four pairings of our ISO-TP
# (CAN_RAW) and the kernel's (CAN_ISOTP) as sender and receiver and prints the figures
# and the ratios ours / kernel. On demand only; nothing is checked against a time.
#
# Usage: tests/vm/bench.sh PATH/TO/immo-bench [IMMO-BENCH OPTIONS...]
#   e.g. tests/vm/bench.sh build/tools/immo-bench --count 50 --sizes 8,4095
# On the host it boots the VM through run-vm.sh and runs itself in it; inside the VM
# (IMMOD_IN_VM=1) it runs immo-bench on vcan0. Also: meson test -C build --benchmark
set -euo pipefail

bench=${1:?usage: bench.sh PATH/TO/immo-bench [OPTIONS...]}
shift
[ -x "$bench" ] || { echo "bench.sh: $bench is not an executable" >&2; exit 2; }
bench=$(cd "$(dirname "$bench")" && pwd)/$(basename "$bench")

if [ "${IMMOD_IN_VM:-}" != 1 ]; then
        here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
        exec "$here/run-vm.sh" --timeout "${IMMOD_VM_TIMEOUT:-1700}" -- "$here/bench.sh" "$bench" "$@"
fi

ip link show vcan0 2>/dev/null | grep -q '[<,]UP[,>]' || { echo "bench.sh: vcan0 is missing or down" >&2; exit 1; }
# The figures mean little without the machine they came from.
echo "bench.sh: kernel $(uname -r), $(nproc) CPU(s): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "bench.sh: under qemu TCG every figure is slower than on hardware; read the ratios"
# A CAN_RAW reader holds at most this much of a burst before the kernel drops frames.
echo "bench.sh: net.core.rmem_default $(cat /proc/sys/net/core/rmem_default) bytes"
exec "$bench" --interface vcan0 "$@"
