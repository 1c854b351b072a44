#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The passcode service under load (issue 13), printed, nothing asserted.

N technicians (default 10, 100, 500), each logged in with its own token, each on its own
keep-alive TLS connection from its own loopback address (127.1.x.y, so the per-address
limit of 32 does not bind), ask for smart-code passcodes (a new repair order each time,
so every answer is a new transaction) for --seconds. For SQLite with one instance, and
PostgreSQL (its own server, fsync on) with one and with three instances, the clients
spread over them. Prints passcodes/s, latency median and p99, errors (a connection the
server closed or refused, a non-200 answer), and the ratio to the floor: the passcode
computation alone in a loop on one thread (build/tools/passcode-floor).

The client is Python asyncio on the same 2 cores as the server and PostgreSQL: the
figures compare the backends on this machine; they are no capacity figures.

    tools/passcode-bench.py [--build build] [--seconds 5] [--clients 10,100,500]
"""

import argparse
import asyncio
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, f"{HERE}/../tests/server")
import pgtest  # noqa: E402

USERS = 500


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw).stdout


def config(d, port, database, pwhash, workers):
    users = "".join(f"  - {{id: bench{i}, name: B{i}, dealer: D100, role: technician, title: Technician, "
                    f"password_hash: \"{pwhash}\"}}\n" for i in range(USERS))
    users += (f"  - {{id: mgr1, name: M1, dealer: D100, role: manager, title: Service Manager, password_hash: \"{pwhash}\"}}\n"
              f"  - {{id: mgr2, name: M2, dealer: D100, role: manager, title: General Manager, password_hash: \"{pwhash}\"}}\n")
    return (f"listen: {{address: 127.0.0.1, port: {port}}}\ntls: {{certificate: {d}/server.pem, key: {d}/server.key}}\n"
            f"database: {database}\nmaster_key_file: {d}/master.key\nworkers: {workers}\n"
            f"dealers:\n  - {{code: D100, name: Bench Motors}}\nusers:\n{users}")


class Conn:
    def __init__(self, port, ctx, source):
        self.port, self.ctx, self.source = port, ctx, source
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", self.port, ssl=self.ctx, server_hostname="localhost", local_addr=(self.source, 0)), 10)

    def close(self):
        if self.w:
            self.w.close()
        self.r = self.w = None

    async def post(self, path, body, token=None):
        if not self.w:
            await self.open()
        data = json.dumps(body).encode()
        head = (f"POST /api/v1{path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n" + (f"Authorization: Bearer {token}\r\n" if token else "") + "\r\n")
        self.w.write(head.encode() + data)
        status_line = await asyncio.wait_for(self.r.readline(), 30)
        if not status_line:
            raise ConnectionError("closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v)
        return status, json.loads(await self.r.readexactly(length) or b"{}")


def source(i):
    return f"127.1.{i // 250}.{i % 250 + 1}"


async def login_all(ports, ctx):
    tokens = [None] * USERS
    sem = asyncio.Semaphore(8)

    async def one(i):
        async with sem:
            c = Conn(ports[i % len(ports)], ctx, source(i))
            for _ in range(20):
                try:
                    status, j = await c.post("/login", {"user": f"bench{i}", "password": "bench"})
                    if status == 200:
                        tokens[i] = j["token"]
                        break
                except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                    c.close()
                    await asyncio.sleep(0.1)
            c.close()
    await asyncio.gather(*(one(i) for i in range(USERS)))
    return tokens


async def load(ports, ctx, tokens, n, seconds, body, tag):
    lat, errors = [], [0]
    stop = time.monotonic() + seconds

    async def tech(i):
        c = Conn(ports[i % len(ports)], ctx, source(i))
        k = 0
        while time.monotonic() < stop:
            k += 1
            t0 = time.monotonic()
            try:
                status, _ = await c.post("/passcodes", dict(body, repair_order=f"RO-{tag}-{i}-{k}"), tokens[i])
                if status == 200:
                    lat.append(time.monotonic() - t0)
                else:
                    errors[0] += 1
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors[0] += 1
                c.close()
                await asyncio.sleep(0.05)
        c.close()
    t0 = time.monotonic()
    await asyncio.gather(*(tech(i) for i in range(n)))
    return len(lat), time.monotonic() - t0, lat, errors[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=f"{HERE}/../build")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", default="10,100,500")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    server = f"{args.build}/server/immo-passcode-server"
    admin = f"{args.build}/server/immo-passcode-admin"
    floor = float(sh(f"{args.build}/tools/passcode-floor"))
    counts = [int(x) for x in args.clients.split(",")]
    vectors = json.load(open(f"{HERE}/../tests/test-vectors.json"))
    v = vectors["smart_code"][0]
    body = {"kind": "smart-code", "vin": v["vin"], "software_version": "1.0", "customer_last_name": "Bench",
            "data1": v["data1"], "data2": v["data2"], "data3": v["data3"],
            "cd": {"vin": v["cd_vin"], "data1": v["cd_data1"], "data2": v["cd_data2"], "data3": v["cd_data3"]}}

    d = tempfile.mkdtemp(prefix="immo-bench-")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
       f"{d}/server.key", "-out", f"{d}/server.pem", "-subj", "/CN=localhost", "-addext",
       "subjectAltName=IP:127.0.0.1,DNS:localhost", "-days", "2")
    with open(f"{d}/master.key", "w") as f:
        f.write(vectors["master_key_hex"] + "\n")
    os.chmod(f"{d}/master.key", 0o600)
    pwhash = sh(admin, "hash-password", input="bench\n").strip()
    ctx = ssl.create_default_context(cafile=f"{d}/server.pem")

    print(f"floor: {floor:.0f} passcodes/s (K_vin and HMAC on one thread)")
    print(f"{'backend':<24} {'clients':>7} {'passcodes/s':>12} {'median ms':>10} {'p99 ms':>8} {'errors':>7} "
          f"{'floor/x':>8}")
    pg = None
    procs = []
    try:
        for name, backend, instances in (("SQLite, 1 instance", "sqlite", 1),
                                         ("PostgreSQL, 1 instance", "pg", 1),
                                         ("PostgreSQL, 3 instances", "pg", 3)):
            if backend == "pg":
                if not pg:
                    pg = pgtest.Postgres(fsync=True)
                database = pg.createdb(f"bench{instances}")
            else:
                database = f"{d}/bench.sqlite"
            ports = []
            for k in range(instances):
                port = pgtest.free_port()
                path = f"{d}/{backend}{instances}-{k}.yaml"
                with open(path, "w") as f:
                    f.write(config(d, port, database, pwhash, args.workers))
                log = open(f"{d}/{backend}{instances}-{k}.log", "w")
                procs.append(subprocess.Popen([server, "--config", path], stdout=log, stderr=log))
                ports.append(port)
            for port in ports:
                for _ in range(200):
                    try:
                        import socket
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.05)
            tokens = asyncio.run(login_all(ports, ctx))
            if None in tokens:
                print(f"{name}: {tokens.count(None)} technicians could not log in")
            for n in counts:
                ok, secs, lat, errors = asyncio.run(load(ports, ctx, tokens, n, args.seconds, body, f"{backend}{instances}-{n}"))
                rate = ok / secs
                lat.sort()
                med = statistics.median(lat) * 1000 if lat else float("nan")
                p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
                print(f"{name:<24} {n:>7} {rate:>12.0f} {med:>10.1f} {p99:>8.1f} {errors:>7} "
                      f"{(floor / rate if rate else float('inf')):>8.0f}", flush=True)
            for p in procs:
                p.terminate()
                p.wait()
            procs = []
    finally:
        for p in procs:
            p.kill()
        if pg:
            pg.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
