"""``TabularMLP`` and the ``ml_tabular.nn`` modules in-process: shapes, learning, seeding, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from ml_tabular.data.tabular import TabularDataModule
from ml_tabular.errors import ModelError
from ml_tabular.models.base import Batch
from ml_tabular.models.tabular import TabularMLP
from ml_tabular.nn import CategoricalEmbeddings, TabularNet, embedding_dim

N_NUMERIC, CARDINALITIES, ROWS = 4, [3, 6], 32
TASKS = {"classification": 3, "regression": 1}  # task -> n_outputs


def build(task: str, **kwargs) -> tuple[TabularMLP, Batch]:
    """A small ``TabularMLP`` for ``task`` and one random batch for it."""
    model = TabularMLP(N_NUMERIC, CARDINALITIES, TASKS[task], task, **{"hidden_dims": [32, 32], **kwargs})
    batch = {
        "x_num": torch.randn(ROWS, N_NUMERIC),
        "x_cat": torch.stack([torch.randint(0, c, (ROWS,)) for c in CARDINALITIES], dim=1),
        "y": torch.randint(0, 3, (ROWS,)) if task == "classification" else torch.randn(ROWS),
    }
    return model, batch


@pytest.mark.parametrize("task", TASKS)
def test_forward_and_predict_shapes(task):
    model, batch = build(task, target_mean=10.0, target_std=2.0)
    model.eval()

    out = model(batch["x_num"], batch["x_cat"])
    predictions = model.predict_step(batch, 0)

    assert out.shape == (ROWS, 1, TASKS[task])  # [B, ensemble members, outputs]
    if task == "classification":
        torch.testing.assert_close(predictions, out[:, 0].softmax(dim=1))
        torch.testing.assert_close(predictions.sum(dim=1), torch.ones(ROWS))
    else:
        torch.testing.assert_close(predictions, out[:, 0, 0] * 2.0 + 10.0)  # back on the original scale


@pytest.mark.parametrize("task", TASKS)
def test_model_overfits_one_batch(task, single_thread):
    torch.manual_seed(0)
    model, batch = build(task, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    first = model.compute(batch)[0].item()
    for _ in range(100):
        optimizer.zero_grad()
        model.compute(batch)[0].backward()
        optimizer.step()

    assert model.compute(batch)[0].item() < 0.05 * first


@pytest.mark.parametrize(("card", "dim"), [(1, 1), (2, 1), (3, 2), (4, 2), (10, 5), (98, 49), (99, 50), (1000, 50)])
def test_embedding_dim_is_half_the_cardinality_capped_at_50(card, dim):
    assert embedding_dim(card) == dim


def test_categorical_embeddings_concatenate_one_table_per_column():
    embeddings = CategoricalEmbeddings([3, 10, 200])
    codes = torch.tensor([[0, 9, 199], [2, 0, 0]])

    out = embeddings(codes)

    assert embeddings.out_dim == 2 + 5 + 50
    assert out.shape == (2, 57)
    torch.testing.assert_close(out[:, 2:7], embeddings.tables[1](codes[:, 1]))


def test_explicit_embedding_dims_set_the_mlp_input_width():
    net = TabularNet(N_NUMERIC, CARDINALITIES, out_dim=2, hidden_dims=[8], embedding_dims=[4, 7])

    assert net.embeddings.out_dim == 11
    assert net.mlp.layers[0].in_features == N_NUMERIC + 11
    assert net(torch.randn(5, N_NUMERIC), torch.zeros(5, 2, dtype=torch.int64)).shape == (5, 1, 2)


def test_numeric_only_net_has_no_embeddings():
    net = TabularNet(N_NUMERIC, [], out_dim=1, hidden_dims=[8])

    assert net(torch.randn(5, N_NUMERIC), torch.zeros(5, 0, dtype=torch.int64)).shape == (5, 1, 1)


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_builds_models_with_identical_predictions(task):
    torch.manual_seed(0)
    first, batch = build(task)
    torch.manual_seed(0)
    again, _ = build(task)
    torch.manual_seed(1)
    other, _ = build(task)

    outputs = [m.eval().predict_step(batch, 0) for m in (first, again, other)]

    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    assert not torch.allclose(outputs[0], outputs[2])


@pytest.mark.parametrize(("target", "drop"), [("y", ["id", "amount"]), ("amount", ["id", "y"])])
def test_short_fit_and_checkpoint_round_trip(table_csv, tmp_path: Path, target, drop):
    torch.manual_seed(0)
    dm = TabularDataModule(str(table_csv), target, drop_columns=drop, batch_size=32)
    dm.prepare()  # reads the table and fits the state the model's sizes come from
    model = TabularMLP(
        dm.n_numeric,
        dm.cardinalities,
        dm.n_outputs,
        dm.resolved_task,
        dm.target_mean,
        dm.target_std,
        hidden_dims=[16],
    )
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=True,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    before = [p.detach().clone() for p in model.parameters()]

    trainer.fit(model, datamodule=dm)

    assert trainer.global_step == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    path = trainer.checkpoint_callback.best_model_path
    assert Path(path).is_file() and Path(path).is_relative_to(tmp_path)
    checkpoint = torch.load(path, weights_only=False)
    assert "torch_rng_state" in checkpoint
    assert checkpoint["TabularDataModule"]["preprocessor"] == dm.fitted.state_dict()

    torch.manual_seed(99)  # loading restores the RNG state saved with the checkpoint
    loaded = TabularMLP.load_from_checkpoint(path)
    assert torch.equal(torch.get_rng_state(), checkpoint["torch_rng_state"])
    assert loaded.hparams.task == dm.resolved_task
    batch = next(iter(dm.val_dataloader()))
    model.eval()
    torch.testing.assert_close(loaded.eval().predict_step(batch, 0), model.predict_step(batch, 0), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_numeric": 2, "cardinalities": [3, 4], "embedding_dims": [2]}, "embedding_dims has 1 entries"),
        ({"n_numeric": 2, "cardinalities": [3], "embedding_dims": [2, 2]}, "embedding_dims has 2 entries"),
        ({"n_numeric": 2, "task": "classification", "n_outputs": 1}, "n_outputs >= 2"),
        ({"n_numeric": 0, "cardinalities": []}, "no inputs"),
    ],
)
def test_inconsistent_model_arguments_raise_model_error(kwargs, match):
    with pytest.raises(ModelError, match=match):
        TabularMLP(**kwargs)
