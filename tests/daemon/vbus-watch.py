#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A sniffer on the local virtual bus (vehicle-protocol.md §8).

immo-ecusim hosts the bus: an AF_UNIX SOCK_SEQPACKET socket on which every packet is one
16-byte Linux struct can_frame, forwarded to every other peer. This peer only listens. It
follows the tester's requests (CAN id 0x750, extended addressing 0x57 by default, then the
ISO-TP PCI), reassembles single frames and first frames (and the consecutive frames after
them, as far as a prefix needs) and looks at the start of each request:

  --count PREFIX      count the requests that start with PREFIX (hex bytes, e.g.
                      "31 01 A1 01" or 3101A101); repeatable
  --kill-on PREFIX --pid PID
                      SIGKILL PID the moment a request starting with PREFIX is seen (the ECU
                      gets the same frame: "killed as the request leaves"); once, or on the
                      --kill-nth N-th match
  --out FILE          where the counts go (default: standard output)
  --dump-when FILE    when FILE appears: write the counts, remove FILE, go on
  --ready FILE        created once connected to the bus
  --log FILE          one line per request start seen (time, id, bytes), for debugging

The counts are written as one JSON object {"PREFIX": n, ..., "killed": bool, "requests": n}
on SIGTERM / SIGINT (then it exits 0), on SIGUSR1, and when the --dump-when file appears.
When the bus goes away (the simulator restarts) it connects again. Python 3 standard
library only.
"""

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time

FRAME = struct.Struct("<IB3x8s")  # can_id, len, __pad/__res0/len8_dlc, data[8]
CAN_EFF_FLAG = 0x80000000
CAN_EFF_MASK = 0x1FFFFFFF
CAN_SFF_MASK = 0x7FF


def parse_prefix(text):
    h = "".join(text.split()).replace(",", "")
    if not h or len(h) % 2:
        raise argparse.ArgumentTypeError("expected hex bytes such as '31 01 A1 01', got %r" % text)
    try:
        return bytes.fromhex(h)
    except ValueError:
        raise argparse.ArgumentTypeError("expected hex bytes such as '31 01 A1 01', got %r" % text)


def label(prefix):
    return " ".join("%02X" % b for b in prefix)


class Watch:
    def __init__(self, args):
        self.args = args
        self.counts = {label(p): 0 for p in args.count}
        self.count_prefixes = list(args.count)
        self.kill_prefix = args.kill_on
        self.kill_matches = 0
        self.killed = False
        self.requests = 0
        self.msg = None  # (total length, bytes so far, prefixes decided)
        self.log = open(args.log, "a", buffering=1) if args.log else None

    # --- the requests
    def on_frame(self, can_id, data):
        a = self.args
        if can_id != a.tx_id:
            return
        if a.ext is not None:
            if len(data) < 1 or data[0] != a.ext:
                return
            data = data[1:]
        if not data:
            return
        kind = data[0] >> 4
        if kind == 0:  # single frame
            n = data[0] & 0x0F
            if n == 0 and len(data) >= 2:  # CAN FD escape: length in the next byte
                n, payload = data[1], data[2:]
            else:
                payload = data[1:]
            self.start(n, payload[:n])
        elif kind == 1 and len(data) >= 2:  # first frame
            n = (data[0] & 0x0F) << 8 | data[1]
            payload = data[2:]
            if n == 0 and len(data) >= 6:  # escape: 32-bit length
                n = struct.unpack(">I", data[2:6])[0]
                payload = data[6:]
            self.start(n, payload)
        elif kind == 2 and self.msg is not None:  # consecutive frame
            total, buf, decided = self.msg
            buf += data[1:]
            self.msg = (total, buf[:total], decided)
            self.decide()

    def start(self, total, payload):
        self.requests += 1
        self.msg = (total, bytes(payload[:total]), set())
        if self.log:
            self.log.write("%.3f 0x%03X %s%s\n" % (time.monotonic(), self.args.tx_id, label(payload[:total]),
                                                   "" if len(payload) >= total else " ... (%d bytes)" % total))
        self.decide()

    def decide(self):
        total, buf, decided = self.msg
        complete = len(buf) >= total
        prefixes = self.count_prefixes + ([self.kill_prefix] if self.kill_prefix else [])
        for i, p in enumerate(prefixes):
            if i in decided or (len(buf) < len(p) and not complete):
                continue
            decided.add(i)
            if not buf.startswith(p):
                continue
            if i < len(self.count_prefixes):
                self.counts[label(p)] += 1
            else:
                self.kill_matches += 1
                if not self.killed and self.kill_matches == self.args.kill_nth and self.args.pid:
                    try:
                        os.kill(self.args.pid, signal.SIGKILL)
                        self.killed = True
                    except ProcessLookupError:
                        pass
                    if self.log:
                        self.log.write("%.3f SIGKILL %d on %s (%s)\n" % (time.monotonic(), self.args.pid,
                                                                          label(p), "sent" if self.killed
                                                                          else "no such process"))
        if complete:
            self.msg = None

    # --- the counts
    def result(self):
        r = dict(self.counts)
        r["killed"] = self.killed
        r["requests"] = self.requests
        return json.dumps(r, sort_keys=True)

    def dump(self):
        text = self.result() + "\n"
        if self.args.out:
            tmp = self.args.out + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, self.args.out)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()


def connect(path, deadline, stop=()):
    while not stop:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
    raise OSError("stopped")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bus", help="the vbus socket (PATH or vbus:PATH)")
    ap.add_argument("--count", type=parse_prefix, action="append", default=[], metavar="PREFIX")
    ap.add_argument("--kill-on", type=parse_prefix, metavar="PREFIX")
    ap.add_argument("--kill-nth", type=int, default=1, metavar="N")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--out")
    ap.add_argument("--dump-when", metavar="FILE")
    ap.add_argument("--ready", metavar="FILE")
    ap.add_argument("--log", metavar="FILE")
    ap.add_argument("--tx-id", type=lambda s: int(s, 0), default=0x750, help="the tester's CAN id (0x750)")
    ap.add_argument("--ext", type=lambda s: int(s, 0), default=0x57,
                    help="extended address byte (0x57); -1 for normal addressing")
    args = ap.parse_args()
    if args.ext is not None and args.ext < 0:
        args.ext = None
    if args.kill_on and not args.pid:
        ap.error("--kill-on needs --pid")
    path = args.bus[5:] if args.bus.startswith("vbus:") else args.bus

    w = Watch(args)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGUSR1, lambda *_: w.dump())

    s = connect(path, time.monotonic() + 10)
    if args.ready:
        open(args.ready, "w").close()
    while not stop:
        if args.dump_when and os.path.exists(args.dump_when):
            w.dump()
            try:
                os.unlink(args.dump_when)
            except FileNotFoundError:
                pass
        try:
            r, _, _ = select.select([s], [], [], 0.05)
        except InterruptedError:
            continue
        if not r:
            continue
        try:
            pkt = s.recv(64)
        except InterruptedError:
            continue
        except OSError:
            pkt = b""
        if not pkt:
            # the hub went away (the simulator restarts): join the next one
            s.close()
            try:
                s = connect(path, time.monotonic() + 3600, stop)
            except OSError:
                break
            continue
        if len(pkt) != FRAME.size:
            continue
        can_id, n, data = FRAME.unpack(pkt)
        can_id &= CAN_EFF_MASK if can_id & CAN_EFF_FLAG else CAN_SFF_MASK
        w.on_frame(can_id, data[:min(n, 8)])
    w.dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
