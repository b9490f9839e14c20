"""``python -m lightning_xllama <command>``: the Trainer commands go to :class:`XLlamaCLI`;
the tools are plain typed functions, each parsed from its signature and docstring by jsonargparse.

A user error ends a command with one ``error:`` line and status 2 (``XLLAMA_DEBUG=1``: the
traceback), see :mod:`lightning_xllama.commands.errors`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional

from lightning_xllama.commands.errors import USER_ERRORS, _debug, _root_cause, _tool_parser_class
from lightning_xllama.commands.fit import TRAINER_COMMANDS, XLlamaCLI

PLUGIN_COMMANDS: dict[str, str] = {
    "prepare-demo": "lightning_xllama.demo.prepare:prepare_demo",
}
"""Commands of plug-ins, by import path (``module:function``): imported only when run, so the
core never imports a plug-in. Add your own command with an entry here."""


def plugin_command(path: str):
    """The function named by a :data:`PLUGIN_COMMANDS` entry (``module:function``)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _function_commands() -> dict[str, object]:
    """Subcommands that are not Trainer methods: name -> function or {action: function}."""
    from lightning_xllama.commands.data_stats import stats_command
    from lightning_xllama.commands.evaluate import evaluate
    from lightning_xllama.commands.export import export
    from lightning_xllama.commands.import_gguf import import_gguf
    from lightning_xllama.commands.scaling import scaling_commands

    commands: dict[str, object] = {
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
        "  test        run the evaluation callbacks once on their test sets; print the scores\n"
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
        from lightning_xllama.commands.data_stats import stats_main

        stats_main(argv[2:])
        return
    if argv[0] in PLUGIN_COMMANDS:
        commands[argv[0]] = plugin_command(PLUGIN_COMMANDS[argv[0]])
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
        known = ", ".join([*TRAINER_COMMANDS, *PLUGIN_COMMANDS, *commands])
        raise SystemExit(f"error: unknown command {argv[0]!r}; expected one of: {known}")
    XLlamaCLI(args=argv if args is not None else None)


if __name__ == "__main__":
    main()
