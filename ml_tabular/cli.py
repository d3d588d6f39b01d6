"""The ``ml_tabular`` command: a LightningCLI over ml_tabular's models and DataModules, tracked in MLflow."""

from __future__ import annotations

import importlib
import logging
import re
import sys
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ml_tabular.checkpoint import CheckpointInfo, read_checkpoint, with_last_epoch_checkpoints
from ml_tabular.commands import COMMANDS
from ml_tabular.config import AppConfig, MlflowConfig, env_overrides, profile_config
from ml_tabular.errors import AppError, ConfigError
from ml_tabular.logs import configure_logging
from ml_tabular.models.base import MLPSystem
from ml_tabular.signals import interrupted_exit_code, stop_on_signals

# DataModule property -> model init arg, linked when both sides have it
DATA_TO_MODEL_LINKS = {
    "n_numeric": "n_numeric",
    "cardinalities": "cardinalities",
    "n_outputs": "n_outputs",
    "resolved_task": "task",
    "target_mean": "target_mean",
    "target_std": "target_std",
    "input_size": "input_size",
    "horizon": "horizon",
    "n_channels": "n_channels",
    "n_calendar": "n_calendar",
    "mase_scale": "mase_scale",
    "fitted_target_transform": "target_transform",
}
TRACKED_SUBCOMMANDS = ("fit", "test")
CHECKPOINT_SUBCOMMANDS = ("validate", "test", "predict")  # these use a trained model: --ckpt_path is required
LIGHTNING_CKPT_NAMES = ("last", "best", "hpc", "registry")  # Lightning resolves these itself
PROGRESS_BAR_REFRESH_STEPS = 20  # Lightning's default bar redraws every step: ~3 % of a small model's step


class MLTabularArgumentParser(LightningArgumentParser):
    """Reports a config mistake as one line and a pointer to ``--help``, not the whole usage."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"ml_tabular: error: {concise_error(message)}\nSee: {prog} --help\n")
        raise SystemExit(2)


_UNION_NOISE = re.compile(
    r"^(Does not validate against any|Subtypes:|Errors:|Expected a <class 'NoneType'>|Given value)"
)


def concise_error(message: str) -> str:
    """jsonargparse's report on one line: for a ``class_path`` key, the real problem without its Union bookkeeping."""
    lines = [line.strip().removeprefix("- ") for line in message.strip().splitlines()]
    return " ".join(line for line in lines if line and not _UNION_NOISE.match(line))


class MLTabularCLI(LightningCLI):
    """LightningCLI in subclass mode for ``model`` and ``data``, with ``checkpoint:`` and ``mlflow:`` sections."""

    def __init__(self, args: Any = None, run: bool = True) -> None:
        from ml_tabular.mlops.save_config import LoggerSaveConfigCallback

        self.profile = profile_config()
        self.checkpoint: CheckpointInfo | None = None  # the --ckpt_path, read and checked at parse time
        self.data_state: dict[str, Any] | None = None  # the DataModule state it holds
        super().__init__(
            model_class=MLPSystem,
            subclass_mode_model=True,
            datamodule_class=pl.LightningDataModule,
            subclass_mode_data=True,
            save_config_callback=LoggerSaveConfigCallback,
            parser_class=MLTabularArgumentParser,
            parser_kwargs={
                "prog": "ml_tabular",
                "epilog": "other commands: " + ", ".join(f"ml_tabular {c}" for c in COMMANDS),
            },
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_loss",
                "checkpoint.mode": "min",
                "checkpoint.save_last": True,
                "checkpoint.filename": "{epoch}-{val_loss:.4f}",
            }
        )
        parser.add_class_arguments(MlflowConfig, "mlflow")
        parser.set_defaults({f"mlflow.{key}": value for key, value in asdict(self.profile.mlflow).items()})
        for source, target in DATA_TO_MODEL_LINKS.items():
            parser.link_arguments(f"data.{source}", f"model.init_args.{target}", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse with ``ML_TABULAR_MLFLOW__*`` variables placed above the YAML files and below explicit flags."""
        argv = list(sys.argv[1:] if args is None else args)
        if argv and argv[0] in self.subcommands():
            argv += [
                f"--{section}.{key}={_yaml_value(value)}"
                for section, values in env_overrides().items()
                for key, value in values.items()
                if not any(a == f"--{section}.{key}" or a.startswith(f"--{section}.{key}=") for a in argv)
            ]
        self.config = parser.parse_args(argv)
        subcommand = self.config.get("subcommand")
        if subcommand:
            self._check_trainer(self.config[subcommand])
            self._read_checkpoint(subcommand, self.config[subcommand], argv)

    def _check_trainer(self, config: Namespace) -> None:
        max_epochs = config["trainer"].get("max_epochs")
        if max_epochs is not None and max_epochs < -1:
            raise ConfigError(f"trainer.max_epochs must be -1 (no limit) or >= 0, got {max_epochs}.")

    def _read_checkpoint(self, subcommand: str, config: Namespace, argv: list[str]) -> None:
        """Read and check ``--ckpt_path`` before anything else happens (LightningCLI loads it next, unchecked)."""
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None:
            if subcommand in CHECKPOINT_SUBCOMMANDS:
                raise ConfigError(
                    f"`ml_tabular {subcommand}` needs a trained model: pass --ckpt_path PATH (a .ckpt file, e.g. "
                    "mlruns/<experiment_id>/<run_id>/checkpoints/best.ckpt)."
                )
            return
        if ckpt_path in LIGHTNING_CKPT_NAMES:
            return
        model, data = config["model"], config["data"]
        self.checkpoint = read_checkpoint(ckpt_path)
        self.data_state = self.checkpoint.check_classes(model["class_path"], data["class_path"])
        check_model_flags(argv, model.get("init_args") or {}, self.checkpoint)

    def _value(self, config: Namespace, key: str, default: Any = None) -> Any:
        """``key`` of the running subcommand's section of ``config`` (or of ``config`` itself with ``run=False``)."""
        return config.get(str(self.subcommand), config).get(key, default)

    def app_config(self) -> AppConfig:
        """The effective application config of this invocation (every layer applied)."""
        return AppConfig(env=self.profile.env, mlflow=MlflowConfig(**self._value(self.config, "mlflow")))

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument(
                "--output",
                default="predictions.csv",
                help="File the predictions are written to (.csv/.parquet).",
            )
        return parser

    def before_instantiate_classes(self) -> None:
        """Check the tracking store before any data is read: a server that answers and lets this user write to the
        experiment (one line and exit 2 if not), a fresh SQLite store created by one process at a time."""
        mlflow = self.app_config().mlflow
        if not mlflow.enabled or self.subcommand not in TRACKED_SUBCOMMANDS:
            return
        from ml_tabular.mlops.store_check import check_tracking_store
        from ml_tabular.mlops.tracking import require_mlflow, resolve_tracking_uri

        require_mlflow()
        uri = resolve_tracking_uri(mlflow.tracking_uri)
        check_tracking_store(uri, self._experiment_name(mlflow), write=self.subcommand == "fit")

    def _model_type(self) -> str:
        """The model family (``tabular_mlp``, ``ts_mlp``), read from the model class before it is instantiated."""
        module, _, name = self._value(self.config, "model")["class_path"].rpartition(".")
        return getattr(getattr(importlib.import_module(module), name), "model_type", name)

    def _experiment_name(self, mlflow: MlflowConfig) -> str:
        from ml_tabular.mlops.naming import DEFAULT_EXPERIMENTS

        return mlflow.experiment_name or DEFAULT_EXPERIMENTS.get(self._model_type(), "ml_tabular")

    def instantiate_classes(self) -> None:
        """LightningCLI's, with each DataModule given its state before the links read its sizes: restored from
        the checkpoint, or (``fit`` from scratch) fitted on the training file."""
        instantiators = [(self._instantiate_datamodule, pl.LightningDataModule, True)]
        self.config_init = self.parser.instantiate(self.config, instantiators=instantiators)
        self.datamodule = self._value(self.config_init, "data")
        self.model = self._value(self.config_init, "model")
        self.trainer = self.instantiate_trainer()  # no automatic configure_optimizers: the models define theirs

    def _instantiate_datamodule(self, class_type: type, *args: Any, **kwargs: Any) -> pl.LightningDataModule:
        data = class_type(*args, **kwargs)
        if self.data_state is not None:
            data.load_state_dict(self.data_state)
        elif self.subcommand in ("fit", None) and callable(getattr(data, "prepare", None)):  # None: run=False
            data.prepare()
        return data

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        kwargs = {**self._progress_bar(), **kwargs}
        mlflow = self.app_config().mlflow
        if self.subcommand in ("predict", "validate"):
            kwargs["logger"] = False  # nothing to record: no lightning_logs/ folder either
        if not mlflow.enabled or self.subcommand not in TRACKED_SUBCOMMANDS:
            return super().instantiate_trainer(**kwargs)
        from ml_tabular.mlops.callbacks import MlflowRunCallback
        from ml_tabular.mlops.plots import RunPlotsCallback

        trainer = super().instantiate_trainer(logger=self._mlflow_logger(mlflow), **kwargs)
        trainer.callbacks.append(MlflowRunCallback())
        if mlflow.log_artifacts:
            trainer.callbacks.append(RunPlotsCallback())
        if mlflow.log_model and self.subcommand == "fit":
            from ml_tabular.mlops.model import LogModelCallback

            trainer.callbacks.append(LogModelCallback())
        return trainer

    # LightningCLI's private ``_instantiate_trainer`` is the one place that sees the ``checkpoint:`` section's
    # callback before the Trainer refuses it (checkpointing off); tests/test_cli_trainer.py breaks if it is renamed.
    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[pl.Callback]) -> pl.Trainer:
        """The ``checkpoint:`` section's callback with a ``last.ckpt`` of every epoch; none outside ``fit`` or when
        the trainer config turns checkpointing off."""
        if self.subcommand in CHECKPOINT_SUBCOMMANDS:  # nothing to save; a checkpoint callback would only warn
            config = {**config, "enable_checkpointing": False}
            warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used")
        if config.get("enable_checkpointing") is False:  # Lightning refuses a ModelCheckpoint beside it
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        return super()._instantiate_trainer(config, with_last_epoch_checkpoints(callbacks))

    def _progress_bar(self) -> dict[str, Any]:
        """Trainer callbacks with a bar redrawn every few steps, unless the config brings a bar or turns it off."""
        trainer = self._value(self.config_init, "trainer", default={})
        callbacks = trainer.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if trainer.get("enable_progress_bar") is False or any(isinstance(c, ProgressBar) for c in callbacks):
            return {}
        return {"callbacks": [*callbacks, TQDMProgressBar(refresh_rate=PROGRESS_BAR_REFRESH_STEPS)]}

    def _mlflow_logger(self, mlflow: MlflowConfig) -> pl.loggers.Logger:
        from ml_tabular.mlops.logger import MLTabularLogger
        from ml_tabular.mlops.naming import DEFAULT_RUN_NAMES
        from ml_tabular.mlops.recorder import TEST_LOG, TRAIN_LOG
        from ml_tabular.mlops.resume import RunChoice, choose_run
        from ml_tabular.mlops.tracking import format_run_name, require_mlflow, resolve_tracking_uri, run_tags

        require_mlflow()
        tracking_uri = resolve_tracking_uri(mlflow.tracking_uri)
        choice = RunChoice()
        if self.checkpoint is not None:
            from mlflow import MlflowClient

            choice = choose_run(MlflowClient(tracking_uri), self.checkpoint, self.subcommand)
            logging.getLogger("ml_tabular").info(choice.message)
        model_type = self._model_type()
        dataset = getattr(self.datamodule, "dataset_name", "unknown")
        seed = self._value(self.config, "seed_everything")
        fields = {  # data last: the model's linked args (input_size, horizon, ...) hold defaults here
            **self._value(self.config, "model").get("init_args", {}),
            **self._value(self.config, "data").get("init_args", {}),
            "dataset": dataset,
            "seed": seed,
            "model": model_type,
        }
        return MLTabularLogger(
            experiment_name=self._experiment_name(mlflow),
            run_name=format_run_name(mlflow.run_name or DEFAULT_RUN_NAMES.get(model_type), fields),
            tracking_uri=tracking_uri,
            tags=run_tags(model_type, dataset, seed, env=self.profile.env) | choice.tags,
            run_id=choice.run_id,
            log_model=mlflow.log_checkpoints,
            log_artifacts=mlflow.log_artifacts,
            app_config=self.app_config().to_dict(),
            add_only=self.subcommand == "test",
            log_name=TEST_LOG if self.subcommand == "test" else TRAIN_LOG,
        )

    def after_fit(self) -> None:
        """Say where the run and its checkpoints are."""
        log = logging.getLogger("ml_tabular")
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.dirpath:
            log.info("checkpoints: %s (best: %s)", callback.dirpath, callback.best_model_path or "none")
        summary = getattr(self.trainer.logger, "summary", None)
        if callable(summary) and self.trainer.is_global_zero:  # other DDP ranks have no run to read
            log.info(summary())

    def predict(self, model: pl.LightningModule, datamodule: pl.LightningDataModule, **kwargs: Any) -> None:
        """Run ``trainer.predict`` and write the predictions table to ``--output``."""
        from ml_tabular.data.io import write_table  # pandas + pyarrow: not needed by --help or fit

        kwargs["return_predictions"] = True
        outputs = self.trainer.predict(model, datamodule=datamodule, **kwargs)
        output = Path(self._value(self.config, "output"))
        frame = datamodule.predictions_frame(outputs)
        write_table(frame, output)
        logging.getLogger("ml_tabular").info("predictions: %d rows written to %s", len(frame), output)


def _yaml_value(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _app_error(exc: BaseException) -> AppError | None:
    """The user error behind ``exc``: jsonargparse re-raises errors from ``__init__`` as ValueError."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, AppError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def check_model_flags(argv: list[str], init_args: Any, checkpoint: CheckpointInfo) -> None:
    """Refuse ``--model.*`` flags that differ from the checkpoint's values (LightningCLI would silently drop them)."""
    names = {a[2:].split("=", 1)[0] for a in argv if a.startswith("--model.")}
    keys = {n.removeprefix("model.").removeprefix("init_args.") for n in names} - {"class_path", "help"}
    differ = {
        k: (init_args.get(k), checkpoint.hparams[k])
        for k in sorted(keys)
        if k in checkpoint.hparams and init_args.get(k) != checkpoint.hparams[k]
    }
    if differ:
        flags = "; ".join(
            f"--model.init_args.{k} {flag!r} (checkpoint: {ckpt!r})" for k, (flag, ckpt) in differ.items()
        )
        raise ConfigError(
            f"model flags disagree with the checkpoint '{checkpoint.path}': {flags}. A checkpoint's model is "
            "fixed: drop these flags, or train a new model without --ckpt_path."
        )


def prepare_process() -> None:
    """Logging, signal handling and warning filters of every ``ml_tabular`` process (tune's trial processes too)."""
    configure_logging()
    stop_on_signals()
    # torch >= 2.10 deprecates a LeafSpec use inside Lightning 2.6's batch fetching: nothing a user can act on
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # each run has its own checkpoint folder: it holds files only when that run is being resumed
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``ml_tabular`` console script and ``python -m ml_tabular``."""
    prepare_process()
    argv = list(sys.argv[1:] if args is None else args)
    try:
        if argv and argv[0] in COMMANDS:
            importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
        else:
            MLTabularCLI(args=argv)
    except KeyboardInterrupt:
        raise SystemExit(interrupted_exit_code() or 130) from None
    except SystemExit as exc:
        code = interrupted_exit_code()  # Lightning exits 1 after handling an interruption
        raise SystemExit(code if code is not None else exc.code) from None
    except Exception as exc:
        error = _app_error(exc)
        if error is None:
            raise  # a bug, not a user mistake: keep the traceback
        sys.stderr.write(f"ml_tabular: error: {error}\n")
        raise SystemExit(2) from None
