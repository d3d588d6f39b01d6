"""``TimeSeriesMLP``'s options in-process: per-window normalisation, the linear path, calendar features."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_series

from ml_tabular.data.calendar import calendar_features
from ml_tabular.data.timeseries import TimeSeriesDataModule
from ml_tabular.models.timeseries import TimeSeriesMLP

INPUT_SIZE, HORIZON = 8, 3


def model(**kwargs) -> TimeSeriesMLP:
    torch.manual_seed(0)
    return TimeSeriesMLP(**{"input_size": INPUT_SIZE, "horizon": HORIZON, "hidden_dims": [16], **kwargs}).eval()


@pytest.mark.parametrize("n_calendar", [0, 4])
def test_revin_forecast_moves_with_the_window_level_and_scale(n_calendar):
    net = model(revin=True, linear_skip="trained", n_calendar=n_calendar)
    x = torch.randn(5, INPUT_SIZE, 1)
    calendar = torch.randn(5, HORIZON, n_calendar) if n_calendar else None

    with torch.no_grad():
        out = net(x, calendar)
        moved = net(3.0 * x + 7.0, calendar)

    torch.testing.assert_close(moved, 3.0 * out + 7.0, rtol=1e-4, atol=1e-4)


def test_without_revin_the_forecast_does_not_follow_the_level():
    net = model(linear_skip="trained")
    x = torch.randn(5, INPUT_SIZE, 1)

    with torch.no_grad():
        assert not torch.allclose(net(x + 7.0), net(x) + 7.0, atol=1e-2)


def test_revin_affine_learns_a_scale_and_bias_and_inverts_them():
    net = model(revin=True, revin_affine=True)
    revin = net.net.revin
    assert {name for name, _ in revin.named_parameters()} == {"weight", "bias"}
    with torch.no_grad():
        revin.weight.fill_(2.0), revin.bias.fill_(-1.0)
    values = torch.randn(4, INPUT_SIZE)

    normalised, mean, std = revin.normalise(values)

    torch.testing.assert_close(revin.denormalise(normalised[:, :HORIZON], mean, std), values[:, :HORIZON])


def ar2(n_steps: int) -> np.ndarray:
    """A noiseless linear autoregression: y_t = 1.6 y_{t-1} - 0.9 y_{t-2} (a damped oscillation, restarted)."""
    values = np.zeros(n_steps)
    for t in range(n_steps):
        values[t] = 1.0 if t % 60 < 2 else 1.6 * values[t - 1] - 0.9 * values[t - 2]
    return values


def ar2_windows() -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``x [N, L, 1]``, ``y [N, H]`` of :func:`ar2` that hold no restart."""
    windows = torch.tensor(ar2(600), dtype=torch.float32).unfold(0, INPUT_SIZE + HORIZON, 1)
    keep = torch.tensor([s % 60 <= 60 - INPUT_SIZE - HORIZON for s in range(len(windows))])
    return windows[keep, :INPUT_SIZE].unsqueeze(2), windows[keep, INPUT_SIZE:]


def test_the_linear_path_alone_learns_a_linear_autoregression(single_thread):
    x, y = ar2_windows()
    net = model(linear_skip="trained").net
    with torch.no_grad():  # the MLP adds nothing: what fits is the linear path
        net.layers[-1].weight.zero_(), net.layers[-1].bias.zero_()
    optimizer = torch.optim.Adam(net.skip.parameters(), lr=0.05)

    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        optimizer.step()

    assert loss.item() < 1e-4 * y.var().item()


@pytest.mark.parametrize("revin", [False, True])
def test_least_squares_sets_the_linear_path_to_the_autoregression(revin):
    x, y = ar2_windows()
    net = model(linear_skip="least_squares", revin=revin).net
    halves = [(x[:100], None, y[:100]), (x[100:], None, y[100:])]  # the sums add up batch by batch

    assert net.fit_linear(halves) == len(x)

    inputs, mean, std = net.encode(x)
    linear = net.skip(inputs) if mean is None else net.skip(inputs) * std + mean
    assert torch.nn.functional.mse_loss(linear, y).item() < 1e-4 * y.var().item()


def write(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_forecast_steps_get_the_calendar_a_window_of_the_training_file_sees(tmp_path):
    frame = make_series(400)  # hourly; validation rows [280, 340)
    n_known = 300  # predict from the first 300 hours: its forecast steps are hours 300-302 of the training file
    options = {"input_size": INPUT_SIZE, "horizon": HORIZON, "calendar": "auto", "batch_size": 1024}
    predict_path = write(frame.iloc[:n_known], tmp_path / "recent.csv")
    dm = TimeSeriesDataModule(write(frame, tmp_path / "series.csv"), "value", predict_path=predict_path, **options)
    dm.prepare()

    forecast = next(iter(dm.predict_dataloader()))["calendar"]  # [1, H, K]
    batch = next(iter(dm.val_dataloader()))  # every validation window, in time order
    (row,) = torch.nonzero(dm.starts["val"] == n_known - INPUT_SIZE).flatten().tolist()
    window = batch["calendar"][row : row + 1]

    assert dm.state.calendar == ["time_of_day", "day_of_week"] and dm.n_calendar == 4
    assert forecast.shape == (1, HORIZON, 4)
    torch.testing.assert_close(forecast, window, rtol=0, atol=1e-6)
    times = frame["timestamp"].iloc[n_known : n_known + HORIZON]
    hours = times.dt.hour.to_numpy() + times.dt.minute.to_numpy() / 60
    week = times.dt.dayofweek.to_numpy() + hours / 24
    expected = [np.sin(2 * np.pi * hours / 24), np.cos(2 * np.pi * hours / 24)]
    expected += [np.sin(2 * np.pi * week / 7), np.cos(2 * np.pi * week / 7)]
    np.testing.assert_allclose(forecast[0].numpy(), np.stack(expected, axis=1), atol=1e-5)


@pytest.mark.parametrize(
    ("freq", "features"),
    [
        ("30min", ["time_of_day", "day_of_week"]),
        ("h", ["time_of_day", "day_of_week"]),
        ("D", ["day_of_week", "time_of_year"]),
        ("W", ["time_of_year"]),
        ("400D", []),
    ],
)
def test_auto_calendar_features_follow_the_sampling_step(tmp_path, freq, features):
    frame = make_series(60).assign(timestamp=pd.date_range("2001-01-01", periods=60, freq=freq))
    dm = TimeSeriesDataModule(write(frame, tmp_path / "series.csv"), "value", input_size=4, horizon=2, calendar="auto")
    dm.prepare()

    assert dm.state.calendar == features
    assert dm.n_calendar == 2 * len(features)


def test_a_year_phase_is_in_a_gregorian_year():
    frame = make_series(60).assign(timestamp=pd.date_range("2001-01-01", periods=60, freq="W"))
    stamps = pd.DatetimeIndex(frame["timestamp"])
    seconds = (stamps - pd.Timestamp("1970-01-01")).total_seconds().to_numpy()
    features = calendar_features(torch.tensor(seconds.astype(np.int64)), ["time_of_year"], "s")

    angle = 2 * math.pi * (seconds % 31_556_952) / 31_556_952
    np.testing.assert_allclose(features.numpy(), np.stack([np.sin(angle), np.cos(angle)], axis=1), atol=1e-6)


def test_with_the_options_off_the_weights_have_the_names_of_older_checkpoints():
    names = list(TimeSeriesMLP(hidden_dims=[16]).state_dict())

    assert names == ["net.layers.0.weight", "net.layers.0.bias", "net.layers.4.weight", "net.layers.4.bias"]
