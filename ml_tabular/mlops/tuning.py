"""An Optuna study whose trials are ``ml_tabular fit`` runs, tracked as nested MLflow runs under a study run."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna
import yaml
from lightning.pytorch.callbacks import Callback
from optuna_integration import PyTorchLightningPruningCallback

from ml_tabular.cli import MLTabularCLI
from ml_tabular.errors import AppError, ConfigError
from ml_tabular.mlops.search_space import SearchSpace
from ml_tabular.mlops.secrets import redact_value
from ml_tabular.mlops.study_storage import StaleTrialCallback, open_storage
from ml_tabular.mlops.tracking import resolve_tracking_uri
from ml_tabular.mlops.trial_processes import TrialSpec, fit_in_processes, trains_on_processes

log = logging.getLogger(__name__)

PARENT_RUN_ATTR = "mlflow_parent_run_id"  # study user attribute: the study's MLflow run, shared by all workers
SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


class ConfigCLI(MLTabularCLI):
    """``fit``'s LightningCLI that parses (and checks the tracking store) but builds and trains nothing."""

    def instantiate_classes(self) -> None:
        """Nothing to build: only the parsed config is wanted."""

    def _run_subcommand(self, subcommand: str) -> None:  # LightningCLI's private step that would call trainer.fit
        """Nothing to run."""

    def run_config(self) -> dict[str, Any]:
        """The effective ``fit`` config, as ``ml_tabular fit --config`` reads it."""
        return yaml.safe_load(self.parser.dump(self.config, skip_none=False))["fit"]


class TrialCLI(MLTabularCLI):
    """``ml_tabular fit`` with the trial's callbacks and its run tagged as a nested run of the study's run."""

    def __init__(self, args: list[str], callbacks: list[Callback], tags: dict[str, str]) -> None:
        self.trial_callbacks, self.trial_tags = callbacks, tags
        super().__init__(args=args)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.extend(self.trial_callbacks)
        return trainer

    def _mlflow_logger(self, mlflow: Any) -> pl.loggers.Logger:
        logger = super()._mlflow_logger(mlflow)
        logger.tags = {**(logger.tags or {}), **self.trial_tags}  # read when the run is created
        return logger


class EpochPruning(PyTorchLightningPruningCallback):
    """Optuna's pruning callback, stopping training after a pruned epoch instead of raising inside the Trainer,
    so the trial's run closes FINISHED with its checkpoints and plots; :meth:`check_pruned` raises afterwards."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        super().__init__(trial, monitor)
        self.pruned_at: int | None = None
        self.global_zero = True

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        self.global_zero = trainer.is_global_zero

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:
            super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned:
            self.pruned_at = pl_module.current_epoch
            trainer.should_stop = True

    def check_pruned(self) -> None:
        if not self.global_zero:  # under DDP, global rank zero alone reports to the study
            return
        with warnings.catch_warnings():  # under DDP it re-reports the epochs it reported already
            warnings.filterwarnings("ignore", message="The reported value is ignored because")
            super().check_pruned()  # under DDP: raises for the state rank zero left in the storage
        if self.pruned_at is not None:
            raise optuna.TrialPruned(f"trial pruned after epoch {self.pruned_at}")


class BestMetric(Callback):
    """The best epoch value of ``metric`` (the trial's objective; early stopping may end past it)."""

    def __init__(self, metric: str, direction: str) -> None:
        self.metric, self.sign, self.value = metric, 1.0 if direction == "minimize" else -1.0, None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.metric)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        if self.value is None or self.sign * value < self.sign * self.value:
            self.value = value


def open_study(
    space: SearchSpace, study_name: str, storage: str | None, heartbeat: int, on_stale: StaleTrialCallback
) -> optuna.Study:
    """Create or load (``storage``: several workers, reruns resume) the study; bad settings are one line.

    Running trials send a heartbeat every ``heartbeat`` seconds; ``on_stale`` is called for a trial whose worker died.
    """
    sampler = _make(SAMPLERS, space.sampler, "sampler")
    pruner = _make(PRUNERS, space.pruner, "pruner")
    rdb = None if storage is None else open_storage(storage, heartbeat, on_stale)
    study = optuna.create_study(
        storage=rdb,
        study_name=study_name,
        sampler=sampler,
        pruner=pruner,
        direction=space.direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != space.direction:
        raise ConfigError(
            f"the study '{study_name}' in '{redact_value(storage)}' exists with direction "
            f"{study.direction.name.lower()}, the search asks {space.direction}: use another --study-name."
        )
    return study


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner a search space's ``pruner:`` section names."""
    return _make(PRUNERS, spec, "pruner")


def fit_trial(args: list[str], trial: optuna.Trial, metric: str, direction: str, tags: dict[str, str]) -> float | None:
    """``fit`` with ``args`` in this process (under DDP: on its rank), its run tagged ``tags``, pruned by ``trial``.

    Returns:
        The best epoch value of ``metric``, None if it was never logged (raises ``optuna.TrialPruned`` if pruned).
    """
    pruning, best = EpochPruning(trial, metric), BestMetric(metric, direction)
    TrialCLI(["fit", *args], [pruning, best], tags)
    pruning.check_pruned()
    return best.value


def _make(kinds: dict[str, Any], spec: dict[str, Any], what: str) -> Any:
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"] not in kinds:
        raise ConfigError(f"search {what} '{spec['type']}' is not one of {', '.join(kinds)}.")
    try:
        return kinds[spec["type"]](**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"search {what} {spec}: {err}.") from None


def cli_value(value: Any) -> str:
    """A value as a command-line flag value (JSON: lists, null, true/false; strings as they are)."""
    return value if isinstance(value, str) else json.dumps(value)


def overrides(values: dict[str, Any]) -> list[str]:
    return [f"--{key}={cli_value(value)}" for key, value in values.items()]


class StudyRunner:
    """Runs trials of a study as ``fit`` with ``fit_args`` plus each trial's values, under one parent run.

    Made in two steps: the config is checked (and the tracking store created) first, :meth:`start` then takes the
    study, opened with :meth:`close_dead_trial` as its stale-trial callback, and creates or reopens its run.
    ``storage`` is the study's RDB URL (None: in memory), which trials on several processes report to.
    """

    def __init__(self, space: SearchSpace, fit_args: list[str], storage: str | None = None) -> None:
        from mlflow import MlflowClient

        self.space, self.fit_args, self.storage = space, fit_args, storage
        self.worker = f"{socket.gethostname()}:{os.getpid()}"  # which machine and process ran a trial
        base = ConfigCLI(args=["fit", *fit_args])  # checks the args and creates the tracking store once
        space.check_against(base.run_config())
        self.on_processes = trains_on_processes(base.run_config()["trainer"], storage)
        mlflow = base.app_config().mlflow
        if not mlflow.enabled:
            raise ConfigError("`ml_tabular tune` tracks every trial: turn mlflow.enabled on.")
        self.client = MlflowClient(resolve_tracking_uri(mlflow.tracking_uri))
        experiment = self.client.get_experiment_by_name(base._experiment_name(mlflow))
        self.experiment_id = experiment.experiment_id

    def start(self, study: optuna.Study) -> None:
        """Run ``study``'s trials under its MLflow run: the one its first worker made, or a new one."""
        self.study = study
        self.parent_id = self._parent_run()

    def _parent_run(self) -> str:
        run_id = self.study.user_attrs.get(PARENT_RUN_ATTR)
        if run_id is not None:  # a rerun or another worker: the study already has its run
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        tags = {
            "study_name": self.study.study_name,
            "sampler": type(self.study.sampler).__name__,
            "pruner": type(self.study.pruner).__name__,
            "metric": self.space.metric,
            "direction": self.space.direction,
        }
        run = self.client.create_run(self.experiment_id, run_name=f"study {self.study.study_name}", tags=tags)
        self.study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
        return run.info.run_id

    def objective(self, trial: optuna.Trial) -> float:
        """One ``fit``: its best ``metric`` value; pruned trials raise TrialPruned, failed ones give NaN (FAIL)."""
        values = self.space.suggest(trial)
        trial.set_user_attr("worker", self.worker)
        tags = {"mlflow.parentRunId": self.parent_id, "trial_number": str(trial.number)}
        tags |= {"study_name": self.study.study_name, "trial_worker": self.worker}
        log.info("trial %d: %s", trial.number, " ".join(overrides(values)))
        state = "FAIL"
        try:
            name = f"--mlflow.run_name=trial_{trial.number}__{{model}}__dataset={{dataset}}"  # apart in the UI's list
            value = self._fit(trial, [*self.fit_args, *overrides(values), name], tags)
            if value is None:
                raise ConfigError(f"the search metric '{self.space.metric}' was never logged: name an epoch metric.")
            state = "COMPLETE"
            return value
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        except (AppError, SystemExit):  # a user mistake (or a refused flag): every trial would fail alike
            raise
        except Exception as err:  # this trial's values failed (e.g. diverged): the study goes on
            log.warning("trial %d failed: %s: %s", trial.number, type(err).__name__, err)
            return math.nan
        finally:
            self._close_trial_runs(trial.number, state)

    def _fit(self, trial: optuna.Trial, args: list[str], tags: dict[str, str]) -> float | None:
        """The trial's ``fit`` in this process, or in its own when it trains on several (see ``fit_trial``)."""
        metric, direction = self.space.metric, self.space.direction
        if not self.on_processes:
            return fit_trial(args, trial, metric, direction, tags)
        assert self.storage is not None  # trains_on_processes refused a trial on processes without one
        # trial._trial_id: the processes bind to it as Optuna documents for DDP (optuna.trial.Trial(study, trial_id))
        study, pruner = self.study.study_name, self.space.pruner
        return fit_in_processes(TrialSpec(self.storage, study, trial._trial_id, metric, direction, pruner, args, tags))

    def _trial_runs(self, number: int) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id],
            f"tags.mlflow.parentRunId = '{self.parent_id}' AND tags.trial_number = '{number}'",
        )

    def _close_trial_runs(self, number: int, state: str) -> None:
        """Tag the trial's run with its ``state``; a failed trial's run that its process left RUNNING (killed) is
        marked FAILED."""
        for run in self._trial_runs(number):
            self.client.set_tag(run.info.run_id, "trial_state", state)
            if state == "FAIL" and run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "FAILED")

    def close_dead_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Stale-trial callback: Optuna has just failed ``trial``, whose worker stopped beating (killed, machine
        lost); its run, left RUNNING by the dead worker, is marked FAILED and tagged ``trial_state`` FAIL."""
        self._close_trial_runs(trial.number, "FAIL")
        worker = trial.user_attrs.get("worker", "?")
        log.warning("trial %d failed: its worker %s stopped sending heartbeats", trial.number, worker)

    def finish(self, output: Path, status: str) -> None:
        """Record the best trial on the parent run, write its complete config to ``output``, and close the run
        unless other workers are still running trials (the last one out closes it)."""
        try:
            if any(t.state == optuna.trial.TrialState.COMPLETE for t in self.study.trials):
                self._record_best(output)
            else:
                log.warning("no trial completed: no best configuration to write")
        finally:
            if not self._others_running():
                self.client.set_terminated(self.parent_id, status)

    def _others_running(self) -> bool:
        """Whether trials of other workers are running (dead workers' trials past their grace period failed first)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # as Optuna's own call does
            optuna.storages.fail_stale_trials(self.study)
        return bool(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))

    def _record_best(self, output: Path) -> None:
        best = self.study.best_trial
        values = self.space.suggest(optuna.trial.FixedTrial(best.params))
        config = ConfigCLI(args=["fit", *self.fit_args, *overrides(values)]).run_config()
        output.write_text(yaml.safe_dump(config, sort_keys=False))
        self.client.log_metric(self.parent_id, "best_value", best.value)
        self.client.set_tag(self.parent_id, "best_trial", str(best.number))
        logged = self.client.get_run(self.parent_id).data.params
        for key, value in values.items():  # params are write-once: a resumed study's new best goes to tags
            name, text = f"best.{key}", cli_value(value)
            if name not in logged:
                self.client.log_param(self.parent_id, name, text)
            elif logged[name] != text:
                self.client.set_tag(self.parent_id, name, text)
        self.client.log_artifact(self.parent_id, str(output), "best")
        self._log_plots()
        log.info(
            "best trial %d: %s = %.6g; its config: %s (ml_tabular fit --config %s)",
            best.number, self.space.metric, best.value, output, output,
        )  # fmt: skip

    def _log_plots(self) -> None:
        """Optuna's optimisation history and parameter importances (matplotlib, no browser or network needed)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as optuna_plots

        for name, plot in (
            ("optimization_history", optuna_plots.plot_optimization_history),
            ("param_importances", optuna_plots.plot_param_importances),
        ):
            try:
                with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the plots' API is stable
                    figure = plot(self.study).figure
                    figure.savefig(Path(tmp) / f"{name}.png", bbox_inches="tight")
                    plt.close(figure)
                    self.client.log_artifact(self.parent_id, str(Path(tmp) / f"{name}.png"), "plots")
            except Exception as err:  # e.g. importances need two finished trials: a report, not a failure
                log.warning("plot %s skipped: %s: %s", name, type(err).__name__, err)
