"""User mistakes stop before training: exit code 2, one ``ml_tabular: error:`` line naming the culprit, no traceback."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from conftest import make_table, run_cli, tabular_args
from mlflow import MlflowClient

from ml_tabular.cli import main

EXPERIMENT = "ml_tabular_tabular_baselines"


@pytest.fixture(autouse=True)
def _isolated(isolated: None) -> None:
    """Every test here runs isolated (see conftest)."""


def write_csv(frame: pd.DataFrame, name: str) -> list[str]:
    """Write ``frame`` to ``name`` in the working directory; the flag pointing the data at it."""
    frame.to_csv(name, index=False)
    return ["--data.init_args.path", name]


def text_in_numeric_column() -> list[str]:
    frame = make_table()
    frame["x1"] = frame["x1"].astype(object)
    frame.loc[3, "x1"] = "abc"
    return [*write_csv(frame, "text.csv"), "--data.init_args.numeric_columns", "[x1, x2]"]


def header_only() -> list[str]:
    return write_csv(make_table().iloc[:0], "empty.csv")


def single_class_target() -> list[str]:
    return [*write_csv(make_table().assign(y=1), "one_class.csv"), "--data.init_args.task", "classification"]


def txt_suffix() -> list[str]:
    return write_csv(make_table(), "table.txt")


# case id -> (flags added after tabular_args, run in the working directory; substrings of the message)
CASES: dict[str, tuple[Callable[[], list[str]], tuple[str, ...]]] = {
    "missing_file": (
        lambda: ["--data.init_args.path", "missing.csv"],
        ("data.init_args.path", "'missing.csv'", "does not exist"),
    ),
    "unknown_target": (
        lambda: ["--data.init_args.target", "nope"],
        ("data.init_args.target", "['nope'] not found", "table.csv"),
    ),
    "unknown_categorical": (
        lambda: ["--data.init_args.categorical_columns", "[color, nope]"],
        ("data.init_args.categorical_columns", "['nope'] not found", "table.csv"),
    ),
    "unknown_numeric": (
        lambda: ["--data.init_args.numeric_columns", "[x1, nope]"],
        ("data.init_args.numeric_columns", "['nope'] not found", "table.csv"),
    ),
    "text_in_numeric": (text_in_numeric_column, ("column 'x1'", "'text.csv'", "abc")),
    "empty_table": (header_only, ("data.init_args.path", "'empty.csv'", "no rows")),
    "single_class": (single_class_target, ("target 'y'", "'one_class.csv'", "single class")),
    "val_fraction_zero": (lambda: ["--data.init_args.val_fraction", "0"], ("data.init_args.val_fraction=0",)),
    "txt_suffix": (txt_suffix, ("data.init_args.path", "'table.txt'", "'.txt'")),
    "file_store": (
        lambda: ["--mlflow.tracking_uri", "file:./mlruns"],
        ("mlflow.tracking_uri", "file:./mlruns", "file store", "MLFLOW_ALLOW_FILE_STORE", "SQLite"),
    ),
    "missing_checkpoint": (
        lambda: ["--ckpt_path", "missing.ckpt"],
        ("--ckpt_path", "'missing.ckpt'", "does not exist"),
    ),
}


def assert_no_run(tracking_uri: str) -> None:
    """The store holds no run of the tabular experiment (or no such experiment at all)."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        assert client.search_runs([experiment.experiment_id]) == []


@pytest.mark.parametrize("case", CASES)
def test_user_mistake_exits_2_with_one_message(case, table_csv, store, tmp_path, capsys):
    flags, expected = CASES[case]
    args = ["fit", *tabular_args(table_csv, store, epochs=1), *flags()]

    with pytest.raises(SystemExit) as exit_info:
        main(args)

    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("ml_tabular: error:")]
    assert len(errors) == 1, stderr
    for text in expected:
        assert text in errors[0]
    assert "Traceback" not in stderr
    assert not (tmp_path / "mlruns").exists()  # no checkpoint folder, no default store: training never began
    assert_no_run(store)


def test_cli_subprocess_reports_missing_target_without_traceback(table_csv, store, tmp_path):
    done = run_cli("fit", *tabular_args(table_csv, store), "--data.init_args.target", "nope", cwd=tmp_path)

    assert done.returncode == 2, done.stderr[-3000:]
    assert "ml_tabular: error: data.init_args.target: column(s) ['nope'] not found" in done.stderr
    assert "Traceback" not in done.stderr
    assert_no_run(store)
