"""The time-series evaluation protocol: one set of calendar cutoffs for all series, MASE per series, seasonal
differences in time (not rows), and no silent assumption (a missing MASE scale, a timestamp format)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ml_tabular.data.timeseries import TimeSeriesDataModule
from ml_tabular.data.windows import seasonal_naive_errors
from ml_tabular.errors import DataError
from ml_tabular.models.timeseries import TimeSeriesMLP

INPUT_SIZE, HORIZON = 4, 2
WIDTH = INPUT_SIZE + HORIZON


def hourly(start: str, n_steps: int, scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """An hourly series with a daily cycle and noise from ``start``, ``scale`` times larger."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range(start, periods=n_steps, freq="h")
    value = scale * (10 + 3 * np.sin(2 * np.pi * stamps.hour / 24) + rng.normal(0, 0.5, n_steps))
    return pd.DataFrame({"timestamp": stamps, "value": value})


def stores(*parts: tuple[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([frame.assign(store=name) for name, frame in parts], ignore_index=True)


def prepared(frame: pd.DataFrame, tmp_path: Path, **kwargs) -> TimeSeriesDataModule:
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    options = {"input_size": INPUT_SIZE, "horizon": HORIZON, "val_fraction": 0.2, "test_fraction": 0.2}
    dm = TimeSeriesDataModule(str(path), "value", **{**options, **kwargs})
    dm.prepare()
    return dm


def window_spans(frame: pd.DataFrame, dm: TimeSeriesDataModule, split: str) -> pd.DataFrame:
    """First and last timestamp of every window of ``split`` (rows of ``values`` are in (store, time) order)."""
    ordered = frame.sort_values(["store", "timestamp"]).reset_index(drop=True)
    starts = dm.starts[split].numpy()
    return pd.DataFrame(
        {
            "store": ordered["store"].to_numpy()[starts],
            "first": ordered["timestamp"].to_numpy()[starts],
            "last": ordered["timestamp"].to_numpy()[starts + WIDTH - 1],
        }
    )


def test_every_series_is_cut_at_the_same_instants(tmp_path):
    # 'a' runs 100 h from midnight, 'b' 60 h from 40 h later: by its own fractions 'b' would train on hours
    # that are validation for 'a'
    frame = stores(("a", hourly("2024-01-01", 100)), ("b", hourly("2024-01-02 16:00", 60, seed=1)))

    dm = prepared(frame, tmp_path, series_id_column="store")

    pooled = np.sort(frame["timestamp"].to_numpy())  # 160 steps: the last 32 test, the 32 before validation
    val_start, test_start = pooled[160 - 64], pooled[160 - 32]
    train, val, test = (window_spans(frame, dm, split) for split in ("train", "val", "test"))
    assert train["last"].max() < val_start <= val["first"].min()
    assert val["last"].max() < test_start <= test["first"].min()
    for split in (train, val, test):
        assert set(split["store"]) == {"a", "b"}  # both series in every stretch
    assert (dm.state.split.val_start, dm.state.split.test_start) == tuple(
        pd.Timestamp(t).isoformat() for t in (val_start, test_start)
    )


def test_the_cutoffs_round_trip_through_the_checkpoint_state(tmp_path):
    frame = stores(("a", hourly("2024-01-01", 100)), ("b", hourly("2024-01-02 16:00", 60, seed=1)))
    dm = prepared(frame, tmp_path, series_id_column="store")
    torch.save(dm.state_dict(), tmp_path / "state.pt")

    # a config asking for other fractions: the checkpoint's split wins
    restored = TimeSeriesDataModule(
        dm.path, "value", series_id_column="store", input_size=INPUT_SIZE, horizon=HORIZON, val_fraction=0.4
    )
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    restored.prepare()

    assert restored.state == dm.state
    for split in ("train", "val", "test"):
        torch.testing.assert_close(restored.starts[split], dm.starts[split], rtol=0, atol=0)


def test_a_state_from_before_the_cutoffs_still_splits_each_series_by_its_fractions(tmp_path):
    frame = stores(("a", hourly("2024-01-01", 100)), ("b", hourly("2024-01-02 16:00", 60, seed=1)))
    dm = prepared(frame, tmp_path, series_id_column="store")
    old = dm.state_dict()
    for key in ("val_start", "test_start"):
        del old["split"][key]
    del old["scaling"]["mase_scales"], old["calendar"]

    restored = TimeSeriesDataModule(dm.path, "value", series_id_column="store", input_size=INPUT_SIZE, horizon=HORIZON)
    restored.load_state_dict(old)
    restored.prepare()

    # 'a' [0, 60) [60, 80) [80, 100); 'b' (rows 100..159) [100, 136) [136, 148) [148, 160)
    assert restored.starts["val"].tolist() == [*range(60, 80 - WIDTH + 1), *range(136, 148 - WIDTH + 1)]
    assert restored.series_scales.tolist() == pytest.approx([dm.mase_scale] * 2)  # the pooled scale, as then


def naive_scale(values: np.ndarray, stamps: pd.DatetimeIndex, season: int, step: pd.Timedelta) -> float:
    """Mean |y_t - y_{t - season steps}| over pairs present in time, by hand."""
    by_time = pd.Series(values, index=stamps)
    earlier = by_time.reindex(stamps - season * step).to_numpy()
    return float(np.nanmean(np.abs(values - earlier)))


def build_model(dm: TimeSeriesDataModule) -> TimeSeriesMLP:
    torch.manual_seed(0)
    sizes = {"input_size": INPUT_SIZE, "horizon": HORIZON, "mase_scale": dm.mase_scale}
    scale = {"target_mean": dm.target_mean, "target_std": dm.target_std}
    return TimeSeriesMLP(**sizes, **scale, hidden_dims=[8]).eval()


def test_mase_is_each_series_error_over_its_own_scale_averaged(tmp_path):
    small, large = hourly("2024-01-01", 120), hourly("2024-01-01", 120, scale=100.0, seed=1)
    frame = stores(("a", small), ("b", large))
    dm = prepared(frame, tmp_path, series_id_column="store", season_length=24)
    torch.manual_seed(0)
    model = build_model(dm)

    forecasts, actuals = [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            model.validation_step(batch, 0)
            forecasts.append(model.predict_step(batch, 0))
            actuals.append(model.unscale(batch["y"]))
    mase = model.metrics["val_metrics"].compute()["val_mase"].item()

    forecasts, actuals = torch.cat(forecasts), torch.cat(actuals)
    series = (dm.starts["val"] >= 120).long()  # rows of 'a' come first
    n_train = 72  # 240 pooled steps: validation from the 144th (hour 72 of both series)
    scales = [
        naive_scale(
            part["value"].to_numpy()[:n_train], pd.DatetimeIndex(part["timestamp"][:n_train]), 24, pd.Timedelta("1h")
        )
        for part in (small, large)
    ]
    per_series = [(forecasts - actuals)[series == i].abs().mean().item() / scales[i] for i in (0, 1)]
    assert mase == pytest.approx(np.mean(per_series), rel=1e-4)
    assert dm.fitted.mase_scales == pytest.approx(scales, rel=1e-5)


def test_a_seasonal_difference_is_taken_in_time_not_across_a_gap(tmp_path):
    frame = hourly("2024-01-01", 200).assign(store="a")
    frame = frame.drop(index=range(30, 35))  # hours 30-34 missing: row t-24 is no longer hour t-24

    dm = prepared(frame, tmp_path, season_length=24)

    train = frame.iloc[:117]  # 195 rows: the last 39 test, the 39 before validation
    expected = naive_scale(train["value"].to_numpy(), pd.DatetimeIndex(train["timestamp"]), 24, pd.Timedelta("1h"))
    assert dm.mase_scale == pytest.approx(expected, rel=1e-5)


def test_seasonal_naive_errors_pair_each_step_with_the_step_a_season_earlier():
    stamps = np.array([0, 1, 2, 3, 6, 7, 8, 9])  # 4 and 5 missing
    values = np.array([0.0, 10, 20, 30, 60, 70, 80, 90], dtype=np.float32)

    errors = seasonal_naive_errors(values, 3, stamps, step=1)

    # pairs in time: (3, 0), (6, 3), (9, 6); 7 and 8 have no step 4 and 5 to pair with
    assert sorted(errors.tolist()) == [30.0, 30.0, 30.0]


@pytest.fixture
def warnings_of_ours(caplog: pytest.LogCaptureFixture):
    ours = logging.getLogger("ml_tabular")  # may not propagate to caplog's root handler (configure_logging)
    ours.addHandler(caplog.handler)
    yield caplog
    ours.removeHandler(caplog.handler)


def test_a_series_without_a_naive_error_is_left_out_of_mase_with_a_warning(tmp_path, warnings_of_ours):
    flat = hourly("2024-01-01", 120).assign(value=5.0)  # constant: its seasonal-naive error is 0
    frame = stores(("a", hourly("2024-01-01", 120)), ("flat", flat))

    dm = prepared(frame, tmp_path, series_id_column="store", season_length=24)

    (warning,) = {r.getMessage() for r in warnings_of_ours.records if r.levelno == logging.WARNING}
    assert "MASE leaves out 1 of 2 series (series 'flat')" in warning and "season_length=24" in warning
    model = build_model(dm)
    for batch in dm.val_dataloader():
        model.validation_step(batch, 0)
    assert np.isfinite(model.metrics["val_metrics"].compute()["val_mase"].item())
    assert np.isnan(dm.fitted.mase_scales[1]) and dm.fitted.mase_scales[0] > 0


def test_no_mase_scale_at_all_is_an_error_naming_season_length(tmp_path):
    frame = hourly("2024-01-01", 60).assign(value=5.0, store="a")

    with pytest.raises(DataError, match=r"no series .* seasonal-naive error .* data.init_args.season_length"):
        prepared(frame, tmp_path, season_length=24)


def test_text_timestamps_no_single_format_reads_are_an_error(tmp_path):
    frame = hourly("2024-03-01", 60).assign(store="a")
    text = frame["timestamp"].dt.strftime("%d/%m/%Y %H:%M")
    frame["timestamp"] = text.where(frame.index < 30, frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M"))

    with pytest.raises(DataError, match=r"not dates/times in the format '.*': \['2024-03-02 06:00'.*timestamp_format"):
        prepared(frame, tmp_path)


def test_iso_timestamps_with_and_without_a_time_read_as_one_format(tmp_path):
    frame = hourly("2024-03-01", 60)
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M").str.replace(" 00:00", "")
    path = tmp_path / "series.parquet"
    frame.to_parquet(path)  # text, as stored: read by pandas, not by Arrow's CSV reader

    dm = TimeSeriesDataModule(
        str(path), "value", input_size=INPUT_SIZE, horizon=HORIZON, val_fraction=0.2, test_fraction=0.2
    )
    dm.prepare()

    assert dm.state.text_format == "ISO8601"
    assert len(dm.starts["train"]) == 36 - WIDTH + 1  # no gap: every row read at its time
