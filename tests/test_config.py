"""The application config: profiles, ``ML_TABULAR_*`` variables, run configs, and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import make_table

from ml_tabular.cli import main
from ml_tabular.config import AppConfig, MlflowConfig, get_config, load_run_config
from ml_tabular.errors import ConfigError

APP_YAML = {
    "dev": {"mlflow": {"enabled": True, "experiment_name": "profile_exp", "run_name": "profile_run"}},
    "prod": {"mlflow": {"enabled": True, "tracking_uri": "http://127.0.0.1:5000", "experiment_name": "prod_exp"}},
}
ENV_VARS = [
    f"ML_TABULAR_MLFLOW__{key}" for key in ("ENABLED", "TRACKING_URI", "EXPERIMENT_NAME", "RUN_NAME", "LOG_ARTIFACTS")
]


@pytest.fixture(autouse=True)
def _isolated(isolated: None) -> None:
    """Every test here runs in tmp_path with no MLFLOW_*/ML_TABULAR_* variables (see conftest)."""


def write_app_yaml(tmp_path: Path, profiles: dict = APP_YAML, name: str = "configs/app.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(profiles))
    return path


def write_run_yaml(tmp_path: Path, mlflow: dict | None = None) -> Path:
    """A minimal tabular run config on a tiny table, with an ``mlflow:`` section if given."""
    make_table().to_csv(tmp_path / "table.csv", index=False)
    config = {
        "model": {"class_path": "ml_tabular.models.TabularMLP"},
        "data": {
            "class_path": "ml_tabular.data.TabularDataModule",
            "init_args": {"path": str(tmp_path / "table.csv"), "target": "y"},
        },
    }
    if mlflow is not None:
        config["mlflow"] = mlflow
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def printed_mlflow(capsys: pytest.CaptureFixture, run_yaml: Path, *flags: str) -> dict:
    """The ``mlflow`` section of ``ml_tabular fit --config RUN_YAML FLAGS --print_config``."""
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", str(run_yaml), *flags, "--print_config"])
    assert exited.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)["mlflow"]


# ----- precedence through the CLI, one layer at a time -----
def test_builtin_default_is_tracking_off(capsys, tmp_path):
    mlflow = printed_mlflow(capsys, write_run_yaml(tmp_path))

    assert mlflow == {
        "enabled": False,
        "tracking_uri": None,
        "experiment_name": None,
        "run_name": None,
        "log_artifacts": True,
        "log_checkpoints": True,
        "log_model": False,
    }


def test_app_yaml_profile_overrides_the_builtin_defaults(capsys, tmp_path):
    write_app_yaml(tmp_path)

    mlflow = printed_mlflow(capsys, write_run_yaml(tmp_path))

    assert mlflow["enabled"] is True
    assert mlflow["experiment_name"] == "profile_exp"
    assert mlflow["run_name"] == "profile_run"


def test_run_yaml_overrides_the_profile_key_by_key(capsys, tmp_path):
    write_app_yaml(tmp_path)
    run_yaml = write_run_yaml(tmp_path, {"enabled": False, "experiment_name": "run_exp"})

    mlflow = printed_mlflow(capsys, run_yaml)

    assert mlflow["enabled"] is False
    assert mlflow["experiment_name"] == "run_exp"
    assert mlflow["run_name"] == "profile_run"  # not set by the run YAML: the profile's value stays


def test_env_vars_override_the_run_yaml(capsys, tmp_path, monkeypatch):
    write_app_yaml(tmp_path)
    run_yaml = write_run_yaml(tmp_path, {"enabled": False, "experiment_name": "run_exp"})
    monkeypatch.setenv("ML_TABULAR_MLFLOW__ENABLED", "true")
    monkeypatch.setenv("ML_TABULAR_MLFLOW__EXPERIMENT_NAME", "env_exp")

    mlflow = printed_mlflow(capsys, run_yaml)

    assert mlflow["enabled"] is True
    assert mlflow["experiment_name"] == "env_exp"
    assert mlflow["run_name"] == "profile_run"


@pytest.mark.parametrize(
    "flags",
    [
        ["--mlflow.enabled", "false", "--mlflow.experiment_name", "flag_exp"],
        ["--mlflow.enabled=false", "--mlflow.experiment_name=flag_exp"],
    ],
    ids=["separate-value", "equals-value"],
)
def test_command_line_flags_override_env_vars(capsys, tmp_path, monkeypatch, flags):
    write_app_yaml(tmp_path)
    run_yaml = write_run_yaml(tmp_path, {"experiment_name": "run_exp"})
    monkeypatch.setenv("ML_TABULAR_MLFLOW__ENABLED", "true")
    monkeypatch.setenv("ML_TABULAR_MLFLOW__EXPERIMENT_NAME", "env_exp")

    mlflow = printed_mlflow(capsys, run_yaml, *flags)

    assert mlflow["enabled"] is False
    assert mlflow["experiment_name"] == "flag_exp"


def test_ml_tabular_env_selects_the_profile(capsys, tmp_path, monkeypatch):
    write_app_yaml(tmp_path)
    monkeypatch.setenv("ML_TABULAR_ENV", "prod")

    mlflow = printed_mlflow(capsys, write_run_yaml(tmp_path))

    assert mlflow["tracking_uri"] == "http://127.0.0.1:5000"
    assert mlflow["experiment_name"] == "prod_exp"
    assert mlflow["run_name"] is None


def test_ml_tabular_app_config_points_at_another_file(capsys, tmp_path, monkeypatch):
    write_app_yaml(tmp_path)
    other = write_app_yaml(tmp_path, {"dev": {"mlflow": {"experiment_name": "other_exp"}}}, "elsewhere/app.yaml")
    monkeypatch.setenv("ML_TABULAR_APP_CONFIG", str(other))

    mlflow = printed_mlflow(capsys, write_run_yaml(tmp_path))

    assert mlflow["experiment_name"] == "other_exp"
    assert mlflow["enabled"] is False  # the other file's dev profile does not turn tracking on


def test_bad_env_value_stops_the_cli_with_one_message(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ML_TABULAR_MLFLOW__ENABLED", "maybe")

    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", str(write_run_yaml(tmp_path))])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    named = [line for line in err.splitlines() if "ML_TABULAR_MLFLOW__ENABLED" in line]
    assert len(named) == 1
    assert named[0].startswith("ml_tabular: error:") and "maybe" in named[0]


# ----- get_config -----
def test_get_config_without_app_yaml_is_the_builtin_default():
    assert get_config() == AppConfig()


@pytest.mark.parametrize(("env", "expected"), [(None, "dev"), ("prod", "prod")])
def test_get_config_profile_comes_from_ml_tabular_env(tmp_path, monkeypatch, env, expected):
    write_app_yaml(tmp_path)
    if env is not None:
        monkeypatch.setenv("ML_TABULAR_ENV", env)

    config = get_config()

    assert config.env == expected
    assert config.mlflow == MlflowConfig(**APP_YAML[expected]["mlflow"])


def test_get_config_env_argument_wins_over_ml_tabular_env(tmp_path, monkeypatch):
    write_app_yaml(tmp_path)
    monkeypatch.setenv("ML_TABULAR_ENV", "prod")

    assert get_config("dev").mlflow.experiment_name == "profile_exp"


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("false", False), ("1", True), ("0", False), ("TRUE", True)]
)
def test_env_bool_values_are_typed(monkeypatch, raw, expected):
    monkeypatch.setenv("ML_TABULAR_MLFLOW__ENABLED", raw)
    monkeypatch.setenv("ML_TABULAR_MLFLOW__LOG_ARTIFACTS", raw)

    mlflow = get_config().mlflow

    assert mlflow.enabled is expected
    assert mlflow.log_artifacts is expected


def test_env_null_means_none_and_strings_stay_strings(tmp_path, monkeypatch):
    write_app_yaml(tmp_path, {"dev": {"mlflow": {"tracking_uri": "sqlite:///profile.db"}}})
    monkeypatch.setenv("ML_TABULAR_MLFLOW__TRACKING_URI", "null")
    monkeypatch.setenv("ML_TABULAR_MLFLOW__RUN_NAME", "run_{seed}")

    mlflow = get_config().mlflow

    assert mlflow.tracking_uri is None
    assert mlflow.run_name == "run_{seed}"


def test_env_bad_bool_names_the_variable(monkeypatch):
    monkeypatch.setenv("ML_TABULAR_MLFLOW__ENABLED", "maybe")

    with pytest.raises(ConfigError, match="ML_TABULAR_MLFLOW__ENABLED") as raised:
        get_config()

    assert "maybe" in str(raised.value)


def test_env_unknown_key_lists_the_known_variables(monkeypatch):
    monkeypatch.setenv("ML_TABULAR_MLFLOW__NOPE", "1")

    with pytest.raises(ConfigError, match="ML_TABULAR_MLFLOW__NOPE") as raised:
        get_config()

    assert all(name in str(raised.value) for name in ENV_VARS)


def test_unknown_profile_names_the_profiles(tmp_path, monkeypatch):
    write_app_yaml(tmp_path)
    monkeypatch.setenv("ML_TABULAR_ENV", "staging")

    with pytest.raises(ConfigError, match="staging") as raised:
        get_config()

    assert "'dev'" in str(raised.value) and "'prod'" in str(raised.value)


def test_run_config_sits_between_profile_and_env(tmp_path, monkeypatch):
    write_app_yaml(tmp_path)
    monkeypatch.setenv("ML_TABULAR_MLFLOW__LOG_ARTIFACTS", "true")
    run_config = {"mlflow": {"experiment_name": "run_exp", "log_artifacts": False}, "seed_everything": 1}

    mlflow = get_config(run_config=run_config).mlflow

    assert mlflow.experiment_name == "run_exp"  # run config > profile
    assert mlflow.run_name == "profile_run"  # profile, untouched by the run config
    assert mlflow.log_artifacts is True  # env > run config


# ----- load_run_config -----
def test_load_run_config_reads_a_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed_everything: 7\nmlflow: {enabled: true}\n")

    assert load_run_config(path) == {"seed_everything": 7, "mlflow": {"enabled": True}}


def test_load_run_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("text", "message"), [("model: [unclosed\n", "not valid YAML"), ("- a\n- b\n", "mapping")])
def test_load_run_config_rejects_bad_yaml(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=message) as raised:
        load_run_config(path)

    assert "bad.yaml" in str(raised.value)
