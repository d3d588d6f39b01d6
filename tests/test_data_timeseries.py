"""``TimeSeriesDataModule`` and ``TimeSeriesMLP`` in-process, on tiny hand-made series in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import make_series

from ml_tabular.data import series, series_state
from ml_tabular.data.timeseries import TimeSeriesDataModule
from ml_tabular.data.windows import chronological_bounds, clean_windows, valid_window_starts
from ml_tabular.errors import DataError
from ml_tabular.models.timeseries import MeanAbsoluteScaledError, TimeSeriesMLP

INPUT_SIZE, HORIZON = 4, 2
WIDTH = INPUT_SIZE + HORIZON
SPLITS = ("train", "val", "test")


def hourly(n_steps: int, start: str = "2024-01-01", freq: str = "h") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n_steps, freq=freq)


def ramp(n_steps: int = 50) -> pd.DataFrame:
    """An hourly series whose target is 0, 1, ..., n-1 (so a value is its step) and a covariate ``temp``."""
    steps = np.arange(n_steps, dtype=float)
    return pd.DataFrame({"timestamp": hourly(n_steps), "value": steps, "temp": steps**2 / 10})


def write(frame: pd.DataFrame, tmp_path: Path, name: str = "series.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def fitted(path: str, **kwargs) -> TimeSeriesDataModule:
    """A DataModule on ``path`` (target ``value``, 4 in, 2 out, 20 %/20 % val/test), set up for fit."""
    options = {
        "target": "value",
        "input_size": INPUT_SIZE,
        "horizon": HORIZON,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "batch_size": 1024,
    }
    dm = TimeSeriesDataModule(path, **{**options, **kwargs})
    dm.setup("fit")
    return dm


def split_windows(dm: TimeSeriesDataModule, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Every window of ``split`` (one batch) as unscaled target values ``x [N, L]``, ``y [N, H]``, in time order."""
    batch = next(iter(getattr(dm, f"{split}_dataloader")()))
    x = (batch["x"][:, :, 0] * dm.target_std + dm.target_mean).numpy()
    y = (batch["y"] * dm.target_std + dm.target_mean).numpy()
    order = np.argsort(x[:, 0], kind="stable")  # the training loader shuffles
    return x[order], y[order]


def test_windows_are_consecutive_steps_and_end_at_the_train_stretch(tmp_path):
    dm = fitted(write(ramp(50), tmp_path))
    n_train = chronological_bounds(50, 0.2, 0.2)["train"][1]

    x, y = split_windows(dm, "train")

    np.testing.assert_allclose(x[0], np.arange(INPUT_SIZE), atol=1e-4)
    np.testing.assert_allclose(y[0], np.arange(INPUT_SIZE, WIDTH), atol=1e-4)
    assert y[-1, -1] == pytest.approx(n_train - 1, abs=1e-4)
    for split in SPLITS:
        x, y = split_windows(dm, split)
        starts = np.sort(dm.starts[split].numpy())
        np.testing.assert_allclose(x, starts[:, None] + np.arange(INPUT_SIZE), atol=1e-4)
        np.testing.assert_allclose(y, starts[:, None] + np.arange(INPUT_SIZE, WIDTH), atol=1e-4)


@pytest.mark.parametrize(("stride", "counts"), [(1, (25, 5, 5)), (4, (7, 2, 2)), (7, (4, 1, 1))])
def test_window_counts_per_split_match_hand_count(tmp_path, stride, counts):
    # 50 steps at 20 %/20 %: train [0, 30), val [30, 40), test [40, 50); a window spans 6 steps
    assert chronological_bounds(50, 0.2, 0.2) == {"train": (0, 30), "val": (30, 40), "test": (40, 50)}

    dm = fitted(write(ramp(50), tmp_path), stride=stride)

    assert tuple(len(dm.starts[split]) for split in SPLITS) == counts
    assert dm.starts["train"][:2].tolist() == [0, stride]


@pytest.mark.parametrize("stride", [1, 3])
def test_no_window_crosses_a_split_boundary(tmp_path, stride):
    dm = fitted(write(ramp(53), tmp_path), stride=stride, val_fraction=0.2, test_fraction=0.15)

    for split, (begin, end) in chronological_bounds(53, 0.2, 0.15).items():
        starts = dm.starts[split]
        assert len(starts) > 0
        assert starts.min() >= begin
        assert starts.max() + WIDTH <= end


def test_scaling_is_fitted_on_the_training_stretch_only(tmp_path):
    frame = ramp(50)
    dm = fitted(write(frame, tmp_path), feature_columns=["temp"])
    train = frame.iloc[:30]

    assert dm.target_mean == pytest.approx(train["value"].mean())
    assert dm.target_std == pytest.approx(train["value"].std(ddof=0))
    assert dm.target_mean != pytest.approx(frame["value"].mean())
    assert dm.fitted.feature_means == pytest.approx([train["temp"].mean()], rel=1e-5)
    assert dm.fitted.feature_stds == pytest.approx([train["temp"].std(ddof=0)], rel=1e-5)
    assert dm.fitted.feature_means != pytest.approx([frame["temp"].mean()], rel=1e-5)
    train_rows = dm.values[:30]
    torch.testing.assert_close(train_rows.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_rows.std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("season_length", [1, 24])
def test_mase_scale_is_the_training_seasonal_naive_error(tmp_path, season_length):
    frame = make_series(240)
    dm = fitted(write(frame, tmp_path), season_length=season_length, val_fraction=0.15, test_fraction=0.15)
    _, n_train = chronological_bounds(240, 0.15, 0.15)["train"]
    train = frame["value"].to_numpy()[:n_train]

    expected = np.mean(np.abs(train[season_length:] - train[:-season_length]))

    assert dm.mase_scale == pytest.approx(expected, rel=1e-5)


def test_mase_metric_is_mae_divided_by_the_scale():
    preds, target = torch.tensor([1.0, 2.0, 3.0, 7.0]), torch.tensor([2.0, 2.0, 5.0, 4.0])  # MAE = 6 / 4
    mase = MeanAbsoluteScaledError(scale=3.0)
    mase.update(preds, target)
    assert mase.compute().item() == pytest.approx(0.5)

    metrics = TimeSeriesMLP(mase_scale=3.0).metrics["val_metrics"]
    metrics.update(preds, target)
    values = metrics.compute()
    assert values["val_mae"].item() == pytest.approx(1.5)
    assert values["val_mase"].item() == pytest.approx(0.5)


@pytest.mark.parametrize("column", ["value", "temp"])
def test_missing_value_drops_exactly_the_windows_holding_it(tmp_path, column):
    frame = ramp(50)
    frame.loc[10, column] = np.nan

    dm = fitted(write(frame, tmp_path), feature_columns=["temp"])

    # windows [s, s + 6) holding step 10 start at 5..10; the other 19 of the 25 training windows stay
    assert dm.starts["train"].tolist() == [s for s in range(25) if not 5 <= s <= 10]
    assert (len(dm.starts["val"]), len(dm.starts["test"])) == (5, 5)
    assert torch.isfinite(dm.values).all()


def test_timestamp_gap_drops_exactly_the_windows_spanning_it(tmp_path):
    frame = ramp(50).drop(index=10)  # 09:00 is followed by 11:00; row 10 now holds step 11
    # 49 rows: train rows [0, 29), val [29, 39), test [39, 49); rows 9 | 10 straddle the gap
    assert chronological_bounds(49, 0.2, 0.2) == {"train": (0, 29), "val": (29, 39), "test": (39, 49)}

    dm = fitted(write(frame, tmp_path))

    assert dm.starts["train"].tolist() == [s for s in range(24) if not 5 <= s <= 9]
    assert (len(dm.starts["val"]), len(dm.starts["test"])) == (5, 5)
    for split in SPLITS:
        x, y = split_windows(dm, split)
        np.testing.assert_allclose(np.diff(np.hstack([x, y])), 1.0, atol=1e-4)  # no window jumps the gap


@pytest.mark.parametrize("width", [1, 2, 5, 8, 13, 64])
def test_clean_windows_match_a_window_by_window_check(width):
    rng = np.random.default_rng(width)
    bad, breaks = rng.random(60) < 0.05, rng.random(60) < 0.05

    clean = clean_windows(bad, breaks, width)

    for begin, end, stride in [(0, 60, 1), (7, 45, 1), (3, 60, 4), (50, 60, 1)]:
        expected = [
            s
            for s in range(begin, end - width + 1, stride)
            if not bad[s : s + width].any() and not breaks[s + 1 : s + width].any()
        ]
        assert valid_window_starts(clean, begin, end, width, stride).tolist() == expected


def messy_series() -> pd.DataFrame:
    """Two series with different steps, gaps, missing values and a covariate; rows shuffled, 'b' first, ids unsorted."""
    parts = []
    for store, freq, seed in [("b", "h", 0), ("a", "D", 1)]:
        frame = make_series(120, seed).assign(store=store)
        frame["timestamp"] = pd.date_range("2024-01-01", periods=120, freq=freq)
        frame.loc[[11, 40], "value"] = np.nan
        frame.loc[25, "temp"] = np.nan
        parts.append(frame.drop(index=[6, 7, 60]))
    return pd.concat(parts).sample(frac=1.0, random_state=2)


@pytest.mark.parametrize("name", ["series.csv", "series.parquet"])
def test_reading_in_small_chunks_gives_the_same_data(tmp_path, monkeypatch, name):
    path = tmp_path / name
    frame = messy_series()
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, row_group_size=50)
    options = {"feature_columns": ["temp"], "series_id_column": "store", "season_length": 2}
    whole = fitted(str(path), **options)
    for module in (series, series_state):
        monkeypatch.setattr(module, "CHUNK_ROWS", 7)  # batches, time differences and scaling in 7-row chunks

    chunked = fitted(str(path), **options)

    torch.testing.assert_close(chunked.values, whole.values, rtol=0, atol=0)
    for split in SPLITS:
        torch.testing.assert_close(chunked.starts[split], whole.starts[split], rtol=0, atol=0)
    assert chunked.fitted == whole.fitted
    assert chunked.table_rows == whole.table_rows == len(frame)
    pd.testing.assert_frame_equal(chunked.table_head, whole.table_head)
    inputs = [next(iter(dm.predict_dataloader()))["x"] for dm in (whole, chunked)]
    torch.testing.assert_close(inputs[1], inputs[0], rtol=0, atol=0)
    pd.testing.assert_frame_equal(chunked.forecast_index, whole.forecast_index)


@pytest.mark.parametrize("row", [1, 6, 7, 8, 49])
def test_a_duplicate_timestamp_is_found_wherever_the_chunks_end(tmp_path, monkeypatch, row):
    frame = ramp(50)
    frame.loc[row, "timestamp"] = frame.loc[row - 1, "timestamp"]
    for module in (series, series_state):
        monkeypatch.setattr(module, "CHUNK_ROWS", 7)

    with pytest.raises(DataError, match=f"duplicate timestamps, e.g. {frame.loc[row, 'timestamp']}"):
        fitted(write(frame, tmp_path))


def test_several_series_are_windowed_apart_and_split_by_time(tmp_path):
    a = pd.DataFrame({"store": "a", "timestamp": hourly(50), "value": np.arange(50.0)})
    b = pd.DataFrame({"store": "b", "timestamp": hourly(40), "value": 1000 + np.arange(40.0)})
    table = pd.concat([b, a]).sample(frac=1.0, random_state=0)  # same timestamps in both series, rows shuffled

    dm = fitted(write(table, tmp_path), series_id_column="store")

    stored = (dm.values[:, 0] * dm.target_std + dm.target_mean).numpy()
    np.testing.assert_allclose(stored, np.r_[np.arange(50.0), 1000 + np.arange(40.0)], atol=1e-3)
    # 90 steps pooled: validation from the 54th (hour 27 of both), test from the 72nd (hour 36)
    bounds_a = {"train": (0, 27), "val": (27, 36), "test": (36, 50)}
    bounds_b = {"train": (0, 27), "val": (27, 36), "test": (36, 40)}  # too short for a test window
    for split in SPLITS:
        for start in dm.starts[split].tolist():
            begin, end = bounds_a[split] if start < 50 else (50 + i for i in bounds_b[split])
            assert begin <= start and start + WIDTH <= end, (split, start)
        x, y = split_windows(dm, split)
        np.testing.assert_allclose(np.diff(np.hstack([x, y])), 1.0, atol=1e-3)  # never two series in one window
    assert tuple(len(dm.starts[split]) for split in SPLITS) == (22 + 22, 4 + 4, 9 + 0)


def test_batches_are_windows_cut_from_one_stored_copy(tmp_path):
    frame = ramp(50)
    dm = fitted(write(frame, tmp_path), feature_columns=["temp"], batch_size=8)

    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x", "y", "series", "mase_scale"}
    assert batch["x"].shape == (8, INPUT_SIZE, 2)
    assert batch["y"].shape == (8, HORIZON)
    assert len(dm.train_dataloader()) == 4  # 25 windows in batches of 8
    assert dm.values.numel() == 50 * 2  # the series once, not one copy per window

    val = next(iter(dm.val_dataloader()))
    temp = val["x"][:, :, 1] * dm.fitted.feature_stds[0] + dm.fitted.feature_means[0]
    expected = np.stack([frame["temp"].to_numpy()[s : s + INPUT_SIZE] for s in dm.starts["val"].tolist()])
    np.testing.assert_allclose(temp.numpy(), expected, rtol=1e-5)


def test_predict_continues_each_series_at_its_own_step(tmp_path):
    hourly_series = pd.DataFrame({"store": "a", "timestamp": hourly(50), "value": np.arange(50.0)})
    daily_series = pd.DataFrame({"store": "b", "timestamp": hourly(40, freq="D"), "value": 1000 + np.arange(40.0)})
    dm = fitted(write(pd.concat([hourly_series, daily_series]), tmp_path), series_id_column="store")

    batches = list(dm.predict_dataloader())
    x = batches[0]["x"][:, :, 0] * dm.target_std + dm.target_mean
    frame = dm.predictions_frame([torch.tensor([[1.0, 2.0], [3.0, 4.0]])])

    np.testing.assert_allclose(x.numpy(), [[46, 47, 48, 49], [1036, 1037, 1038, 1039]], atol=1e-3)
    assert list(frame.columns) == ["store", "timestamp", "step", "prediction"]
    assert frame["store"].tolist() == ["a", "a", "b", "b"]
    assert frame["step"].tolist() == [1, 2, 1, 2]
    assert frame["prediction"].tolist() == [1.0, 2.0, 3.0, 4.0]
    last_a, last_b = hourly_series["timestamp"].iloc[-1], daily_series["timestamp"].iloc[-1]
    expected = [last_a + pd.Timedelta(hours=1), last_a + pd.Timedelta(hours=2)]
    expected += [last_b + pd.Timedelta(days=1), last_b + pd.Timedelta(days=2)]
    assert frame["timestamp"].tolist() == expected


def test_predict_on_one_series_has_no_series_id_column(tmp_path):
    dm = fitted(write(ramp(50), tmp_path))

    list(dm.predict_dataloader())
    frame = dm.predictions_frame([torch.tensor([[5.0, 6.0]])])

    assert list(frame.columns) == ["timestamp", "step", "prediction"]
    # the last step is 2024-01-03 01:00 (step 49)
    assert frame["timestamp"].tolist() == list(pd.date_range("2024-01-03 02:00", periods=HORIZON, freq="h"))


def test_state_dict_round_trip_restores_the_fitted_scaling(tmp_path):
    path = write(ramp(50), tmp_path)
    dm = fitted(path, feature_columns=["temp"], season_length=2)
    torch.save(dm.state_dict(), tmp_path / "state.pt")

    # the training file is gone: the restored DataModule must not need it to scale new data
    options = {"feature_columns": ["temp"], "input_size": INPUT_SIZE, "horizon": HORIZON, "predict_path": path}
    restored = TimeSeriesDataModule(str(tmp_path / "absent.csv"), "value", **options)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))

    assert restored.state == dm.state
    assert (restored.target_mean, restored.target_std, restored.mase_scale) == (dm.target_mean, dm.target_std, 2.0)
    torch.testing.assert_close(next(iter(restored.predict_dataloader()))["x"], next(iter(dm.predict_dataloader()))["x"])


@pytest.mark.parametrize("n_channels", [1, 3])
def test_model_forecasts_horizon_steps(n_channels):
    model = TimeSeriesMLP(input_size=8, horizon=3, n_channels=n_channels, hidden_dims=[16])

    assert model(torch.randn(5, 8, n_channels)).shape == (5, 3)


def test_model_overfits_one_batch():
    torch.manual_seed(0)
    model = TimeSeriesMLP(input_size=8, horizon=4, n_channels=2, hidden_dims=[64], dropout=0.0, lr=1e-2)
    batch = {"x": torch.randn(16, 8, 2), "y": torch.randn(16, 4)}
    optimizer = model.configure_optimizers()

    first = model.compute(batch)[0].item()
    for _ in range(100):
        optimizer.zero_grad()
        model.compute(batch)[0].backward()
        optimizer.step()

    assert model.compute(batch)[0].item() < first / 100


@pytest.mark.parametrize(("loss", "reference"), [("mse", F.mse_loss), ("mae", F.l1_loss), ("huber", F.huber_loss)])
def test_model_trains_on_the_chosen_loss(loss, reference):
    torch.manual_seed(0)
    model = TimeSeriesMLP(input_size=8, horizon=4, hidden_dims=[16], loss=loss, target_mean=10.0, target_std=2.0)
    batch = {"x": torch.randn(6, 8, 1), "y": 3 * torch.randn(6, 4)}  # large errors: huber != mse / 2

    model.eval()  # no dropout: the step's loss and a plain forward pass see the same outputs
    value, preds, target = model.compute(batch)
    out = model(batch["x"])

    torch.testing.assert_close(value, reference(out, batch["y"]))
    torch.testing.assert_close(target, batch["y"].reshape(-1) * 2.0 + 10.0)  # metrics on the original scale
    torch.testing.assert_close(model.predict_step(batch, 0), out * 2.0 + 10.0)
    assert preds.shape == (24,)


def test_text_timestamps_read_alike_in_chunks_of_different_precision(tmp_path, monkeypatch):
    frame = ramp(50)
    text = frame["timestamp"].dt.strftime("%Y/%m/%d %H:%M:%S.000000")  # not ISO: pandas parses it, chunk by chunk
    frame["timestamp"] = text.where(text.index != 20, text + "001")  # nanosecond digits in one chunk only
    whole = fitted(write(frame, tmp_path))
    for module in (series, series_state):
        monkeypatch.setattr(module, "CHUNK_ROWS", 7)

    chunked = fitted(write(frame, tmp_path))

    assert {s: len(chunked.starts[s]) for s in SPLITS} == {s: len(whole.starts[s]) for s in SPLITS}
    assert len(chunked.starts["train"]) == 30 - WIDTH + 1 - WIDTH  # row 20 is 1 ns off the grid: 6 windows lost


@pytest.mark.parametrize("style", ["%Y-%m-%dT%H:%M:%S%z", "%Y/%m/%d %H:%M:%S%z"])  # read by Arrow / by pandas
def test_timestamps_with_daylight_saving_offsets_are_one_hourly_grid(tmp_path, style):
    frame = ramp(50)
    local = pd.date_range("2024-03-30 12:00", periods=50, freq="h", tz="Europe/Paris")  # +01:00, then +02:00
    frame["timestamp"] = local.strftime(style)

    dm = fitted(write(frame, tmp_path))

    assert {s: len(dm.starts[s]) for s in SPLITS} == {"train": 25, "val": 5, "test": 5}  # no gap at the change
    assert dm.predict_dataloader() and dm.forecast_index["timestamp"].iloc[0] == local[-1].tz_convert(
        None
    ) + pd.Timedelta("1h")


def test_category_series_ids_with_a_missing_id_are_three_series(tmp_path):
    frame = pd.concat([ramp(30).assign(store=store) for store in ("b", "a", None)], ignore_index=True)
    path = tmp_path / "series.parquet"
    frame.assign(store=frame["store"].astype("category")).to_parquet(path)  # a dictionary column with nulls

    dm = fitted(str(path), series_id_column="store")

    forecast = dm.predict_dataloader() and dm.forecast_index
    assert forecast["series_id"].isna().sum() == HORIZON
    assert sorted(forecast["series_id"].dropna().unique()) == ["a", "b"]


def test_predict_with_one_input_step_ignores_gaps_before_it(tmp_path):
    frame = ramp(50)
    frame.loc[10:, "timestamp"] += pd.Timedelta("30min")  # one irregular step early in the series

    dm = fitted(write(frame, tmp_path), input_size=1, horizon=1)

    assert next(iter(dm.predict_dataloader()))["x"].shape == (1, 1, 1)


def test_day_first_text_dates_are_read_day_first_when_only_that_reads_them_all(tmp_path):
    frame = ramp(50)
    days = pd.date_range("2024-03-01", periods=50, freq="D")
    frame["timestamp"] = days.strftime("%d/%m/%Y")  # 01/03/2024 first: pandas alone would guess month first

    dm = fitted(write(frame, tmp_path))

    assert {s: len(dm.starts[s]) for s in SPLITS} == {"train": 25, "val": 5, "test": 5}  # no gap, no reordering
    assert dm.predict_dataloader() and dm.forecast_index["timestamp"].iloc[0] == days[-1] + pd.Timedelta("1D")


def test_predict_reads_text_dates_in_the_format_settled_on_the_training_file(tmp_path):
    frame = ramp(50)
    frame["timestamp"] = pd.date_range("2024-03-01", periods=50, freq="D").strftime("%d/%m/%Y")  # day first
    recent = ramp(10)
    days = pd.date_range("2024-05-01", periods=10, freq="D")  # days 1-10 only: day/month fit either way
    recent["timestamp"] = days.strftime("%d/%m/%Y")
    dm = fitted(write(frame, tmp_path), predict_path=write(recent, tmp_path, "recent.csv"))

    assert dm.predict_dataloader() and dm.forecast_index["timestamp"].iloc[0] == days[-1] + pd.Timedelta("1D")


def test_timestamp_format_reads_dates_that_fit_either_way_as_given(tmp_path):
    frame = ramp(50)
    stamps = pd.date_range("2024-03-01", periods=50, freq="h")  # days 1 and 2 only: day/month fit either way
    frame["timestamp"] = stamps.strftime("%d/%m/%Y %H:%M")

    dm = fitted(write(frame, tmp_path), timestamp_format="%d/%m/%Y %H:%M")

    assert dm.predict_dataloader() and dm.forecast_index["timestamp"].iloc[0] == stamps[-1] + pd.Timedelta("1h")


def test_text_that_does_not_fit_the_format_names_the_format_and_the_key(tmp_path):
    frame = ramp(50)
    frame["timestamp"] = pd.date_range("2024-03-01", periods=50, freq="D").strftime("%d/%m/%Y")

    with pytest.raises(DataError, match=r"format '%m/%d/%Y'.*'13/03/2024'.*data.init_args.timestamp_format"):
        fitted(write(frame, tmp_path), timestamp_format="%m/%d/%Y")
