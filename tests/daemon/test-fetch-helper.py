#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
immod-fetch, the HTTPS helper of immod, driven directly over its pipes (daemon/fetch-frame.h):
broken requests (wrong magic, a timeout or flags out of range, a field longer than its limit,
a NUL or a line break where none may be, a method other than GET and POST, a request cut
short or followed by junk, arguments) must end with exit status 1, no answer and a message
that says what was wrong; well-formed requests get one answer: an HTTP server on loopback
(http:// allowed by the flag, refused without it) with its status and body, the request's
headers and body as sent, a dead port as -ECONNREFUSED, an answer larger than the limit as
-EFBIG.

usage: test-fetch-helper.py IMMOD_FETCH
"""
import errno
import http.server
import socket
import struct
import subprocess
import sys
import threading

HELPER = sys.argv[1]
REQUEST_MAGIC = 0x51464D49
ANSWER_MAGIC = 0x41464D49
BODY_MAX = 256 * 1024
failures = 0


def check(ok, what):
    global failures
    print(("ok: " if ok else "FAIL: ") + what, flush=True)
    if not ok:
        failures += 1


def field(value):
    data = value.encode() if isinstance(value, str) else (value or b"")
    return struct.pack("=I", len(data)) + data


def request(method="GET", url="", body=None, bearer=None, header=None, timeout_s=5, flags=0,
            magic=REQUEST_MAGIC, ca=None, cert=None, key=None):
    out = struct.pack("=III", magic, timeout_s, flags)
    for v in (method, url, body, bearer, header, ca, cert, key):
        out += field(v)
    return out


def run(data, args=()):
    p = subprocess.run([HELPER, *args], input=data, capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def answer(out):
    """(error, status, body) of an answer, or None when it is not exactly one."""
    if len(out) < 16:
        return None
    magic, error, status, size = struct.unpack("=IiII", out[:16])
    if magic != ANSWER_MAGIC or len(out) != 16 + size:
        return None
    return error, status, out[16:]


def refused(what, data, message, args=()):
    rc, out, err = run(data, args)
    check(rc == 1 and out == b"" and message in err,
          "%s: exit 1, no answer, says %r (got exit %d, %d bytes, %r)" % (what, message, rc, len(out), err.strip()))


class Handler(http.server.BaseHTTPRequestHandler):
    seen = {}

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/big":
            return self.reply(200, b"x" * (BODY_MAX + 1))
        Handler.seen = {"method": "GET", "path": self.path, "auth": self.headers.get("Authorization"),
                        "extra": self.headers.get("Idempotency-Key")}
        self.reply(404, b'{"error":"not-found"}')

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        Handler.seen = {"method": "POST", "path": self.path, "body": self.rfile.read(n),
                        "type": self.headers.get("Content-Type"), "auth": self.headers.get("Authorization")}
        self.reply(201, b'{"token":"t0k"}')


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = "http://127.0.0.1:%d" % server.server_port
dead = socket.socket()
dead.bind(("127.0.0.1", 0))
dead_port = dead.getsockname()[1]  # bound, never listening: connection refused

# ----- broken requests
refused("arguments", request(url=base), "Takes no arguments", ["--url", base])
refused("nothing at all", b"", "Cannot read the request's header")
refused("wrong magic", request(url=base, magic=0x12345678), "does not start with the magic number")
refused("timeout 0", request(url=base, timeout_s=0), "timeout is 0 s; expected 1 to 600 s")
refused("timeout 601", request(url=base, timeout_s=601), "timeout is 601 s; expected 1 to 600 s")
refused("unknown flags", request(url=base, flags=6), "flags 0x6 hold unknown bits")
refused("method PUT", request(method="PUT", url=base), "method is neither GET nor POST")
refused("method DELETE", request(method="DELETE", url=base), "method is 6 bytes long; expected at most 4")
refused("no URL", request(url=""), "The request has no URL")
refused("a body over the limit", struct.pack("=III", REQUEST_MAGIC, 5, 0) + field("POST") + field(base) +
        struct.pack("=I", BODY_MAX + 1), "body is 262145 bytes long; expected at most 262144")
refused("a URL with a line break", request(url=base + "/\r\nX: y"), "URL holds a line break")
refused("a bearer with a NUL", request(url=base, bearer=b"ab\0cd"), "bearer token holds a NUL byte")
refused("a header with a line break", request(url=base, header="A: b\nC: d"), "header holds a line break")
refused("a certificate without its key", request(url=base, cert="/etc/hostname"),
        "client certificate or key without the other")
refused("cut short", request(method="POST", url=base, body='{"a":1}')[:-10],
        "Cannot read the length of the request's CA file: the input ended first")
refused("junk after the request", request(url=base) + b"junk", "does not end after its last field")

# ----- well-formed requests
rc, out, err = run(request(url=base + "/api/v1/x?vin=1", bearer="s3cret", header="Idempotency-Key: abc",
                           flags=1))
a = answer(out)
check(rc == 0 and a == (0, 404, b'{"error":"not-found"}'), "GET over http (allowed): status and body (%r)" % (a,))
check(Handler.seen.get("path") == "/api/v1/x?vin=1" and Handler.seen.get("auth") == "Bearer s3cret" and
      Handler.seen.get("extra") == "abc", "GET: path, bearer token and extra header as sent (%r)" % Handler.seen)

body = '{"user":"tech1","password":"pw"}'
rc, out, err = run(request(method="POST", url=base + "/api/v1/login", body=body, flags=1))
a = answer(out)
check(rc == 0 and a == (0, 201, b'{"token":"t0k"}'), "POST: status and body (%r)" % (a,))
check(Handler.seen.get("body") == body.encode() and Handler.seen.get("type") == "application/json" and
      Handler.seen.get("auth") is None, "POST: body and content type as sent, no token (%r)" % Handler.seen)

rc, out, err = run(request(url=base + "/api/v1/x"))
a = answer(out)
check(rc == 0 and a == (-errno.EPROTONOSUPPORT, 0, b""), "http:// without the flag: -EPROTONOSUPPORT (%r)" % (a,))

rc, out, err = run(request(url="https://127.0.0.1:%d/" % dead_port))
a = answer(out)
check(rc == 0 and a == (-errno.ECONNREFUSED, 0, b""), "a dead port: -ECONNREFUSED (%r, %r)" % (a, err.strip()))

rc, out, err = run(request(url=base + "/big", flags=1))
a = answer(out)
check(rc == 0 and a == (-errno.EFBIG, 0, b""), "an answer over the limit: -EFBIG (%r)" % (a,))

print("%d failure(s)" % failures)
sys.exit(1 if failures else 0)
