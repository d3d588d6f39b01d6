"""Start-up checks of the tracking store, before any data is read: a server that answers and lets this user write,
a SQLite store and an experiment created by one process at a time."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ml_tabular.errors import TrackingError
from ml_tabular.mlops.secrets import redact_value
from ml_tabular.mlops.tracking import environment

PROBE_TIMEOUT_SECONDS = 5  # per request; MLflow's default is 120 s, retried 7 times with backoff (~4 min)
# MLflow's own settings, read at each request (mlflow.environment_variables)
RETRIES_VAR, TIMEOUT_VAR = "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"
CREDENTIALS = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def check_tracking_store(uri: str, experiment_name: str, write: bool = True) -> None:
    """Stop with one line when the store cannot take this run; make a new SQLite store and experiment safely.

    A server must answer ``/health`` and accept the credentials; each request gets one quick attempt (no retries,
    a short timeout). A SQLite store is created under a file lock. With ``write`` (``fit``), the experiment is
    created if missing (another process creating it at the same moment is fine) and written to: the tag the
    logger sets anyway (``mlflow.experimentKind``), so a user without write permission learns it here.

    Args:
        uri: The resolved tracking URI.
        experiment_name: Experiment the run goes to.
        write: Create the experiment and check write permission (``fit``), not only read access (``test``).
    """
    remote = uri.startswith(("http://", "https://"))
    if remote:
        check_reachable(uri)
    elif uri.startswith("sqlite:///"):
        create_sqlite_store(uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    with _quick_requests():
        try:
            experiment = client.get_experiment_by_name(experiment_name)
            if write:
                experiment_id = experiment.experiment_id if experiment else _create_experiment(client, experiment_name)
                tag_experiment_kind(client, experiment_id)
        except MlflowException as err:
            if remote:
                raise _refusal(uri, experiment_name, err) from None
            raise


def tag_experiment_kind(client: Any, experiment_id: str) -> None:
    """Tag the experiment ``mlflow.experimentKind`` (MLflow's model-training view). Another process setting the same
    tag at the same moment can make the server's insert clash (an HTTP 400): the tag is then there, which is fine."""
    from mlflow.exceptions import MlflowException

    from ml_tabular.mlops.logger import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG  # Lightning's: imported by fit anyway

    try:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    except MlflowException as err:
        if getattr(err, "error_code", "") in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            raise
        if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            raise


def _create_experiment(client: Any, name: str) -> str:
    """Create experiment ``name``, or take the one another process has just created under that name."""
    from mlflow.exceptions import MlflowException

    try:
        return client.create_experiment(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def check_reachable(uri: str, advice: str | None = None) -> None:
    """Stop with one line naming the server and what failed when nothing answers at ``uri``; ``advice`` says what
    to do about it (default: start it, or train on the local store)."""
    from mlflow.exceptions import MlflowException

    try:  # any HTTP answer will do: the calls after this one say what is wrong with it
        server_health(uri, PROBE_TIMEOUT_SECONDS)
    except MlflowException as err:
        advice = (
            advice
            or f"Start it (see `ml_tabular server --help`), or train on the local store instead: {_local_hint()}."
        )
        failure = connection_failure(str(err), PROBE_TIMEOUT_SECONDS)
        raise TrackingError(f"tracking server {redact_value(uri)} is not reachable ({failure}). {advice}") from None


def server_health(uri: str, timeout: float) -> None:
    """One request to the server's ``/health``, no retries; raises ``MlflowException`` when nothing answers in
    ``timeout`` seconds (any HTTP answer will do)."""
    # mlflow.utils.rest_utils.http_request: not documented, but it is how MLflow's client talks to a server
    # (its TLS and credential settings included), and the one call taking max_retries/timeout per request.
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    creds = get_default_host_creds(uri.rstrip("/"))
    http_request(creds, "/health", "GET", max_retries=0, timeout=timeout, raise_on_status=False)


def connection_failure(message: str, timeout: float) -> str:
    """What went wrong, in words, from the exception text requests/urllib3 give MLflow (``timeout``: the seconds a
    request was given)."""
    text = message.lower()
    if "refused" in text:
        return "connection refused"
    if "timeout" in text or "timed out" in text:
        return f"no answer within {timeout:g} s"
    if "name resolution" in text or "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return "no connection"


def _local_hint() -> str:
    """How to train locally: the flag beats the profile and ``ML_TABULAR_MLFLOW__TRACKING_URI``, and its null falls
    back to ``MLFLOW_TRACKING_URI``."""
    hint = "--mlflow.tracking_uri null"
    if os.environ.get("MLFLOW_TRACKING_URI", "").startswith(("http://", "https://")):
        hint += " and unset MLFLOW_TRACKING_URI"
    return hint


def _refusal(uri: str, experiment_name: str, err: Exception) -> TrackingError:
    from mlflow.utils.credentials import read_mlflow_creds

    server = f"tracking server {redact_value(uri)}"
    user = read_mlflow_creds().username
    code = getattr(err, "error_code", "")
    if code == "UNAUTHENTICATED" and user:
        return TrackingError(
            f"{server} refused user '{user}' (HTTP 401: wrong user name or password). Set {CREDENTIALS} to your "
            "account there."
        )
    if code == "UNAUTHENTICATED":
        return TrackingError(f"{server} asks for a user name and password (HTTP 401): set {CREDENTIALS}.")
    if code == "PERMISSION_DENIED":
        return TrackingError(
            f"{server}: user '{user}' has no permission to write to experiment '{experiment_name}' (HTTP 403). "
            "Ask its owner or an admin for EDIT permission on it, or use another --mlflow.experiment_name."
        )
    return TrackingError(f"{server} did not accept the start-up check: {first_line(err)}")


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an error's message (MLflow's ``message`` when it has one), at most ``limit`` characters."""
    text = str(getattr(err, "message", err)).strip()
    return (text.splitlines() or [type(err).__name__])[0][:limit]


def _quick_requests() -> Any:
    """MLflow's client without retries and with a short timeout inside the block (then as it was)."""
    return environment({RETRIES_VAR: "0", TIMEOUT_VAR: str(PROBE_TIMEOUT_SECONDS)})


def create_sqlite_store(uri: str) -> None:
    """Open the SQLite store at ``uri`` under a file lock, creating it if new.

    MLflow creates a fresh store by running its schema migrations; two processes doing that at once collide
    (``table already exists``, alembic version mismatches). Under the lock the first creates it and the others
    then find it made. The store object is cached by MLflow per URI, so the run reuses it. The lock file lives in
    the temp folder (named by the store's path), not beside the store: a user's folder gets no stray file.
    """
    from filelock import FileLock
    from mlflow import MlflowClient

    path = Path(uri.removeprefix("sqlite:///")).resolve()
    name = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"ml_tabular-store-{name}.lock"):
        MlflowClient(uri).search_experiments(max_results=1)
