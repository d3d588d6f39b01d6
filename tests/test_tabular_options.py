"""Tabular model options of issue 13: numeric embeddings, ensembles, quantile inputs, log1p targets, schedules."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_table

from ml_tabular.data import TabularDataModule
from ml_tabular.data.preprocessing import TabularPreprocessor
from ml_tabular.errors import DataError, ModelError
from ml_tabular.models import TabularMLP
from ml_tabular.models.base import warmup_cosine
from ml_tabular.nn import MLP
from ml_tabular.nn.ensemble import EnsembleMLP
from ml_tabular.nn.numeric import PeriodicEmbeddings
from ml_tabular.predictor import Predictor

OPTIONS = {"numeric_embedding": "periodic", "ensemble_size": 4, "lr_schedule": "warmup_cosine"}


def test_periodic_embeddings_give_each_feature_its_own_vector():
    torch.manual_seed(0)
    embed = PeriodicEmbeddings(3, dim=5, n_frequencies=4)
    x = torch.randn(8, 3)
    out = embed(x)
    assert out.shape == (8, 15) and embed.out_dim == 15
    changed = x.clone()
    changed[:, 1] += 1.0
    moved = (embed(changed) - out).abs().reshape(8, 3, 5).sum(dim=(0, 2))
    assert moved[0] == 0 and moved[2] == 0 and moved[1] > 0  # feature 1 only moves its own block


def test_ensemble_members_differ_and_share_their_weights():
    torch.manual_seed(0)
    ensemble = EnsembleMLP(6, [16, 16], 2, k=4)
    out = ensemble(torch.randn(5, 6))
    assert out.shape == (5, 4, 2)
    assert not torch.allclose(out[:, 0], out[:, 1])
    plain = sum(p.numel() for p in MLP(6, [16, 16], 2).parameters())
    assert sum(p.numel() for p in ensemble.parameters()) < 2 * plain  # 4 members for less than the price of 2


def test_quantile_transform_maps_skewed_columns_to_normal_scores_and_round_trips():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.lognormal(0, 2, 2000), "d": rng.integers(0, 3, 2000).astype(float), "y": 1.0})
    frame.loc[:9, "x"] = np.nan
    prep = TabularPreprocessor(["x", "d"], [], "y", "regression", numeric_transform="quantile").fit(frame, "f")
    x = prep.transform(frame, "f", with_target=False)["x_num"].numpy()
    finite = x[10:, 0]
    assert abs(np.mean(finite)) < 0.05 and abs(np.std(finite) - 1) < 0.05 and abs(pd.Series(finite).skew()) < 0.1
    assert (x[:10, 0] == 0).all() and (x[:10, 2] == 1).all()  # missing: 0 and its indicator
    assert len(np.unique(x[:, 1])) == 3  # a discrete column keeps one score per value
    restored = TabularPreprocessor.from_state_dict(prep.state_dict())
    np.testing.assert_array_equal(restored.transform(frame, "f", with_target=False)["x_num"].numpy(), x)


def test_log1p_target_trains_on_the_log_and_predicts_on_the_original_scale(tmp_path: Path):
    rng = np.random.default_rng(0)
    frame = make_table(400)
    frame["price"] = np.exp(2 + frame["x1"] + rng.normal(0, 0.1, len(frame)))
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = TabularDataModule(str(path), "price", task="regression", drop_columns=["id", "y", "amount"])
    data.target_transform = "log1p"
    data.prepare()
    assert data.fitted_target_transform == "log1p"
    assert data.target_mean == pytest.approx(np.log1p(frame["price"]).iloc[(data.state.split and 0) or 0 :].mean(), 0.1)
    model = TabularMLP(data.n_numeric, data.cardinalities, 1, "regression", data.target_mean, data.target_std,
                       hidden_dims=[32], target_transform="log1p", lr=0.01)  # fmt: skip
    pl.Trainer(max_epochs=30, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(model, datamodule=data)  # fmt: skip
    batch = data.splits["val"]
    predicted = model.eval().predict_step(batch, 0)
    actual = model.unscale(batch["y"])
    assert (predicted > 0).all()
    assert torch.corrcoef(torch.stack([predicted.log(), actual.log()]))[0, 1] > 0.9


def test_log1p_refuses_values_at_or_below_minus_one(tmp_path: Path):
    frame = make_table(100)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    data = TabularDataModule(str(path), "amount", task="regression", target_transform="log1p")
    with pytest.raises(DataError, match=r"target 'amount'.*<= -1.*target_transform none"):
        data.prepare()


def test_warmup_cosine_rises_then_decays_to_zero_and_holds():
    factor = warmup_cosine(100)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5, abs=0.02)
    assert factor(100) == pytest.approx(0.0) and factor(500) == pytest.approx(0.0)


def test_warmup_cosine_without_max_epochs_is_one_clear_error(table_csv: Path):
    data = TabularDataModule(str(table_csv), "y", drop_columns=["id", "amount"])
    data.prepare()
    model = TabularMLP(data.n_numeric, data.cardinalities, 2, "classification", lr_schedule="warmup_cosine")
    trainer = pl.Trainer(max_epochs=-1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ModelError, match=r"warmup_cosine needs trainer\.max_epochs"):
        trainer.fit(model, datamodule=data)


@pytest.mark.parametrize("option", [*OPTIONS, "quantile"])
def test_each_option_survives_a_checkpoint(table_csv: Path, tmp_path: Path, option: str):
    """Trained with the option, reloaded from the checkpoint alone: the same predictions."""
    torch.manual_seed(0)
    data = TabularDataModule(str(table_csv), "amount", task="regression", drop_columns=["id", "y"], batch_size=32,
                             numeric_transform="quantile" if option == "quantile" else "standard")  # fmt: skip
    data.prepare()
    extra = {option: OPTIONS[option]} if option in OPTIONS else {}
    model = TabularMLP(data.n_numeric, data.cardinalities, 1, "regression", data.target_mean, data.target_std,
                       hidden_dims=[16], **extra)  # fmt: skip
    trainer = pl.Trainer(max_epochs=2, logger=False, default_root_dir=tmp_path, enable_progress_bar=False,
                         enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    frame = make_table(20, seed=3)
    expected = Predictor(model, data).predict(frame)
    loaded = Predictor.from_checkpoint(trainer.checkpoint_callback.best_model_path)
    pd.testing.assert_frame_equal(loaded.predict(frame), expected)
    assert loaded.model.hparams.get(option, "quantile") == OPTIONS.get(option, "quantile")
