#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The reference passcode server through curl, with real TLS: a CA and a server
certificate made with openssl at test time. Every rule and error id of
passcode-service.md; a certificate from another CA refused; kill -9 right after a
passcode was issued loses nothing; the transaction log refuses changes in the database
itself. With --postgres the same against a PostgreSQL that the test starts itself
(pgtest.py), else against SQLite."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgtest  # noqa: E402

SERVER = os.environ.get("IMMO_PASSCODE_SERVER")
ADMIN = os.environ.get("IMMO_PASSCODE_ADMIN")
VECTORS = os.environ.get("IMMOD_TEST_VECTORS")

failures = 0


def check(cond, what):
    global failures
    if cond:
        print(f"ok - {what}")
    else:
        failures += 1
        print(f"not ok - {what}")


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw)


def make_ca(d, name):
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.pem", "-subj", f"/CN={name}", "-days", "2")


def make_cert(d, ca, name):
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr", "-subj", "/CN=localhost")
    with open(f"{d}/{name}.ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/{ca}.pem", "-CAkey", f"{d}/{ca}.key",
        "-CAcreateserial", "-out", f"{d}/{name}.pem", "-days", "2", "-extfile", f"{d}/{name}.ext")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, d, port):
        self.d, self.port, self.proc = d, port, None

    def start(self, cert="server"):
        self.log = open(f"{self.d}/server.log", "a")
        self.proc = subprocess.Popen([SERVER, "--config", f"{self.d}/{cert}.yaml"], stdout=self.log,
                                     stderr=self.log)
        for _ in range(200):
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + open(f"{self.d}/server.log").read())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not listen")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Client:
    def __init__(self, d, port, ca="ca"):
        self.d, self.base, self.ca = d, f"https://127.0.0.1:{port}/api/v1", ca

    def call(self, method, path, body=None, token=None, headers=(), raw=None):
        args = ["curl", "-sS", "--max-time", "20", "--cacert", f"{self.d}/{self.ca}.pem", "-X", method,
                "-w", "\n%{http_code}", self.base + path]
        if token:
            args += ["-H", f"Authorization: Bearer {token}"]
        for h in headers:
            args += ["-H", h]
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if data is not None:
            if not any(h.lower().startswith("content-type") for h in headers):
                args += ["-H", "Content-Type: application/json"]
            args += ["--data-binary", "@-"]
        p = subprocess.run(args, input=data.encode() if data is not None else None, capture_output=True)
        if p.returncode != 0:
            return p.returncode, p.stderr.decode()
        text, _, status = p.stdout.decode().rpartition("\n")
        try:
            return int(status), json.loads(text)
        except ValueError:
            return int(status), text

    def login(self, user, password="pw-x"):
        status, j = self.call("POST", "/login", {"user": user, "password": password})
        assert status == 200, (user, status, j)
        return j["token"]


def expect_error(res, status, error, what):
    got_status, j = res
    ok = got_status == status and isinstance(j, dict) and j.get("error") == error and "message" in j
    check(ok, f"{what}: {status} {error}" + ("" if ok else f" (got {got_status} {j})"))
    return j if isinstance(j, dict) else {}


CONFIG = """\
listen:
  address: 127.0.0.1
  port: {port}
tls:
  certificate: {cert}.pem
  key: {cert}.key
database: {database}
master_key_file: master.key
approval_validity_hours: 72
dealers:
  - code: D100
    name: "Example Motors"
  - code: D200
    name: "Lonely Lexus"
users:
  - {{id: tech1, name: Tom Tech, dealer: D100, role: technician, title: Technician, password: pw-x}}
  - {{id: tech2, name: Tina Tech, dealer: D100, role: technician, title: Technician, password: pw-x}}
  - {{id: mgr1, name: Mia Manager, dealer: D100, role: manager, title: Service Manager, password: pw-x}}
  - {{id: mgr2, name: Max Manager, dealer: D100, role: manager, title: General Manager, password: pw-x}}
  - {{id: mgr3, name: Mo Manager, dealer: D100, role: manager, title: Shop Foreman, password: pw-x}}
  - {{id: sales, name: Sal Sales, dealer: D100, role: manager, title: Sales Manager, password: pw-x}}
  - {{id: tech9, name: Ted Alone, dealer: D200, role: technician, title: Technician, password: pw-x}}
  - {{id: mgr9, name: Meg Alone, dealer: D200, role: manager, title: Dealer Principal, password: pw-x}}
"""

ATTEST = {"customer_authority": True, "photo_id": True, "registration": True, "terms": True}
DECIDE = {"details_verified": True, "nicb_notice": True, "terms": True}


def copy_into_postgres(d, month, txs, request_no):
    """immo-passcode-admin copy-to: the SQLite database of a shop that grew, into PostgreSQL."""
    if not ADMIN:
        return
    try:
        pg = pgtest.Postgres()
    except pgtest.Unavailable as e:
        print(f"# skipped the copy into PostgreSQL: {e}")
        return
    try:
        cfg = f"{d}/server.yaml"
        before = subprocess.run([ADMIN, "--config", cfg, "nicb-export", month], capture_output=True, text=True).stdout
        p = subprocess.run([ADMIN, "--config", cfg, "copy-to", pg.uri()], capture_output=True, text=True)
        check(p.returncode == 0 and "4 transactions" in p.stdout, f"admin copy-to PostgreSQL ({p.stdout.strip()})")
        p = subprocess.run([ADMIN, "--config", cfg, "copy-to", pg.uri()], capture_output=True, text=True)
        check(p.returncode != 0, "a second copy into a database that holds transactions is refused")
        pg_cfg = f"{d}/pg.yaml"
        with open(cfg) as f, open(pg_cfg, "w") as g:
            g.write(f.read().replace("database: passcodes.sqlite", f"database: {pg.uri()}"))
        after = subprocess.run([ADMIN, "--config", pg_cfg, "nicb-export", month], capture_output=True, text=True).stdout
        check(after == before and all(tx in after for tx in txs), "the NICB export is the same from the copy")
        p = subprocess.run([ADMIN, "--config", pg_cfg, "list-requests"], capture_output=True, text=True)
        check(p.returncode == 0 and request_no in p.stdout, "the requests were copied")
        rc, out = pg.psql("SELECT count(*) FROM users WHERE id = 'mgr9b' AND removed = 1")
        check(out.strip() == "1", "a removed user stays removed in the copy")
    finally:
        pg.stop()


def main():
    for tool in ("curl", "openssl"):
        if not shutil.which(tool):
            print(f"SKIP: {tool} is not installed")
            return 77
    if not SERVER or not VECTORS:
        print("SKIP: IMMO_PASSCODE_SERVER and IMMOD_TEST_VECTORS must be set")
        return 77
    vectors = json.load(open(VECTORS))
    imm = vectors["immobilizer"]
    sc = vectors["smart_code"]
    vin = imm[0]["vin"]

    pg = None
    if "--postgres" in sys.argv:
        try:
            pg = pgtest.Postgres()
        except pgtest.Unavailable as e:
            print(f"SKIP: {e}")
            return 77
    d = tempfile.mkdtemp(prefix="immo-server-test-")
    port = free_port()
    make_ca(d, "ca")
    make_cert(d, "ca", "server")
    make_ca(d, "otherca")
    with open(f"{d}/master.key", "w") as f:
        f.write(vectors["master_key_hex"] + "\n")
    os.chmod(f"{d}/master.key", 0o600)
    with open(f"{d}/server.yaml", "w") as f:
        f.write(CONFIG.format(port=port, cert="server", database=pg.uri() if pg else "passcodes.sqlite"))

    srv = Server(d, port)
    srv.start()
    c = Client(d, port)
    try:
        # TLS: a client that trusts another CA refuses this server
        code, err = Client(d, port, ca="otherca").call("POST", "/login", {"user": "tech1", "password": "pw-x"})
        check(code == 60, f"certificate from another CA refused by curl (exit {code})")

        # authentication
        expect_error(c.call("GET", "/dealers/D100/approvers"), 401, "unauthenticated", "no token")
        expect_error(c.call("GET", "/dealers/D100/approvers", token="0" * 64), 401, "unauthenticated", "unknown token")
        expect_error(c.call("POST", "/login", {"user": "tech1", "password": "wrong"}), 401, "unauthenticated",
                     "wrong password")
        status, j = c.call("POST", "/login", {"user": "tech1", "password": "pw-x"})
        check(status == 200 and len(j.get("token", "")) >= 32 and j.get("expires_at", "").endswith("Z")
              and j.get("user") == "tech1" and j.get("role") == "technician" and j.get("dealer") == "D100",
              f"login gives a token, expires_at, user, role and dealer {j}")
        tech1 = j["token"]
        tech2, mgr1, mgr2, mgr3 = (c.login(u) for u in ("tech2", "mgr1", "mgr2", "mgr3"))
        tech9 = c.login("tech9")
        for _ in range(5):
            c.call("POST", "/login", {"user": "sales", "password": "nope"})
        expect_error(c.call("POST", "/login", {"user": "sales", "password": "pw-x"}), 429, "rate-limited",
                     "login after five failures")
        expect_error(c.call("POST", "/reset-requests", {"dealer_code": "D100"}, token=tech1,
                            headers=["Idempotency-Key: has space"]), 400, "invalid-request",
                     "a malformed Idempotency-Key")

        # approvers: managers with approving titles only
        status, j = c.call("GET", "/dealers/D100/approvers", token=tech1)
        ids = sorted(a["id"] for a in j.get("approvers", []))
        check(status == 200 and ids == ["mgr1", "mgr2", "mgr3"], f"approvers of D100 {ids}")
        check(all("name" in a and "title" in a for a in j.get("approvers", [])), "approvers have name and title")
        expect_error(c.call("GET", "/dealers/D200/approvers", token=tech1), 403, "forbidden", "another dealer's approvers")

        def request(token, who="tech1", **kw):
            body = {"dealer_code": "D100", "technician": who, "vin": vin, "repair_order": "RO-1001",
                    "customer_last_name": "Smith", "attestations": dict(ATTEST), "approvers": ["mgr1", "mgr2"]}
            body.update(kw)
            return c.call("POST", "/reset-requests", body, token=token)

        expect_error(request(tech1, approvers=["mgr1"]), 400, "too-few-approvers-selected", "one approver selected")
        expect_error(request(tech1, approvers=["mgr1", "mgr1"]), 400, "too-few-approvers-selected",
                     "the same approver twice")
        expect_error(request(tech1, attestations={"customer_authority": True, "photo_id": True, "terms": True}), 400,
                     "attestation-missing", "registration attestation missing")
        expect_error(request(tech1, vin="58ADZ1B16MU00012O"), 400, "invalid-vin", "VIN with an O")
        expect_error(request(mgr1, who="mgr1", approvers=["mgr1", "mgr2"]), 403, "self-approval",
                     "requester among the selected managers")
        expect_error(request(tech1, approvers=["mgr1", "sales"]), 400, "invalid-approver",
                     "a manager without an approving title")
        expect_error(request(tech1, who="tech2"), 403, "forbidden", "request in another technician's name")
        expect_error(c.call("POST", "/reset-requests",
                            {"dealer_code": "D200", "technician": "tech9", "vin": vin, "repair_order": "RO-9",
                             "customer_last_name": "Doe", "attestations": ATTEST, "approvers": ["mgr9", "x"]},
                            token=tech9), 409, "dealer-needs-two-approvers", "dealer with one approver")

        status, j = request(tech1)
        check(status == 201 and j.get("status") == "pending" and j.get("request_no"), "request created (201 pending)")
        no = j["request_no"]
        status, j = request(tech1)
        check(status == 201 and j.get("request_no") == no,
              "the same request again within 10 minutes (a retry after a lost answer) gets the same request_no")

        def keyed(key, **kw):
            body = {"dealer_code": "D100", "technician": "tech2", "vin": vin, "repair_order": "RO-K",
                    "customer_last_name": "Key", "attestations": dict(ATTEST), "approvers": ["mgr1", "mgr3"]}
            body.update(kw)
            return c.call("POST", "/reset-requests", body, token=tech2, headers=[f"Idempotency-Key: {key}"])
        status, j = keyed("k-1")
        status2, j2 = keyed("k-1")
        check(status == 201 and status2 == 201 and j.get("request_no") == j2.get("request_no"),
              "the same Idempotency-Key gets the same request_no")
        status3, j3 = keyed("k-2")
        check(status3 == 201 and j3.get("request_no") not in (None, j.get("request_no")),
              "another Idempotency-Key makes a new request")
        expect_error(keyed("k-1", repair_order="RO-OTHER"), 422, "idempotency-key-reused",
                     "an Idempotency-Key reused for another request")
        for n in (j.get("request_no"), j3.get("request_no")):
            c.call("POST", f"/reset-requests/{n}/decision", {"decision": "deny"}, token=mgr1)

        imm_body = {"kind": "immobilizer", "vin": vin, "software_version": "1.0", "request_no": no,
                    "seed": imm[0]["seed_hex"]}
        expect_error(c.call("POST", "/passcodes", imm_body, token=tech1), 409, "approval-pending",
                     "passcode before the approval")
        expect_error(c.call("POST", "/passcodes", dict(imm_body, request_no="RR-NOSUCH"), token=tech1), 409,
                     "approval-required", "passcode without a request")
        expect_error(c.call("POST", f"/reset-requests/{no}/decision", {"decision": "approve", "attestations": DECIDE},
                            token=mgr3), 403, "forbidden", "a manager who was not selected")
        expect_error(c.call("POST", f"/reset-requests/{no}/decision", {"decision": "approve", "attestations": DECIDE},
                            token=tech1), 403, "self-approval", "the requester decides")
        expect_error(c.call("POST", f"/reset-requests/{no}/decision",
                            {"decision": "approve", "attestations": {"details_verified": True, "terms": True}},
                            token=mgr1), 400, "attestation-missing", "approval without the NICB notice")
        status, j = c.call("POST", f"/reset-requests/{no}/decision", {"decision": "approve", "attestations": DECIDE},
                           token=mgr1)
        check(status == 200 and j.get("status") == "approved" and j.get("valid_till", "").endswith("Z"),
              f"approved by a selected manager {j}")
        expect_error(c.call("POST", f"/reset-requests/{no}/decision", {"decision": "deny"}, token=mgr2), 409,
                     "already-decided", "a second decision")

        status, j = c.call("GET", f"/reset-requests?vin={vin}", token=tech1)
        mine = [r for r in j.get("requests", []) if r["request_no"] == no]
        check(status == 200 and mine and mine[0]["status"] == "approved" and mine[0]["approved_by"] == "mgr1"
              and mine[0]["approvers"] == ["mgr1", "mgr2"] and mine[0]["technician"] == "tech1"
              and mine[0]["valid_till"], "request listed by VIN as approved")
        # one request by its number (the pages' request page), with what the pages show
        status, j = c.call("GET", f"/reset-requests/{no}", token=mgr2)
        check(status == 200 and j.get("request_no") == no and j.get("status") == "approved"
              and j.get("customer_last_name") == "Smith" and j.get("technician_name") == "Tom Tech"
              and j.get("created_at", "").endswith("Z") and j.get("repair_order") == "RO-1001"
              and j.get("decided_by") == "mgr1" and j.get("approved_by") == "mgr1",
              f"one request by its number {j}")
        expect_error(c.call("GET", f"/reset-requests/{no}", token=tech9), 404, "not-found",
                     "another dealer's request by its number")
        expect_error(c.call("GET", "/reset-requests/RR-000000000000", token=tech1), 404, "not-found",
                     "an unknown request number")
        expect_error(c.call("GET", f"/reset-requests/{no}"), 401, "unauthenticated", "a request without login")
        expect_error(c.call("DELETE", f"/reset-requests/{no}", token=tech1), 405, "method-not-allowed",
                     "DELETE of a request")

        # immobilizer passcodes: the known answers, a retry, a new seed
        expect_error(c.call("POST", "/passcodes", dict(imm_body, seed="ab" * 47), token=tech1), 400, "bad-seed",
                     "short seed")
        expect_error(c.call("POST", "/passcodes", dict(imm_body, vin="123"), token=tech1), 400, "invalid-vin",
                     "passcode for a bad VIN")
        status, j = c.call("POST", "/passcodes", imm_body, token=tech1)
        check(status == 200 and j.get("passcode") == imm[0]["passcode"],
              f"immobilizer passcode equals the known answer {imm[0]['passcode']} ({j})")
        tx1 = j.get("transaction_id")
        status, j = c.call("POST", "/passcodes", imm_body, token=tech1)
        check(status == 200 and j.get("passcode") == imm[0]["passcode"] and j.get("transaction_id") == tx1,
              "a retried identical request gets the same passcode and transaction id")
        status, j = c.call("POST", "/passcodes", dict(imm_body, seed=imm[1]["seed_hex"]), token=tech1)
        check(status == 200 and j.get("passcode") == imm[1]["passcode"] and j.get("transaction_id") != tx1,
              "a new seed gets a new passcode and transaction")
        tx2 = j.get("transaction_id")

        # smart code
        v = sc[0]
        sc_body = {"kind": "smart-code", "vin": v["vin"], "software_version": "1.0", "repair_order": "RO-2002",
                   "customer_last_name": "Jones", "data1": v["data1"], "data2": v["data2"], "data3": v["data3"],
                   "cd": {"vin": v["cd_vin"], "data1": v["cd_data1"], "data2": v["cd_data2"], "data3": v["cd_data3"]}}
        status, j = c.call("POST", "/passcodes", sc_body, token=tech2)
        check(status == 200 and j.get("passcode") == v["passcode"], f"smart-code passcode equals {v['passcode']} ({j})")
        tx3 = j.get("transaction_id")
        for field in ("vin", "data1", "data2", "data3"):
            wrong = dict(sc_body["cd"])
            wrong[field] = "0" if wrong[field] != "0" else "1"
            j = expect_error(c.call("POST", "/passcodes", dict(sc_body, cd=wrong), token=tech2), 400,
                             "check-character-mismatch", f"wrong cd of {field}")
            check(j.get("field") == field, f"the mismatch names the field {field}")
        j = expect_error(c.call("POST", "/passcodes", dict(sc_body, data2="XYZ"), token=tech2), 400, "bad-seed",
                         "malformed data2")
        check(j.get("field") == "data2", "a malformed field is named (%s)" % j.get("field"))
        expect_error(c.call("POST", "/passcodes", sc_body), 401, "unauthenticated", "smart code without login")
        expect_error(c.call("POST", "/passcodes", dict(sc_body, vin=vin, data1="134B18FBDB1"), token=tech9), 409,
                     "dealer-needs-two-approvers", "smart code at a dealer with one approver")

        # completion ends the approval
        status, j = c.call("POST", f"/reset-requests/{no}/complete", token=tech1)
        check(status == 200 and j.get("status") == "completed", "repair completed")
        expect_error(c.call("POST", "/passcodes", dict(imm_body, seed=imm[0]["seed_hex"][::-1]), token=tech1), 409,
                     "approval-expired", "passcode after completion")

        # a denied request
        status, j = request(tech2, who="tech2", approvers=["mgr2", "mgr3"])
        no2 = j.get("request_no")
        status, j = c.call("POST", f"/reset-requests/{no2}/decision", {"decision": "deny"}, token=mgr3)
        check(status == 200 and j.get("status") == "denied", "denied by a selected manager")
        status, j = c.call("GET", f"/reset-requests/{no2}", token=tech1)
        check(status == 200 and j.get("decided_by") == "mgr3" and j.get("approved_by") is None and j.get("approved_at") is None,
              f"a denied request names who decided, and no approval {j}")
        expect_error(c.call("POST", "/passcodes", dict(imm_body, request_no=no2), token=tech2), 409,
                     "approval-denied", "passcode on a denied request")

        # malformed input
        expect_error(c.call("POST", "/passcodes", raw="{" + " " * 20000 + "}", token=tech1), 413, "payload-too-large",
                     "a 20 KB body")
        expect_error(c.call("POST", "/passcodes", raw="kind=x", token=tech1, headers=["Content-Type: text/plain"]), 415,
                     "unsupported-media-type", "a form body")
        expect_error(c.call("POST", "/passcodes", raw="{nope", token=tech1), 400, "invalid-json", "broken JSON")
        expect_error(c.call("GET", "/nothing-here", token=tech1), 404, "not-found", "unknown path")

        # the monthly report
        month = time.strftime("%Y-%m", time.gmtime())
        expect_error(c.call("GET", f"/transactions?dealer=D100&month={month}", token=tech1), 403, "forbidden",
                     "report for a technician")
        status, j = c.call("GET", f"/transactions?dealer=D100&month={month}", token=mgr1)
        txs = {t["transaction_id"]: t for t in j.get("transactions", [])}
        check(status == 200 and set(txs) == {tx1, tx2, tx3}, f"report holds the three transactions ({len(txs)})")
        t1 = txs.get(tx1, {})
        check(t1.get("repair_order") == "RO-1001" and t1.get("customer") == "Smith" and t1.get("kind") == "immobilizer"
              and t1.get("technician") == "tech1" and t1.get("vin") == vin and len(t1.get("seed_digest", "")) == 64,
              "the immobilizer transaction takes repair order and customer from the request")
        status, text = c.call("GET", f"/transactions?dealer=D100&month={month}", token=mgr1,
                              headers=["Accept: text/csv"])
        lines = text.strip().splitlines() if isinstance(text, str) else []
        check(status == 200 and lines and lines[0].startswith("transaction_id,time,dealer") and len(lines) == 4
              and all(any(tx in l for l in lines) for tx in (tx1, tx2, tx3)), "report as CSV")

        # kill -9 right after a passcode was issued
        status, j = c.call("POST", "/passcodes", dict(sc_body, data2=sc[1]["data2"], data3=sc[1]["data3"],
                                                      cd=dict(sc_body["cd"], data2=sc[1]["cd_data2"],
                                                              data3=sc[1]["cd_data3"])), token=tech2)
        check(status == 200 and j.get("passcode") == sc[1]["passcode"], "second smart-code passcode")
        tx4 = j.get("transaction_id")
        srv.kill9()
        srv.start()
        mgr1 = c.login("mgr1")
        status, j = c.call("GET", f"/transactions?dealer=D100&month={month}", token=mgr1)
        check(status == 200 and tx4 in {t["transaction_id"] for t in j.get("transactions", [])},
              "after kill -9 and restart the transaction is in the report")
        status, j = c.call("GET", f"/reset-requests?vin={vin}", token=tech1)
        check(status == 200 and any(r["request_no"] == no and r["status"] == "completed" for r in j["requests"]),
              "sessions and requests survive the restart")

        # the admin command line, on the same database
        if ADMIN:
            cfg = f"{d}/server.yaml"
            p = subprocess.run([ADMIN, "--config", cfg, "report", "D100", month, "--csv"], capture_output=True,
                               text=True)
            check(p.returncode == 0 and tx4 in p.stdout and tx1 in p.stdout, "admin report --csv")
            p = subprocess.run([ADMIN, "--config", cfg, "nicb-export", month], capture_output=True, text=True)
            check(p.returncode == 0 and tx1 in p.stdout, "admin nicb-export")
            p = subprocess.run([ADMIN, "--config", cfg, "list-requests"], capture_output=True, text=True)
            check(p.returncode == 0 and no in p.stdout, "admin list-requests")
            p = subprocess.run([ADMIN, "--config", cfg, "enroll", "mgr9b", "Nia New", "D200", "manager",
                                "Parts Manager"], input="pw-new\n", capture_output=True, text=True)
            check(p.returncode == 0, "admin enroll")
            status, j = c.call("POST", "/login", {"user": "mgr9b", "password": "pw-new"})
            check(status == 200, "the enrolled user logs in")
            status, j = c.call("GET", "/dealers/D200/approvers", token=tech9)
            check(sorted(a["id"] for a in j.get("approvers", [])) == ["mgr9", "mgr9b"], "D200 now has two approvers")
            p = subprocess.run([ADMIN, "--config", cfg, "remove", "mgr9b"], capture_output=True, text=True)
            check(p.returncode == 0, "admin remove")
            expect_error(c.call("POST", "/login", {"user": "mgr9b", "password": "pw-new"}), 401, "unauthenticated",
                         "a removed user cannot log in")

        # the log is append-only in the database itself, for anyone with a database shell
        if pg:
            rc, out = pg.psql("UPDATE transactions SET passcode = 'x'")
            check(rc != 0 and "append-only" in out, "PostgreSQL refuses an UPDATE of the log")
            rc, out = pg.psql("DELETE FROM transactions")
            check(rc != 0 and "append-only" in out, "PostgreSQL refuses a DELETE from the log")
            rc, out = pg.psql("TRUNCATE transactions")
            check(rc != 0 and "append-only" in out, "PostgreSQL refuses a TRUNCATE of the log")
            rc, out = pg.psql("SELECT version FROM schema_version")
            check(rc == 0 and out.strip() == "2", f"schema version 2 ({out.strip()})")
        else:
            import sqlite3
            db = sqlite3.connect(f"{d}/passcodes.sqlite")
            for sql in ("UPDATE transactions SET passcode = 'x'", "DELETE FROM transactions"):
                try:
                    db.execute(sql)
                    db.commit()
                    check(False, f"SQLite refuses {sql}")
                except sqlite3.DatabaseError as e:
                    check("append-only" in str(e), f"SQLite refuses {sql.split()[0]}")
            check(db.execute("SELECT version FROM schema_version").fetchall() == [(2,)], "schema version 2")
            db.close()
            copy_into_postgres(d, month, (tx1, tx2, tx3, tx4), no)
    finally:
        srv.stop()
        if failures:
            print(open(f"{d}/server.log").read()[-4000:])
            if pg:
                print(pg.log_tail())
        shutil.rmtree(d, ignore_errors=True)
        if pg:
            pg.stop()
    print(f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
