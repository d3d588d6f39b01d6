"""``python -m ml_tabular.mlops.trial_command TRIAL_JSON``: one tune trial's ``fit`` on several processes.

Started by a tune worker (:func:`ml_tabular.mlops.trial_processes.fit_in_processes`); Lightning's DDP launcher runs
this same command once more per rank. Every rank binds Optuna's pruning callback to the running trial in the study's
database (as Optuna documents for DDP); global rank zero reports each epoch there, and writes the outcome beside the
spec for the worker to read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch.utilities import rank_zero_only

from ml_tabular.cli import prepare_process
from ml_tabular.errors import AppError
from ml_tabular.mlops.trial_processes import RESULT_NAME, TrialSpec
from ml_tabular.mlops.tuning import fit_trial, make_pruner


def run_trial(spec_path: Path) -> dict[str, Any]:
    """Train the trial ``spec_path`` describes; its outcome: state COMPLETE (value), PRUNED or ERROR (message)."""
    spec = TrialSpec(**json.loads(spec_path.read_text()))
    study = optuna.load_study(study_name=spec.study_name, storage=spec.storage, pruner=make_pruner(spec.pruner))
    trial = optuna.Trial(study, spec.trial_id)
    try:
        return {"state": "COMPLETE", "value": fit_trial(spec.args, trial, spec.metric, spec.direction, spec.tags)}
    except optuna.TrialPruned as err:
        return {"state": "PRUNED", "message": str(err)}
    except AppError as err:  # a user mistake: the worker stops the study, as for a trial in its own process
        return {"state": "ERROR", "message": str(err)}


@rank_zero_only
def write_result(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result))


def main(argv: list[str]) -> None:
    prepare_process()
    spec_path = Path(argv[0])
    write_result(spec_path.with_name(RESULT_NAME), run_trial(spec_path))


if __name__ == "__main__":
    main(sys.argv[1:])
