#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs a command on a pseudo-terminal and plays a script against it, as a person at the
# terminal would: wait for text on the screen, type an answer, run a shell check. The
# passcodes are computed from the seed read off the screen (vehicle-protocol.md §6), with
# the master key of tests/test-vectors.json.
#
# usage: pty-driver.py --script FILE --vectors TEST_VECTORS_JSON --vin VIN
#                      [--transcript FILE] -- COMMAND [ARG...]
#
# Script: one command a line, words split as by a shell (shlex); blank lines and # ignored.
#   expect SECONDS DESCRIPTION REGEX   wait for REGEX after the cursor; the cursor moves past it
#   send TEXT                          type TEXT and Enter
#   check DESCRIPTION SHELL-COMMAND    bash -c SHELL-COMMAND must exit 0
#   passcode immobilizer|smart-code STYLE
#                                      type the passcode for the last seed seen before the
#                                      cursor; STYLE: spaced ("123 456"), lower-spaced
#                                      ("1a2b 3c4d 5e6f"), wrong (well-formed, wrong digit)
#   exit SECONDS STATUS                the command must end with STATUS
# Prints "ok: ..." or "FAIL: ..." for every check; stops at the first failure, with the end
# of the screen. Exit status: 0 when every check passed.

import argparse
import hashlib
import hmac
import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
IMMO_SEED = re.compile(r"Immobilizer seed \(96 digits\), for the passcode service:\r*\n"
                       r"((?:[ \t]*(?:[0-9A-F]{4}[ \t]*){8}\r*\n){3})")
SMART_SEED = re.compile(r"VIN +([0-9A-Z]{17}) +([0-9A-Z])\r*\n"
                        r" +Data1 +([0-9A-Fa-f]{11}) +([0-9A-F])\r*\n"
                        r" +Data2 +([0-9A-Fa-f]{12}) +([0-9A-F])\r*\n"
                        r" +Data3 +([0-9A-Fa-f]{8}) +([0-9A-F])\r*\n")
HEX = "0123456789ABCDEF"
BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Failed(Exception):
    pass


def ok(what):
    print("ok: " + what, flush=True)


# --- vehicle-protocol.md §6

def vin_key(master, vin):
    return hmac.new(master, b"immod/vin-key/v1:" + vin.encode(), hashlib.sha256).digest()


def immobilizer_passcode(master, vin, seed_hex):
    h = hmac.new(vin_key(master, vin), b"immod/immobilizer-reset/v1:" + bytes.fromhex(seed_hex),
                 hashlib.sha256).digest()
    o = h[31] & 0x0F
    v = ((h[o] & 0x7F) << 24 | h[o + 1] << 16 | h[o + 2] << 8 | h[o + 3]) % 1000000
    return "%06d" % v


def smart_code_passcode(master, vin, data1, data2, data3):
    msg = "immod/smart-code/v1:%s:%s:%s:%s" % (vin, data1.upper(), data2.upper(), data3.upper())
    return hmac.new(vin_key(master, vin), msg.encode(), hashlib.sha256).digest()[:6].hex().upper()


def check_character(field, alphabet):
    """Luhn mod N over the field, N the size of the alphabet."""
    n = len(alphabet)
    factor, total = 2, 0
    for ch in reversed(field.upper()):
        addend = factor * alphabet.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // n + addend % n
    return alphabet[(n - total % n) % n]


def self_test(vectors, master):
    """The formulas above against the known answers, so that a FAIL later is immod's."""
    for v in vectors["immobilizer"]:
        if immobilizer_passcode(master, v["vin"], v["seed_hex"]) != v["passcode"]:
            raise Failed("driver self-test: immobilizer passcode for %s" % v["seed_hex"][:12])
    for v in vectors["smart_code"]:
        if smart_code_passcode(master, v["vin"], v["data1"], v["data2"], v["data3"]) != v["passcode"]:
            raise Failed("driver self-test: smart-code passcode for %s" % v["data2"])
    for v in vectors["check_characters"]:
        if check_character(v["field"], HEX if v["alphabet"] == "hex" else BASE36) != v["cd"]:
            raise Failed("driver self-test: check character of %s" % v["field"])
    ok("pty driver: the passcode formulas give the known answers of test-vectors.json")


# --- the terminal

class Terminal:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        self.raw = b""
        self.screen = ""
        self.cursor = 0
        self.eof = False
        self.status = None

    def pump(self, timeout):
        if self.eof:
            time.sleep(min(timeout, 0.1))
            return
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the other side is closed
            data = b""
        if not data:
            self.eof = True
            return
        self.raw += data
        self.screen = ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def expect(self, seconds, description, pattern):
        regex = re.compile(pattern)
        deadline = time.monotonic() + seconds
        while True:
            m = regex.search(self.screen, self.cursor)
            if m:
                self.cursor = m.end()
                ok(description)
                return m
            if time.monotonic() >= deadline or (self.eof and self.reap(0) is not None):
                raise Failed("%s: /%s/ not on the screen within %d s%s" % (
                    description, pattern, seconds,
                    "" if self.status is None else " (the command ended with %s)" % self.status))
            self.pump(max(0.0, min(0.2, deadline - time.monotonic())))

    def send(self, text):
        os.write(self.fd, text.encode() + b"\r")

    def reap(self, seconds):
        deadline = time.monotonic() + seconds
        while self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                break
            if time.monotonic() >= deadline:
                break
            self.pump(0.1)
        return self.status

    def kill(self):
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            self.reap(5)


def format_passcode(code, style):
    if style == "spaced":  # "123 456", "ABC DEF 012 345"
        return " ".join(code[i:i + 3] for i in range(0, len(code), 3))
    if style == "lower-spaced":
        return " ".join(code[i:i + 4] for i in range(0, len(code), 4)).lower()
    if style == "wrong":  # well-formed, and certainly not this seed's passcode
        return code[:-1] + ("1" if code[-1] == "0" else "0")
    raise Failed("unknown passcode style %s" % style)


def passcode_from_screen(term, master, vin, kind, style):
    seen = term.screen[:term.cursor]
    if kind == "immobilizer":
        found = list(IMMO_SEED.finditer(seen))
        if not found:
            raise Failed("no immobilizer seed (24 groups of 4 uppercase hex digits) on the screen")
        seed = "".join(found[-1].group(1).split())
        code = immobilizer_passcode(master, vin, seed)
        ok("read the immobilizer seed %s... off the screen" % seed[:8])
    elif kind == "smart-code":
        found = list(SMART_SEED.finditer(seen))
        if not found:
            raise Failed("no VIN/Data1/Data2/Data3 table on the screen")
        svin, cvin, d1, c1, d2, c2, d3, c3 = found[-1].groups()
        if svin != vin:
            raise Failed("the smart code table shows VIN %s, not %s" % (svin, vin))
        for field, cd, alphabet, name in ((svin, cvin, BASE36, "VIN"), (d1, c1, HEX, "Data1"),
                                          (d2, c2, HEX, "Data2"), (d3, c3, HEX, "Data3")):
            if check_character(field, alphabet) != cd:
                raise Failed("the check character of %s %s is %s on the screen, not %s" % (
                    name, field, cd, check_character(field, alphabet)))
        ok("read the smart code table off the screen (Data2 %s), its check characters right" % d2)
        code = smart_code_passcode(master, vin, d1, d2, d3)
    else:
        raise Failed("unknown passcode kind %s" % kind)
    typed = format_passcode(code, style)
    term.send(typed)
    ok("typed the %s passcode as \"%s\"" % (kind, typed if style == "wrong" else style))


def run(args, argv):
    vectors = json.load(open(args.vectors))
    master = bytes.fromhex(vectors["master_key_hex"])
    self_test(vectors, master)

    script = []
    with open(args.script) as f:
        for number, line in enumerate(f, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                script.append((number, shlex.split(line)))

    term = Terminal(argv)
    try:
        for number, words in script:
            cmd, rest = words[0], words[1:]
            if cmd == "expect" and len(rest) == 3:
                term.expect(float(rest[0]), rest[1], rest[2])
            elif cmd == "send" and len(rest) == 1:
                term.send(rest[0])
            elif cmd == "check" and len(rest) == 2:
                p = subprocess.run(["bash", "-c", rest[1]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=60)
                if p.returncode != 0:
                    raise Failed("%s: %s" % (rest[0], p.stdout.decode(errors="replace").strip()))
                ok(rest[0])
            elif cmd == "passcode" and len(rest) == 2:
                passcode_from_screen(term, master, args.vin, rest[0], rest[1])
            elif cmd == "exit" and len(rest) == 2:
                status = term.reap(float(rest[0]))
                if status is None:
                    raise Failed("the command did not end within %s s" % rest[0])
                if status != int(rest[1]):
                    raise Failed("the command ended with %s, not %s" % (status, rest[1]))
                ok("the command ended with %s" % status)
            else:
                raise Failed("script line %d: cannot read %r" % (number, words))
        return 0
    except Failed as e:
        print("FAIL: %s" % e, flush=True)
        term.pump(0.5)
        for line in term.screen[-2500:].replace("\r\n", "\n").split("\n"):
            print("#   " + line.replace("\r", "\\r"))
        return 1
    finally:
        term.kill()
        if args.transcript:
            with open(args.transcript, "w") as f:
                f.write(term.screen)


def main():
    try:
        split = sys.argv.index("--")
    except ValueError:
        sys.exit("usage: pty-driver.py --script FILE --vectors FILE --vin VIN [--transcript FILE] -- COMMAND...")
    parser = argparse.ArgumentParser(prog="pty-driver.py")
    parser.add_argument("--script", required=True)
    parser.add_argument("--vectors", required=True)
    parser.add_argument("--vin", required=True)
    parser.add_argument("--transcript")
    args = parser.parse_args(sys.argv[1:split])
    try:
        sys.exit(run(args, sys.argv[split + 1:]))
    except Failed as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
