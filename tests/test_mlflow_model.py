"""The MLflow model of a run: linked to it, self-contained, and giving exactly what ``predict`` gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, ModelZoo

KINDS = ("classifier", "regressor", "forecaster")


def numbers(frame: pd.DataFrame) -> np.ndarray:
    return frame.select_dtypes("number").to_numpy(dtype=np.float64)


@pytest.mark.parametrize("kind", KINDS)
def test_run_has_its_model_in_its_experiment_with_metrics_and_digest(model_zoo: ModelZoo, kind: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(model_zoo.store)
    trained = model_zoo.models[kind]
    run = client.get_run(trained.run_id)
    [output] = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert (model.name, model.source_run_id, model.experiment_id) == ("model", run.info.run_id, run.info.experiment_id)
    assert str(model.status) in ("READY", "LoggedModelStatus.READY")
    assert model.tags["dataset_digest"] == run.inputs.dataset_inputs[0].dataset.digest
    best = min(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.value)
    linked = {m.key: m for m in model.metrics}
    assert linked["val_loss"].value == pytest.approx(best.value) and linked["val_loss"].step == best.step
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert len({m.step for m in history}) == len(history)  # linking the model logged no second value


@pytest.mark.parametrize("kind", KINDS)
def test_pyfunc_gives_what_predict_writes(model_zoo: ModelZoo, kind: str, tmp_path) -> None:
    """The training file is gone: both load from the checkpoint alone, and agree to 1e-6."""
    import mlflow

    trained = model_zoo.models[kind]
    expected = trained.predicted
    mlflow.set_tracking_uri(model_zoo.store)
    try:
        got = mlflow.pyfunc.load_model(trained.model_uri).predict(trained.rows)
    finally:
        mlflow.set_tracking_uri(None)
    assert list(got.columns) == list(expected.columns)
    assert got["prediction"].astype(str).tolist() == expected["prediction"].astype(str).tolist() or kind != "classifier"
    np.testing.assert_allclose(numbers(got), numbers(expected), rtol=0, atol=1e-6)


def test_signature_names_the_raw_columns_and_requirements_name_ml_tabular(model_zoo: ModelZoo) -> None:
    import mlflow

    mlflow.set_tracking_uri(model_zoo.store)
    try:
        info = mlflow.models.get_model_info(model_zoo.models["classifier"].model_uri)
        forecaster = mlflow.models.get_model_info(model_zoo.models["forecaster"].model_uri)
        requirements = mlflow.pyfunc.get_model_dependencies(model_zoo.models["classifier"].model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    inputs = {c.name: c.type.name for c in info.signature.inputs.inputs}
    assert all(c.required for c in info.signature.inputs.inputs)  # the model reads every column it names
    assert set(inputs) == {"x1", "x2", "color", "size"} and inputs["x2"] == "double" and inputs["color"] == "string"
    assert {c.name for c in info.signature.outputs.inputs} == {"prediction", "prob_0", "prob_1"}
    assert [c.name for c in forecaster.signature.inputs.inputs] == ["timestamp", "value", "temp"]
    assert {c.name for c in forecaster.signature.outputs.inputs} == {"timestamp", "step", "prediction"}
    assert "ml_tabular==" in Path(requirements).read_text()


def test_bad_rows_get_one_clear_message_and_unseen_categories_are_predicted(model_zoo: ModelZoo) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(model_zoo.store)
    try:
        classifier = mlflow.pyfunc.load_model(model_zoo.models["classifier"].model_uri)
        forecaster = mlflow.pyfunc.load_model(model_zoo.models["forecaster"].model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    rows = model_zoo.models["classifier"].rows.head(3).copy()
    rows["color"] = ["purple", None, "red"]
    assert len(classifier.predict(rows)) == 3
    with pytest.raises(MlflowException, match=r"missing inputs.*x1"):
        classifier.predict(rows.drop(columns=["x1"]))
    with pytest.raises(MlflowException, match="empty: send at least one row"):
        classifier.predict(rows.head(0))
    with pytest.raises(MlflowException, match=r"has 5 steps.*needs at least 24.*Send the last 24 steps"):
        forecaster.predict(model_zoo.models["forecaster"].rows.head(5))


@pytest.mark.parametrize("config", ["tabular.yaml", "timeseries.yaml"])
def test_shipped_configs_log_the_model(config: str) -> None:
    assert yaml.safe_load((REPO / "configs" / config).read_text())["mlflow"]["log_model"] is True
