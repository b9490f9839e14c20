"""``fit``, ``validate``, ``test`` and ``predict``: :class:`XLlamaCLI`, the package's LightningCLI.

``python -m lightning_xllama fit --config configs/demo.yaml``: every ``__init__`` argument of the
model, data module, trainer and callbacks is a flag and a YAML key. The tokenizer follows the model
path; a checkpoint brings weights and state, never settings or code
(:mod:`lightning_xllama.training.resume_settings`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Optional, Union

import lightning as L
from jsonargparse import ActionConfigFile
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, LRSchedulerTypeTuple
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch.optim import Optimizer

from lightning_xllama.callbacks.checkpoint import sigint_as_sigterm, stop_signal_name
from lightning_xllama.callbacks.prediction_writer import JsonlPredictionWriter
from lightning_xllama.callbacks.run_record import RunRecord
from lightning_xllama.callbacks.summary import MetricsSummary, test_metrics, test_table
from lightning_xllama.commands.errors import (
    USER_ERRORS,
    XLlamaArgumentParser,
    _debug,
    _root_cause,
)
from lightning_xllama.data.datamodule import MuITDataModule
from lightning_xllama.data.kinds import import_config_modules
from lightning_xllama.runtime.checkpoint_io import remove_partial_files
from lightning_xllama.runtime.hf_loading import check_model_path
from lightning_xllama.runtime.run_folder import claim_version, latest_last_checkpoint
from lightning_xllama.runtime.seeds import data_seed
from lightning_xllama.training.divergence import TrainingDiverged
from lightning_xllama.training.module import XLlamaModule
from lightning_xllama.training.resume_settings import check_resumed_settings

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
PROG = "lightning_xllama"
"""The program name usage lines show."""


def add_optimizer_arguments(parser: LightningArgumentParser) -> None:
    """``--optimizer`` and ``--lr_scheduler`` (any torch optimizer or schedule, with its own
    arguments), passed to the model's ``optimizer`` and ``lr_scheduler``: the model builds them on
    its trainable parameters once it has built its model (``configure_model``), which Lightning's
    own ``--optimizer`` cannot (it builds the optimizer before the model exists)."""
    parser.add_optimizer_args((Optimizer,), link_to="model.init_args.optimizer")
    parser.add_lr_scheduler_args(LRSchedulerTypeTuple, link_to="model.init_args.lr_scheduler")


def fit_config_parser(prog: str = PROG) -> XLlamaArgumentParser:
    """A parser of a ``fit`` config with the sections, links and optimizer flags of
    :class:`XLlamaCLI`, for the tools that read such a config without running it (``data stats``,
    ``scaling sweep``): any config ``fit`` takes is read with the same keys."""
    parser = XLlamaArgumentParser(prog=prog)
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a fit config (YAML)")
    parser.add_argument("--seed_everything", type=Union[bool, int], default=True)
    parser.add_lightning_class_args(L.Trainer, "trainer")
    parser.add_lightning_class_args(XLlamaModule, "model", subclass_mode=True)
    parser.add_lightning_class_args(MuITDataModule, "data", subclass_mode=True)
    link_arguments(parser)
    add_optimizer_arguments(parser)
    LightningCLI.link_optimizers_and_lr_schedulers(parser)
    parser.add_method_arguments(L.Trainer, "fit", skip=set(LightningCLI.subcommands()["fit"]))
    return parser


LIGHTNING_NOTICES = (
    (logging.getLogger("lightning.pytorch.utilities.rank_zero"), "💡 Tip:"),
    (logging.getLogger("lightning.fabric.utilities.rank_zero"), "💡 Tip:"),
)
"""Lightning's log lines that advertise other products, by logger and start."""


class _DropNotices(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_lightning() -> None:
    """Leave out what Lightning prints on every command that says nothing about the run: its
    product tips, and torch's deprecation of ``LeafSpec``, which Lightning's own code triggers
    (``lightning/pytorch/utilities/_pytree.py``) whenever a loop collects outputs."""
    for logger, start in LIGHTNING_NOTICES:
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices(start))
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )


def link_arguments(parser: LightningArgumentParser) -> None:
    """The links between a ``fit`` config's sections (the tokenizer follows the model path), for
    every parser that reads such a config: :class:`XLlamaCLI` and ``data stats``."""
    parser.link_arguments("model.init_args.model_name_or_path", "data.init_args.tokenizer")


class XLlamaCLI(LightningCLI):
    """LightningCLI with the tokenizer tied to the model, a JSONL output for ``predict``, parse
    errors in one line, and the user's settings kept over a checkpoint's (:meth:`_parse_ckpt_path`)."""

    def __init__(self, args: Optional[list[str]] = None, **kwargs):
        quiet_lightning()
        kwargs.setdefault("parser_class", XLlamaArgumentParser)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs["parser_kwargs"] = {"prog": PROG, **(kwargs.get("parser_kwargs") or {})}
        kwargs.setdefault("auto_configure_optimizers", False)  # add_optimizer_arguments instead
        kwargs.setdefault(
            "trainer_defaults", {"callbacks": [RunRecord()]}
        )  # run.json in the log dir
        super().__init__(
            XLlamaModule,
            MuITDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        link_arguments(parser)

    def _add_arguments(self, parser: LightningArgumentParser) -> None:
        super()._add_arguments(parser)
        add_optimizer_arguments(parser)
        self.link_optimizers_and_lr_schedulers(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        """Parse ``args``; ``main`` always passes the command line itself (minus the command
        name for ``data stats``), which Lightning warns about when it differs from ``sys.argv``."""
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="LightningCLI's args parameter is intended to run from within"
            )
            super().parse_arguments(parser, args)

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs
    ) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "test":  # the package's table (after_test), not one row per probe layer
            parser.set_defaults(verbose=False)
        if subcommand == "predict":
            parser.add_argument(
                "--output",
                type=Optional[str],
                default=None,
                help="JSONL file for the predictions (default: predictions.jsonl in the log dir)",
            )
        return parser

    def _parse_ckpt_path(self) -> None:
        """Keep the user's settings: Lightning would re-parse a checkpoint file's hyperparameters
        over them (model path, learning rate, ``trust_remote_code``...), while ``--ckpt_path last``
        keeps them. Every ``--ckpt_path`` is compared with the run's settings when it starts
        instead (:meth:`_check_checkpoint_settings`)."""

    def before_instantiate_classes(self) -> None:
        """A missing model folder is reported plainly, and the modules the data section names
        (``language_modules``) are imported, before anything is built."""
        config = (
            self.config[self.subcommand] if self.subcommand else self.config
        )  # run=False: no subcommand
        check_model_path(config.model.init_args.model_name_or_path)
        import_config_modules(config.get("data"))  # the streams' kinds and languages
        self._resolve_data_seed(config)

    @staticmethod
    def _resolve_data_seed(config) -> None:
        """A data module without a ``seed`` of its own takes the run's (``seed_everything``, set
        by now), written into the config so ``config.yaml`` names it too."""
        data_args = config.get("data") and config.data.get("init_args")
        if data_args is not None and "seed" in data_args and data_args.seed is None:
            data_args.seed = data_seed(None)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            if subcommand != "fit":
                raise
            raise SystemExit(self._signal_exit_status()) from None
        except TrainingDiverged as diverged:  # its one line says the step and what to try
            if self.trainer.is_global_zero:
                print(f"error: {diverged}", file=sys.stderr)
            raise SystemExit(1) from None

    def _signal_exit_status(self) -> int:
        """After SIGTERM: 0 when every optimizer step done is in a checkpoint (or in the one the
        run resumed from), else 1, saying which steps were not saved and how to save them."""
        trainer, name = self.trainer, stop_signal_name()
        record = next((c for c in trainer.callbacks if isinstance(c, RunRecord)), None)
        first = record.first_step if record is not None else None
        saved = max(
            [c._last_global_step_saved for c in trainer.checkpoint_callbacks]
            + ([first] if first is not None else [])
            or [0]
        )
        step = trainer.global_step
        if step == (first or 0):
            message = (
                f"stopped by {name} before this run's first optimizer step (step {step}): "
                "nothing was trained and nothing saved; run the same command again"
            )
        elif saved >= step:
            rank_zero_info(f"stopped by {name}; steps up to {step} are saved")
            return 0
        else:
            message = (
                f"stopped by {name} after optimizer step {step}; steps {saved + 1}-{step} are in "
                "no checkpoint and are lost. Add lightning_xllama.callbacks.ResumableCheckpoint "
                "(it saves at the step boundary on SIGTERM) to trainer.callbacks"
            )
        if trainer.is_global_zero:
            print(f"error: {message}", file=sys.stderr)
        return 1

    def instantiate_classes(self) -> None:
        """Build the classes; a user error raised while building them (a bad value, a missing
        file) is printed alone, not inside jsonargparse's dump of every union member tried.
        Then claim the run's log folder (rank 0), so two runs started together never share one."""
        try:
            super().instantiate_classes()
        except Exception as err:
            cause = _root_cause(err)
            if cause is err or not isinstance(cause, USER_ERRORS) or _debug():
                raise
            raise cause from None  # main prints it as one line
        if rank_zero_only.rank == 0:
            for logger in self.trainer.loggers:
                claim_version(logger)

    def _instantiate_trainer(self, config: dict, callbacks: list) -> L.Trainer:
        """Without a logger chosen, the Trainer logs to CSV (Lightning's own default becomes
        TensorBoard whenever TensorBoard is installed)."""
        if config.get("logger") in (None, True):
            config["logger"] = CSVLogger(config.get("default_root_dir") or os.getcwd())
        if isinstance(config.get("strategy"), str) and "." in config["strategy"]:
            config["strategy"] = strategy_from_class_path(config["strategy"])
        return super()._instantiate_trainer(config, callbacks)

    def before_fit(self) -> None:
        """``--ckpt_path last`` without a fixed checkpoint folder: the ``last.ckpt`` of the
        newest version folder that has one (Lightning would look only in this run's new folder
        and train from scratch). Ctrl-C from here on stops as SIGTERM does."""
        sigint_as_sigterm(self.trainer)
        config = self.config_init["fit"]
        if config.get("ckpt_path") == "last" and not any(
            getattr(c, "dirpath", None) for c in self.trainer.checkpoint_callbacks
        ):
            logger = self.trainer.loggers[0] if self.trainer.loggers else None
            root = getattr(logger, "root_dir", None) or Path(
                self.trainer.default_root_dir, "lightning_logs"
            )
            try:
                config["ckpt_path"] = str(latest_last_checkpoint(root))  # ValueError: ambiguous
                rank_zero_info(f"--ckpt_path last: resuming from {config['ckpt_path']}")
                if self.trainer.is_global_zero:
                    count, size = remove_partial_files(Path(config["ckpt_path"]).parent)
                    if count:
                        rank_zero_info(
                            f"removed {count} partial checkpoint file(s) ({size:,} bytes) that a "
                            "killed save left beside it"
                        )
            except FileNotFoundError as missing:
                rank_zero_warn(f"{missing}; training starts from the base model")
                config["ckpt_path"] = None
        self._check_checkpoint_settings("fit")

    def before_validate(self) -> None:
        self._check_checkpoint_settings("validate")

    def before_test(self) -> None:
        self._check_checkpoint_settings("test")

    def after_test(self) -> None:
        """Print the test metrics (the evaluations' scores on their test sets and the held-out
        loss) unless ``MetricsSummary`` printed them or ``--verbose true`` printed Lightning's table."""
        if self.config_init["test"].get("verbose") or any(
            isinstance(c, MetricsSummary) for c in self.trainer.callbacks
        ):
            return
        metrics = test_metrics(self.trainer)
        if metrics and self.trainer.is_global_zero:
            print("\n" + test_table(metrics) + "\n")

    def _check_checkpoint_settings(self, subcommand: str) -> None:
        """A checkpoint file or sharded folder given as ``--ckpt_path`` brings weights and state,
        not settings: what differs from the settings it was trained with is listed in one
        warning, what cannot differ (LoRA, sharding, ``trust_remote_code`` it asks for) refused.
        ``last``, ``best`` and the like are resolved by Lightning (``last`` in :meth:`before_fit`)."""
        ckpt_path = self.config_init[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).exists():
            return
        data = self.datamodule.hparams if self.datamodule is not None else None
        warning = check_resumed_settings(ckpt_path, self.model.hparams, data, self.trainer)
        if warning is not None:
            rank_zero_warn(warning)

    def before_predict(self) -> None:
        self._check_checkpoint_settings("predict")
        output = self.config["predict"].get("output")
        if output is None:
            output = f"{self.trainer.log_dir or '.'}/predictions.jsonl"
        if not any(isinstance(c, JsonlPredictionWriter) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(JsonlPredictionWriter(output))


def strategy_from_class_path(path: str) -> Strategy:
    """``--trainer.strategy package.module.Class`` as that class with its defaults: jsonargparse
    keeps a lone dotted path as a string, which Lightning would take for a registered name
    (``ddp``, ``fsdp``) and refuse."""
    module_name, _, class_name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"--trainer.strategy {path!r}: no such class ({err}); expected a registered name "
            "(auto, ddp, fsdp, ...) or an importable Strategy class such as "
            "lightning_xllama.strategies.DecoderFSDP2Strategy"
        ) from None
    if not (isinstance(found, type) and issubclass(found, Strategy)):
        raise ValueError(f"--trainer.strategy {path!r} is not a lightning Strategy class")
    return found()
