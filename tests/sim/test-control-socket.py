#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Abuses immo-ecusim's control socket (--control) the way a broken or hostile local client
could: long lines, partial lines, NUL and other binary junk, a flood of commands without
reading the answers, more connections than allowed, connections closed mid-line. After
each, the simulator must still be running and a valid command on a new connection must
still work; where an answer is due, it must be a JSON error {"ok": false, "error": ...}
that says what was expected.

Environment: IMMO_ECUSIM (the binary), IMMOD_TEST_VECTORS (for the master key).
"""
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

ECUSIM = os.environ.get("IMMO_ECUSIM")
VECTORS = os.environ.get("IMMOD_TEST_VECTORS")
LINE_MAX = 255   # CONTROL_LINE_MAX - 1
CLIENTS_MAX = 8  # CONTROL_MAX_CLIENTS
failures = 0


def check(ok, what):
    global failures
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures += 1


def connect(path):
    """A connection; while the listen backlog (8) is full, connect() says EAGAIN: wait up to 10 s."""
    for _ in range(1000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
            return s
        except BlockingIOError:
            s.close()
            time.sleep(0.01)
    raise BlockingIOError("the control socket's backlog stayed full for 10 s")


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > 1 << 20:
            break
    return buf


def answer(s, line):
    s.sendall(line)
    raw = read_line(s)
    try:
        return json.loads(raw.split(b"\n")[0])
    except ValueError:
        return {"unparsable": raw[:200].decode("latin-1")}


def is_error(j, words):
    return j.get("ok") is False and words in j.get("error", "")


def still_up(proc, path, what):
    """The simulator runs and answers a valid command on a fresh connection."""
    alive = proc.poll() is None
    j = {}
    if alive:
        try:
            with connect(path) as s:
                j = answer(s, b"state\n")
        except OSError as e:
            j = {"error": str(e)}
    check(alive and j.get("ok") is True and "keys" in json.dumps(j),
          f"after {what}: immo-ecusim still up and answers 'state' ({'running' if alive else 'exited'}, {str(j)[:80]})")


def main():
    if not ECUSIM or not VECTORS:
        print("SKIP: IMMO_ECUSIM and IMMOD_TEST_VECTORS must be set")
        return 77
    rng = random.Random(16)  # a fixed seed: the same junk on every run
    vectors = json.load(open(VECTORS))
    with tempfile.TemporaryDirectory(prefix="test-control-socket.") as tmp:
        key = os.path.join(tmp, "master.key")
        with open(key, "w") as f:
            f.write(vectors["master_key_hex"] + "\n")
        ctl = os.path.join(tmp, "ctl.sock")
        log = open(os.path.join(tmp, "ecusim.log"), "w")
        proc = subprocess.Popen([ECUSIM, "--link", "vbus:" + os.path.join(tmp, "vbus.sock"),
                                 "--vin", "58ADZ1B16MU000123", "--model", "ES 350",
                                 "--master-key-file", key, "--keys", "11111111", "--control", ctl],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                if os.path.exists(ctl):
                    break
                time.sleep(0.1)
            still_up(proc, ctl, "start")

            # a line one longer than allowed, and a very long one: an error, then the next line works
            with connect(ctl) as s:
                j = answer(s, b"x" * (LINE_MAX + 1) + b"\n")
                check(is_error(j, "line too long") and "at most" in j["error"], f"a {LINE_MAX + 1}-character line: {j}")
                j = answer(s, b"touch " + b"1" * 100000 + b"\n")
                check(is_error(j, "line too long"), "a 100 kB line: a 'line too long' error")
                j = answer(s, b"state\n")
                check(j.get("ok") is True, "the same connection answers 'state' after them")
            still_up(proc, ctl, "long lines")

            # a line of exactly the maximum is a command (unknown here), not a 'too long'
            with connect(ctl) as s:
                j = answer(s, b"y" * LINE_MAX + b"\n")
                check(is_error(j, "unknown command") and "expected" in j["error"], f"a {LINE_MAX}-character line: {str(j)[:90]}")

            # partial lines: a command in pieces, and one never finished
            with connect(ctl) as s:
                for piece in (b"sp", b"ee", b"d 1", b"0\n"):
                    s.sendall(piece)
                    time.sleep(0.05)
                j = json.loads(read_line(s))
                check(j.get("ok") is True, f"'speed 10' sent in four pieces: {j}")
                s.sendall(b"speed 0\nignition o")  # the rest never comes
                check(json.loads(read_line(s)).get("ok") is True, "a line before an unfinished one is answered")
            still_up(proc, ctl, "a connection closed in the middle of a line")

            # binary junk: NUL, control bytes, invalid UTF-8; every answer JSON, an error
            with connect(ctl) as s:
                j = answer(s, b"touch \x00 1111\n")
                check(is_error(j, "NUL byte"), f"a NUL in a line: an error saying so ({j})")
                bad = 0
                for i in range(200):
                    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))).replace(b"\n", b"")
                    j = answer(s, junk + b"\n")
                    if j.get("ok") is not False or not j.get("error"):
                        bad += 1
                        print(f"  junk {junk[:40]!r} -> {j}")
                check(bad == 0, "200 lines of random bytes: each a JSON error")
            still_up(proc, ctl, "binary junk")

            # words that look right but are not
            with connect(ctl) as s:
                for line, words in ((b"touch 1234567\n", "exactly 8 hex digits"), (b"speed 401\n", "0..400"),
                                    (b"speed -1\n", "0..400"), (b"battery 1e9\n", "0..30"),
                                    (b"fault pending 99999999999999999999\n", "1..1000"),
                                    (b"\n", "empty line"), (b"state now\n", "no argument"),
                                    (b"door open closed ajar\n", "expected")):
                    j = answer(s, line)
                    check(is_error(j, words), f"{line!r}: an error saying '{words}' ({str(j)[:100]})")

            # a flood of commands, the answers never read: the client is dropped, the ECU stays
            s = connect(ctl)
            s.setblocking(False)
            sent = 0
            try:
                for _ in range(20000):
                    sent += s.send(b"state\n" * 64)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                pass
            print(f"  flood: {sent} bytes of 'state' sent without reading")
            time.sleep(0.5)
            s.close()
            still_up(proc, ctl, "a flood of unread answers")

            # more connections than allowed: the extra ones are told so; closing frees the slots
            conns = [connect(ctl) for _ in range(CLIENTS_MAX)]
            for c in conns:
                c.sendall(b"courtesy\n")
                read_line(c)
            extra = connect(ctl)
            j = json.loads(read_line(extra) or b"{}")
            check(is_error(j, "too many control connections"), f"connection {CLIENTS_MAX + 1}: {j}")
            extra.close()
            for c in conns:
                c.close()
            time.sleep(0.2)
            still_up(proc, ctl, f"{CLIENTS_MAX} connections held and one refused")

            # many connections opened and dropped at once, some mid-line
            for i in range(200):
                c = connect(ctl)
                if i % 2:
                    c.sendall(b"touch 1111")
                c.close()
            still_up(proc, ctl, "200 connections opened and closed")
        finally:
            proc.terminate()
            try:
                rc = proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            log.close()
            check(rc == 0, f"immo-ecusim exits 0 on SIGTERM (exit status {rc})")
            if failures:
                print(open(os.path.join(tmp, "ecusim.log")).read()[-3000:])
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
