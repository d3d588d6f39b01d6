"""``ml_tabular ui``: the MLflow UI on a local store, and clear answers for stores it cannot serve."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

from ml_tabular.cli import main
from ml_tabular.commands import ui


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Poll ``url`` until it answers ``OK``; fail early if the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ml_tabular ui exited with code {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.read().decode().strip() == "OK":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer OK within {timeout} s")


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


def command_lines_with(text: str) -> list[str]:
    """Command lines of all processes that contain ``text``."""
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


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


@pytest.mark.slow
def test_ui_serves_the_store_on_the_loopback_address(tmp_path, store):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_tabular", "ui", "--port", str(port), "--tracking_uri", store],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_health(f"http://127.0.0.1:{port}/health", proc)
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=5"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            experiments = json.loads(response.read())["experiments"]
        assert [e["name"] for e in experiments] == ["Default"]  # the store given, not another one
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_ui_on_a_tracking_server_only_points_at_it(isolated, capsys):
    started = time.monotonic()

    with pytest.raises(SystemExit) as exited:
        main(["ui", "--tracking_uri", "http://127.0.0.1:9"])

    assert exited.value.code == 0
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "server" in err and "http://127.0.0.1:9" in err


def test_ui_refuses_a_file_store(isolated, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["ui", "--tracking_uri", "file:./mlruns"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("ml_tabular: error:") and "file store" in err and "MLFLOW_ALLOW_FILE_STORE" in err


@pytest.mark.slow
def test_ui_hides_the_store_uri_and_takes_its_server_down_on_sigterm(tmp_path, store):
    from mlflow import MlflowClient

    MlflowClient(store).create_experiment("only_in_this_store")  # shows that the server got this store
    cwd = tmp_path / "cwd"  # not the store's folder: a server ignoring the URI would make its own store here
    cwd.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    env["MLFLOW_TRACKING_URI"] = store  # not --tracking_uri: no command line may hold the URI, not even ours
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_tabular", "ui", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group, so the test can tell the server's group from it
    )
    below: list[Proc] = []
    groups = {proc.pid}
    try:
        wait_for_health(f"http://127.0.0.1:{port}/health", proc)
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=5"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert "only_in_this_store" in [e["name"] for e in json.loads(response.read())["experiments"]]
        below = descendants(proc.pid)
        groups |= {p.pgid for p in below}
        assert below, "the server should run below ml_tabular ui"
        assert command_lines_with(store.removeprefix("sqlite:///")) == []

        os.kill(proc.pid, signal.SIGTERM)  # ml_tabular ui alone, as a service manager or `kill` would
        returncode = proc.wait(timeout=20)

        late = [p for p in processes().values() if p.pgid in groups - {proc.pid}]  # started after the snapshot
        assert running(below + late) == []
        assert returncode == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        kill_all(below, groups)


def test_ui_passes_the_store_uri_in_the_environment_and_logs_no_password(isolated, monkeypatch, caplog):
    uri = "postgresql://bob:s3cret@db.example:5432/mlflow"
    started = {}
    monkeypatch.setattr(ui, "serve", lambda command, env: started.update(command=command, env=env) or 0)

    with caplog.at_level(logging.INFO, logger=ui.__name__):
        assert ui.ui(tracking_uri=uri, port=5123) == 0

    assert started["env"][ui.STORE_URI_ENV_VAR] == uri
    assert started["command"][-6:] == ["--host", "127.0.0.1", "--port", "5123", "--workers", "1"]
    assert not any("s3cret" in arg for arg in started["command"])
    assert "db.example" in caplog.text and "s3cret" not in caplog.text


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
def test_serve_stops_the_whole_group_on_a_stop_signal(tmp_path, signum, code):
    handlers = {s: signal.getsignal(s) for s in ui.STOP_SIGNALS}
    sender, sleeps = signal_when_started(tmp_path, signum)

    assert ui.serve(group_command(tmp_path), dict(os.environ)) == code

    sender.join(timeout=10)
    assert sleeps, "the sleep should have run"
    assert wait_gone(sleeps, timeout=2) == []  # an orphan is reaped by init, maybe not at once
    assert {s: signal.getsignal(s) for s in ui.STOP_SIGNALS} == handlers


def test_serve_kills_a_group_that_ignores_sigterm(tmp_path, monkeypatch):
    monkeypatch.setattr(ui, "STOP_GRACE_SECONDS", 0.5)
    sender, sleeps = signal_when_started(tmp_path, signal.SIGTERM)

    assert ui.serve(group_command(tmp_path, "trap '' TERM;"), dict(os.environ)) == 143  # the sleep ignores it too

    sender.join(timeout=10)
    assert sleeps, "the sleep should have run"
    assert wait_gone(sleeps, timeout=2) == []


def test_serve_stops_what_a_server_left_behind_when_it_exits(tmp_path):
    command = ["sh", "-c", f"sleep 60 & echo $! > {tmp_path}/pid; exit 3"]

    assert ui.serve(command, dict(os.environ)) == 3

    cmdline = Path(f"/proc/{(tmp_path / 'pid').read_text().strip()}/cmdline")
    deadline = time.monotonic() + 2  # an orphan is reaped by init, maybe not at once (a zombie's cmdline is empty)
    while cmdline.exists() and cmdline.read_bytes() == b"sleep\x0060\x00" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not cmdline.exists() or cmdline.read_bytes() != b"sleep\x0060\x00", "the sleep outlived the server"
