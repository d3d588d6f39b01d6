"""The Optuna storage ``tune`` workers share: opened with a connect timeout and a heartbeat, set up by one worker at
a time (whichever starts first creates the tables), its errors one line."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna

from ml_tabular.errors import ConfigError
from ml_tabular.mlops.secrets import redact_value

CONNECT_TIMEOUT_SECONDS = 5  # a database server that does not answer is reported in seconds, not minutes
LOCK_KEY = 0x6D6C5F7475  # PostgreSQL advisory-lock key of tune's set-up ("ml_tu"), one per database
GRACE_BEATS = 3  # a running trial without a heartbeat for this many intervals is FAIL

StaleTrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def open_storage(url: str, heartbeat: int, on_stale: StaleTrialCallback) -> optuna.storages.RDBStorage:
    """The RDB storage at ``url``, its tables created if new; running trials beat every ``heartbeat`` seconds, and a
    trial silent for ``GRACE_BEATS`` beats is failed by the next worker to start a trial, calling ``on_stale``."""
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=_engine_kwargs(url),
            heartbeat_interval=heartbeat,
            grace_period=GRACE_BEATS * heartbeat,
            heartbeat_stale_trial_callback=on_stale,
        )
    except Exception as err:  # SQLAlchemy's many connection and URL errors
        raise storage_error(url, err) from None


@contextlib.contextmanager
def setup_lock(url: str | None) -> Iterator[None]:
    """Hold ``url``'s set-up lock inside the block: one worker at a time creates or opens the tables, the study and
    its MLflow run (two workers creating fresh tables at once collide on PostgreSQL and SQLite alike).

    PostgreSQL: a session advisory lock, SQLite: a file lock named by the database's path in the temp folder; both
    are released when the process dies. Other databases (MySQL) are not locked: create the study once first.
    """
    if url is None:  # in memory: one process
        yield
    elif url.startswith("sqlite:"):
        yield from _sqlite_lock(url)
    elif url.startswith("postgresql"):
        yield from _postgresql_lock(url)
    else:
        yield


def _sqlite_lock(url: str) -> Iterator[None]:
    from filelock import FileLock
    from sqlalchemy.engine import make_url

    path = Path(make_url(url).database or "").resolve()
    name = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"ml_tabular-study-{name}.lock"):
        yield


def _postgresql_lock(url: str) -> Iterator[None]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **_engine_kwargs(url))
    try:
        try:
            connection = engine.connect()
        except Exception as err:
            raise storage_error(url, err) from None
        with connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
    finally:
        engine.dispose()


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_SECONDS}}
    return {}


def storage_error(url: str, err: Exception) -> ConfigError:
    """One line: the storage, what went wrong (the error's first line), what to check."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConfigError(
        f"cannot open the Optuna storage '{redact_value(url)}': {first}. Check the URL and that its database server "
        "runs (a SQLite file's folder must exist)."
    )
