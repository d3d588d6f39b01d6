"""Default experiment names and run-name templates per model family (INTERFACE §4)."""

from __future__ import annotations

DEFAULT_EXPERIMENTS = {
    "tabular_mlp": "ml_tabular_tabular_baselines",
    "ts_mlp": "ml_tabular_time_series_baselines",
}
DEFAULT_RUN_NAMES = {
    "tabular_mlp": "tabular_mlp__dataset={dataset}__seed={seed}",
    "ts_mlp": "ts_mlp__dataset={dataset}__input={input_size}__horizon={horizon}",
}
