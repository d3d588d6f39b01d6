"""A hyperparameter search space read from YAML: dotted config keys -> Optuna distributions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ml_tabular.errors import ConfigError

DIRECTIONS = ("minimize", "maximize")


@dataclass(frozen=True)
class Param:
    """One searched key: ``float``/``int`` between ``low`` and ``high`` (``log`` scale), or one of ``choices``."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value of this key."""
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        # Optuna stores only None/bool/int/float/str choices: lists ([64, 32]) are chosen by their JSON text
        by_text = {_text(c): c for c in self.choices}
        return by_text[trial.suggest_categorical(self.key, list(by_text))]


@dataclass(frozen=True)
class SearchSpace:
    """What ``ml_tabular tune`` searches and how (``configs/search/*.yaml``)."""

    params: tuple[Param, ...]
    metric: str = "val_loss"
    direction: str = "minimize"
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median"})

    def suggest(self, trial: Any) -> dict[str, Any]:
        """``{dotted key: value}`` for one trial."""
        return {p.key: p.suggest(trial) for p in self.params}

    def check_against(self, config: dict[str, Any]) -> None:
        """Refuse keys the run config does not have, and ranges over keys that do not hold numbers."""
        flat = _flatten(config)
        for p in self.params:
            if p.key not in flat:
                near = sorted(k for k in flat if k.rsplit(".", 1)[-1] == p.key.rsplit(".", 1)[-1])
                hint = f" (did you mean {', '.join(near)}?)" if near else ""
                raise ConfigError(f"search key '{p.key}' is not in the run config{hint}.")
            value = flat[p.key]
            if p.type != "categorical" and value is not None and (isinstance(value, bool) or not _number(value)):
                raise ConfigError(
                    f"search key '{p.key}' holds {value!r} in the run config, not a number: use `choices:` for it."
                )


def load_search_space(path: str | Path) -> SearchSpace:
    """Read and check a search-space YAML (one line, ConfigError, for any mistake)."""
    try:
        spec = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ConfigError(f"cannot read the search space '{path}': {err.strerror}.") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"the search space '{path}' is not valid YAML: {str(err).splitlines()[0]}.") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("params"), dict) or not spec["params"]:
        raise ConfigError(f"the search space '{path}' needs a `params:` mapping of config keys to ranges or choices.")
    unknown = set(spec) - {"params", "metric", "direction", "sampler", "pruner"}
    if unknown:
        raise ConfigError(f"the search space '{path}' has unknown sections: {', '.join(sorted(unknown))}.")
    direction = spec.get("direction", "minimize")
    if direction not in DIRECTIONS:
        raise ConfigError(f"search `direction` must be minimize or maximize, got {direction!r}.")
    return SearchSpace(
        params=tuple(_param(key, value) for key, value in spec["params"].items()),
        metric=str(spec.get("metric", "val_loss")),
        direction=direction,
        sampler=_section(spec, "sampler", "tpe"),
        pruner=_section(spec, "pruner", "median"),
    )


def _param(key: str, spec: Any) -> Param:
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"search key '{key}': give `low`/`high` (a range) or `choices` (a list), got {spec!r}.")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"search key '{key}': `choices` must be a non-empty list, got {choices!r}.")
        return Param(key, "categorical", choices=tuple(choices))
    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    if not (_number(low) and _number(high)) or not isinstance(log, bool) or not (step is None or _number(step)):
        raise ConfigError(
            f"search key '{key}': `low` and `high` must be numbers (and `log` true/false), got "
            f"low={low!r} high={high!r} log={log!r}."
        )
    kind = spec.get("type", "int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float") or (kind == "int" and not (float(low).is_integer() and float(high).is_integer())):
        raise ConfigError(f"search key '{key}': `type` must be float or int (int with whole bounds), got {kind!r}.")
    if not low < high:
        raise ConfigError(f"search key '{key}': the range is empty (low={low} must be below high={high}).")
    if log and low <= 0:
        raise ConfigError(f"search key '{key}': a log range needs low > 0, got {low}.")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _section(spec: dict[str, Any], name: str, default: str) -> dict[str, Any]:
    value = spec.get(name, {"type": default})
    value = {"type": value} if isinstance(value, str) else value
    if not isinstance(value, dict) or "type" not in value:
        raise ConfigError(f"search `{name}` must be a name or a mapping with `type:`, got {value!r}.")
    return dict(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix: config}
    flat = {prefix: config} if prefix else {}
    for key, value in config.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
