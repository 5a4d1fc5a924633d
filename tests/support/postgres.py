"""A throwaway PostgreSQL cluster started from the installed server binaries."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg


def find_pg_bin() -> Path | None:
    """The directory of the newest installed ``pg_ctl`` (Debian keeps it off PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl in a temporary directory; as root, the server runs as ``postgres``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.base = Path(tempfile.mkdtemp(prefix="cloudseal-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self.user = "cloudseal"
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: hand the directory to the postgres account.
            shutil.chown(self.base, user="postgres", group="postgres")
            self._run_as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._run_as, *args], check=True, capture_output=True, timeout=120)

    def start(self, *, durable: bool = False) -> None:
        """Start the server; ``durable`` keeps PostgreSQL's own defaults (fsync, synchronous
        commit, full page writes) for benchmarks that promise durably recorded data; the
        tests run without them."""
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", self.user,
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        speed = "" if durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 "
                   f"{speed}-c max_connections=200")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.base / "server.log"), "-w", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                               dbname="postgres", autocommit=True)

    def create_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        name = "t_" + uuid.uuid4().hex[:16]
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
