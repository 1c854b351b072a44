#!/usr/bin/env python3
"""The immod demo: a guided all-keys-lost recovery on the simulated car.

A private D-Bus, the reference passcode service over HTTPS (a CA and a server
certificate made here with openssl, a test dealer with one technician and two approving
managers), immo-ecusim as a Lexus ES 350 with one registered key (time-scaled, so the
16-minute reset takes about 16 s), and immod on that bus and that vehicle link. The demo
then plays the technician: it asks for a reset approval, has a manager approve it, and
drives immod through its D-Bus API (busctl and gdbus) through the Immobilizer Reset and a
Smart Code Registration of two new keys, fetching every passcode from the passcode
service (curl), never computing one itself.

usage: tools/demo.sh [--interactive]
  --interactive   you play the person at the car from a second terminal (open the
                  driver door, touch the new keys); the demo waits for you
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(SRC, "build")
IMMOD = os.path.join(BUILD, "daemon", "immod")
ECUSIM = os.path.join(BUILD, "sim", "immo-ecusim")
SERVER = os.path.join(BUILD, "server", "immo-passcode-server")
CAR = os.path.join(HERE, "car")

VIN = "58ADZ1B19LU012345"
MODEL = "ES 350"
LOST_KEY = "11111111"               # the customer's only key, lost
NEW_KEYS = ["1A2B3C4D", "5E6F7A8B"]  # the two new smart keys
REPAIR_ORDER = "RO-20417"
CUSTOMER = "Garcia"
TECH = ("tech1", "Tom Tech")
MANAGERS = [("mgr1", "Mia Manager"), ("mgr2", "Max Manager")]

DEST = "org.immod.Immod1"
MGR_PATH = "/org/immod/Immod1"
MGR = "org.immod.Immod1.Manager"
PROC = "org.immod.Immod1.Procedure"

TTY = sys.stdout.isatty()


def style(code, text):
    return f"\033[{code}m{text}\033[0m" if TTY else text


def bold(t):
    return style("1", t)


def dim(t):
    return style("2", t)


def volts(v):
    return "n/a" if v is None else f"{v:.1f} V"


class DemoFailed(Exception):
    pass


T0 = time.monotonic()
_print_lock = threading.Lock()


def say(text="", who=None):
    """One line of narration, with the demo's elapsed time."""
    stamp = dim("%5.1fs" % (time.monotonic() - T0))
    with _print_lock:
        if TTY:
            sys.stdout.write("\r\033[K")
        for i, line in enumerate(text.split("\n") or [""]):
            prefix = f"{stamp}  " if i == 0 else " " * 8
            if who:
                prefix += (who if i == 0 else " " * len(who)) + " "
            print(prefix + line)
        sys.stdout.flush()


def section(title):
    with _print_lock:
        if TTY:
            sys.stdout.write("\r\033[K")
        print()
        print(bold("== " + title + " " + "=" * max(3, 74 - len(title))))
        sys.stdout.flush()


WHO_DESK = style("36", "[desk]")        # the technician at the service desk / tablet
WHO_MGR = style("35", "[manager]")
WHO_IMMOD = style("32", "[immod]")
WHO_CAR = style("33", "[car]")
WHO_TIS = style("34", "[passcodes]")


class Demo:
    def __init__(self, args):
        self.args = args
        self.interactive = args.interactive
        self.procs = []          # (name, Popen), started in this order
        self.dir = tempfile.mkdtemp(prefix="immod-demo-")
        os.chmod(self.dir, 0o755)  # a caller of another uid could reach the bus socket
        self.car_sock = os.path.join(self.dir, "car.sock")
        self.addr = None
        self.port = None
        self.passwords = {}
        self.tokens = {}
        self.request_no = None
        self.keyevents = []
        self.keyevent_cv = threading.Condition()
        self.software_version = None
        self.ecu_checked = 0.0
        self.ecu_asleep_said = False

    # ---------------------------------------------------------------- processes
    def log(self, name):
        return open(os.path.join(self.dir, name), "ab")

    def spawn(self, name, argv, logname, **kw):
        with self.log(logname) as lf:
            lf.write(("$ " + " ".join(argv) + "\n").encode())
            lf.flush()
            p = subprocess.Popen(argv, stdout=kw.pop("stdout", lf), stderr=lf, stdin=subprocess.DEVNULL,
                                 start_new_session=True, **kw)
        self.procs.append((name, p))
        return p

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                how = f"was killed by signal {-p.returncode}" if p.returncode < 0 else f"exited with status {p.returncode}"
                raise DemoFailed(f"{name} {how} unexpectedly; see its log in {self.dir}")

    def cleanup(self):
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.terminate()
                except OSError:
                    pass
        deadline = time.monotonic() + 5
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def wait_until(self, what, timeout, pred, interval=0.1):
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            r = pred()
            if r:
                return r
            self.check_alive()
            if deadline and time.monotonic() > deadline:
                raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
            if self.interactive and self.addr and time.monotonic() - self.ecu_checked > 1:
                self.watch_ecu()
            time.sleep(interval)

    def watch_ecu(self):
        """--interactive: a person may take long; when the ECU falls asleep, say how to wake it."""
        self.ecu_checked = time.monotonic()
        try:
            state = self.mget("EcuState")
        except DemoFailed:
            return
        if state == "asleep" and not self.ecu_asleep_said:
            say(style("1;33", "the ECU fell asleep: press the door courtesy switch (never the engine switch)") +
                "\nin the second terminal, run:\n    " + bold(f"{CAR} -s {self.car_sock} courtesy"), WHO_CAR)
        self.ecu_asleep_said = state == "asleep"

    def run(self, argv, what, logname="setup.log", input=None):
        with self.log(logname) as lf:
            lf.write(("$ " + " ".join(argv) + "\n").encode())
            lf.flush()
            p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=lf, input=input)
            lf.write(p.stdout)
        if p.returncode != 0:
            raise DemoFailed(f"{what} failed (exit {p.returncode}); see {self.dir}/{logname}")
        return p.stdout.decode()

    def template(self, name, out, **subst):
        text = open(os.path.join(HERE, name)).read()
        for k, v in subst.items():
            text = text.replace("@" + k + "@", str(v))
        path = os.path.join(self.dir, out)
        with open(path, "w") as f:
            f.write(text)
        return path

    # ---------------------------------------------------------------- setup
    def setup(self):
        section("Setting up the workshop (all on this machine)")
        say(f"log folder: {bold(self.dir)}")
        for tool in ("dbus-daemon", "busctl", "gdbus", "curl", "openssl"):
            if not shutil.which(tool):
                raise DemoFailed(f"{tool} is not installed (tools/install-deps.sh installs it)")
        for prog in (IMMOD, ECUSIM, SERVER):
            if not os.access(prog, os.X_OK):
                raise DemoFailed(f"{prog} is not built (tools/build.sh builds it)")

        # the master key: the OEM's secret, held by the passcode service and the car only
        vectors = json.load(open(os.path.join(SRC, "tests", "test-vectors.json")))
        key = os.path.join(self.dir, "master.key")
        with open(key, "w") as f:
            f.write(vectors["master_key_hex"] + "\n")
        os.chmod(key, 0o600)

        # TLS: a demo CA and a certificate for 127.0.0.1
        tls = os.path.join(self.dir, "tls")
        os.mkdir(tls)
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self.run(["openssl", "req", "-x509", *ec, "-keyout", f"{tls}/ca.key", "-out", f"{tls}/ca.pem",
                  "-subj", "/CN=immod demo CA", "-days", "2"], "making the demo CA", "openssl.log")
        self.run(["openssl", "req", *ec, "-keyout", f"{tls}/server.key", "-out", f"{tls}/server.csr",
                  "-subj", "/CN=localhost"], "making the server key", "openssl.log")
        with open(f"{tls}/server.ext", "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        self.run(["openssl", "x509", "-req", "-in", f"{tls}/server.csr", "-CA", f"{tls}/ca.pem", "-CAkey",
                  f"{tls}/ca.key", "-CAcreateserial", "-out", f"{tls}/server.pem", "-days", "2", "-extfile",
                  f"{tls}/server.ext"], "signing the server certificate", "openssl.log")
        self.ca = f"{tls}/ca.pem"
        say("TLS: a demo CA and a server certificate for 127.0.0.1 (openssl)")

        # the passcode service
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        for u in [TECH[0]] + [m[0] for m in MANAGERS]:
            self.passwords[u] = secrets.token_urlsafe(12)
        cfg = self.template("passcode-server.yaml.in", "passcode-server.yaml", PORT=self.port,
                            PW_TECH1=self.passwords["tech1"], PW_MGR1=self.passwords["mgr1"],
                            PW_MGR2=self.passwords["mgr2"])
        os.chmod(cfg, 0o600)
        self.spawn("immo-passcode-server", [SERVER, "--config", cfg], "passcode-server.log")

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        self.wait_until("the passcode service to listen", 10, listening, 0.05)
        self.base = f"https://127.0.0.1:{self.port}/api/v1"
        say(f"passcode service: {self.base}  (dealer D100: technician {TECH[0]}, "
            f"approving managers {MANAGERS[0][0]} and {MANAGERS[1][0]})")

        # the private bus
        bus_conf = self.template("bus.conf.in", "bus.conf", DIR=self.dir)
        bus = self.spawn("dbus-daemon", ["dbus-daemon", "--config-file=" + bus_conf, "--nofork",
                                         "--print-address=1"], "dbus-daemon.log", stdout=subprocess.PIPE)
        line = bus.stdout.readline().decode().strip()
        if not line:
            raise DemoFailed("dbus-daemon did not start; see dbus-daemon.log")
        self.addr = line
        say(f"private D-Bus: {self.addr}")

        # the car
        argv = [ECUSIM, "--link", f"vbus:{self.dir}/vbus.sock", "--vin", VIN, "--model", MODEL,
                "--master-key-file", key, "--keys", LOST_KEY, "--time-scale", "60", "--window-scale", "1",
                "--battery", "13.6", "--control", self.car_sock, "-v"]
        self.spawn("immo-ecusim", argv, "immo-ecusim.log")
        self.wait_until("immo-ecusim's control socket", 10, lambda: os.path.exists(self.car_sock), 0.05)
        say(f"simulated car: Lexus {MODEL}, VIN {VIN}, one key registered, power supply at 13.6 V;")
        say("               time scale 60 (the 16-minute reset takes about 16 s)")

        # immod
        os.mkdir(os.path.join(self.dir, "immod-state"))
        import grp
        conf = self.template("immod.conf.in", "immod.conf", DIR=self.dir, SRC=SRC, PORT=self.port,
                             GROUP=grp.getgrgid(os.getgid()).gr_name)
        self.spawn("immod", [IMMOD, "--config", conf, "--bus", self.addr, "-v"], "immod.log")

        def owned():
            p = subprocess.run(["busctl", "--address=" + self.addr, "status", DEST], capture_output=True)
            return p.returncode == 0
        self.wait_until("immod to take its bus name", 15, owned, 0.1)
        say(f"immod {self.mget('Version')} on the private bus, link {self.mget('Link')}")

        # follow immod's signals, as a front end would
        mon = self.spawn("busctl monitor", ["busctl", "--address=" + self.addr, "--json=short", "monitor",
                                            "--match", f"type='signal',interface='{PROC}'"],
                         "bus-signals.log", stdout=subprocess.PIPE)
        threading.Thread(target=self.follow_signals, args=(mon,), daemon=True).start()
        self.car_events()

    def follow_signals(self, mon):
        with self.log("bus-signals.log") as lf:
            for raw in mon.stdout:
                lf.write(raw)
                lf.flush()
                try:
                    m = json.loads(raw)
                except ValueError:
                    continue
                member = m.get("member")
                data = (m.get("payload") or {}).get("data") or []
                if member == "KeyEvent" and len(data) == 3:
                    ev, slot, beeps = data
                    with self.keyevent_cv:
                        self.keyevents.append((ev, slot, beeps))
                        self.keyevent_cv.notify_all()
                    sound = " ".join(["beep"] * beeps) if beeps else "no beep"
                    say(f"KeyEvent {bold(ev)}, slot {slot}: {sound}", WHO_IMMOD)

    def car_events(self):
        """The car's beeps, as the person at the car hears them (immo-ecusim's event feed)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.car_sock)
        s.sendall(b"events\n")

        def reader():
            with self.log("car-events.log") as lf:
                buf = b""
                while True:
                    try:
                        d = s.recv(4096)
                    except OSError:
                        return
                    if not d:
                        return
                    lf.write(d)
                    lf.flush()
        threading.Thread(target=reader, daemon=True).start()

    # ---------------------------------------------------------------- D-Bus
    def busctl(self, *args):
        p = subprocess.run(["busctl", "--address=" + self.addr, "--json=short", *args], capture_output=True)
        if p.returncode != 0:
            self.check_alive()  # a dead immod is the clearer message
            raise DemoFailed(f"busctl {' '.join(args[:5])}: {p.stderr.decode().strip()}")
        return json.loads(p.stdout) if p.stdout.strip() else None

    def mcall(self, method, sig="", *args):
        r = self.busctl("call", DEST, MGR_PATH, MGR, method, *([sig] if sig else []), *map(str, args))
        return r["data"] if r else None

    def mget(self, prop):
        return self.busctl("get-property", DEST, MGR_PATH, MGR, prop)["data"]

    def props(self, path):
        r = self.busctl("call", DEST, path, "org.freedesktop.DBus.Properties", "GetAll", "s", PROC)
        return {k: v["data"] for k, v in r["data"][0].items()}

    def pcall(self, method, *args):
        """A Procedure method through gdbus (which names the D-Bus error); returns None or (error, message)."""
        argv = ["gdbus", "call", "--address", self.addr, "--dest", DEST, "--object-path", self.path,
                "--method", f"{PROC}.{method}", *args]
        p = subprocess.run(argv, capture_output=True, text=True)
        with self.log("bus-calls.log") as lf:
            shown = argv[:-len(args)] + ["..."] if method == "FetchPasscode" and args else argv
            lf.write((" ".join(shown) + "\n" + p.stdout + p.stderr).encode())
        if p.returncode == 0:
            return None
        err = p.stderr.strip()
        name, msg = "unknown", err
        if "GDBus.Error:" in err:
            rest = err.split("GDBus.Error:", 1)[1]
            name, _, msg = rest.partition(": ")
        return name.rsplit(".", 1)[-1], msg.strip()

    def must(self, method, *args):
        r = self.pcall(method, *args)
        if r:
            self.check_alive()
            raise DemoFailed(f"{method} {' '.join(args)} refused: {r[0]}: {r[1]}")

    # ---------------------------------------------------------------- passcode service
    def http(self, method, path, body=None, token=None, who="tech1"):
        argv = ["curl", "-sS", "--max-time", "20", "--cacert", self.ca, "-X", method, "-w", "\n%{http_code}",
                self.base + path]
        if token:
            argv += ["-H", f"Authorization: Bearer {token}"]
        data = None
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
            data = json.dumps(body).encode()
        p = subprocess.run(argv, input=data, capture_output=True)
        with self.log("passcode-http.log") as lf:
            shown = dict(body) if isinstance(body, dict) else body
            if isinstance(shown, dict) and "password" in shown:
                shown["password"] = "***"
            lf.write(f"{method} {path} {json.dumps(shown) if shown is not None else ''}\n".encode())
            lf.write(p.stdout + p.stderr + b"\n")
        if p.returncode != 0:
            raise DemoFailed(f"passcode service unreachable ({method} {path}): {p.stderr.decode().strip()}")
        text, _, status = p.stdout.decode().rpartition("\n")
        try:
            j = json.loads(text) if text else {}
        except ValueError:
            j = {"error": "bad-answer", "message": text[:200]}
        status = int(status)
        if status >= 400:
            raise DemoFailed(f"passcode service refused {method} {path}: {status} {j.get('error')}: "
                             f"{j.get('message')}" + (f" (field {j['field']})" if "field" in j else ""))
        return j

    def login(self, user):
        if user not in self.tokens:
            j = self.http("POST", "/login", {"user": user, "password": self.passwords[user]})
            self.tokens[user] = j["token"]
        return self.tokens[user]

    # ---------------------------------------------------------------- the story
    def approval(self):
        section("1. At the service desk: the reset approval request")
        say(f"The customer ({CUSTOMER}) lost the only key of a Lexus {MODEL}, VIN {VIN}.", WHO_DESK)
        say(f"Technician {TECH[1]} ({TECH[0]}) logs in to the passcode service.", WHO_DESK)
        tok = self.login("tech1")
        appr = self.http("GET", "/dealers/D100/approvers", token=tok)["approvers"]
        say("Approving managers of dealer D100: " +
            ", ".join(f"{a['name']} ({a['title']})" for a in appr), WHO_TIS)
        body = {"dealer_code": "D100", "technician": "tech1", "vin": VIN, "repair_order": REPAIR_ORDER,
                "customer_last_name": CUSTOMER,
                "attestations": {"customer_authority": True, "photo_id": True, "registration": True, "terms": True},
                "approvers": [m[0] for m in MANAGERS]}
        say(f"Request: repair order {REPAIR_ORDER}, customer {CUSTOMER}; attested: customer's authority, "
            "photo ID,\nregistration and ownership seen, terms accepted; approvers selected: "
            f"{MANAGERS[0][1]}, {MANAGERS[1][1]}", WHO_DESK)
        j = self.http("POST", "/reset-requests", body, token=tok)
        self.request_no = j["request_no"]
        say(f"Request {bold(self.request_no)} is {j['status']}.", WHO_TIS)

        section("2. The manager approves")
        mgr, mname = MANAGERS[0]
        mtok = self.login(mgr)
        reqs = self.http("GET", f"/reset-requests?vin={VIN}", token=mtok)["requests"]
        mine = [r for r in reqs if r["request_no"] == self.request_no]
        if not mine or mine[0]["status"] != "pending":
            raise DemoFailed(f"the manager does not see request {self.request_no} pending: {reqs}")
        say(f"{mname} sees request {self.request_no} from {mine[0]['technician']} for VIN {VIN}: pending", WHO_MGR)
        say("attests: details verified, the transaction log goes to the NICB, terms accepted: APPROVE", WHO_MGR)
        j = self.http("POST", f"/reset-requests/{self.request_no}/decision",
                      {"decision": "approve",
                       "attestations": {"details_verified": True, "nicb_notice": True, "terms": True}}, token=mtok)
        if j.get("status") != "approved":
            raise DemoFailed(f"the approval was not recorded: {j}")
        reqs = self.http("GET", f"/reset-requests?vin={VIN}", token=tok)["requests"]
        mine = [r for r in reqs if r["request_no"] == self.request_no][0]
        say(f"Request {self.request_no}: {bold(mine['status'])} by {mine['approved_by']}, "
            f"valid till {mine['valid_till']}", WHO_TIS)

    def identify(self):
        section("3. At the car: identify the vehicle")
        say("The technician plugs the vehicle-interface box into the OBD-II port.", WHO_DESK)
        v = {k: x["data"] for k, x in self.mcall("Identify")[0].items()}
        say(f"VIN {v.get('vin')} (check digit {'ok' if v.get('vin_check_ok') else 'WRONG'}): "
            f"{v.get('make')} {v.get('model')} {v.get('year')}, profile {v.get('profile')} "
            f"(read from the {v.get('source')})", WHO_IMMOD)
        if v.get("vin") != VIN:
            raise DemoFailed(f"Identify read VIN {v.get('vin')}, expected {VIN}")
        ks = self.key_status()
        bv = self.mget("BatteryVoltage")
        say(("Battery: not measured outside a procedure" if bv is None else
             f"Battery {bv:.1f} V ({self.mget('BatteryState')})") +
            f", ECU {self.mget('EcuState')}, passcode service {self.mget('Server')}, "
            f"problems: {', '.join(self.mget('Problems')) or 'none'}", WHO_IMMOD)
        self.software_version = "unknown"
        return ks

    def key_status(self):
        ks = {k: x["data"] for k, x in self.mcall("ReadKeyStatus")[0].items()}
        say(f"Keys: {ks.get('registered')} registered, {ks.get('available')} slots free of {ks.get('max')}",
            WHO_IMMOD)
        return ks

    def start(self, kind):
        opts = ["3", "repair_order", "s", REPAIR_ORDER, "customer_last_name", "s", CUSTOMER,
                "technician", "s", TECH[0]]
        r = self.mcall("StartProcedure", "sa{sv}", kind, *opts)
        self.path = r[0]
        self.last_step = None
        say(f"StartProcedure {kind} -> {self.path}", WHO_IMMOD)

    def next_step(self, timeout=30):
        """Waits for a step other than the last one handled; prints it with its Prompt."""
        def changed():
            p = self.props(self.path)
            if p["State"] in ("failed", "cancelled"):
                raise DemoFailed(f"the procedure {p['State']} at {p['Step']}: {p['Error']}: {p['ErrorMessage']}")
            return p if p["Step"] != self.last_step else None
        p = self.wait_until(f"the step after {self.last_step}", timeout, changed)
        self.last_step = p["Step"]
        say(bold(f"Step {p['StepIndex']} of {p['StepCount']}: {p['Step']}") + f"  ({p['State']})", WHO_IMMOD)
        if p["Prompt"]:
            say(style("1;33", "> ") + p["Prompt"].replace("\n", "\n  "), WHO_IMMOD)
        return p

    def ack(self, step, who_text):
        say(who_text, WHO_DESK)
        self.must("Acknowledge", step)

    def car(self, command, doing, do):
        """The person at the car does something: simulated, or by the user in --interactive."""
        if not self.interactive:
            say(f"{doing}  " + dim(f"(tools/demo/car {command})"), WHO_CAR)
            out = subprocess.run([CAR, "-s", self.car_sock, *command.split()], capture_output=True, text=True)
            if out.returncode != 0:
                raise DemoFailed(f"the car refused '{command}': {out.stdout.strip()} {out.stderr.strip()}")
            return
        say(style("1;33", f"YOUR TURN at the car: {do}") + "\n" +
            "in a second terminal, run:\n    " + bold(f"{CAR} -s {self.car_sock} {command}") + "\n" +
            f"(or: echo '{command}' | socat - UNIX-CONNECT:{self.car_sock})", WHO_CAR)

    def car_state(self):
        out = subprocess.run([CAR, "-s", self.car_sock, "state"], capture_output=True, text=True)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return {}

    def show_immobilizer_seed(self, p):
        seed = p["Seed"]["seed"]["data"] if isinstance(p["Seed"].get("seed"), dict) else p["Seed"]["seed"]
        groups = [seed[i:i + 4].upper() for i in range(0, len(seed), 4)]
        rows = ["  ".join(groups[i:i + 6]) for i in range(0, len(groups), 6)]
        say(f"Immobilizer seed ({len(seed)} digits; {p['PasscodeAttemptsLeft']} attempts left):\n" +
            "\n".join("    " + r for r in rows), WHO_IMMOD)
        return seed

    def seed_fields(self, p):
        return {k: (v["data"] if isinstance(v, dict) and "data" in v else v) for k, v in p["Seed"].items()}

    def show_smart_seed(self, p):
        s = self.seed_fields(p)
        rows = [("VIN", s["vin"], s["cd_vin"]), ("Data1", s["data1"], s["cd_data1"]),
                ("Data2", s["data2"], s["cd_data2"]), ("Data3", s["data3"], s["cd_data3"])]
        table = ["    field   value               check",
                 "    ------  ------------------  -----"]
        table += [f"    {n:<6}  {v:<18}  {c}" for n, v, c in rows]
        say(f"Smart code seed ({p['PasscodeAttemptsLeft']} attempts left):\n" + "\n".join(table), WHO_IMMOD)
        return s

    def passcode_step(self, p):
        """Fetch the passcode for the Seed shown from the service and submit it; a rejection brings a new seed."""
        tok = self.login("tech1")
        for attempt in range(3):
            s = self.seed_fields(p)
            if s["kind"] == "immobilizer":
                seed = self.show_immobilizer_seed(p)
                say(f"asks the passcode service for the immobilizer passcode (request {self.request_no})", WHO_DESK)
                j = self.http("POST", "/passcodes", {"kind": "immobilizer", "vin": VIN,
                                                     "software_version": self.software_version,
                                                     "request_no": self.request_no, "seed": seed}, token=tok)
                pc = j["passcode"]
                shown = f"{pc[:3]} {pc[3:]}"
            else:
                self.show_smart_seed(p)
                say("types the four fields with their check characters into the passcode service", WHO_DESK)
                j = self.http("POST", "/passcodes", {
                    "kind": "smart-code", "vin": s["vin"], "software_version": self.software_version,
                    "repair_order": REPAIR_ORDER, "customer_last_name": CUSTOMER,
                    "data1": s["data1"], "data2": s["data2"], "data3": s["data3"],
                    "cd": {"vin": s["cd_vin"], "data1": s["cd_data1"], "data2": s["cd_data2"],
                           "data3": s["cd_data3"]}}, token=tok)
                pc = j["passcode"]
                shown = " ".join(pc[i:i + 4] for i in range(0, len(pc), 4))
            say(f"passcode {bold(shown)}  (transaction {j['transaction_id']})", WHO_TIS)
            say(f"enters the passcode: SubmitPasscode \"{shown}\"", WHO_DESK)
            r = self.pcall("SubmitPasscode", shown)
            if r is None:
                say("passcode accepted", WHO_IMMOD)
                return
            if r[0] != "PasscodeRejected":
                raise DemoFailed(f"SubmitPasscode refused: {r[0]}: {r[1]}")
            say(f"passcode rejected: {r[1]}; a new seed follows", WHO_IMMOD)
            p = self.props(self.path)
        raise DemoFailed("three passcodes rejected")

    def reset(self):
        section("4. Immobilizer Reset (all keys lost)")
        self.start("immobilizer-reset")
        while True:
            p = self.next_step()
            st = p["Step"]
            if st == "confirm-erase-all":
                self.ack(st, "confirms: erase ALL keys of this car (Acknowledge confirm-erase-all)")
            elif st == "open-driver-door":
                self.car("door open", "opens the driver door", "open the driver door")
                self.wait_until("the driver door to open", 0 if self.interactive else 10,
                                lambda: self.car_state().get("door") == "open", 0.3)
                if self.interactive:
                    say("the driver door is open", WHO_CAR)
                self.ack(st, "the door is open (Acknowledge open-driver-door; immod checks the door switch)")
            elif st == "immobilizer-passcode":
                self.passcode_step(p)
            elif st == "confirm-duration":
                self.ack(st, "confirms the power supply stays connected for about 16 minutes "
                             "(Acknowledge confirm-duration)")
            elif st == "smart-code-passcode":
                self.passcode_step(p)
            elif st == "resetting":
                self.progress()
            elif st == "done":
                p = self.props(self.path)
                if p["State"] != "succeeded":
                    raise DemoFailed(f"the reset ended {p['State']}: {p['ErrorMessage']}")
                k = self.seed_fields({"Seed": p["Keys"]})
                say(bold(f"Reset succeeded: {k.get('registered')} keys registered, {k.get('available')} "
                         f"slots free; battery minimum {volts(p['BatteryMinimum'])}"), WHO_IMMOD)
                return
            else:
                raise DemoFailed(f"unexpected step {st}")

    def progress(self):
        last_print = 0
        while True:
            p = self.props(self.path)
            if p["Step"] != "resetting" or p["State"] in ("failed", "cancelled", "succeeded"):
                if TTY:
                    print()
                return
            left = f"about {p['RemainingSeconds']} s left" if p["RemainingSeconds"] else "estimating the time left"
            bv = self.mget("BatteryVoltage")
            line = (f"resetting: {p['Percentage']:3d} %, {left}, battery "
                    + (f"{bv:.1f} V, " if bv is not None else "") + f"minimum {volts(p['BatteryMinimum'])}")
            now = time.monotonic()
            if TTY:
                bar = "#" * (p["Percentage"] // 4) + "." * (25 - p["Percentage"] // 4)
                with _print_lock:
                    sys.stdout.write("\r\033[K" + dim("%5.1fs" % (now - T0)) + "  " + WHO_IMMOD +
                                     f" [{bar}] " + line)
                    sys.stdout.flush()
            elif now - last_print >= 2:
                say(line, WHO_IMMOD)
                last_print = now
            self.check_alive()
            time.sleep(0.5)

    def registration(self):
        section("5. Smart Code Registration of two new keys")
        self.start("key-registration")
        added = 0
        while True:
            p = self.next_step()
            st = p["Step"]
            if st == "confirm-instructions":
                self.ack(st, "has read the registration instructions (Acknowledge confirm-instructions)")
            elif st == "smart-code-passcode":
                self.passcode_step(p)
            elif st == "check-slots":
                k = self.seed_fields({"Seed": p["Keys"]})
                say(f"Keys: {k.get('registered')} registered, {k.get('available')} slots free of {k.get('max')}",
                    WHO_IMMOD)
                self.ack(st, "slots are free (Acknowledge check-slots)")
            elif st == "place-keys":
                self.ack(st, f"has the two new keys {NEW_KEYS[0]} and {NEW_KEYS[1]} at hand, all others away from "
                             "the car (Acknowledge place-keys)")
            elif st == "touch-registered-key":
                raise DemoFailed("immod asks for a registered key, but the reset should have erased them all")
            elif st == "pre-start-check":
                if p["StepIndex"] == 6:
                    say("(touch-registered-key skipped: no key is registered after the reset)", WHO_IMMOD)
                self.ack(st, "pre-start check done (Acknowledge pre-start-check)")
            elif st == "touch-new-keys":
                for i, key in enumerate(NEW_KEYS, 1):
                    seen = [len(self.keyevents)]
                    self.car(f"touch {key}", f"touches new key {i} ({key}) to the engine start switch",
                             f"touch new key {i} ({key}) to the engine start switch")

                    def registered():
                        with self.keyevent_cv:
                            evs = self.keyevents[seen[0]:]
                            seen[0] = len(self.keyevents)
                        for ev in evs:
                            if ev[0] == "key-registered":
                                return True
                            if ev[0] in ("registered-key-recognised", "unknown-key"):
                                continue
                            if not self.interactive:
                                raise DemoFailed(f"key {key} not registered: {ev[0]}")
                            say(f"that did not register a new key ({ev[0]}); touch new key {i} ({key}) again",
                                WHO_CAR)
                        return False
                    self.wait_until(f"new key {key} to register", 0 if self.interactive else 15, registered)
                k = self.seed_fields({"Seed": self.props(self.path)["Keys"]})
                say(f"Keys: {k.get('added')} added, {k.get('registered')} registered", WHO_IMMOD)
                say("both new keys are registered: ends registration (Finish)", WHO_DESK)
                self.must("Finish")
            elif st == "function-check":
                self.ack(st, "each new key starts the engine and locks/unlocks the doors (Acknowledge "
                             "function-check)")
            elif st == "done":
                p = self.props(self.path)
                if p["State"] != "succeeded":
                    raise DemoFailed(f"the registration ended {p['State']}: {p['ErrorMessage']}")
                k = self.seed_fields({"Seed": p["Keys"]})
                say(bold(f"Registration succeeded: {k.get('added')} keys added, {k.get('registered')} registered"),
                    WHO_IMMOD)
                return
            else:
                raise DemoFailed(f"unexpected step {st}")

    def finish(self):
        section("6. Key status and audit records")
        if not self.interactive:
            self.car("door closed", "closes the driver door", "close the driver door")
        ks = self.key_status()
        if ks.get("registered") != 2:
            raise DemoFailed(f"the car has {ks.get('registered')} keys registered, expected 2")
        hist = self.mcall("GetHistory", "u", 10)[0]
        say(f"GetHistory: {len(hist)} audit record(s), newest first:", WHO_IMMOD)
        rows = [("when (UTC)", "procedure", "result", "keys", "battery min", "technician", "repair order",
                 "passcodes")]
        for rec in hist:
            r = {k: v["data"] for k, v in rec.items()}
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((r.get("time") or r.get("created") or 0) / 1e6))
            rows.append((when, str(r.get("kind")), str(r.get("result")),
                         f"{r.get('keys_before')} -> {r.get('keys_after')}", volts(r.get("battery_min")),
                         str(r.get("technician")), str(r.get("repair_order")), str(r.get("passcode_attempts"))))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        say("\n".join("    " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows), WHO_IMMOD)
        if len(hist) < 2:
            raise DemoFailed(f"expected two audit records, got {len(hist)}")
        tok = self.login("tech1")
        j = self.http("POST", f"/reset-requests/{self.request_no}/complete", token=tok)
        say(f"repair order {REPAIR_ORDER} done: request {self.request_no} {j.get('status')} "
            "(the approval no longer holds)", WHO_TIS)


def main():
    ap = argparse.ArgumentParser(prog="tools/demo.sh", description=__doc__.split("\n")[0])
    ap.add_argument("--interactive", action="store_true",
                    help="you play the person at the car from a second terminal")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    d = Demo(args)
    code = 1
    try:
        d.setup()
        d.approval()
        d.identify()
        d.reset()
        d.registration()
        d.finish()
        code = 0
    except DemoFailed as e:
        say(style("1;31", f"DEMO FAILED: {e}"))
    except KeyboardInterrupt:
        say(style("1;31", "interrupted"))
        code = 130
    except Exception as e:  # a bug of the demo itself: still clean up and say so
        import traceback
        with d.log("demo-traceback.log") as lf:
            lf.write(traceback.format_exc().encode())
        say(style("1;31", f"DEMO FAILED: internal error {type(e).__name__}: {e} (see demo-traceback.log)"))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        d.cleanup()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    section("End")
    if code == 0:
        say(bold(f"All keys lost -> two new keys, in {time.monotonic() - T0:.0f} s."))
    elif code == 1:
        try:
            tail = open(os.path.join(d.dir, "immod.log"), errors="replace").read().splitlines()[-15:]
            say("last lines of immod.log:\n" + "\n".join("  " + t for t in tail))
        except OSError:
            pass
    say(f"logs: {d.dir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
