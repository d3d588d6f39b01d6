"""``ml_tabular tune``'s cost per trial beyond the trial's own ``fit``: a study with its trials' fits timed inside it,
then the same fits alone."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import yaml

from bench.context import Context
from bench.data import in_subprocess, write_table_file
from bench.paired import DATA_FLAGS
from bench.results import Measurement, Results, Target
from bench.systems import BATCH_SIZE
from ml_tabular.cli import MLTabularCLI
from ml_tabular.mlops.tracking import default_tracking_uri

ROWS = {False: 10_000, True: 2_000}  # a trial's table, by ctx.quick: small, so the overhead is not buried
TRIALS = {False: 5, True: 2}  # trials per study
SEARCH = {  # every trial runs all its epochs (no pruner), so a trial is exactly a fit with its values
    "sampler": {"type": "random", "seed": 0},
    "pruner": {"type": "none"},
    "params": {"model.init_args.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}},
}
MAX_OVERHEAD_SECONDS = 1.0  # per trial: sampling, storage writes, tags, the heartbeat, the study's own run


def trial_args(ctx: Context) -> list[str]:
    """``fit`` flags every trial and every lone fit gets: the shipped tabular config, 2 epochs with validation."""
    path = ctx.tmp / "tune_table.parquet"
    if not path.exists():
        in_subprocess(write_table_file, path, ROWS[ctx.quick])
    return [
        *DATA_FLAGS["tabular"],
        f"--data.init_args.path={path}",
        f"--data.init_args.batch_size={BATCH_SIZE}",
        "--trainer.max_epochs=2",
        "--trainer.enable_progress_bar=false",
        "--mlflow.log_model=false",
        f"--mlflow.tracking_uri={default_tracking_uri()}",
        "--mlflow.experiment_name=benchmark_tune",
    ]


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """No Optuna trial lines, Lightning summaries or experimental-feature warnings in the benchmark's table."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


@contextlib.contextmanager
def timed_trials() -> Iterator[list[float]]:
    """Inside the block, the wall seconds of every trial's ``fit`` (``TrialCLI``) that ``tune`` runs."""
    from ml_tabular.mlops import tuning

    seconds: list[float] = []

    class TimedTrialCLI(tuning.TrialCLI):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            try:
                super().__init__(*args, **kwargs)
            finally:
                seconds.append(time.perf_counter() - start)

    original, tuning.TrialCLI = tuning.TrialCLI, TimedTrialCLI
    try:
        yield seconds
    finally:
        tuning.TrialCLI = original


def study_then_fits(ctx: Context, repeat: int) -> tuple[float, float, float]:
    """Wall seconds of ``tune`` (n trials, a new SQLite study), of its trials' fits inside it, and of the same fits
    run alone right after it."""
    import optuna

    from ml_tabular.commands.tune import main as tune
    from ml_tabular.mlops.tuning import overrides

    search, storage = ctx.tmp / "tune_search.yaml", f"sqlite:///{ctx.tmp / f'study_{repeat}.db'}"
    search.write_text(yaml.safe_dump(SEARCH))
    args = trial_args(ctx)
    study = ["--search", str(search), "--storage", storage, "--study-name", f"bench_{repeat}"]
    with silenced(), timed_trials() as inside:
        start = time.perf_counter()
        tune([*args, *study, "--n-trials", str(TRIALS[ctx.quick]), "--output", str(ctx.tmp / "best.yaml")])
        tuned = time.perf_counter() - start
        fits = 0.0
        for trial in optuna.load_study(study_name=f"bench_{repeat}", storage=storage).trials:
            start = time.perf_counter()
            MLTabularCLI(args=["fit", *args, *overrides(trial.params)])
            fits += time.perf_counter() - start
    return tuned, sum(inside), fits


def tune_overhead(ctx: Context) -> Results:
    study_then_fits(ctx, -1)  # warm-up: the first tune and fits import Optuna, matplotlib and their code paths
    runs = [study_then_fits(ctx, repeat) for repeat in range(ctx.repeats)]
    n = TRIALS[ctx.quick]
    what = f"{n} trials of the shipped tabular config on {ROWS[ctx.quick]:,} rows, 2 epochs, validation on"
    return Results(
        measurements=[
            Measurement("tune_study", "s", [r[0] for r in runs], f"`ml_tabular tune` in-process: {what}"),
            Measurement("tune_trial_fits_inside", "s", [r[1] for r in runs], "its trials' fit calls, inside it"),
            Measurement(
                "tune_trial_fits_alone",
                "s",
                [r[2] for r in runs],
                "the same fits alone, right after (not interleaved: the machine's drift shows in their ratio)",
            ),
        ],
        targets=[
            Target(
                "tune_overhead_per_trial",
                [(tuned - inside) / n for tuned, inside, _ in runs],
                "<=",
                MAX_OVERHEAD_SECONDS,
                f"(tune wall - its trials' fit calls) / trials; {what}, a new SQLite study (its tables, the study's "
                "MLflow run, sampling, tags, heartbeat, best.yaml and two plots included)",
                unit="s",
            )
        ],
    )
