"""The command line: Lightning's fit / validate / test / predict, plus the package's own tools.

``python -m lightning_xllama fit --config configs/demo.yaml`` goes to :class:`XLlamaCLI`
(LightningCLI: every ``__init__`` argument of the model, data module, trainer and callbacks is a
flag and a YAML key). Other subcommands are plain typed functions registered in
:data:`COMMANDS`, each parsed from its signature and docstring by jsonargparse.

A user's mistake (a bad value, a missing file, an unknown config key) ends the command with one
``error:`` line and exit status 2; ``XLLAMA_DEBUG=1`` shows the traceback instead (:func:`main`).
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
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

from lightning_xllama.callbacks.checkpoint import sigint_as_sigterm, stop_signal_name
from lightning_xllama.callbacks.prediction_writer import JsonlPredictionWriter
from lightning_xllama.callbacks.run_record import RunRecord
from lightning_xllama.data.datamodule import MuITDataModule
from lightning_xllama.divergence import TrainingDiverged
from lightning_xllama.hf_loading import check_model_path
from lightning_xllama.model import XLlamaModule
from lightning_xllama.resume_settings import check_resumed_settings
from lightning_xllama.run_folder import claim_version, latest_last_checkpoint

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")


class XLlamaCLI(LightningCLI):
    """LightningCLI with the tokenizer tied to the model, a JSONL output for ``predict``, parse
    errors in one line, and the user's settings kept over a checkpoint's (:meth:`_parse_ckpt_path`)."""

    def __init__(self, args: Optional[list[str]] = None, **kwargs):
        kwargs.setdefault("parser_class", XLlamaArgumentParser)
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

    def _parse_ckpt_path(self) -> None:
        """Keep the user's settings: Lightning would re-parse a checkpoint file's hyperparameters
        over them (model path, learning rate, ``trust_remote_code``...), while ``--ckpt_path last``
        keeps them. Every ``--ckpt_path`` is compared with the run's settings when it starts
        instead (:meth:`_check_checkpoint_settings`)."""

    def before_instantiate_classes(self) -> None:
        """A missing model folder is reported plainly, before anything is built."""
        config = (
            self.config[self.subcommand] if self.subcommand else self.config
        )  # run=False: no subcommand
        check_model_path(config.model.init_args.model_name_or_path)

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
            except FileNotFoundError as missing:
                rank_zero_warn(f"{missing}; training starts from the base model")
                config["ckpt_path"] = None
        self._check_checkpoint_settings("fit")

    def before_validate(self) -> None:
        self._check_checkpoint_settings("validate")

    def before_test(self) -> None:
        self._check_checkpoint_settings("test")

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


USER_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError)
"""Errors raised by the package's classes on bad settings or inputs, shown without a traceback."""


def _debug() -> bool:
    """``XLLAMA_DEBUG=1``: errors keep their traceback (and jsonargparse its full report)."""
    return os.environ.get("XLLAMA_DEBUG") == "1"


_PARSING: list[tuple[list[str], str]] = []
"""The arguments of the parse in progress and the folder it started in (jsonargparse changes to a
config file's folder while reading it)."""


class OneLineErrors:
    """A jsonargparse parser whose errors are one ``error:`` line instead of the usage of every
    option and the report of every union member tried: the key (``data.init_args.batch_size``),
    where it was given (a config file or the command line) and, for an unknown key, the closest
    valid ones. ``--help`` is unchanged."""

    def parse_args(self, args=None, *rest, **kwargs):
        outermost = not _PARSING  # jsonargparse parses subcommands and config files within it
        if outermost:
            _PARSING.append((list(sys.argv[1:] if args is None else args), os.getcwd()))
        try:
            return super().parse_args(args, *rest, **kwargs)
        finally:
            if outermost:
                _PARSING.clear()

    def error(self, message: str, ex: Optional[Exception] = None):
        if not self.exit_on_error or _debug():
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        argv, cwd = _PARSING[0] if _PARSING else (sys.argv[1:], os.getcwd())
        line = parse_error_line(message, parser, argv, cwd)
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2)


class XLlamaArgumentParser(OneLineErrors, LightningArgumentParser):
    """The trainer commands' parser, with errors in one line."""


def _tool_parser_class():
    from jsonargparse import ArgumentParser

    class ToolArgumentParser(OneLineErrors, ArgumentParser):
        """The function commands' parser, with errors in one line."""

    return ToolArgumentParser


NOT_ACCEPTED = re.compile(
    r"does not accept option '([^']+)'|Option '([^']+)' is not accepted|"
    r"Key '([^']+)' is not expected"
)


def parse_error_line(message: str, parser, argv: list[str], cwd: str = ".") -> str:
    """jsonargparse's error ``message`` in one line (see :class:`OneLineErrors`)."""
    unrecognized = re.match(r"unrecognized arguments: (.*)", message.strip())
    if unrecognized:
        flags = [a.split("=", 1)[0][2:] for a in unrecognized.group(1).split() if a[:2] == "--"]
        if flags:
            return "; ".join(_unknown_key(flag, _parser_keys(parser), argv, cwd) for flag in flags)
    key, text, class_path = _first_leaf(message)
    found = NOT_ACCEPTED.search(text)
    if found:
        name = next(g for g in found.groups() if g)
        full = f"{key}.{name}" if key else name
        prefix = f"{key}." if key else ""
        known = (
            [prefix + n for n in _init_parameters(class_path)]
            if class_path
            else _parser_keys(parser)
        )
        return _unknown_key(full, known, argv, cwd)
    if key:
        source = _source(key, argv, cwd).strip()
        return f"{key} ({source}): {text}" if source else f"{key}: {text}"
    return " ".join(message.split())


def _first_leaf(message: str) -> tuple[str, str, Optional[str]]:
    """The first error of jsonargparse's nested report: (the key it is about, e.g.
    ``data.init_args.batch_size``; the error; the class_path it was checked against).
    Alternatives of a union that only say the value is not None are passed over."""
    stack: list[tuple[int, str, Optional[str]]] = []  # (indent, key part, class_path)
    for line in message.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" -"))
        text = stripped.lstrip("- ").strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parser_key = re.fullmatch(r'Parser key "(.+)":', text)
        class_path = re.fullmatch(r"Problem with given class_path '(.+)':", text)
        if parser_key:
            stack.append((indent, parser_key.group(1), None))
        elif class_path:
            stack.append((indent, "init_args", class_path.group(1)))
        elif text and not text.startswith(
            (
                "Does not validate against",
                "Subtypes:",
                "Errors:",
                "Given value",
                "Expected a <class 'NoneType'>",
            )
        ):
            classes = [c for _, _, c in stack if c]
            return ".".join(part for _, part, _ in stack), text, (classes[-1] if classes else None)
    return "", " ".join(message.split()), None


def _unknown_key(key: str, known: list[str], argv: list[str], cwd: str) -> str:
    """``unknown key 'K' in FILE; did you mean: ...?`` (or ``unknown option '--K'`` when given on
    the command line), the closest of ``known`` by spelling."""
    source = _source(key, argv, cwd)
    flag = not source.startswith(" in ")
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    if not close:  # by the last part alone: a long prefix drowns a short misspelling
        leaves = {k.rpartition(".")[2]: k for k in reversed(known)}
        leaf = key.rpartition(".")[2]
        close = [leaves[n] for n in difflib.get_close_matches(leaf, list(leaves), n=3)]
    dash = "--" if flag else ""
    text = f"unknown option '--{key}'" if flag else f"unknown key '{key}'{source}"
    if close:
        return f"{text}; did you mean: {', '.join(dash + k for k in close)}?"
    return f"{text}; --help lists the accepted keys"


def _parser_keys(parser) -> list[str]:
    """Every option of ``parser`` as a dotted key (``trainer.max_steps``)."""
    keys = {s[2:] for s in getattr(parser, "_option_string_actions", {}) if s[:2] == "--"}
    return sorted(keys - {"help", "config", "print_config"})


def _init_parameters(class_path: str) -> list[str]:
    """The init_args keys of the class at ``class_path``, as jsonargparse reads them (arguments
    passed on through ``**kwargs`` included)."""
    from jsonargparse import ArgumentParser

    module, _, name = class_path.rpartition(".")
    try:
        parser = ArgumentParser()
        parser.add_class_arguments(
            getattr(importlib.import_module(module), name), fail_untyped=False
        )
    except Exception:  # an unimportable class: jsonargparse's own message names it
        return []
    return list(parser.get_defaults().keys())


def _source(key: str, argv: list[str], cwd: str) -> str:
    """`` on the command line`` when a flag of ``argv`` names ``key`` (flags override config
    files), `` in FILE`` when a ``--config`` file holds it, else nothing."""
    import yaml

    parts = key.split(".")
    flags = [a.split("=", 1)[0][2:] for a in argv if a[:2] == "--"]
    if any(f == key or f == parts[-1] or f.endswith("." + parts[-1]) for f in flags):
        return " on the command line"
    configs = [b for a, b in zip(argv, argv[1:]) if a in ("--config", "-c")]
    configs += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for config in reversed(configs):  # the last file given wins
        try:
            content = yaml.safe_load(Path(cwd, config).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if _holds(content, parts):
            return f" in {config}"
    return ""


def _holds(content, parts: list[str]) -> bool:
    """Whether YAML ``content`` has the key ``parts`` (``init_args`` optional, lists searched)."""
    if not parts:
        return True
    if isinstance(content, list):
        return any(_holds(item, parts) for item in content)
    if not isinstance(content, dict):
        return False
    head, rest = parts[0], parts[1:]
    if head in content:
        return _holds(content[head], rest)
    return head == "init_args" and _holds(content, rest)


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
    from lightning_xllama.gguf_import import import_gguf
    from lightning_xllama.scaling.commands import scaling_commands

    commands: dict[str, object] = {
        "prepare-demo": prepare_demo,
        "data": {"stats": stats_command},
        "evaluate": evaluate,
        "export": export,
        "import-gguf": import_gguf,
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
        "  import-gguf   a Hugging Face folder from a .gguf file (--file X.gguf --out DIR), tokenizer repaired\n\n"
        "A mistake in the settings or inputs is one 'error:' line; XLLAMA_DEBUG=1 shows its traceback.\n"
    )


def main(args: Optional[list[str]] = None) -> None:
    """Run the command ``args`` (default: the command line). A user error (:data:`USER_ERRORS`,
    also when raised under another exception) ends it with one ``error:`` line and status 2;
    ``XLLAMA_DEBUG=1`` shows its traceback instead."""
    try:
        _run(args)
    except Exception as err:
        cause = err if isinstance(err, USER_ERRORS) else _root_cause(err)
        if not isinstance(cause, USER_ERRORS) or _debug():
            raise
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(args: Optional[list[str]]) -> None:
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
        CLI(
            command,
            args=argv[1:],
            prog=f"lightning_xllama {argv[0]}",
            as_positional=False,
            parser_class=_tool_parser_class(),
        )
        return
    if argv[0] not in TRAINER_COMMANDS and not argv[0].startswith("-"):
        known = ", ".join([*TRAINER_COMMANDS, *commands])
        raise SystemExit(f"error: unknown command {argv[0]!r}; expected one of: {known}")
    XLlamaCLI(args=argv if args is not None else None)


if __name__ == "__main__":
    main()
