"""Run folders (``<root>/lightning_logs/version_N``): each run claims its own, and
``--ckpt_path last`` finds the checkpoint to resume among them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from lightning.pytorch.utilities import rank_zero_warn

from lightning_xllama.runtime.checkpoint_io import checkpoint_problem

MAX_CLAIM_TRIES = 1000
VERSION_FOLDER = re.compile(r"version_(\d+)$")


def claim_version(logger) -> Optional[int]:
    """Give ``logger`` (CSV, TensorBoard: a ``root_dir`` with ``version_N`` folders) the next
    free version by creating its folder, which only one process can do (``mkdir`` is atomic).

    Loggers pick the next number by listing the folder; two runs started together list the same
    folders and share one version (one's CSV logger then crashes, and both write checkpoints
    into one folder). A run whose ``mkdir`` finds the folder taken tries the next number.
    Loggers with a version set, or of other kinds, are left as they are (None returned).
    """
    if getattr(logger, "_version", "") is not None or not hasattr(logger, "_get_next_version"):
        return None
    root = Path(logger.root_dir)
    root.mkdir(parents=True, exist_ok=True)
    version = logger._get_next_version()
    for _ in range(MAX_CLAIM_TRIES):
        try:
            (root / f"version_{version}").mkdir()
        except FileExistsError:  # another run took it after our listing
            version = max(version + 1, logger._get_next_version())
            continue
        logger._version = version
        return version
    raise RuntimeError(f"no free version folder in {root} after {MAX_CLAIM_TRIES} tries")


def latest_last_checkpoint(root: str | Path) -> Path:
    """``last.ckpt`` of the newest ``version_N`` folder under ``root`` that has one (in
    ``checkpoints/`` or the folder itself): the checkpoint a restarted job resumes from.

    A ``last.ckpt`` that would not load (truncated by a kill or a full disk while it was copied
    in, a link to a removed file) is named, with the reason, and the newest checkpoint that
    loads is taken instead: another one of that run, else one of an earlier run.
    Refuses, naming the candidates, when the newest such folder holds several ``last*.ckpt``
    (two checkpoint callbacks, or Lightning's ``last-v1.ckpt``), and when there is none.
    """
    root = Path(root)
    versions = []
    for folder in root.glob("version_*") if root.is_dir() else []:
        match = VERSION_FOLDER.match(folder.name)
        if match and folder.is_dir():
            versions.append((int(match.group(1)), folder))
    folders = [folder for _, folder in sorted(versions, reverse=True)]
    for index, folder in enumerate(folders):
        found = sorted(
            {*folder.glob("last*.ckpt"), *folder.glob("checkpoints/last*.ckpt")},
            key=lambda p: str(p),
        )
        if len(found) > 1:
            names = ", ".join(str(p) for p in found)
            raise ValueError(
                f"--ckpt_path last is ambiguous: {folder} holds {names}; "
                "pass the one to resume as --ckpt_path <file>"
            )
        if not found:
            continue
        problem = checkpoint_problem(found[0])
        if problem is None:
            return found[0]
        for candidate in _checkpoints_newest_first(folders[index:]):
            if candidate != found[0] and checkpoint_problem(candidate) is None:
                rank_zero_warn(
                    f"--ckpt_path last: {found[0]} does not load ({problem}); resuming from "
                    f"{candidate}, the newest checkpoint that does"
                )
                return candidate
        raise ValueError(
            f"--ckpt_path last: {found[0]} does not load ({problem}), and no other checkpoint "
            f"under {root} does; pass one as --ckpt_path <file>, or train from the base model "
            "without --ckpt_path"
        )
    raise FileNotFoundError(
        f"--ckpt_path last: no version_N folder under {root} holds a last.ckpt "
        "(save one with a checkpoint callback's save_last: true, or pass --ckpt_path <file>)"
    )


def _checkpoints_newest_first(folders: list[Path]) -> list[Path]:
    """The ``*.ckpt`` files and sharded folders of each run folder (given newest run first),
    within a run the most recently written first."""
    ordered = []
    for folder in folders:
        found = {*folder.glob("*.ckpt"), *folder.glob("checkpoints/*.ckpt")}
        ordered += sorted(found, key=_written_at, reverse=True)
    return ordered


def _written_at(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0
