"""A throwaway PostgreSQL server for tests: ``initdb`` in a temp folder, loopback only, a free port, ``pg_ctl stop``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import free_port

USER = "mlflow"
PASSWORD = "db-Password-7f3a"  # the tests look for it where it must never be: command lines, runs, artifacts
SEARCHED = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin")


@dataclass
class Postgres:
    """A running server: databases are reached as ``USER``/``PASSWORD`` over TCP on 127.0.0.1:``port``."""

    port: int
    folder: Path
    pg_ctl: list[str]  # ``pg_ctl -D <data>``, run as the data folder's owner

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``), as an outage would; :meth:`start` brings it back."""
        subprocess.run([*self.pg_ctl, "-m", "fast", "-w", "-t", "60", "stop"], cwd=self.folder, check=True, timeout=90)

    def start(self) -> None:
        """Start the stopped server again, on the same port and data."""
        subprocess.run([*self.pg_ctl, "-w", "-t", "60", "start"], cwd=self.folder, check=True, timeout=90)

    def uri(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its SQLAlchemy URI."""
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="postgres")
        ) as connection:
            connection.autocommit = True  # CREATE DATABASE refuses to run in a transaction
            connection.cursor().execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)


def bin_dir() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's versioned folders (newest first)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    for pattern in SEARCHED:
        found = sorted(Path("/").glob(pattern.lstrip("/")), key=lambda p: _version(p), reverse=True)
        for folder in found:
            if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
                return folder
    pytest.fail("PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install postgresql")


def _version(folder: Path) -> tuple[int, ...]:
    digits = folder.parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(p) for p in digits.split(".") if p.isdigit()) or (0,)


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """Start PostgreSQL on a fresh data folder and stop it afterwards (``pg_ctl stop``, then its process group).

    As root (``initdb`` refuses root), the server runs as the ``postgres`` system user, in a temp folder it owns
    (pytest's own temp folders are private to root).
    """
    tools = bin_dir()
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="ml_tabular_pg_"))
    data, log = folder / "data", folder / "server.log"
    password_file = folder / "password"
    password_file.write_text(PASSWORD)
    if as_owner:
        shutil.chown(folder, "postgres")
        shutil.chown(password_file, "postgres")

    def run(*command: str) -> None:
        done = subprocess.run([*as_owner, *command], cwd=folder, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]} failed: {done.stderr[-2000:]}\n{_tail(log)}"

    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off"
    try:
        run(
            str(tools / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={password_file}", "-E", "UTF8",
            "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        pg_ctl = [*as_owner, str(tools / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
        run(*pg_ctl[len(as_owner) :], "-w", "-t", "60", "start")
        yield Postgres(port, folder, pg_ctl)
    finally:
        _stop(tools, as_owner, data, folder)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(tools: Path, as_owner: list[str], data: Path, folder: Path) -> None:
    """``pg_ctl stop -m fast``; if the server outlives it, SIGKILL its process group (``pg_ctl start`` made the
    postmaster the leader of its own session, so its pid is the group's id)."""
    pid_file = data / "postmaster.pid"
    if not pid_file.is_file():
        return
    group = int(pid_file.read_text().split()[0])
    command = [*as_owner, str(tools / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"]
    if subprocess.run(command, cwd=folder, capture_output=True, timeout=60).returncode != 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def _tail(log: Path) -> str:
    return log.read_text()[-2000:] if log.is_file() else ""
