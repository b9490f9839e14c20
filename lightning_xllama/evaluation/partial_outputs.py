"""One set's generated outputs on disk as they come, so a stopped evaluation loses at most a batch.

While a set is generated, ``{set}.partial.jsonl`` gets each batch's rows (``{"row", "prompt",
"output"}``, one line each) and then one ``{"stops": {...}}`` line with the batch's stop counts,
flushed; a batch without its ``stops`` line (the process was killed while writing it) does not
count. When the set is done the file becomes ``{set}.generated.jsonl``. A resumed evaluation
reads either file and generates only the rows it lacks; a row whose prompt differs from the
current one is refused (the data or the settings changed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, TextIO

PARTIAL_SUFFIX = ".partial.jsonl"
"""A set's outputs while it is generated."""
GENERATED_SUFFIX = ".generated.jsonl"
"""A set's outputs once every row is generated."""


class SetOutputs:
    """The outputs of one set of ``prompts`` written under ``folder`` batch by batch.

    Args:
        folder: the evaluation's output folder.
        set_name: the set (a file name stem).
        prompts: every prompt of the set, in input order.
        resume: start from the rows an earlier run wrote (else start empty).
    """

    def __init__(self, folder: Path, set_name: str, prompts: list[str], resume: bool):
        self.prompts = prompts
        self.partial = Path(folder) / f"{set_name}{PARTIAL_SUFFIX}"
        self.generated = Path(folder) / f"{set_name}{GENERATED_SUFFIX}"
        self.outputs: dict[int, str] = {}
        """Rows already generated: index in ``prompts`` -> output."""
        self.stops: dict[str, int] = {}
        """The stop counts of those rows, added up."""
        self.reused_from: Optional[Path] = None
        if resume:
            for path in (self.generated, self.partial):
                if path.is_file():
                    self._read(path)
                    self.reused_from = path
                    break
        self.handle: Optional[TextIO] = None

    @property
    def missing(self) -> list[int]:
        """Indices of the prompts still to generate, in input order."""
        return [i for i in range(len(self.prompts)) if i not in self.outputs]

    def _read(self, path: Path) -> None:
        pending: dict[int, str] = {}
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # the last line of a killed run, half written
                if "stops" in record:
                    self.outputs.update(pending)
                    for key, value in record["stops"].items():
                        self.stops[key] = self.stops.get(key, 0) + value
                    pending = {}
                    continue
                row = record["row"]
                if not (0 <= row < len(self.prompts)) or self.prompts[row] != record["prompt"]:
                    raise ValueError(
                        f"{path}, line {number}: row {row} was generated from another prompt "
                        "than this run's (the data or the template changed); resume with the "
                        "same settings, or run without --resume to start afresh"
                    )
                pending[row] = record["output"]

    def append(self, rows: list[int], outputs: list[str], stops: dict[str, int]) -> None:
        """Write one batch (indices into ``prompts``) and flush it to disk."""
        if self.handle is None:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self.handle = self.partial.open("w", encoding="utf-8")
            if self.outputs:  # the rows reused, rewritten without a half-written tail
                self._write(sorted(self.outputs), [self.outputs[i] for i in sorted(self.outputs)])
                self.handle.write(json.dumps({"stops": self.stops}) + "\n")
        self._write(rows, outputs)
        self.handle.write(json.dumps({"stops": stops}) + "\n")
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.outputs.update(zip(rows, outputs))
        for key, value in stops.items():
            self.stops[key] = self.stops.get(key, 0) + value

    def _write(self, rows: list[int], outputs: list[str]) -> None:
        for row, output in zip(rows, outputs):
            record = {"row": row, "prompt": self.prompts[row], "output": output}
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def finish(self) -> list[str]:
        """Every output in input order; the partial file becomes the finished one."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            os.replace(self.partial, self.generated)
        elif self.reused_from == self.partial:  # complete, but stopped before it was renamed
            os.replace(self.partial, self.generated)
        return [self.outputs[i] for i in range(len(self.prompts))]

    def close(self) -> None:
        """Close the file without finishing it (generation failed or was stopped)."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None
