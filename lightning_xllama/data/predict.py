"""The input of ``predict``: a JSONL of Alpaca records, or a text file of sentences to translate."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from lightning.pytorch.utilities import rank_zero_warn

from lightning_xllama.data.sources import read_instructions, read_lines
from lightning_xllama.data.tasks import translation_prompt_instruction

PLACES_SHOWN = 5
"""How many places (lines, records) a warning names before it says '...'."""


def read_predict_file(
    path: Optional[str], direction: Optional[str], prompt: Callable[[str, str], str]
) -> list[dict]:
    """``{id, instruction, input, prompt}`` records to generate from.

    Args:
        path: a ``.jsonl``/``.json`` file of Alpaca records (instruction, input), or with
            ``direction`` a text file with one sentence a line (empty lines are skipped and
            counted; each record's ``id`` is its line's index from 0).
        direction: ``src-tgt`` language codes (``en-zh``) when ``path`` is text.
        prompt: (instruction, input) -> the prompt in the run's template.
    """
    if path is None:
        raise ValueError(
            "predict needs --data.predict_file (JSONL of instructions, or text with "
            "--data.predict_direction)"
        )
    if direction:
        src, _, tgt = direction.partition("-")
        instruction = translation_prompt_instruction(src, tgt)
        lines = list(enumerate(read_lines(path), start=1))
        empty = [number for number, line in lines if not line.strip()]
        if empty:
            shown = ", ".join(str(n) for n in empty[:PLACES_SHOWN])
            rank_zero_warn(
                f"{path}: {len(empty)} empty line(s) skipped, not translated "
                f"(line {shown}{', ...' if len(empty) > PLACES_SHOWN else ''}); "
                "a prediction's id is its line's index from 0, so ids skip them"
            )
        return [
            {
                "id": number - 1,
                "instruction": instruction,
                "input": line,
                "prompt": prompt(instruction, line),
            }
            for number, line in lines
            if line.strip()
        ]
    if Path(path).suffix not in (".jsonl", ".json"):
        raise ValueError(
            f"{path}: a text file needs --data.predict_direction (e.g. en-zh); "
            "instructions must be .jsonl or .json"
        )
    examples = read_instructions(path, require_output=False)
    return [
        {
            "id": i,
            "instruction": e.instruction,
            "input": e.input,
            "prompt": prompt(e.instruction, e.input),
        }
        for i, e in enumerate(examples)
    ]
