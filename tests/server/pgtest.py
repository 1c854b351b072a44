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
        self.proc = None
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
        """The postmaster as the test's own child (not through pg_ctl), so that the test
        reaps it after a kill -9 and a restart finds no live-looking postmaster.pid."""
        args = [f"{self.bin}/postgres", "-D", self.data, "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
                "-k", self.dir, "-c", "max_connections=200"]
        if not self.fsync:
            args += ["-c", "fsync=off"]  # the tests kill processes, not the machine
        log = open(f"{self.dir}/postgres.log", "a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, user=self.user, cwd=self.dir,
                                     start_new_session=True)
        log.close()
        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError("PostgreSQL exited: " + self.log_tail())
            p = subprocess.run([f"{self.bin}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)])
            if p.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not start: " + self.log_tail())

    def createdb(self, name):
        self._run(f"{self.bin}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "immo", name)
        return self.uri(name)

    def psql(self, sql, db="immo"):
        """Runs sql; returns (exit code, output)."""
        p = subprocess.run([f"{self.bin}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                            str(self.port), "-U", "immo", "-d", db, "-c", sql], capture_output=True, text=True)
        return p.returncode, p.stdout + p.stderr

    def kill9(self):
        """A crash: the postmaster and every backend (its process group) killed at once."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # immediate shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()
        shutil.rmtree(self.dir, ignore_errors=True)
