"""A real PostgreSQL for tests: a cluster made with ``initdb`` in a temporary directory, served by
``pg_ctl`` on 127.0.0.1 with a free port (no Unix socket outside that directory), stopped and
thrown away afterwards.

PostgreSQL comes from Debian (``apt-get install postgresql``; ``.ci/run`` installs it). The
server refuses to run as root, so under root (CI) the cluster belongs to ``nobody`` and its
programs run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from contextlib import closing
from pathlib import Path

from labeling_pipeline_tests.orthanc_server import free_port

SERVICE_USER = "nobody"


def find_postgres_bin() -> Path | None:
    """The directory with ``initdb`` and ``pg_ctl`` (Debian keeps them out of PATH)."""
    candidates = [Path(p).parent for p in (shutil.which("initdb"), shutil.which("pg_ctl")) if p]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def unavailable_reason() -> str | None:
    """Why no test server can be started here, or None when one can."""
    if find_postgres_bin() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


class PostgresServer:
    """One PostgreSQL cluster with a password-protected user and an empty database."""

    def __init__(self, user: str = "dagster", password: str = "test-only-secret") -> None:
        found = find_postgres_bin()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed")
        self.bin = found
        self.user, self.password = user, password
        self.host, self.port = "127.0.0.1", free_port()
        # Not under pytest's tmp_path: the service user must be able to reach it (0700 parents).
        self.root = Path(tempfile.mkdtemp(prefix="labeling-pg-"))
        self.data_dir = self.root / "data"
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", SERVICE_USER, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=120, cwd=self.root, check=False
        )

    def _check(self, done: subprocess.CompletedProcess, what: str) -> None:
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{what} failed: {done.stdout}{done.stderr}{tail}")

    def start(self) -> PostgresServer:
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self.as_root:
            shutil.chown(self.root, user=SERVICE_USER)
            shutil.chown(password_file, user=SERVICE_USER)
        done = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "--username",
            self.user,
            "--pwfile",
            str(password_file),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        self._check(done, "initdb")
        password_file.unlink()
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories={self.root}"
            " -c fsync=off -c max_connections=60"
        )
        done = self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        self._check(done, "pg_ctl start")
        return self

    def create_database(self, name: str) -> None:
        with closing(self.connect("postgres")) as connection, connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')

    def connect(self, database: str):
        import psycopg2

        connection = psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=database
        )
        connection.autocommit = True
        return connection

    def environment(self, database: str) -> dict[str, str]:
        """The ``DAGSTER_POSTGRES_*`` variables of ``deploy/dagster-postgres.yaml``."""
        return {
            "DAGSTER_POSTGRES_HOST": self.host,
            "DAGSTER_POSTGRES_PORT": str(self.port),
            "DAGSTER_POSTGRES_USER": self.user,
            "DAGSTER_POSTGRES_PASSWORD": self.password,
            "DAGSTER_POSTGRES_DB": database,
        }

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
