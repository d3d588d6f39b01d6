"""``ml_tabular tune``: an Optuna search over any config keys, each trial an ``ml_tabular fit`` run."""

from __future__ import annotations

import logging
from pathlib import Path

from jsonargparse import ArgumentParser

from ml_tabular.errors import ConfigError

log = logging.getLogger(__name__)

DESCRIPTION = """Search hyperparameters with Optuna: each trial is `ml_tabular fit --config C` with the trial's
values of the search space's keys, tracked as a nested MLflow run (tags trial_number, trial_state) under one
run per study (tags study_name, sampler, pruner; metric best_value, params best.*, plots, best/<output>).
Every other flag (e.g. --trainer.max_epochs 5) is passed to each trial's fit."""


def parser() -> ArgumentParser:
    """The command's own flags (everything else goes to ``fit``)."""
    p = ArgumentParser(prog="ml_tabular tune", description=DESCRIPTION, exit_on_error=True)
    p.add_argument("--config", required=True, help="Run YAML the trials start from (as for fit).")
    p.add_argument("--search", required=True, help="Search-space YAML (configs/search/*.yaml).")
    p.add_argument("--n-trials", type=int, default=20, help="Trials this worker runs (default 20).")
    p.add_argument("--timeout", type=float, default=None, help="Seconds after which no new trial starts.")
    p.add_argument("--storage", default=None, help="Optuna storage URL shared by workers (default: in memory).")
    p.add_argument("--study-name", default=None, help="Study name (default: <config stem>_search).")
    p.add_argument("--output", default="best.yaml", help="Where the best trial's complete run YAML is written.")
    p.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        help="With --storage: seconds between a running trial's heartbeats; a trial silent for 3 of them (its "
        "worker killed or its machine lost) is marked FAIL by the next worker to start a trial (default 30).",
    )
    return p


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` split into this command's flags and the ``fit`` flags passed to every trial."""
    own_flags = {"--config", "--search", "--n-trials", "--timeout", "--storage", "--study-name", "--output"}
    own_flags.add("--heartbeat")
    own, fit, i = [], [], 0
    while i < len(argv):
        flag = argv[i].split("=", 1)[0]
        takes_value = flag in own_flags and "=" not in argv[i]
        target = own if flag in own_flags or flag in ("-h", "--help") else fit
        target.extend(argv[i : i + 2] if takes_value else argv[i : i + 1])
        i += 2 if takes_value else 1
    return own, fit


def main(argv: list[str]) -> None:
    from ml_tabular.mlops.search_space import load_search_space
    from ml_tabular.mlops.tracking import require_mlflow

    own, fit_overrides = split_args(argv)
    args = parser().parse_args(own)
    if args.heartbeat < 1:
        raise ConfigError(
            f"--heartbeat {args.heartbeat}: a worker's heartbeat interval is a whole number of seconds, 1 or more."
        )
    require_mlflow()
    try:
        import optuna  # noqa: F401
        import optuna_integration  # noqa: F401
    except ImportError:
        raise ConfigError("`ml_tabular tune` needs Optuna: pip install 'ml_tabular[tune]'.") from None
    from ml_tabular.mlops.study_storage import setup_lock
    from ml_tabular.mlops.tuning import StudyRunner, open_study

    space = load_search_space(args.search)
    study_name = args.study_name or f"{Path(args.config).stem}_search"
    with setup_lock(args.storage):  # the first worker creates the stores, the study and its run; the others find them
        runner = StudyRunner(space, ["--config", args.config, *fit_overrides], args.storage)
        study = open_study(space, study_name, args.storage, args.heartbeat, runner.close_dead_trial)
        runner.start(study)
    status = "FAILED"
    try:
        study.optimize(runner.objective, n_trials=args.n_trials, timeout=args.timeout)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        runner.finish(Path(args.output), status)
