"""The model registry: a run's MLflow model as a new registered version with an alias, aliases moved, versions
archived.

Aliases (``models:/NAME@ALIAS``) say which version is in use; the deprecated registry stages are never touched.
``archived`` is a version tag, not an alias. ``mlflow`` is imported only inside :class:`Registry`.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ml_tabular.errors import ConfigError, TrackingError
from ml_tabular.mlops.secrets import redact_value

log = logging.getLogger(__name__)

Mode = Literal["min", "max"]
DEFAULT_ALIAS = "champion"
DEFAULT_METRIC = "val_loss"
ARCHIVED_TAG = "archived"
# ml_tabular's metric names end in one of these (INTERFACE §4): which way is better
LOWER_IS_BETTER = ("loss", "mse", "rmse", "mae", "mape", "smape", "mase")
HIGHER_IS_BETTER = ("accuracy", "f1", "auroc", "r2")
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # MLflow's error codes for an unknown id
PAGE_SIZE = 100


def metric_mode(metric: str, mode: Mode | None) -> Mode:
    """``mode``, else whether a lower or a higher ``metric`` is better, read from ml_tabular's metric names."""
    if mode is not None:
        return mode
    suffix = metric.rsplit("_", 1)[-1]
    if suffix in LOWER_IS_BETTER:
        return "min"
    if suffix in HIGHER_IS_BETTER:
        return "max"
    raise ConfigError(f"--metric {metric!r}: is lower or higher better? Say --mode min or --mode max.")


def check_alias(alias: str) -> None:
    """Refuse an alias the registry would refuse, before a version is made (it would be left without its alias)."""
    if alias == ARCHIVED_TAG:
        raise ConfigError(
            "'archived' is a version tag here, not an alias: archive a version with "
            "ml_tabular register --name NAME --archive VERSION."
        )
    from mlflow.exceptions import MlflowException

    # Not public API: MLflow has no public alias check; these are the two its registry stores run.
    from mlflow.utils.validation import _validate_model_alias_name, _validate_model_alias_name_reserved

    try:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
    except MlflowException as exc:
        raise ConfigError(
            f"alias {alias!r} is refused by MLflow: {exc.message} Aliases are letters, digits, '_' and '-', "
            "other than 'latest' and v<number> (reserved for versions); e.g. champion, staging, production."
        ) from None


@dataclass(frozen=True)
class Registration:
    """A registered model version, the run it came from and the alias pointing at it."""

    name: str
    version: str
    alias: str | None
    run_id: str
    metric: str | None = None
    metric_value: str | None = None

    @property
    def model_uri(self) -> str:
        """The URI that loads, scores or serves it: by its alias when it has one."""
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"

    def summary(self) -> str:
        """One line: what is registered where, and the next command to try."""
        measured = f", {self.metric}={float(self.metric_value):.6g}" if self.metric and self.metric_value else ""
        aliased = f" has alias {self.alias!r}" if self.alias else ""
        return (
            f"{self.name!r} version {self.version} (run {self.run_id}{measured}){aliased}: use {self.model_uri}, "
            f"e.g. ml_tabular score --model {shlex.quote(self.model_uri)} --input new.csv --output predictions.parquet"
        )


class Registry:
    """The runs and registered models of one tracking store.

    Args:
        tracking_uri: The store; also made MLflow's current tracking URI, which MLflow's SQL registry uses to
            look up a ``models:/m-...`` source. ``None``: the current one.
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        import mlflow

        if tracking_uri is not None:
            mlflow.set_tracking_uri(tracking_uri)
        self.uri = mlflow.get_tracking_uri()
        self.client = mlflow.MlflowClient(self.uri)

    @property
    def store(self) -> str:
        return redact_value(self.uri)

    def run(self, run_id: str) -> Any:
        """The run ``run_id``."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code not in NOT_FOUND:
                raise
        raise TrackingError(
            f"run {run_id!r} is not in the tracking store {self.store}: check the run id (fit prints it, the run "
            "page shows it) and the store (--tracking-uri, MLFLOW_TRACKING_URI or configs/app.yaml)."
        )

    def best_run(self, experiment: str, metric: str, mode: Mode) -> Any:
        """The FINISHED run of ``experiment`` with an MLflow model and the lowest (``min``) or highest ``metric``.

        Runs are compared by the metric's last logged value, the one the MLflow UI's run table shows.
        """
        found = self.client.get_experiment_by_name(experiment)
        if found is None or found.lifecycle_stage != "active":
            names = [e.name for e in self.client.search_experiments(max_results=PAGE_SIZE)]
            raise TrackingError(
                f"experiment {experiment!r} is not in the tracking store {self.store}; it has {names}. "
                "Check --experiment (fit's log names it) and the store (--tracking-uri, MLFLOW_TRACKING_URI)."
            )
        passed_over = 0
        for run in self._ranked(found.experiment_id, metric, mode):
            if run.outputs and run.outputs.model_outputs:
                if passed_over:
                    log.info("passed over %d better run(s) without an MLflow model", passed_over)
                return run
            passed_over += 1
        if passed_over:
            raise TrackingError(
                f"none of the {passed_over} FINISHED run(s) of experiment {experiment!r} with {metric!r} has an "
                "MLflow model: they were trained with mlflow.log_model false. Train again with "
                "--mlflow.log_model true (the shipped configs have it on)."
            )
        raise TrackingError(
            f"experiment {experiment!r} has no FINISHED run with metric {metric!r}; "
            f"{self._metrics_of(found.experiment_id)}. Check --metric."
        )

    def _ranked(self, experiment_id: str, metric: str, mode: Mode) -> Iterator[Any]:
        """FINISHED runs that have ``metric``, best first (the latest of equals first)."""
        order = [f"metrics.`{metric}` {'ASC' if mode == 'min' else 'DESC'}", "attributes.start_time DESC"]
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id], "attributes.status = 'FINISHED'", order_by=order, max_results=PAGE_SIZE,
                page_token=token,
            )  # fmt: skip
            for run in page:
                if metric not in run.data.metrics:  # runs without it come last
                    return
                yield run
            token = page.token
            if not token:
                return

    def _metrics_of(self, experiment_id: str) -> str:
        runs = self.client.search_runs([experiment_id], "attributes.status = 'FINISHED'", max_results=PAGE_SIZE)
        if not runs:
            return "it has no FINISHED run"
        return f"its FINISHED runs have {sorted({key for run in runs for key in run.data.metrics})}"

    def register(
        self,
        run: Any,
        name: str,
        alias: str | None,
        metric: str,
        value: float | None,
        model_uri: str | None = None,
        description: str | None = None,
    ) -> Registration:
        """Register ``run``'s MLflow model (``model_uri``, else its latest) as a new version of ``name``.

        The version is tagged with the source run, ``metric`` and ``value`` (when not ``None``), the dataset
        digest and the git commit; ``alias`` (if any) is pointed at it.
        """
        if alias is not None:
            check_alias(alias)
        run_id = run.info.run_id
        source = model_uri or f"models:/{self._model_id(run)}"
        tags = {"source_run_id": run_id, **self._lineage(run)}
        if value is not None:
            tags |= {"metric": metric, "metric_value": repr(value)}
        version = self._create_version(source, name, tags)
        experiment = self.client.get_experiment(run.info.experiment_id).name
        measured = f"; {metric} {value:.6g}" if value is not None else ""
        text = description or f"run {run.info.run_name} ({run_id}) of experiment {experiment}{measured}"
        self.client.update_model_version(name, version, description=text)
        if alias is not None:
            self.client.set_registered_model_alias(name, alias, version)
        return Registration(name, version, alias, run_id, tags.get("metric"), tags.get("metric_value"))

    def best_value(self, run_id: str, metric: str, mode: Mode) -> float | None:
        """The lowest (``min``) or highest ``metric`` the run logged; ``None`` if it logged none."""
        values = [m.value for m in self.client.get_metric_history(run_id, metric)]
        if not values:
            return None
        return min(values) if mode == "min" else max(values)

    def _model_id(self, run: Any) -> str:
        """The run's latest MLflow model (the one ``runs:/<run_id>/model`` resolves to)."""
        outputs = run.outputs.model_outputs if run.outputs else []
        if not outputs:
            raise TrackingError(
                f"run {run.info.run_id} ({run.info.run_name}, {run.info.status}) has no MLflow model: it was trained "
                "with mlflow.log_model false or stopped before fit ended. Train again with --mlflow.log_model true "
                "(the shipped configs have it on)."
            )
        return max(outputs, key=lambda output: output.step).model_id

    @staticmethod
    def _lineage(run: Any) -> dict[str, str]:
        """``dataset_digest`` (of the run's training table) and ``git_commit``, those the run recorded."""
        lineage = {}
        datasets = run.inputs.dataset_inputs if run.inputs else []
        if datasets:
            lineage["dataset_digest"] = datasets[0].dataset.digest
        commit = run.data.tags.get("git_commit") or run.data.tags.get("mlflow.source.git.commit")
        if commit:
            lineage["git_commit"] = commit
        return lineage

    def _create_version(self, source: str, name: str, tags: dict[str, str]) -> str:
        """A new version of ``name`` (made if new) from ``source``; returns its number."""
        import mlflow
        from mlflow.exceptions import MlflowException

        try:  # the fluent call also links the version to the LoggedModel (its page and the run's show it)
            return str(mlflow.register_model(source, name, tags=tags).version)
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                raise
            raise ConfigError(f"cannot register a model named {name!r}: {exc.message}") from None

    def point_alias(self, name: str, version: int, alias: str) -> Registration:
        """Point ``alias`` at an existing version (un-archiving it: a version in use is not archived)."""
        check_alias(alias)
        found = self._version(name, version)
        self.client.set_registered_model_alias(name, alias, found.version)
        if ARCHIVED_TAG in found.tags:
            self.client.delete_model_version_tag(name, found.version, ARCHIVED_TAG)
            log.info("version %s of %r is no longer archived", found.version, name)
        tags = found.tags
        return Registration(name, str(found.version), alias, found.run_id, tags.get("metric"), tags.get("metric_value"))

    def archive(self, name: str, version: int) -> str:
        """Tag a version ``archived=true``; refused while an alias points at it. Returns a line saying so."""
        found = self._version(name, version)
        if found.aliases:
            aliases = sorted(found.aliases)
            raise ConfigError(
                f"version {version} of {name!r} still has alias(es) {', '.join(aliases)}: point them at another "
                f"version first (ml_tabular register --name {shlex.quote(name)} --model-version N "
                f"--alias {aliases[0]})."
            )
        self.client.set_model_version_tag(name, found.version, ARCHIVED_TAG, "true")
        return f"{name!r} version {version} is archived (tag archived=true); it still loads as models:/{name}/{version}"

    def _version(self, name: str, version: int) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code not in NOT_FOUND:
                raise
            raise TrackingError(
                f"no registered model {name!r} in the tracking store {self.store}: register one with "
                f"ml_tabular register --run-id ID --name {shlex.quote(name)}."
            ) from None
        try:
            return self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if exc.error_code not in NOT_FOUND:
                raise
        raise TrackingError(f"registered model {name!r} has no version {version}: its versions are in the MLflow UI.")
