"""Where an export may write, and how it replaces an earlier export without deleting anything else.

An export folder holds ``export_manifest.json``, written last by the export itself::

    {"format": "lightning_xllama.hf_export", "version": 1, "written": "<UTC, ISO 8601>",
     "files": ["README.md", "config.json", "generation_config.json", "model.safetensors",
               "run.json", "tokenizer.json", ...]}

``files`` lists every file the export wrote (paths relative to the folder; the manifest itself is
implied). Only a folder with such a manifest is an earlier export: ``config.json`` alone is not
(a base model folder has one too).

Rules, checked before any weights are loaded or any file is touched:

- Refused always: the current working directory or any folder above it; a folder that holds
  (or is) a protected path: the checkpoint being exported, or a training run's folders
  (``default_root_dir``, log dir, checkpoint dirpath); an existing path that is not a folder.
- An existing non-empty folder is refused without ``overwrite``; with ``overwrite`` it is replaced
  only if it is an earlier export. Then only the files its manifest lists are removed: anything
  else in it stays (a new file that would replace such an unlisted file is refused).
- The new export is written into a temporary sibling folder (``.NAME.tmp-XXXX``) and moved into
  place only once complete; a failure leaves the earlier export as it was and removes the
  temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Sequence

from lightning_xllama.runtime.run_record import now

MANIFEST_FILE = "export_manifest.json"
MANIFEST_FORMAT = "lightning_xllama.hf_export"
MANIFEST_VERSION = 1

Protected = Sequence[tuple[str | Path, str]]
"""(path, what it is) pairs an export target must not hold, e.g. (ckpt, "the checkpoint being
exported")."""


class ExportTargetError(FileExistsError):
    """The export target may not be written (the message names the folder and why)."""


def read_manifest(folder: Path) -> Optional[dict]:
    """The manifest of an earlier export in ``folder``, or None when ``folder`` is not one."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    version, files = manifest.get("version"), manifest.get("files")
    if not isinstance(version, int) or not isinstance(files, list):
        return None
    if version > MANIFEST_VERSION:
        raise ExportTargetError(
            f"export target {folder} was written by a newer lightning_xllama (manifest version "
            f"{version}, this one reads up to {MANIFEST_VERSION}); remove it yourself or choose "
            "another folder"
        )
    if not all(_is_inside_path(f) for f in files):
        return None  # a hand-edited list pointing outside the folder: not ours to follow
    return manifest


def _is_inside_path(name) -> bool:
    """A relative path that stays inside its folder (no ``..``, not absolute, not the manifest)."""
    if not isinstance(name, str) or not name:
        return False
    parts = PurePosixPath(name).parts
    return not PurePosixPath(name).is_absolute() and ".." not in parts and name != MANIFEST_FILE


def _holds(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def check_export_target(
    out: str | Path,
    overwrite: bool,
    protected: Protected = (),
    how_to_overwrite: str = "pass --overwrite true",
) -> Path:
    """Refuse a target an export must not write (see the module docstring); returns it resolved.

    Touches nothing, so callers run it before loading weights or training."""
    target = Path(out).resolve()
    cwd = Path.cwd().resolve()
    if _holds(target, cwd):
        where = "is" if target == cwd else "holds"
        raise ExportTargetError(
            f"export target {target} {where} the current working directory; choose a new folder"
        )
    for path, what in protected:
        if path is not None and _holds(target, Path(path).resolve()):
            raise ExportTargetError(
                f"export target {target} holds {what} ({Path(path).resolve()}); choose a "
                "folder outside it"
            )
    if not target.exists():
        return target
    if not target.is_dir():
        raise ExportTargetError(f"export target {target} exists and is not a folder")
    if not any(target.iterdir()):
        return target
    if read_manifest(target) is None:
        raise ExportTargetError(
            f"export target {target} exists, is not empty and is not an earlier export (no "
            f"{MANIFEST_FILE} written by an export); overwrite replaces only an earlier export: "
            "choose another folder, or empty it yourself"
        )
    if not overwrite:
        raise ExportTargetError(
            f"export target {target} exists and is not empty (an earlier export); "
            f"{how_to_overwrite} to replace it"
        )
    return target


def write_export(
    out: str | Path,
    write: Callable[[Path], None],
    overwrite: bool,
    protected: Protected = (),
    how_to_overwrite: str = "pass --overwrite true",
) -> Path:
    """Check ``out``, run ``write(folder)`` into a temporary sibling folder, add the manifest and
    move the result into place. Returns the target, resolved."""
    target = check_export_target(out, overwrite, protected, how_to_overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(staging)
        files = sorted(
            p.relative_to(staging).as_posix() for p in staging.rglob("*") if not p.is_dir()
        )
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "written": now(),
            "files": files,
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        if target.exists():
            _replace_export(staging, target, files)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _replace_export(staging: Path, target: Path, files: list[str]) -> None:
    """Move the new files from ``staging`` into the existing ``target`` (empty or an earlier
    export), after moving the files the earlier manifest lists aside; undone on any failure."""
    old = read_manifest(target)
    old_files = [
        name
        for name in (old["files"] if old else [])
        if os.path.lexists(target / name) and _holds(target, (target / name).parent.resolve())
    ]
    if old is not None:
        old_files.append(MANIFEST_FILE)
    clashes = [f for f in files if os.path.lexists(target / f) and f not in old_files]
    if clashes:
        raise ExportTargetError(
            f"export target {target} holds {clashes}, which the earlier export did not write and "
            "the new one would replace; move them away first"
        )
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    moved_aside: list[str] = []
    moved_in: list[str] = []
    try:
        for name in old_files:
            _move(target / name, aside / name)
            moved_aside.append(name)
        for name in [*files, MANIFEST_FILE]:  # the manifest last: it says the export is complete
            _move(staging / name, target / name)
            moved_in.append(name)
    except BaseException:
        # put everything back; if that fails too, the earlier files stay in ``aside`` to recover
        for name in reversed(moved_in):
            _move(target / name, staging / name)
        for name in reversed(moved_aside):
            _move(aside / name, target / name)
        _remove_empty_dirs(target, moved_in)
        shutil.rmtree(aside)  # only empty folders left in it
        raise
    _remove_empty_dirs(target, moved_aside)
    shutil.rmtree(aside)  # the earlier export's files, now replaced


def _move(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, dest)


def _remove_empty_dirs(target: Path, names: list[str]) -> None:
    """Subfolders of ``target`` left empty by moving listed files out of them."""
    for name in names:
        for parent in (target / name).parents:
            if parent == target:
                break
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
