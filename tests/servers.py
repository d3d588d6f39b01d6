"""Helpers for tests that start a server: a free loopback port, readiness, and the processes it leaves."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(url: str, proc: subprocess.Popen, timeout: float = 120, body: str | None = None) -> None:
    """Poll ``url`` until it answers 200 (and ``body``, if given); fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server command exited with code {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if body is None or response.read().decode().strip() == body:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout} s")


class Proc(NamedTuple):
    """A process as /proc/<pid>/stat shows it; ``start`` (boot ticks) tells a reused pid apart."""

    pid: int
    ppid: int
    pgid: int
    state: str
    start: int


def processes() -> dict[int, Proc]:
    """Every process on the machine, by pid (the ones that vanish while being read are skipped)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name before ")" may hold spaces
        found[int(entry.name)] = Proc(int(entry.name), int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
    return found


def descendants(pid: int) -> list[Proc]:
    """The processes below ``pid`` (children, their children, ...)."""
    table = processes()
    below, parents = [], {pid}
    while True:
        children = [p for p in table.values() if p.ppid in parents and p not in below]
        if not children:
            return below
        below += children
        parents = {p.pid for p in children}


def running(procs: list[Proc]) -> list[Proc]:
    """Those of ``procs`` still running: not gone, not a zombie, not a new process that reused the pid."""
    table = processes()
    return [p for p in procs if p.pid in table and table[p.pid].start == p.start and table[p.pid].state != "Z"]


def command_line(pid: int) -> str:
    """The command line of ``pid`` ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def command_lines_with(text: str) -> list[str]:
    """Command lines of all processes that contain ``text``."""
    lines = (command_line(int(path.parent.name)) for path in Path("/proc").glob("[0-9]*/cmdline"))
    return [line for line in lines if text in line]


def kill_all(procs: list[Proc], groups: set[int]) -> None:
    """SIGKILL ``procs`` still running and the process ``groups`` (a test's last resort)."""
    for proc in running(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    """Wait until none of ``procs`` runs or ``timeout`` passes; those still running."""
    deadline = time.monotonic() + timeout
    while (left := running(procs)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
