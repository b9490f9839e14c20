"""The command line: Lightning's fit / validate / test / predict, plus the package's own tools.

``python -m lightning_xllama fit --config configs/demo.yaml`` goes to :class:`XLlamaCLI`
(LightningCLI: every ``__init__`` argument of the model, data module, trainer and callbacks is a
flag and a YAML key). Other subcommands are plain typed functions registered in
:data:`COMMANDS`, each parsed from its signature and docstring by jsonargparse.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Optional

import lightning as L
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_xllama.callbacks.prediction_writer import JsonlPredictionWriter
from lightning_xllama.callbacks.run_record import RunRecord
from lightning_xllama.data.datamodule import MuITDataModule
from lightning_xllama.hf_loading import check_model_path
from lightning_xllama.model import XLlamaModule
from lightning_xllama.run_folder import claim_version, latest_last_checkpoint

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")


class XLlamaCLI(LightningCLI):
    """LightningCLI with the tokenizer tied to the model and a JSONL output for ``predict``."""

    def __init__(self, args: Optional[list[str]] = None, **kwargs):
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
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
        parser.link_arguments("model.init_args.model_name_or_path", "data.init_args.tokenizer")

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs
    ) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            parser.add_argument(
                "--output",
                type=Optional[str],
                default=None,
                help="JSONL file for the predictions (default: predictions.jsonl in the log dir)",
            )
        return parser

    def before_instantiate_classes(self) -> None:
        """A missing model folder is reported plainly, before anything is built."""
        config = (
            self.config[self.subcommand] if self.subcommand else self.config
        )  # run=False: no subcommand
        model_path = config.model.init_args.model_name_or_path
        try:
            check_model_path(model_path)
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException:
            if subcommand != "fit":
                raise
            raise SystemExit(self._signal_exit_status()) from None

    def _signal_exit_status(self) -> int:
        """After SIGTERM: 0 when every optimizer step done is in a checkpoint (or in the one the
        run resumed from), else 1, saying which steps were not saved and how to save them."""
        trainer = self.trainer
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
                f"stopped by SIGTERM before this run's first optimizer step (step {step}): "
                "nothing was trained and nothing saved; run the same command again"
            )
        elif saved >= step:
            rank_zero_info(f"stopped by SIGTERM; steps up to {step} are saved")
            return 0
        else:
            message = (
                f"stopped by SIGTERM after optimizer step {step}; steps {saved + 1}-{step} are in "
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
            if cause is err or not isinstance(cause, USER_ERRORS):
                raise
            print(f"error: {cause}", file=sys.stderr)
            raise SystemExit(2) from None
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
        and train from scratch)."""
        config = self.config_init["fit"]
        if config.get("ckpt_path") != "last" or any(
            getattr(c, "dirpath", None) for c in self.trainer.checkpoint_callbacks
        ):
            return
        logger = self.trainer.loggers[0] if self.trainer.loggers else None
        root = getattr(logger, "root_dir", None) or Path(
            self.trainer.default_root_dir, "lightning_logs"
        )
        try:
            config["ckpt_path"] = str(latest_last_checkpoint(root))
        except FileNotFoundError as missing:
            rank_zero_warn(f"{missing}; training starts from the base model")
            config["ckpt_path"] = None
            return
        except ValueError as ambiguous:
            print(f"error: {ambiguous}", file=sys.stderr)
            raise SystemExit(2) from None
        rank_zero_info(f"--ckpt_path last: resuming from {config['ckpt_path']}")

    def before_predict(self) -> None:
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


USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError)
"""Errors raised by the package's classes on bad settings or inputs, shown without a traceback."""


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _function_commands() -> dict[str, object]:
    """Subcommands that are not Trainer methods: name -> function or {action: function}."""
    from lightning_xllama.data.stats import stats_command
    from lightning_xllama.demo.prepare import prepare_demo
    from lightning_xllama.evaluate import evaluate
    from lightning_xllama.export import export
    from lightning_xllama.scaling.commands import scaling_commands

    commands: dict[str, object] = {
        "prepare-demo": prepare_demo,
        "data": {"stats": stats_command},
        "evaluate": evaluate,
        "export": export,
        "scaling": scaling_commands(),
    }
    return commands


def _overview() -> str:
    return (
        "usage: python -m lightning_xllama <command> [options]\n\n"
        "Trainer commands (LightningCLI; --help on each lists every flag):\n"
        "  fit         train a model (python -m lightning_xllama fit --config configs/demo.yaml)\n"
        "  validate    run the validation loop and the evaluation callbacks\n"
        "  test        run the test loop\n"
        "  predict     answer a JSONL of instructions, or translate a text file, to JSONL\n\n"
        "Tools:\n"
        "  prepare-demo  build the offline demo's corpora, tokenizer and base model\n"
        "  data          data stats --config X.yaml: examples, tokens, mixture, filtering, padding, overlap\n"
        "  evaluate      score a Hugging Face model folder with the evaluation callbacks; JSON + markdown report\n"
        "  scaling       train over languages x pair counts (scaling sweep), fit scaling laws (scaling fit),\n"
        "                split a data budget (scaling allocate)\n"
        "  export        write a Hugging Face folder (+ model card) from a checkpoint file or sharded folder\n"
        "                (LoRA: the merged model, or the adapter folder with --lora_output adapter)\n"
    )


def main(args: Optional[list[str]] = None) -> None:
    from jsonargparse import CLI

    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return
    commands = _function_commands()
    if argv[:2] == ["data", "stats"] and not {"-h", "--help"} & set(
        argv[2:]
    ):  # a fit config: fit's parser
        from lightning_xllama.data.stats import stats_main

        stats_main(argv[2:])
        return
    if argv[0] in commands:
        command = commands[argv[0]]
        CLI(command, args=argv[1:], prog=f"lightning_xllama {argv[0]}", as_positional=False)
        return
    if argv[0] not in TRAINER_COMMANDS and not argv[0].startswith("-"):
        known = ", ".join([*TRAINER_COMMANDS, *commands])
        raise SystemExit(f"unknown command {argv[0]!r}; expected one of: {known}")
    XLlamaCLI(args=argv if args is not None else None)


if __name__ == "__main__":
    main()
