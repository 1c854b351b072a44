#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Two passcode server instances on one PostgreSQL (which the test starts itself), with
no balancer: a client alternating between them logs in on one and is served by the
other, is rate-limited across both, and gets the same passcode, transaction id and
reset request back for a retry on the other. Then faults in the middle of a load of
several clients over TLS with keep-alive: kill -9 of an instance, and kill -9 of
PostgreSQL itself, restarted. Afterwards every passcode a client received has its
transaction in the log, no request made two transactions, and every client's retries
succeeded on the surviving instance."""

import http.client
import importlib.util
import json
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pgtest  # noqa: E402

_spec = importlib.util.spec_from_file_location("test_server", f"{HERE}/test-server.py")
ts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ts)
check = ts.check

CLIENTS = 4
PER_CLIENT = 30


class Instance:
    """One server instance in its own folder (configuration and log)."""

    def __init__(self, d, name, database):
        self.dir = f"{d}/{name}"
        os.makedirs(self.dir)
        self.port = ts.free_port()
        with open(f"{self.dir}/server.yaml", "w") as f:
            f.write(ts.CONFIG.format(port=self.port, cert="server", database=database)
                    .replace("certificate: server.pem", f"certificate: {d}/server.pem")
                    .replace("key: server.key", f"key: {d}/server.key")
                    .replace("master_key_file: master.key", f"master_key_file: {d}/master.key"))
        self.server = ts.Server(self.dir, self.port)
        self.client = ts.Client(d, self.port)

    def start(self):
        self.server.start()

    def log(self):
        return open(f"{self.dir}/server.log").read()[-3000:]


class LoadClient(threading.Thread):
    """A technician asking for smart-code passcodes, one repair order each, over one
    keep-alive TLS connection; a request that fails (connection lost, 5xx) is sent again,
    identical, to the other instance until it is answered."""

    def __init__(self, n, instances, ctx, body, progress):
        super().__init__(daemon=True)
        self.n, self.instances, self.ctx, self.body, self.progress = n, instances, ctx, body, progress
        self.got = []  # (repair_order, passcode, transaction_id)
        self.retries = 0
        self.error = None
        self.conn = None
        self.which = n % len(instances)

    def _connect(self):
        if self.conn:
            self.conn.close()
        inst = self.instances[self.which]
        self.conn = http.client.HTTPSConnection("127.0.0.1", inst.port, context=self.ctx, timeout=15)

    def _post(self, path, body, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.conn.request("POST", "/api/v1" + path, json.dumps(body), headers)
        r = self.conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")

    def _call(self, path, body, token=None):
        deadline = time.monotonic() + 60
        while True:
            try:
                if not self.conn:
                    self._connect()
                status, j = self._post(path, body, token)
                if status < 500:
                    return status, j
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"client {self.n}: {path} never answered")
            self.retries += 1
            self.which = (self.which + 1) % len(self.instances)  # the other instance
            self.conn = None
            time.sleep(0.1)

    def run(self):
        try:
            user = "tech1" if self.n % 2 == 0 else "tech2"
            status, j = self._call("/login", {"user": user, "password": "pw-x"})
            if status != 200:
                raise RuntimeError(f"login {status} {j}")
            token = j["token"]
            for i in range(PER_CLIENT):
                ro = f"RO-{self.progress['phase']}-{self.n}-{i}"
                status, j = self._call("/passcodes", dict(self.body, repair_order=ro), token)
                if status != 200:
                    raise RuntimeError(f"passcode {status} {j}")
                self.got.append((ro, j["passcode"], j["transaction_id"]))
                with self.progress["lock"]:
                    self.progress["done"] += 1
                # alternate instances as a balancer without affinity would
                self.which = (self.which + 1) % len(self.instances)
                self.conn = None if i % 5 == 4 else self.conn
        except Exception as e:  # noqa: BLE001
            self.error = str(e)


def run_load(phase, instances, ctx, body, fault):
    progress = {"done": 0, "lock": threading.Lock(), "phase": phase}
    clients = [LoadClient(n, instances, ctx, body, progress) for n in range(CLIENTS)]
    for c in clients:
        c.start()
    total = CLIENTS * PER_CLIENT
    while progress["done"] < total // 3 and any(c.is_alive() for c in clients):
        time.sleep(0.02)
    fault()
    for c in clients:
        c.join(timeout=180)
    return clients


def check_log(pg, phase, clients, expected_passcode):
    rc, out = pg.psql("SELECT transaction_id, repair_order, passcode FROM transactions "
                      f"WHERE repair_order LIKE 'RO-{phase}-%'")
    rows = [line.split("|") for line in out.strip().splitlines()] if rc == 0 else []
    by_tx = {r[0]: r for r in rows}
    ros = [r[1] for r in rows]
    got = [g for c in clients for g in c.got]
    check(all(c.error is None and not c.is_alive() for c in clients),
          f"{phase}: every client finished ({[c.error for c in clients if c.error]})")
    check(len(got) == CLIENTS * PER_CLIENT, f"{phase}: every request was answered ({len(got)})")
    check(all(p == expected_passcode for _, p, _ in got), f"{phase}: every passcode is right")
    check(all(tx in by_tx and by_tx[tx][1] == ro and by_tx[tx][2] == p for ro, p, tx in got),
          f"{phase}: every passcode received has its transaction in the log")
    check(len(ros) == len(set(ros)) == len(got), f"{phase}: no request made two transactions "
          f"({len(ros)} transactions, {len(set(ros))} repair orders, {len(got)} answers)")
    retries = sum(c.retries for c in clients)
    print(f"# {phase}: {len(got)} passcodes, {retries} retries after failures")
    return retries


def main():
    for tool in ("curl", "openssl"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            return 77
    if not ts.SERVER or not ts.VECTORS:
        print("SKIP: IMMO_PASSCODE_SERVER and IMMOD_TEST_VECTORS must be set")
        return 77
    try:
        pg = pgtest.Postgres()
    except pgtest.Unavailable as e:
        print(f"SKIP: {e}")
        return 77
    vectors = json.load(open(ts.VECTORS))
    v = vectors["smart_code"][0]
    vin = vectors["immobilizer"][0]["vin"]
    sc_body = {"kind": "smart-code", "vin": v["vin"], "software_version": "1.0", "repair_order": "RO-2002",
               "customer_last_name": "Jones", "data1": v["data1"], "data2": v["data2"], "data3": v["data3"],
               "cd": {"vin": v["cd_vin"], "data1": v["cd_data1"], "data2": v["cd_data2"], "data3": v["cd_data3"]}}

    d = tempfile.mkdtemp(prefix="immo-cluster-test-")
    ts.make_ca(d, "ca")
    ts.make_cert(d, "ca", "server")
    with open(f"{d}/master.key", "w") as f:
        f.write(vectors["master_key_hex"] + "\n")
    os.chmod(f"{d}/master.key", 0o600)
    a, b = Instance(d, "a", pg.uri()), Instance(d, "b", pg.uri())
    try:
        a.start()
        b.start()
        ca, cb = a.client, b.client

        # a token made on one instance is good on the other
        tech1 = ca.login("tech1")
        status, j = cb.call("GET", "/dealers/D100/approvers", token=tech1)
        check(status == 200 and len(j.get("approvers", [])) == 3, "logged in on A, served by B")

        # the login rate limit counts on both
        for i in range(5):
            (ca if i % 2 == 0 else cb).call("POST", "/login", {"user": "sales", "password": "nope"})
        ts.expect_error(ca.call("POST", "/login", {"user": "sales", "password": "pw-x"}), 429, "rate-limited",
                        "five failures spread over A and B: rate-limited on A")
        ts.expect_error(cb.call("POST", "/login", {"user": "sales", "password": "pw-x"}), 429, "rate-limited",
                        "and on B")

        # a retry on the other instance gets the same passcode and transaction
        s1, j1 = ca.call("POST", "/passcodes", sc_body, token=tech1)
        s2, j2 = cb.call("POST", "/passcodes", sc_body, token=tech1)
        check(s1 == 200 and s2 == 200 and j1.get("passcode") == j2.get("passcode") == v["passcode"]
              and j1.get("transaction_id") == j2.get("transaction_id"),
              "a passcode request retried on B gets A's passcode and transaction id")
        req = {"dealer_code": "D100", "technician": "tech1", "vin": vin, "repair_order": "RO-C",
               "customer_last_name": "Smith", "attestations": dict(ts.ATTEST), "approvers": ["mgr1", "mgr2"]}
        s1, j1 = ca.call("POST", "/reset-requests", req, token=tech1, headers=["Idempotency-Key: cluster-1"])
        s2, j2 = cb.call("POST", "/reset-requests", req, token=tech1, headers=["Idempotency-Key: cluster-1"])
        check(s1 == s2 == 201 and j1.get("request_no") == j2.get("request_no"),
              "a reset request retried on B with its Idempotency-Key gets A's request")
        s3, j3 = cb.call("POST", "/reset-requests", req, token=tech1)
        s4, j4 = ca.call("POST", "/reset-requests", req, token=tech1)
        check(s3 == s4 == 201 and j3.get("request_no") == j4.get("request_no"),
              "without a key, the same reset request within 10 minutes on A gets B's request")
        # a decision made through one instance is seen through the other
        mgr1 = cb.login("mgr1")
        cb.call("POST", f"/reset-requests/{j1['request_no']}/decision",
                {"decision": "approve", "attestations": {"details_verified": True, "nicb_notice": True, "terms": True}},
                token=mgr1)
        status, j = ca.call("GET", f"/reset-requests?vin={vin}", token=tech1)
        check(any(r["request_no"] == j1["request_no"] and r["status"] == "approved" for r in j.get("requests", [])),
              "approved through B, seen approved through A")

        ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")

        # kill -9 of instance A in the middle of the load
        t0 = time.monotonic()
        clients = run_load("kill-instance", [a, b], ctx, sc_body, a.server.kill9)
        retries = check_log(pg, "kill-instance", clients, v["passcode"])
        print(f"# kill -9 of an instance: {time.monotonic() - t0:.1f} s")
        check(retries > 0, "the clients' requests to the killed instance were retried on the survivor")
        a.start()

        # kill -9 of PostgreSQL in the middle of the load, restarted a second later
        def crash_postgres():
            pg.kill9()
            time.sleep(1)
            pg.start()
        t0 = time.monotonic()
        clients = run_load("kill-postgres", [a, b], ctx, sc_body, crash_postgres)
        check_log(pg, "kill-postgres", clients, v["passcode"])
        print(f"# kill -9 of PostgreSQL: {time.monotonic() - t0:.1f} s")
        status, j = ca.call("GET", "/dealers/D100/approvers", token=tech1)
        check(status == 200, "after PostgreSQL's restart the token made before still works on A")
    finally:
        for inst in (a, b):
            inst.server.stop()
        if ts.failures:
            for inst in (a, b):
                print(f"--- instance {inst.dir}\n{inst.log()}")
            print("--- postgres\n" + pg.log_tail())
        shutil.rmtree(d, ignore_errors=True)
        pg.stop()
    print(f"{ts.failures} failure(s)")
    return 1 if ts.failures else 0


if __name__ == "__main__":
    sys.exit(main())
