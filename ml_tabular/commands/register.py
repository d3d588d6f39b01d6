"""``ml_tabular register``: a run's MLflow model as a registered version with an alias; aliases moved, versions
archived."""

from __future__ import annotations

import argparse

from ml_tabular.commands.usage import UsageParser
from ml_tabular.config import get_config
from ml_tabular.errors import ConfigError
from ml_tabular.mlops.registry import DEFAULT_ALIAS, DEFAULT_METRIC, Registry, check_alias, metric_mode
from ml_tabular.mlops.tracking import require_mlflow, resolve_tracking_uri

EXAMPLES = f"""examples:
  ml_tabular register --run-id RUN_ID --name titanic --alias champion
  ml_tabular register --experiment ml_tabular_tabular_baselines --metric val_loss --mode min --name titanic
  ml_tabular register --name titanic --model-version 3 --alias production   # move an alias, no new version
  ml_tabular register --name titanic --archive 2                            # tag version 2 archived=true

--alias defaults to {DEFAULT_ALIAS}; --metric to {DEFAULT_METRIC}."""
# flags that mean nothing beside --archive / --model-version: refused rather than ignored
UNUSED_WITH = {
    "archive": ("alias", "metric", "mode", "description"),
    "model_version": ("metric", "mode", "description"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="ml_tabular register",
        description="Register a run's MLflow model in the MLflow model registry and point an alias at the new "
        "version (tags: source_run_id, metric, metric_value, dataset_digest, git_commit).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run-id", help="register this run's MLflow model")
    what.add_argument("--experiment", help="register the model of this experiment's best FINISHED run by --metric")
    what.add_argument("--model-version", type=int, metavar="N", help="point --alias at version N of --name")
    what.add_argument("--archive", type=int, metavar="N", help="tag version N of --name archived=true")
    parser.add_argument("--name", required=True, help="registered model name (made on first use)")
    parser.add_argument(
        "--alias", help=f"alias to point at the version, e.g. staging, production (default {DEFAULT_ALIAS})"
    )
    parser.add_argument(
        "--metric",
        help=f"metric runs are compared by (--experiment: its last value) or recorded (--run-id: its best); "
        f"default {DEFAULT_METRIC}",
    )
    parser.add_argument(
        "--mode", choices=("min", "max"), help="min: lower is better; default: from the metric's name (loss -> min, "
        "accuracy/f1/auroc/r2 -> max)"
    )  # fmt: skip
    parser.add_argument("--description", help="version description (default: the run, its experiment and metric)")
    parser.add_argument("--tracking-uri", help="store to use instead of the configured one (as ml_tabular ui)")
    parser.add_argument("--env", help="profile of configs/app.yaml (default: ML_TABULAR_ENV, else dev)")
    return parser


def register(args: argparse.Namespace) -> str:
    """Do what the parsed flags ask; returns the line to print."""
    require_mlflow()
    registry = Registry(resolve_tracking_uri(args.tracking_uri or get_config(args.env).mlflow.tracking_uri))
    if args.archive is not None:
        return registry.archive(args.name, args.archive)
    alias = args.alias or DEFAULT_ALIAS
    check_alias(alias)  # before looking for a run, which can take a while
    if args.model_version is not None:
        return registry.point_alias(args.name, args.model_version, alias).summary()
    metric = args.metric or DEFAULT_METRIC
    mode = metric_mode(metric, args.mode)
    if args.experiment is not None:
        run = registry.best_run(args.experiment, metric, mode)
        value = run.data.metrics[metric]  # the value it was chosen by
    else:
        run = registry.run(args.run_id)
        value = registry.best_value(run.info.run_id, metric, mode)
        if value is None and args.metric is not None:
            raise ConfigError(f"run {args.run_id} has no metric {metric!r}; it has {sorted(run.data.metrics)}.")
    return registry.register(run, args.name, alias, metric, value, description=args.description).summary()


def main(argv: list[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    for given, unused in UNUSED_WITH.items():
        extra = [f"--{flag}" for flag in unused if getattr(args, flag) is not None]
        if getattr(args, given) is not None and extra:
            parser.error(f"--{given.replace('_', '-')} does not take {', '.join(extra)}")
    print(register(args))
