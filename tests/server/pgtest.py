# SPDX-License-Identifier: LGPL-2.1-or-later
"""A private PostgreSQL for a test: initdb in a temporary folder, run by an unprivileged
user (nobody when the test runs as root), on a free port of 127.0.0.1, stopped and
removed at the end. Raises Unavailable (the test skips) only where PostgreSQL's server
programs are not installed."""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time


class Unavailable(Exception):
    pass


def _bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{d}/initdb") and os.path.exists(f"{d}/pg_ctl"):
            return d
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return os.path.dirname(os.path.realpath(initdb))
    raise Unavailable("PostgreSQL's server (initdb, pg_ctl) is not installed; tools/install-deps.sh installs "
                      "postgresql-15")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    def __init__(self, fsync=False):
        self.bin = _bindir()
        self.fsync = fsync
        self.dir = tempfile.mkdtemp(prefix="immo-pg-")
        self.data = f"{self.dir}/data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root
            pw = pwd.getpwnam("nobody")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.user = "nobody"
        self._run(f"{self.bin}/initdb", "-D", self.data, "-U", "immo", "-A", "trust", "-E", "UTF8", "--locale=C",
                  "--no-sync")
        self.start()
        self._run(f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "immo", "immo")

    def _run(self, *args):
        p = subprocess.run(args, capture_output=True, text=True, user=self.user, cwd=self.dir)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {p.stdout}{p.stderr}" + self.log_tail())
        return p.stdout

    def log_tail(self):
        try:
            return open(f"{self.dir}/postgres.log").read()[-3000:]
        except OSError:
            return ""

    def uri(self, db="immo"):
        return f"postgresql://immo@127.0.0.1:{self.port}/{db}"

    def start(self):
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=200"
        if not self.fsync:
            opts += " -c fsync=off"  # the tests kill processes, not the machine
        self._run(f"{self.bin}/pg_ctl", "-D", self.data, "-l", f"{self.dir}/postgres.log", "-o", opts, "-w", "-t",
                  "60", "start")

    def createdb(self, name):
        self._run(f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "immo", name)
        return self.uri(name)

    def psql(self, sql, db="immo"):
        """Runs sql; returns (exit code, output)."""
        p = subprocess.run([f"{self.bin}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                            str(self.port), "-U", "immo", "-d", db, "-c", sql], capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr

    def _pids(self):
        with open(f"{self.data}/postmaster.pid") as f:
            main = int(f.readline())
        pids = [main]
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == main:
                            pids.append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        return pids

    def kill9(self):
        """A crash: the postmaster and every backend killed at once."""
        for pid in self._pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(100):
            if not any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"
                       for p in self._pids_quiet()):
                break
            time.sleep(0.05)

    def _pids_quiet(self):
        try:
            return self._pids()
        except (OSError, ValueError):
            return []

    def stop(self):
        subprocess.run([f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"], capture_output=True,
                       user=self.user, cwd=self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
