"""Generate the bundled demo tables (seeded, no download): ``python scripts/make_demo_data.py``.

``data/titanic.csv`` is a synthetic table shaped like the Titanic passenger list: numeric and
categorical columns, missing values (Age, Embarked, Cabin deck), and a binary target ``Survived``
driven by class, sex, age and fare. It is not the historical data.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    make_titanic().to_csv(args.out_dir / "titanic.csv", index=False)
    print(f"wrote {args.out_dir / 'titanic.csv'}")


if __name__ == "__main__":
    main()
