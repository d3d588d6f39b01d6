"""Contract: ``MLTabularLogger`` is a drop-in for Lightning's ``MLFlowLogger`` on a real SQLite store.

Every test runs both loggers, built and used the same way, and checks what lands in the store (params, metrics,
tags, artifacts, run statuses). Where the two differ on purpose (see ``MLTabularLogger``'s docstring), the test
or branch says ``by design: ...`` and asserts each side's behaviour explicitly.
"""

from __future__ import annotations

import inspect
import signal
from argparse import Namespace
from pathlib import Path

import lightning.pytorch as pl
import mlflow
import pytest
import torch
from conftest import history
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from mlflow import MlflowClient
from torch.utils.data import DataLoader, TensorDataset

from ml_tabular.mlops.callbacks import MlflowRunCallback
from ml_tabular.mlops.logger import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, MLTabularLogger
from ml_tabular.mlops.secrets import REDACTED

EXPERIMENT = "contract"
BASE_PARAMS = (
    "experiment_name",
    "run_name",
    "tracking_uri",
    "tags",
    "save_dir",
    "log_model",
    "prefix",
    "artifact_location",
    "run_id",
    "synchronous",
)
LOGGERS = [pytest.param(MLFlowLogger, id="MLFlowLogger"), pytest.param(MLTabularLogger, id="MLTabularLogger")]
STEPS_PER_EPOCH = 4  # 64 rows, batch 16


@pytest.fixture(autouse=True)
def _isolated(isolated: None) -> None:
    """Every test here runs isolated (see conftest)."""


@pytest.fixture
def sigint_restored():
    """Lightning ignores SIGINT after a KeyboardInterrupt (against a second Ctrl-C); give pytest its handler back."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def _data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(64, 4, generator=generator), torch.randn(64, 1, generator=generator))


class Tiny(pl.LightningModule):
    """Linear(4, 1) on 64 fixed random rows; optionally raises ``fail_in_fit`` in epoch 1 or fails in test."""

    def __init__(self, fail_in_fit: type[BaseException] | None = None, fail_in_test: bool = False) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.layer = torch.nn.Linear(4, 1)
        self.fail_in_fit = fail_in_fit
        self.fail_in_test = fail_in_test
        self.data = _data()

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, batch_idx):
        if self.fail_in_fit is not None and self.current_epoch == 1:
            raise self.fail_in_fit("boom in training_step")
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch), on_step=False, on_epoch=True)

    def test_step(self, batch, batch_idx):
        if self.fail_in_test:
            raise RuntimeError("boom in test_step")
        self.log("test_loss", self._loss(batch), on_step=False, on_epoch=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def _loader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=16)

    def train_dataloader(self):
        return self._loader()

    def val_dataloader(self):
        return self._loader()

    def test_dataloader(self):
        return self._loader()


class RecordingCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint(monitor="val_loss", save_last=True)`` that remembers every file it saved."""

    def __init__(self) -> None:
        super().__init__(monitor="val_loss", save_last=True)
        self.saved: list[str] = []

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        self.saved.append(filepath)


def new_logger(cls, store: str, tmp_path: Path, **kwargs):
    save_dir = str(tmp_path / "mlruns")
    return cls(experiment_name=EXPERIMENT, run_name="r", tracking_uri=store, save_dir=save_dir, **kwargs)


def trainer_for(logger, tmp_path: Path, callbacks: list | None = None) -> pl.Trainer:
    """The brief's Trainer; Lightning's default checkpointing only when a ``ModelCheckpoint`` is passed."""
    return pl.Trainer(
        max_epochs=2,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks or []),
        callbacks=callbacks or [],
        default_root_dir=tmp_path,
        accelerator="cpu",
        log_every_n_steps=1,
    )


def fit(logger, tmp_path: Path, model: Tiny | None = None, callbacks: list | None = None) -> pl.Trainer:
    trainer = trainer_for(logger, tmp_path, callbacks)
    trainer.fit(model or Tiny())
    return trainer


def status(store: str, run_id: str) -> str:
    return MlflowClient(store).get_run(run_id).info.status


def all_artifacts(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    """Every artifact file of a run, recursively."""
    found: set[str] = set()
    for item in client.list_artifacts(run_id, folder):
        found |= all_artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


# ----- 1. construction -----
def test_signature_starts_with_the_base_parameters():
    base = list(inspect.signature(MLFlowLogger.__init__).parameters.values())[1:]
    ours = list(inspect.signature(MLTabularLogger.__init__).parameters.values())[1:]

    assert tuple(p.name for p in base) == BASE_PARAMS
    assert tuple(p.name for p in ours[: len(base)]) == BASE_PARAMS
    for b, o in zip(base, ours, strict=False):
        assert o.kind == b.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD, b.name
        if b.name != "tracking_uri":
            assert o.default == b.default, b.name
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in ours[len(base) :])


def test_by_design_tracking_uri_default_is_resolved_when_constructed(store, tmp_path, monkeypatch):
    """by design: the base's default is ``MLFLOW_TRACKING_URI`` read at import (else ``file:<save_dir>``); ours is
    ``None``, resolved when constructed: the variable, else ``sqlite:///<save_dir>/mlflow.db``."""
    base_default = inspect.signature(MLFlowLogger.__init__).parameters["tracking_uri"].default
    assert inspect.signature(MLTabularLogger.__init__).parameters["tracking_uri"].default is None
    assert base_default is None or isinstance(base_default, str)  # whatever the environment held at import

    # the store fixture is <tmp_path>/mlflow.db, so no new (slow to initialise) database is made here
    assert MLTabularLogger(save_dir=str(tmp_path)).tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    assert MLTabularLogger(save_dir=str(tmp_path / "elsewhere")).tracking_uri == store


@pytest.mark.parametrize("cls", LOGGERS)
def test_positional_construction(cls, store, tmp_path):
    logger = cls(EXPERIMENT, "r", store, {"team": "a"}, str(tmp_path / "mlruns"))

    client = MlflowClient(store)
    run = client.get_run(logger.run_id)
    assert run.info.run_name == "r"
    assert run.data.tags["team"] == "a"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT


# ----- 3. hyperparameters -----
@pytest.mark.parametrize("cls", LOGGERS)
def test_log_hyperparams_dict_and_namespace(cls, store, tmp_path):
    logger = new_logger(cls, store, tmp_path)

    logger.log_hyperparams({"a": {"b": 1}, "_x": 2, "lr": 0.1})
    logger.log_hyperparams(Namespace(lr=0.1, depth=3))

    params = MlflowClient(store).get_run(logger.run_id).data.params
    assert params == {"a/b": "1", "_x": "2", "lr": "0.1", "depth": "3"}


@pytest.mark.parametrize("cls", LOGGERS)
def test_by_design_long_param_values_are_not_cut(cls, store, tmp_path):
    """by design: the base cuts a param value to 250 characters; ours keeps it whole."""
    logger = new_logger(cls, store, tmp_path)

    logger.log_hyperparams({"note": "x" * 300})

    value = MlflowClient(store).get_run(logger.run_id).data.params["note"]
    assert value == "x" * (250 if cls is MLFlowLogger else 300)


# Values the case above leaves out, as the base records them; a drop-in records them the same way (the last
# field says how ours once differed).
PARAM_EDGES = [
    ("none", {"v": None}, {"v": "None"}, "ours writes None as 'null' (tracking.param_value); the base str(None)"),
    (
        "list_of_dicts",
        {"dl": [{"a": 1}, {"b": 2}]},
        {"dl/0/a": "1", "dl/1/b": "2"},
        "ours' tracking.flatten keeps a list of dicts as one param; Lightning's _flatten_dict expands it (dl/0/a)",
    ),
    (
        "empty_mapping",
        {"e": {}, "k": 1},
        {"k": "1"},
        "ours records an empty mapping as the param e='{}'; the base records nothing for it",
    ),
    ("tuple", {"t": (1, 2)}, {"t": "(1, 2)"}, "ours' secrets.redact turns a tuple into a list: '[1, 2]'"),
]


def _param_edges():
    for name, given, expected, _how_ours_differed in PARAM_EDGES:
        yield pytest.param(MLFlowLogger, given, expected, id=f"MLFlowLogger-{name}")
        yield pytest.param(MLTabularLogger, given, expected, id=f"MLTabularLogger-{name}")


@pytest.mark.parametrize(("cls", "given", "expected"), list(_param_edges()))
def test_log_hyperparams_edge_values(cls, given, expected, store, tmp_path):
    logger = new_logger(cls, store, tmp_path)

    logger.log_hyperparams(given)

    assert MlflowClient(store).get_run(logger.run_id).data.params == expected


@pytest.mark.parametrize("cls", LOGGERS)
def test_by_design_secrets_are_redacted(cls, store, tmp_path):
    """by design: ours redacts secret-looking params and tags; the base records them as given."""
    logger = new_logger(cls, store, tmp_path, tags={"password": "hunter2"})

    logger.log_hyperparams({"api_key": "s3cr3t", "lr": 0.1})

    run = MlflowClient(store).get_run(logger.run_id)
    secret = cls is MLFlowLogger
    assert run.data.params == {"api_key": "s3cr3t" if secret else REDACTED, "lr": "0.1"}
    assert run.data.tags["password"] == ("hunter2" if secret else REDACTED)


# ----- 4, 5. fit: metrics and steps -----
@pytest.mark.parametrize("cls", LOGGERS)
def test_fit_records_metrics_and_finishes(cls, store, tmp_path):
    logger = new_logger(cls, store, tmp_path)

    fit(logger, tmp_path)

    client = MlflowClient(store)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert {"train_loss", "val_loss", "epoch"} <= set(run.data.metrics)
    train = history(client, logger.run_id, "train_loss")
    val = history(client, logger.run_id, "val_loss")
    assert len(train) == 2 and len(val) == 2
    epochs = history(client, logger.run_id, "epoch")
    # the base records ``epoch`` with the train and with the val metrics of each epoch;
    # by design: ours once per epoch, so no metric has two values at one step
    assert [v for _, v in epochs] == ([0.0, 0.0, 1.0, 1.0] if cls is MLFlowLogger else [0.0, 1.0])
    # the base: steps are Lightning's optimizer steps taken before the epoch's end;
    # by design: ours steps metrics by the epoch index Lightning passes as ``epoch``
    steps = [STEPS_PER_EPOCH - 1, 2 * STEPS_PER_EPOCH - 1] if cls is MLFlowLogger else [0, 1]
    assert [s for s, _ in train] == steps
    assert [s for s, _ in val] == steps
    assert [s for s, _ in epochs] == ([steps[0], steps[0], steps[1], steps[1]] if cls is MLFlowLogger else steps)


@pytest.mark.parametrize("cls", LOGGERS)
def test_by_design_step_level_metrics_share_the_epoch_step(cls, store, tmp_path):
    """by design (ml_tabular logs epoch metrics only): Lightning adds ``epoch`` to every metrics dict it logs, so
    ours steps ``on_step=True`` metrics of one epoch all at that epoch's index; the base at the global step."""
    logger = new_logger(cls, store, tmp_path)

    for step in (0, 1, 2):  # what Lightning passes for three batches of epoch 0 with on_step=True
        logger.log_metrics({"train_loss_step": float(step), "epoch": 0}, step=step)

    steps = [s for s, _ in history(MlflowClient(store), logger.run_id, "train_loss_step")]
    assert steps == ([0, 1, 2] if cls is MLFlowLogger else [0, 0, 0])


@pytest.mark.parametrize("cls", LOGGERS)
def test_prefix_starts_metric_keys(cls, store, tmp_path):
    logger = new_logger(cls, store, tmp_path, prefix="p")

    fit(logger, tmp_path)

    metrics = MlflowClient(store).get_run(logger.run_id).data.metrics
    assert {"p-train_loss", "p-val_loss", "p-epoch"} <= set(metrics)
    assert all(key.startswith("p-") for key in metrics), sorted(metrics)


# ----- 6. checkpoints as artifacts -----
@pytest.mark.parametrize("cls", LOGGERS)
def test_log_model_false_uploads_no_checkpoint(cls, store, tmp_path):
    logger = new_logger(cls, store, tmp_path, log_model=False)
    checkpoint = RecordingCheckpoint()

    fit(logger, tmp_path, callbacks=[checkpoint])

    assert checkpoint.saved  # there were checkpoints to upload
    uploaded = all_artifacts(MlflowClient(store), logger.run_id)
    if cls is MLTabularLogger:  # by design: ours uploads its captured log, once ml_tabular's logging is configured
        uploaded -= {"logs/train.log"}
    assert uploaded == set()


def stem_folders(stems: set[str]) -> set[str]:
    """What Lightning's MLFlowLogger uploads per checkpoint: ``<stem>/<stem>.ckpt``, metadata and aliases."""
    return {f"{stem}/{name}" for stem in stems for name in (f"{stem}.ckpt", "metadata.yaml", "aliases.txt")}


def downloaded(client: MlflowClient, run_id: str, path: str, tmp_path: Path) -> bytes:
    destination = tmp_path / "downloads"
    destination.mkdir(exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(destination))).read_bytes()


@pytest.mark.parametrize("cls", LOGGERS)
def test_log_model_true_uploads_the_kept_checkpoints(cls, store, tmp_path):
    logger = new_logger(cls, store, tmp_path, log_model=True)
    checkpoint = RecordingCheckpoint()

    fit(logger, tmp_path, callbacks=[checkpoint])

    client = MlflowClient(store)
    uploaded = all_artifacts(client, logger.run_id) - {"logs/train.log"}  # ours' captured log, when configured
    best, last = Path(checkpoint.best_model_path), Path(checkpoint.last_model_path)
    assert best.is_file() and last.is_file() and best != last
    if cls is MLFlowLogger:  # the base: each kept checkpoint in a folder named after its stem
        assert uploaded == stem_folders({best.stem, last.stem})
    else:  # by design: stable names to register or download
        assert uploaded == {"checkpoints/best.ckpt", "checkpoints/last.ckpt"}
        assert downloaded(client, logger.run_id, "checkpoints/best.ckpt", tmp_path) == best.read_bytes()
        assert downloaded(client, logger.run_id, "checkpoints/last.ckpt", tmp_path) == last.read_bytes()


@pytest.mark.parametrize("cls", LOGGERS)
def test_log_model_all_uploads_every_checkpoint_as_saved(cls, store, tmp_path):
    logger = new_logger(cls, store, tmp_path, log_model="all")
    checkpoint = RecordingCheckpoint()

    fit(logger, tmp_path, callbacks=[checkpoint])

    uploaded = all_artifacts(MlflowClient(store), logger.run_id) - {"logs/train.log"}
    expected = stem_folders({Path(path).stem for path in checkpoint.saved})
    assert {"last", Path(checkpoint.best_model_path).stem} <= {Path(path).stem for path in checkpoint.saved}
    if cls is MLFlowLogger:
        assert uploaded == expected
    else:  # by design: ours also uploads the best and last under stable names at the end
        assert uploaded == expected | {"checkpoints/best.ckpt", "checkpoints/last.ckpt"}


@pytest.mark.parametrize("cls", LOGGERS)
def test_by_design_save_dir_is_where_checkpoints_are_written(cls, store, tmp_path):
    """by design: the base's ``save_dir`` is ``None`` for a non-``file:`` store (Lightning then writes checkpoints
    under ``default_root_dir``); ours is the local ``save_dir`` whatever the store."""
    logger = new_logger(cls, store, tmp_path)
    checkpoint = RecordingCheckpoint()

    fit(logger, tmp_path, callbacks=[checkpoint])

    root = tmp_path if cls is MLFlowLogger else tmp_path / "mlruns"
    assert logger.save_dir == (None if cls is MLFlowLogger else str(tmp_path / "mlruns"))
    assert Path(checkpoint.dirpath) == root / logger.experiment_id / logger.run_id / "checkpoints"
    assert logger.name == logger.experiment_id and logger.version == logger.run_id  # as the base


# ----- 7. statuses when fit stops -----
@pytest.mark.parametrize("cls", LOGGERS)
def test_exception_in_fit_fails_the_run(cls, store, tmp_path):
    logger = new_logger(cls, store, tmp_path)

    with pytest.raises(RuntimeError, match="boom in training_step"):
        fit(logger, tmp_path, Tiny(fail_in_fit=RuntimeError))

    assert status(store, logger.run_id) == "FAILED"


@pytest.mark.usefixtures("sigint_restored")
@pytest.mark.parametrize(
    ("cls", "run_callback", "expected"),
    [
        pytest.param(MLFlowLogger, False, "FAILED", id="MLFlowLogger"),
        pytest.param(MLTabularLogger, False, "FAILED", id="MLTabularLogger"),
        # by design: ml_tabular's callback names an interrupt KILLED (Lightning then reports it as a failure)
        pytest.param(MLTabularLogger, True, "KILLED", id="MLTabularLogger+MlflowRunCallback"),
    ],
)
def test_keyboard_interrupt_in_fit(cls, run_callback, expected, store, tmp_path):
    logger = new_logger(cls, store, tmp_path)
    callbacks = [MlflowRunCallback()] if run_callback else []

    with pytest.raises(SystemExit) as stopped:  # Lightning shuts down gracefully, then sys.exit(1)
        fit(logger, tmp_path, Tiny(fail_in_fit=KeyboardInterrupt), callbacks=callbacks)

    assert stopped.value.code == 1
    assert status(store, logger.run_id) == expected
    assert len(history(MlflowClient(store), logger.run_id, "train_loss")) == 1  # epoch 0 was recorded


# ----- 8. fit, then test with the same logger -----
@pytest.mark.parametrize("test_fails", [False, True], ids=["test_succeeds", "test_fails"])
@pytest.mark.parametrize("cls", LOGGERS)
def test_test_after_fit_in_one_process(cls, test_fails, store, tmp_path):
    logger = new_logger(cls, store, tmp_path)
    model = Tiny()
    trainer = fit(logger, tmp_path, model)
    assert status(store, logger.run_id) == "FINISHED"

    model.fail_in_test = test_fails
    if test_fails:
        with pytest.raises(RuntimeError, match="boom in test_step"):
            trainer.test(model, verbose=False)
    else:
        trainer.test(model, verbose=False)

    run = MlflowClient(store).get_run(logger.run_id)
    assert run.info.status == ("FAILED" if test_fails else "FINISHED")  # the run is closed again
    assert ("test_loss" in run.data.metrics) is not test_fails
    assert {"train_loss", "val_loss"} <= set(run.data.metrics)


# ----- 9. synchronous -----
@pytest.mark.parametrize("synchronous", [True, False], ids=["synchronous", "asynchronous"])
@pytest.mark.parametrize("cls", LOGGERS)
def test_synchronous_logging_arrives(cls, synchronous, store, tmp_path):
    logger = new_logger(cls, store, tmp_path, synchronous=synchronous)

    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"m": 1.5}, step=2)
    if not synchronous:
        mlflow.flush_async_logging()

    run = MlflowClient(store).get_run(logger.run_id)
    assert run.data.params == {"lr": "0.1"}
    assert run.data.metrics == {"m": 1.5}
    assert history(MlflowClient(store), logger.run_id, "m") == [(2, 1.5)]


# ----- 10. tags -----
@pytest.mark.parametrize("cls", LOGGERS)
def test_constructor_tags_arrive(cls, store, tmp_path):
    logger = new_logger(cls, store, tmp_path, tags={"team": "a", "stage": "dev"})

    client = MlflowClient(store)
    run = client.get_run(logger.run_id)
    assert run.data.tags["team"] == "a"
    assert run.data.tags["stage"] == "dev"
    assert run.data.tags["mlflow.runName"] == "r"
    experiment_tags = client.get_experiment(run.info.experiment_id).tags
    if cls is MLFlowLogger:
        assert EXPERIMENT_KIND_TAG not in experiment_tags
    else:  # by design: MLflow's UI opens the experiment in its model-training view
        assert experiment_tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_both_loggers_record_the_same_run_tags(store, tmp_path):
    """Side by side on one store: the same run tags (MLflow's context tags included), key for key."""
    client = MlflowClient(store)
    tags = [
        client.get_run(new_logger(cls, store, tmp_path, tags={"team": "a"}).run_id).data.tags
        for cls in (MLFlowLogger, MLTabularLogger)
    ]

    assert tags[0] == tags[1]
