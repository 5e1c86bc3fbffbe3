"""A throw-away PostgreSQL cluster for tests: initdb in a temporary folder owned by the
`postgres` user (the server refuses to run as root), a free loopback port, a password for TCP
logins (so URLs carry one, as a team's do), removed at the end.

    cluster = PgCluster.start()          # None when PostgreSQL is not installed
    url = cluster.new_database()          # postgresql+psycopg://cxr:...@127.0.0.1:PORT/t1
    cluster.stop(); cluster.restart()     # the server going away and coming back
    cluster.remove()
"""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD = "s3cret-pw"  # tests check it never appears in a message
USER = "cxr"


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def why_not() -> str | None:
    """Why a cluster cannot be made here (None: it can)."""
    if pg_bin() is None:
        return "PostgreSQL is not installed (no initdb; Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to run the server as `postgres`"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgCluster:
    root: Path
    port: int
    bin: Path
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    def _run(self, *argv, check=True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / argv[0]), *map(str, argv[1:])]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120,
                              cwd=self.root)

    @classmethod
    def start(cls) -> "PgCluster":
        root = Path(tempfile.mkdtemp(prefix="cxr-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(root, user.pw_uid, user.pw_gid)
        root.chmod(0o700)
        cluster = cls(root, _free_port(), pg_bin())
        (root / "pw").write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            os.chown(root / "pw", user.pw_uid, user.pw_gid)
        cluster._run("initdb", "-D", root / "data", "-U", USER, "--pwfile", root / "pw",
                     "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync",
                     "-E", "UTF8", "--locale=C")
        cluster._start()
        return cluster

    def _start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off "
                f"-c unix_socket_directories={self.root} -c max_connections=60")
        try:
            self._run("pg_ctl", "-D", self.root / "data", "-l", self.root / "log", "-o", opts,
                      "-w", "-t", "60", "start")
        except subprocess.CalledProcessError as exc:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr}\n{log}") from None

    def url(self, database: str = "postgres", password: bool = True) -> str:
        auth = f"{USER}:{PASSWORD}" if password else USER
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL (with the password)."""
        name = f"t{next(self._names)}"
        self._run("psql", "-h", self.root, "-p", self.port, "-U", USER, "-d", "postgres",
                  "-q", "-c", f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.root / "data", "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self._start()

    def remove(self) -> None:
        self._run("pg_ctl", "-D", self.root / "data", "-m", "immediate", "-w", "stop",
                  check=False)
        shutil.rmtree(self.root, ignore_errors=True)
