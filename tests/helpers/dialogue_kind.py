"""A user's own stream kind: dialogues, registered the way a user adds a kind of data.

A config names the module (``data.init_args.language_modules: [dialogue_kind]``) and the data
module imports it before it reads its streams; a stream then says ``kind: dialogue``. Each JSONL
line is ``{"turns": [user, assistant, user, assistant, ...]}``: the last turn is the response to
train on, the user turn before it the instruction, and the earlier turns the input (the history).
"""

from __future__ import annotations

from typing import Optional

from lightning_xllama.data.kinds import StreamKind, register_stream_kind
from lightning_xllama.data.sources import DataFormatError, Example, Record

SPEAKERS = ("User", "Assistant")


class DialogueKind(StreamKind):
    """Dialogues as instruction examples: the assistant's last turn is the response."""

    name = "dialogue"
    formats = ("jsonl", "json")
    records = 'dialogues ({"turns": [user, assistant, ...]})'

    def parse(self, value: object, where: str) -> Record:
        turns = value.get("turns") if isinstance(value, dict) else None
        if not isinstance(turns, list) or len(turns) < 2 or len(turns) % 2:
            raise DataFormatError(
                f"{where}: expected an object with 'turns': an even number (2 or more) of "
                "strings, user and assistant in turn"
            )
        for position, turn in enumerate(turns):
            if not isinstance(turn, str):
                raise DataFormatError(
                    f"{where}: turn {position} must be a string, got {type(turn).__name__}"
                )
        return tuple(turns)

    def empty_field(self, record: Record, lang: str) -> Optional[str]:
        return "empty turn" if any(not turn.strip() for turn in record) else None

    def examples(self, record: Record, lang: str, direction: str, seed: str) -> list[Example]:
        history = "\n".join(
            f"{SPEAKERS[position % 2]}: {turn}" for position, turn in enumerate(record[:-2])
        )
        return [Example(record[-2], history, record[-1], "dialogue", lang)]


DIALOGUE = register_stream_kind(DialogueKind())
