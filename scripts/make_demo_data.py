"""Generate the bundled demo data (seeded, no download): ``python scripts/make_demo_data.py``.

``data/titanic.csv`` is a synthetic table shaped like the Titanic passenger list: numeric and
categorical columns, missing values (Age, Embarked, Cabin deck), and a binary target ``Survived``
driven by class, sex, age and fare. It is not the historical data.

``data/traffic_volume.csv`` is a synthetic hourly series (120 days): a daily rush-hour profile, a
weekly weekday/weekend pattern, a slow trend, noise, a temperature covariate and a few missing hours.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def make_titanic(n_rows: int = 891, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pclass = rng.choice([1, 2, 3], size=n_rows, p=[0.24, 0.21, 0.55])
    sex = rng.choice(["male", "female"], size=n_rows, p=[0.65, 0.35])
    age = np.clip(rng.normal(38 - 4 * pclass, 13), 0.5, 80).round(1)
    sibsp = rng.poisson(0.5, n_rows)
    parch = rng.poisson(0.4, n_rows)
    fare = np.round(rng.lognormal(np.log(np.array([85, 22, 12]))[pclass - 1], 0.5), 2)
    embarked = rng.choice(["S", "C", "Q"], size=n_rows, p=[0.72, 0.19, 0.09])
    deck = np.where(pclass == 1, rng.choice(list("ABCDE"), n_rows), rng.choice(list("DEFG"), n_rows))
    logit = 2.4 * (sex == "female") - 0.9 * (pclass - 2) - 0.025 * (age - 30) + 0.004 * fare - 0.3 * sibsp - 0.6
    survived = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "PassengerId": np.arange(1, n_rows + 1),
            "Pclass": pclass,
            "Sex": sex,
            "Age": age,
            "SibSp": sibsp,
            "Parch": parch,
            "Fare": fare,
            "Embarked": embarked,
            "Deck": deck,
            "Survived": survived,
        }
    )
    frame.loc[rng.random(n_rows) < 0.2, "Age"] = np.nan
    frame.loc[rng.random(n_rows) < 0.01, "Embarked"] = None
    frame.loc[rng.random(n_rows) < 0.7, "Deck"] = None  # most passengers had no recorded cabin
    return frame


def make_traffic_volume(n_days: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    timestamps = pd.date_range("2024-01-01", periods=n_days * 24, freq="h")
    hour = timestamps.hour.to_numpy()
    weekend = timestamps.day_of_week.to_numpy() >= 5
    rush = np.exp(-((hour - 8) ** 2) / 4) + 0.8 * np.exp(-((hour - 17) ** 2) / 6)
    daily = 0.25 + 0.75 * np.where(weekend, 0.5 * np.exp(-((hour - 13) ** 2) / 18), rush)
    trend = 1 + 0.15 * np.arange(len(timestamps)) / len(timestamps)
    temperature = 5 + 2.4 * np.sin(2 * np.pi * (hour / 24 - 0.3)) + rng.normal(0, 1.5, len(timestamps))
    volume = 4000 * daily * trend * (1 + 0.01 * (temperature - 5)) + rng.normal(0, 120, len(timestamps))
    frame = pd.DataFrame(
        {"timestamp": timestamps, "traffic_volume": volume.round(0), "temperature": temperature.round(1)}
    )
    frame.loc[rng.choice(len(frame), 6, replace=False), "traffic_volume"] = np.nan  # sensor dropouts
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in {"titanic": make_titanic(), "traffic_volume": make_traffic_volume()}.items():
        frame.to_csv(args.out_dir / f"{name}.csv", index=False)
        print(f"wrote {args.out_dir / name}.csv")


if __name__ == "__main__":
    main()
