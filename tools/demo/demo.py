#!/usr/bin/env python3
"""The immod demo: a guided all-keys-lost recovery on the simulated car, through immoctl.

A private D-Bus, the reference passcode service over HTTPS (a CA and a server
certificate made here with openssl, a test dealer with one technician and two approving
managers), immo-ecusim as a Lexus ES 350 with one registered key (time-scaled, so the
16-minute reset takes about 16 s), and immod on that bus and that vehicle link. The demo
then plays the technician with immoctl alone: the approval request, the Immobilizer Reset
and a Smart Code Registration of two new keys, every passcode fetched from the passcode
service by immod (--fetch). The manager approves on the passcode service (curl), and the
person at the car opens the door and touches the keys (immo-ecusim's control socket).

The technician's web page (Cockpit, web/) is served too where cockpit-ws is installed,
and its address printed: open it to watch the procedures as they run.

usage: tools/demo.sh [--interactive | --web]
  --interactive   you are the technician: you answer immoctl's questions, and you play
                  the person at the car from a second terminal (door, key touches)
  --web           the workshop is set up and left running, with nothing done: you are the
                  technician on the web page, and the person at the car with tools/demo/car
                  (Ctrl-C ends it)
"""

import argparse
import json
import os
import secrets
import shlex
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
# IMMOD_DEMO_BUILD: another build folder (the test suite runs the demo on its own build);
# IMMOD_DEMO_LOGS: where the log folder goes (default: the temporary folder)
BUILD = os.environ.get("IMMOD_DEMO_BUILD") or os.path.join(SRC, "build")
LOGS = os.environ.get("IMMOD_DEMO_LOGS") or None
IMMOD = os.path.join(BUILD, "daemon", "immod")
ECUSIM = os.path.join(BUILD, "sim", "immo-ecusim")
SERVER = os.path.join(BUILD, "server", "immo-passcode-server")
IMMOCTL = os.path.join(BUILD, "client", "immoctl")
WEB = os.path.join(BUILD, "web")
COCKPIT_WS = "/usr/lib/cockpit/cockpit-ws"
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
WHO_TECH = style("36", "[technician]")  # the technician typing immoctl commands
WHO_MGR = style("35", "[manager]")
WHO_IMMOD = style("32", "[immod]")
WHO_CAR = style("33", "[car]")
WHO_TIS = style("34", "[passcodes]")


class Demo:
    def __init__(self, args):
        self.args = args
        self.interactive = args.interactive
        self.procs = []          # (name, Popen), started in this order
        self.dir = tempfile.mkdtemp(prefix="immod-demo-", dir=LOGS)
        os.chmod(self.dir, 0o755)  # a caller of another uid could reach the bus socket
        self.car_sock = os.path.join(self.dir, "car.sock")
        self.addr = None
        self.port = None
        self.passwords = {}
        self.tokens = {}
        self.request_no = None
        self.password_file = os.path.join(self.dir, "tech1.password")
        self.web_url = None

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
            time.sleep(interval)

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
        for tool in ("dbus-daemon", "busctl", "curl", "openssl"):
            if not shutil.which(tool):
                raise DemoFailed(f"{tool} is not installed (tools/install-deps.sh installs it)")
        for prog in (IMMOD, ECUSIM, SERVER, IMMOCTL):
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
        cfg = self.template("passcode-server.yaml.in", "passcode-server.yaml", PORT=self.port, SRC=SRC,
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
        self.pages = f"https://127.0.0.1:{self.port}/"
        say(f"its web pages (the manager's inbox): {self.pages}")

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
        say(f"immod on the private bus, link vbus:{self.dir}/vbus.sock")

        # the technician's password for the passcode service, for immoctl --password-file
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.passwords[TECH[0]] + "\n")

    def web(self):
        """cockpit-ws with a local session on loopback (no TLS, no login: a demo, as in
        tests/web), serving the page of the build tree against the demo's bus."""
        if not (os.access(COCKPIT_WS, os.X_OK) and shutil.which("cockpit-bridge") and os.path.isdir(WEB)):
            say(dim("web page: cockpit-ws is not installed (tools/install-deps.sh installs it); skipped"))
            return
        xdg = os.path.join(self.dir, "xdg")
        os.makedirs(os.path.join(xdg, "cockpit"))
        os.symlink(WEB, os.path.join(xdg, "cockpit", "immod"))
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            port = sk.getsockname()[1]
        env = dict(os.environ, XDG_DATA_HOME=xdg, DBUS_SYSTEM_BUS_ADDRESS=self.addr,
                   DBUS_SESSION_BUS_ADDRESS="unix:path=" + os.path.join(self.dir, "no-session-bus"),
                   SSH_AUTH_SOCK="/dev/null")
        self.spawn("cockpit-ws", [COCKPIT_WS, "--no-tls", "--address", "127.0.0.1", "--port", str(port),
                                  "--local-session=cockpit-bridge"], "cockpit-ws.log", env=env)

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        self.wait_until("cockpit-ws to listen", 10, listening, 0.05)
        self.web_url = f"http://127.0.0.1:{port}/cockpit/@localhost/immod/index.html"
        say(f"web page: {bold(self.web_url)}")

    def web_only(self):
        section("The workshop is yours")
        if not self.web_url:
            raise DemoFailed("--web needs cockpit-ws and cockpit-bridge (tools/install-deps.sh installs them)")
        say(f"Open {bold(self.web_url)} in a browser on this machine: you are the technician.")
        say(f"The passcode service's user {TECH[0]} has the password {bold(self.passwords[TECH[0]])} "
            "(for \"fetch from the passcode service\" and the approval request);")
        say(f"Ask for the reset approval on the page's Approval screen (approvers {MANAGERS[0][0]} and "
            f"{MANAGERS[1][0]}); the demo plays {MANAGERS[0][1]} and approves it within seconds.")
        say("You are also the person at the car, from another terminal:")
        say(f"  tools/demo/car -s {self.car_sock} door open | courtesy | touch 5E6F7A8B | state")
        say("Ctrl-C ends the demo.")
        mgr, mname = MANAGERS[0]
        while True:
            time.sleep(2)
            self.check_alive()
            try:  # the manager, at the service: approves what waits for him
                tok = self.login(mgr)
                for r in self.http("GET", f"/reset-requests?vin={VIN}", token=tok)["requests"]:
                    if r.get("status") == "pending":
                        self.http("POST", f"/reset-requests/{r['request_no']}/decision",
                                  {"decision": "approve",
                                   "attestations": {"details_verified": True, "nicb_notice": True, "terms": True}},
                                  token=tok)
                        say(f"{mname} approves request {r['request_no']} on the passcode service", WHO_MGR)
            except (DemoFailed, KeyError, TypeError) as e:
                say(dim(f"(the manager could not look at the requests: {e})"))

    # ---------------------------------------------------------------- immoctl
    def immoctl(self, *args, what, on_line=None, interactive=False, ok=(0,)):
        """Runs immoctl on the private bus as the technician types it; its output is shown as it comes."""
        argv = [IMMOCTL, "--bus=" + self.addr, *args]
        shown = " ".join(shlex.quote(a) for a in ["immoctl", *args])
        say(bold("$ " + shown), WHO_TECH)
        with self.log("immoctl.log") as lf:
            lf.write(("$ " + " ".join(argv) + "\n").encode())
        if interactive:  # the person at the keyboard answers immoctl's questions
            code = subprocess.run(argv).returncode
        else:
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            with self.log("immoctl.log") as lf:
                for raw in p.stdout:
                    lf.write(raw)
                    lf.flush()
                    line = raw.decode(errors="replace").rstrip("\n")
                    with _print_lock:
                        print(" " * 8 + dim("|") + " " + line)
                        sys.stdout.flush()
                    if on_line:
                        on_line(line)
            code = p.wait()
        if code not in ok:
            self.check_alive()  # a dead immod is the clearer message
            raise DemoFailed(f"{shown} failed with exit status {code}; see {self.dir}/immoctl.log")
        return code

    def credentials(self):
        return ["--user", TECH[0], "--password-file", self.password_file]

    def record(self):
        return ["--repair-order", REPAIR_ORDER, "--customer", CUSTOMER, "--technician", TECH[1]]

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

    # ---------------------------------------------------------------- the car
    def car(self, command, doing, do):
        """The person at the car does something: simulated, or by the user in --interactive."""
        if not self.interactive:
            say(f"{doing}  " + dim(f"(tools/demo/car {command})"), WHO_CAR)
            out = subprocess.run([CAR, "-s", self.car_sock, *command.split()], capture_output=True, text=True)
            if out.returncode != 0:
                raise DemoFailed(f"the car refused '{command}': {out.stdout.strip()} {out.stderr.strip()}")
            return
        say(style("1;33", f"at the car: {do}") + "\nin a second terminal, run:\n    " +
            bold(f"{CAR} -s {self.car_sock} {command}"), WHO_CAR)

    def car_state(self):
        out = subprocess.run([CAR, "-s", self.car_sock, "state"], capture_output=True, text=True)
        try:
            return json.loads(out.stdout)
        except ValueError:
            return {}

    # ---------------------------------------------------------------- the story
    def approval(self):
        section("1. At the service desk: the reset approval request")
        say(f"The customer ({CUSTOMER}) lost the only key of a Lexus {MODEL}, VIN {VIN}.", WHO_DESK)
        say(f"Technician {TECH[1]} ({TECH[0]}) asks the passcode service for a reset approval, through immod:",
            WHO_DESK)
        code_args = ["approval", "request", VIN, *self.record()[:4], "--approver", MANAGERS[0][0],
                     "--approver", MANAGERS[1][0], *self.credentials()]
        if self.interactive:
            self.immoctl(*code_args, what="the approval request", interactive=True)
        else:
            self.immoctl(*code_args, "--attest", "all", "--no-ask", what="the approval request")
        tok = self.login(TECH[0])
        reqs = self.http("GET", f"/reset-requests?vin={VIN}", token=tok)["requests"]
        if not reqs:
            raise DemoFailed("the passcode service holds no request for the VIN")
        self.request_no = reqs[0]["request_no"]

        section("2. The manager approves (on the passcode service)")
        mgr, mname = MANAGERS[0]
        mtok = self.login(mgr)
        reqs = self.http("GET", f"/reset-requests?vin={VIN}", token=mtok)["requests"]
        mine = [r for r in reqs if r["request_no"] == self.request_no]
        if not mine or mine[0]["status"] != "pending":
            raise DemoFailed(f"the manager does not see request {self.request_no} pending: {reqs}")
        if self.interactive:  # the person approves by hand, in the service's own pages
            say(style("1;33", f"you are {mname} now: open the manager's inbox at {self.pages}") +
                f"\n(a browser warns about the demo's certificate: accept it, or trust {self.ca})\n"
                f"log in as {bold(mgr)} with the password {bold(self.passwords[mgr])}, open request "
                f"{self.request_no}, check the three boxes of the Request Approval Policy and select Approve",
                WHO_MGR)

            def decided():
                r = [q for q in self.http("GET", f"/reset-requests?vin={VIN}", token=mtok)["requests"]
                     if q["request_no"] == self.request_no]
                return r and r[0]["status"] != "pending"
            self.wait_until("the manager's decision in the web pages", 900, decided, 1)
            j = self.http("GET", f"/reset-requests/{self.request_no}", token=mtok)
            if j.get("status") != "approved":
                raise DemoFailed(f"the manager did not approve request {self.request_no}: {j.get('status')}")
            say(f"{mname} approved request {self.request_no} in the web pages", WHO_MGR)
        else:
            say(f"{mname} sees request {self.request_no} from {mine[0]['technician']} for VIN {VIN}: pending",
                WHO_MGR)
            say("attests: details verified, the transaction log goes to the NICB, terms accepted: APPROVE", WHO_MGR)
            say(dim(f"(a person would do this in the manager's inbox at {self.pages})"), WHO_MGR)
            j = self.http("POST", f"/reset-requests/{self.request_no}/decision",
                          {"decision": "approve",
                           "attestations": {"details_verified": True, "nicb_notice": True, "terms": True}}, token=mtok)
            if j.get("status") != "approved":
                raise DemoFailed(f"the approval was not recorded: {j}")
        self.immoctl("approval", "status", VIN, *self.credentials(), "--no-ask", what="the approval status")

    def identify(self):
        section("3. At the car: identify the vehicle")
        say("The technician plugs the vehicle-interface box into the OBD-II port.", WHO_DESK)
        self.immoctl("identify", what="identify")
        self.immoctl("keys", what="the key slots")
        self.immoctl("status", what="the status")

    def reset(self):
        section("4. Immobilizer Reset (all keys lost)")
        if self.interactive:
            self.car("door open", "", "open the driver's door (immod checks it at its step)")
            say("Now you are the technician: answer immoctl's questions (type \"fetch\" at a passcode step\n"
                "to get it from the passcode service; the password is in " + self.password_file + ").", WHO_DESK)
            self.immoctl("reset", *self.record(), "--fetch", *self.credentials(), what="the reset",
                         interactive=True)
            return
        self.car("door open", "opens the driver's door and leaves it open", "")
        self.immoctl("reset", "--no-ask", "--agree-erase-all", "--fetch", *self.credentials(), *self.record(),
                     what="the reset")

    def registration(self):
        section("5. Smart Code Registration of two new keys")
        if self.interactive:
            say("At the touch-new-keys step, touch each new key; type \"done\" in immoctl after the second.",
                WHO_DESK)
            for i, key in enumerate(NEW_KEYS, 1):
                self.car(f"touch {key}", "", f"touch new key {i} ({key}) to the engine switch")
            self.immoctl("add-key", *self.record(), "--fetch", *self.credentials(), what="the registration",
                         interactive=True)
            return

        touched = threading.Event()

        def touch_keys():
            time.sleep(0.5)
            for i, key in enumerate(NEW_KEYS, 1):
                self.car(f"touch {key}", f"touches new key {i} ({key}) to the engine switch", "")
                time.sleep(1.0)

        def on_line(line):
            if "touch-new-keys" in line and not touched.is_set():
                touched.set()
                threading.Thread(target=touch_keys, daemon=True).start()

        self.immoctl("add-key", "--no-ask", "--fetch", "--new-keys", str(len(NEW_KEYS)), *self.credentials(),
                     *self.record(), what="the registration", on_line=on_line)
        if not touched.is_set():
            raise DemoFailed("immoctl never asked for the new keys")

    def finish(self):
        section("6. Key status and audit records")
        self.car("door closed", "closes the driver's door", "close the driver's door")
        self.immoctl("keys", what="the key slots")
        out = subprocess.run([IMMOCTL, "--bus=" + self.addr, "keys", "--json"], capture_output=True, text=True)
        try:
            registered = json.loads(out.stdout).get("registered")
        except ValueError:
            registered = None
        if registered != len(NEW_KEYS):
            raise DemoFailed(f"the car has {registered} keys registered, expected {len(NEW_KEYS)}")
        self.immoctl("history", "-n", "2", what="the audit records")
        tok = self.login(TECH[0])
        j = self.http("POST", f"/reset-requests/{self.request_no}/complete", token=tok)
        say(f"repair order {REPAIR_ORDER} done: request {self.request_no} {j.get('status')} "
            "(the approval no longer holds)", WHO_TIS)


def main():
    ap = argparse.ArgumentParser(prog="tools/demo.sh", description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--interactive", action="store_true",
                      help="you are the technician at immoctl, and the person at the car from a second terminal")
    mode.add_argument("--web", action="store_true",
                      help="the workshop is left running: you are the technician on the web page")
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
        d.web()
        if args.web:
            d.web_only()
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
