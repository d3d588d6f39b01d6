"""A tune trial that trains on several processes (DDP): run as its own command, which Lightning relaunches once per
rank, its pruning and outcome passing through the study's database and a result file."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna

from ml_tabular.errors import ConfigError

COMMAND_MODULE = "ml_tabular.mlops.trial_command"
RESULT_NAME = "result.json"  # written by the trial's global rank zero beside its spec
# Strategies whose processes Lightning starts by running the trial's command again (so every rank has its callbacks)
COMMAND_STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true")


class TrialProcessError(RuntimeError):
    """The trial's processes ended without a result (a crash or a kill): the trial fails, the study goes on."""


@dataclass(frozen=True)
class TrialSpec:
    """What a trial's processes need to train it and report to its study.

    Args:
        storage: The study's RDB storage URL.
        study_name: The study's name.
        trial_id: Optuna's storage id of the running trial (its processes bind to it).
        metric: The search metric, reported to the pruner after every validation epoch.
        direction: ``minimize`` or ``maximize``.
        pruner: The search space's pruner section (the processes ask the same pruner).
        args: The ``fit`` flags of the trial (the tune worker's plus the trial's values).
        tags: Tags of the trial's MLflow run (its parent run, trial number, worker).
    """

    storage: str
    study_name: str
    trial_id: int
    metric: str
    direction: str
    pruner: dict[str, Any]
    args: list[str]
    tags: dict[str, str]


def trains_on_processes(trainer: dict[str, Any], storage: str | None) -> bool:
    """Whether a trial with this ``trainer`` config trains on several processes (it then runs as its own command).

    Raises:
        ConfigError: for what such a trial cannot do: several machines, a strategy that spawns or forks its
            processes (their callbacks would never report back), or a study that is not in a database.
    """
    strategy, devices, nodes = str(trainer.get("strategy")), trainer.get("devices"), trainer.get("num_nodes")
    if "ddp" not in strategy and "fsdp" not in strategy and devices in ("auto", 1, "1", None) and nodes in (1, None):
        return False
    if nodes not in (1, None):
        raise ConfigError(
            f"a tune trial runs on the machine of its tune worker (trainer num_nodes={nodes}): use --trainer.devices N "
            "for its processes there, and one `ml_tabular tune` worker per machine on one --storage."
        )
    if strategy not in COMMAND_STRATEGIES:
        raise ConfigError(
            "a tune trial on several processes runs as its own `ml_tabular fit` command, whose processes Lightning "
            f"starts with --trainer.strategy ddp, not {strategy}."
        )
    if storage is None:
        raise ConfigError(
            f"a tune trial on several processes (trainer strategy={strategy}, devices={devices}, num_nodes={nodes}) "
            "reports to its study from other processes: pass --storage URL (e.g. sqlite:///study.db)."
        )
    return True


def fit_in_processes(spec: TrialSpec) -> float | None:
    """Train the trial as ``python -m ml_tabular.mlops.trial_command SPEC`` (stopped with this worker).

    Returns:
        The trial's best epoch value of its metric, None if the metric was never logged.

    Raises:
        optuna.TrialPruned: the pruner stopped it (its processes reported each epoch to the study's database).
        ConfigError: its ``fit`` stopped on a user mistake (every trial would).
        TrialProcessError: its processes ended without a result.
    """
    with tempfile.TemporaryDirectory(prefix="ml_tabular-trial-") as folder:  # private: the URL may hold a password
        spec_path = Path(folder) / "trial.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        code = _run([sys.executable, "-m", COMMAND_MODULE, str(spec_path)])
        result_path = spec_path.with_name(RESULT_NAME)
        if not result_path.exists():
            raise TrialProcessError(f"its processes exited with code {code} and no result")
        result = json.loads(result_path.read_text())
    if result["state"] == "PRUNED":
        raise optuna.TrialPruned(result["message"])
    if result["state"] == "ERROR":
        raise ConfigError(result["message"])
    return result["value"]


def _run(command: list[str]) -> int:
    """Run ``command`` (output shown as this worker's); if this worker is stopped meanwhile, stop it too."""
    process = subprocess.Popen(command)
    try:
        return process.wait()
    finally:
        if process.poll() is None:  # Ctrl-C reached both; SIGTERM sent to this worker alone did not
            process.terminate()  # its rank zero then stops the other ranks, as Lightning does on SIGTERM
            process.wait()
