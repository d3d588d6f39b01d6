"""A server in its own process group: stopped with the whole group on a stop signal or when it exits."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from servers import Proc, processes, wait_gone

from ml_tabular.commands import process_group


def signal_when_started(tmp_path: Path, signum: int) -> tuple[threading.Thread, list[Proc]]:
    """Send ``signum`` to this process once ``group_command`` has started its ``sleep``; the list gets that sleep."""
    sleeps: list[Proc] = []

    def send() -> None:
        deadline = time.monotonic() + 10
        while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int((tmp_path / "pid").read_text())
        sleeps.extend(p for p in processes().values() if p.pid == pid)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread, sleeps


def group_command(tmp_path: Path, script: str = "") -> list[str]:
    """A shell that runs ``script``, starts a ``sleep`` in the background (same group), notes its pid, waits."""
    pid = tmp_path / "pid"
    return ["sh", "-c", f"{script} sleep 60 & echo $! > {pid}.tmp && mv {pid}.tmp {pid}; wait"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 0), (signal.SIGHUP, 129)])
def test_run_server_stops_the_whole_group_on_a_stop_signal(tmp_path, signum, code):
    handlers = {s: signal.getsignal(s) for s in process_group.STOP_SIGNALS}
    sender, sleeps = signal_when_started(tmp_path, signum)

    assert process_group.run_server(group_command(tmp_path), dict(os.environ)) == code

    sender.join(timeout=10)
    assert sleeps, "the sleep should have run"
    assert wait_gone(sleeps, timeout=2) == []  # an orphan is reaped by init, maybe not at once
    assert {s: signal.getsignal(s) for s in process_group.STOP_SIGNALS} == handlers


def test_run_server_kills_a_group_that_ignores_sigterm(tmp_path, monkeypatch):
    monkeypatch.setattr(process_group, "STOP_GRACE_SECONDS", 0.5)
    sender, sleeps = signal_when_started(tmp_path, signal.SIGTERM)

    command = group_command(tmp_path, "trap '' TERM;")  # the sleep ignores it too
    assert process_group.run_server(command, dict(os.environ)) == 143

    sender.join(timeout=10)
    assert sleeps, "the sleep should have run"
    assert wait_gone(sleeps, timeout=2) == []


def test_run_server_stops_what_a_server_left_behind_when_it_exits(tmp_path):
    command = ["sh", "-c", f"sleep 60 & echo $! > {tmp_path}/pid; exit 3"]

    assert process_group.run_server(command, dict(os.environ)) == 3

    cmdline = Path(f"/proc/{(tmp_path / 'pid').read_text().strip()}/cmdline")
    deadline = time.monotonic() + 2  # an orphan is reaped by init, maybe not at once (a zombie's cmdline is empty)
    while cmdline.exists() and cmdline.read_bytes() == b"sleep\x0060\x00" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not cmdline.exists() or cmdline.read_bytes() != b"sleep\x0060\x00", "the sleep outlived the server"
