"""A throw-away PostgreSQL cluster for the connector tests: ``initdb`` into a temporary folder, ``postgres``
started as a child of the test process on a free loopback port (so a test can stop, SIGKILL and restart it),
durability switched off (fsync, synchronous_commit, full_page_writes: a test's data dies with it anyway).

    cluster = start(directory)         # ~0.6 s: initdb, then the server
    url = cluster.new_database()       # postgresql://postgres@127.0.0.1:PORT/dbN, a database of its own
    with cluster.down():               # the server stopped (data kept) ... and started again on the same port
        ...
    cluster.kill(); cluster.restart()  # SIGKILL (the whole process group), then up again
    cluster.stop()                     # for good: the data folder is removed

Logins: the ``postgres`` role needs no password over TCP (trust); every other role must give its password
(scram-sha-256), so ``add_role(name, password)`` makes a role a bad password can be tried against.

PostgreSQL refuses to run as root: when the tests run as root, initdb and the server run as the ``postgres``
OS user (subprocess's ``user=``: the server is still this process's own child) with their data in a folder of
theirs under the system's temporary directory, removed by ``stop()``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from ._servers import START_TIMEOUT, find_exe, free_port

PG_BIN = "/usr/lib/postgresql/*/bin"
HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


class Cluster:
    """One PostgreSQL server of the tests' own (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._user = _run_as()
        if self._user is None:
            self.data = self.directory / "data"
            self._owned_tmp = None
        else:                        # the postgres user cannot enter root's 0700 test folders: one of its own
            self._owned_tmp = Path(tempfile.mkdtemp(prefix="edgeflow-test-pg-"))
            os.chown(self._owned_tmp, self._user.pw_uid, self._user.pw_gid)
            self.data = self._owned_tmp / "data"
        self.socket_dir = self.data.parent
        self.host, self.port = "127.0.0.1", free_port()
        self.proc: subprocess.Popen | None = None
        self._databases = 0
        self._log = self.directory / "postgres.log"

    # -- urls ----------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The ``postgres`` database, as the ``postgres`` role (no password)."""
        return self.url_for("postgres")

    def url_for(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        """A URL of one of this cluster's databases."""
        login = user if password is None else f"{user}:{password}"
        return f"postgresql://{login}@{self.host}:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database (tests sharing the cluster do not see each other's tables); its URL."""
        self._databases += 1
        name = f"db{self._databases}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 STRATEGY file_copy')
        return self.url_for(name)

    def add_role(self, name: str, password: str) -> None:
        """A role that logs in with ``password`` (scram-sha-256), owning nothing, allowed to connect."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Literal(password)))

    def execute(self, url: str, text: str) -> None:
        """Run statements (DDL) on the database at ``url``, committed."""
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(text)

    def query(self, url: str, text: str, params=None) -> list[tuple]:
        """Rows of one query on the database at ``url`` (its own short connection)."""
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(text, params).fetchall()

    # -- life ----------------------------------------------------------------------------------------------
    def init(self) -> None:
        """``initdb`` (no password: trust locally and for ``postgres``), then our pg_hba.conf."""
        initdb = find_exe("initdb", PG_BIN)
        result = subprocess.run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N", "-E",
                                 "UTF8", "--locale=C.UTF-8", "--no-instructions"], capture_output=True,
                                text=True, timeout=60, **self._as_user())
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.strip()[-500:]}")
        hba = self.data / "pg_hba.conf"
        hba.write_text(HBA)
        if self._user is not None:
            os.chown(hba, self._user.pw_uid, self._user.pw_gid)

    def start(self) -> None:
        """Start the server (same port, same data) and wait until it takes logins."""
        if self.proc is not None and self.proc.poll() is None:
            return
        postgres = find_exe("postgres", PG_BIN)
        with open(self._log, "ab") as log:
            # a session of its own: kill() reaches the backends too (a lone SIGKILLed postmaster leaves them,
            # and a restart would find its shared memory still attached)
            self.proc = subprocess.Popen(
                [postgres, "-D", str(self.data), "-p", str(self.port), "-k", str(self.socket_dir),
                 "-c", f"listen_addresses={self.host}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=40", "-c", "shared_buffers=32MB",
                 # in the data folder, not /dev/shm: a SIGKILLed server leaves nothing there
                 "-c", "dynamic_shared_memory_type=mmap"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, **self._as_user())
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres took no login within {START_TIMEOUT:g} s: {exc}") from None
                time.sleep(0.02)             # polling: the server has no event to await from here

    def shutdown(self) -> None:
        """Stop the server (fast shutdown: open transactions are rolled back); the data stays."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _killpg(proc)

    def kill(self) -> None:
        """SIGKILL the server and its backends at once (a crash); ``restart()`` recovers it."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _killpg(proc)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        self.shutdown()
        self.start()

    @contextlib.contextmanager
    def down(self):
        """The server stopped inside the ``with`` block, started again after it (same port, same data)."""
        self.shutdown()
        try:
            yield self
        finally:
            self.start()

    def stop(self) -> None:
        """Stop for good and remove the data folder (idempotent)."""
        self.shutdown()
        if self._owned_tmp is not None:
            shutil.rmtree(self._owned_tmp, ignore_errors=True)
            self._owned_tmp = None

    # -- helpers -------------------------------------------------------------------------------------------
    def _as_user(self) -> dict:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": self._user.pw_dir, "USER": "postgres"},
                "cwd": str(self.socket_dir)}

    def _log_tail(self) -> str:
        try:
            return " | ".join(self._log.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"

    def __repr__(self) -> str:
        return f"<Cluster {self.host}:{self.port} {'up' if self.proc is not None else 'down'}>"


def _run_as() -> pwd.struct_passwd | None:
    """The OS user to run PostgreSQL as: ``postgres`` when we are root (it refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root needs a 'postgres' OS user (Debian's package makes it)") from None


def _killpg(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        proc.wait(timeout=10)


def start(directory: Path) -> Cluster:
    """A new cluster in ``directory``, running (skips the test when PostgreSQL is not installed)."""
    cluster = Cluster(Path(directory))
    try:
        cluster.init()
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
