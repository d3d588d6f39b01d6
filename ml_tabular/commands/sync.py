"""``ml_tabular sync``: send what runs kept in their spool while the tracking server was away."""

from __future__ import annotations

import argparse

from ml_tabular.commands.usage import UsageParser
from ml_tabular.errors import ConfigError, TrackingError
from ml_tabular.mlops.secrets import redact_value
from ml_tabular.mlops.spool import Spool, is_unavailable
from ml_tabular.mlops.store_check import check_reachable, first_line
from ml_tabular.mlops.tracking import DEFAULT_STORE_DIR, environment, no_download_bars, require_mlflow

QUIET_VAR = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"  # MLflow prints a "View run" line when a run is closed
EXAMPLES = """examples:
  ml_tabular sync                          # every run under ./mlruns with kept writes
  ml_tabular sync --run-id RUN_ID          # that run only
  ml_tabular sync --tracking-uri http://new-host:5000   # the server moved (same database)

A run keeps what the server did not take in <save_dir>/<experiment_id>/<run_id>/spool; training sends it by
itself when the server comes back before the run ends."""


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="ml_tabular sync",
        description="Send the metrics, params, tags, artifacts, MLflow model and final status that runs kept "
        "locally while their tracking server was away, in the order they were made, once each.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run-id", help="send this run's kept writes only (default: every run that has some)")
    parser.add_argument(
        "--save-dir", default=DEFAULT_STORE_DIR, help="folder of the runs' checkpoints (default: ./mlruns)"
    )
    parser.add_argument("--tracking-uri", help="send to this server instead of the one each run was tracked on")
    return parser


def sync(args: argparse.Namespace) -> list[str]:
    """Send the kept writes of the runs the flags select; one line per run."""
    require_mlflow()
    spools = [Spool.open(folder) for folder in Spool.find(args.save_dir)]
    if args.run_id is not None:
        chosen = [spool for spool in spools if spool.target.run_id == args.run_id]
        if not chosen:
            kept = ", ".join(spool.target.run_id for spool in spools) or "none"
            raise ConfigError(
                f"run {args.run_id} has nothing kept to send under --save-dir {args.save_dir} (runs with kept "
                f"writes there: {kept})."
            )
        spools = chosen
    if not spools:
        return [f"nothing to send: no run under {args.save_dir} has kept writes"]
    return [_send(spool, args.tracking_uri or spool.target.tracking_uri) for spool in spools]


def _send(spool: Spool, uri: str) -> str:
    from mlflow import MlflowClient

    run_id, server = spool.target.run_id, f"tracking server {redact_value(uri)}"
    check_reachable(uri, advice=f"Start it, then run `ml_tabular sync --run-id {run_id}` again: the writes stay kept.")
    what, total = spool.describe(), spool.pending()
    client = MlflowClient(uri)
    try:
        with no_download_bars(), environment({QUIET_VAR: "true"}):  # our own line names the run and its state
            spool.send(client, uri)
    except Exception as err:
        left = spool.pending()
        reason = first_line(err)
        if is_unavailable(err):
            raise TrackingError(
                f"{server} stopped answering after {total - left} of {total} kept writes of run {run_id} ({reason}); "
                "run `ml_tabular sync` again when it is back: the rest stay kept."
            ) from None
        raise TrackingError(f"{server} refused a kept write of run {run_id}: {reason}") from None
    status = client.get_run(run_id).info.status
    return f"run {run_id}: sent {what} to {redact_value(uri)} (run {status})"


def main(argv: list[str]) -> None:
    for line in sync(build_parser().parse_args(argv)):
        print(line)
