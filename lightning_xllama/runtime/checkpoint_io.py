"""Checkpoints written atomically where they live, and a cheap check that one loads.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction: the bytes go to a file
made by ``tempfile.mkstemp()`` (the system temporary folder) and are then moved in with
``shutil.move``. When that folder is on another filesystem than the checkpoints (local disk
against shared storage, the usual cluster layout) the move is a copy under the final name: a
kill or a full disk during it leaves a truncated ``last.ckpt`` that every later
``--ckpt_path last`` fails on, and a killed process leaves a checkpoint-sized file in the
temporary folder. Here the checkpoint is written to a hidden file beside its final name, flushed
and fsynced, then renamed over it (``os.replace``, atomic within one filesystem), and the folder
is fsynced: the final name holds the previous checkpoint or the new one, never part of one.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH

PARTIAL_SUFFIX = ".partial"
"""Suffix of a checkpoint being written (``.<name>.<random>.partial`` beside ``<name>``)."""
SHARDED_METADATA = "meta.pt"
"""File that Lightning writes last into a sharded checkpoint folder (with the trainer state)."""
UMASK = os.umask(0o022)
os.umask(UMASK)  # read once: a checkpoint gets the permissions an ordinary new file gets


class CheckpointSpaceError(OSError):
    """The checkpoint did not fit on its filesystem; the partial file was removed."""


def atomic_save(checkpoint: Any, path: _PATH) -> None:
    """``torch.save`` to ``path`` through a temporary file in the same folder, renamed over it.

    The file is flushed and fsynced before the rename and the folder after it, so a crash or a
    power loss leaves either the previous file or the complete new one. On any failure (a full
    disk, an object that does not serialise, Ctrl-C) the partial file is removed; a full disk
    raises :class:`CheckpointSpaceError` with the bytes written, the bytes expected and the free
    space.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(partial, 0o666 & ~UMASK)  # mkstemp makes it private; a checkpoint is not
        os.replace(partial, path)
    except BaseException as err:
        written = os.path.getsize(partial) if os.path.exists(partial) else 0
        Path(partial).unlink(missing_ok=True)
        if _no_space(err):
            expected = checkpoint_bytes(checkpoint)
            free = shutil.disk_usage(path.parent).free
            raise CheckpointSpaceError(
                errno.ENOSPC,
                f"no space left for checkpoint {path}: {written:,} bytes written of about "
                f"{expected:,} expected; {free:,} bytes free on that filesystem (partial file "
                "removed, the previous checkpoint under that name is unchanged). Free space, or "
                "keep fewer checkpoints (save_top_k)",
            ) from err
        raise
    _fsync_folder(path.parent)
    _remove_stale_partials(path)


def checkpoint_bytes(checkpoint: Any) -> int:
    """Bytes of the tensors in ``checkpoint`` (each storage once): about its size on disk."""
    seen: dict[tuple, int] = {}
    stack = [checkpoint]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            seen[(storage.device.type, storage.data_ptr())] = storage.nbytes()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return sum(seen.values())


def checkpoint_problem(path: _PATH) -> Optional[str]:
    """Why the checkpoint at ``path`` would not load, or None when it looks whole.

    Cheap: reads a file's zip directory (a truncated file has none: it is written last) and
    checks that every entry lies inside the file; no tensor data is read. A sharded folder needs
    its ``meta.pt`` whole and the shards' ``.metadata``. A link to a missing file is named so.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"it links to {os.readlink(path)}, which does not exist"
    if path.is_dir():
        if not (path / ".metadata").is_file():
            return "the sharded checkpoint folder has no .metadata (its save did not finish)"
        return checkpoint_problem(path / SHARDED_METADATA)
    if not path.is_file():
        return "it does not exist"
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        return f"it is not a whole torch checkpoint ({size:,} bytes; {err})"
    if not any(e.filename.endswith("data.pkl") for e in entries):
        return "it holds no data.pkl: not a torch checkpoint"
    for entry in entries:
        if entry.header_offset + entry.compress_size > size:
            return f"it is truncated ({size:,} bytes; entry {entry.filename} runs past the end)"
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with local files written by :func:`atomic_save`.

    Remote paths (``s3://``, ...) keep Lightning's own writer (object stores replace a key
    whole). Installed by :class:`~lightning_xllama.callbacks.ResumableCheckpoint`; pass it in
    ``trainer.plugins`` to use it with another checkpoint callback.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Optional[Any] = None
    ) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, path)


def install_atomic_io(strategy: Any) -> bool:
    """Give ``strategy`` an :class:`AtomicCheckpointIO` when it has Lightning's default writer;
    a custom ``CheckpointIO`` (or a wrapping one, such as asynchronous saving) is kept. Returns
    whether the strategy writes atomically now."""
    current = strategy.checkpoint_io
    if isinstance(current, AtomicCheckpointIO):
        return True
    if type(current) is not TorchCheckpointIO:
        return False
    strategy.checkpoint_io = AtomicCheckpointIO()
    return True


def replace_folder(staging: Path, final: Path) -> None:
    """Move a complete sharded checkpoint folder ``staging`` to ``final``.

    A folder cannot be renamed over a non-empty one, so the previous ``final`` is first renamed
    aside (``.<name>.old``) and removed once the new one is in place: at every moment one whole
    checkpoint is under ``final`` or under the aside name (which :func:`checkpoint_problem`
    accepts and ``--ckpt_path last`` does not pick; a crash in between leaves it to delete).
    """
    aside = final.with_name(f".{final.name}.old")
    if aside.exists():
        shutil.rmtree(aside) if aside.is_dir() else aside.unlink()
    if final.is_dir() and not final.is_symlink():
        os.replace(final, aside)
    os.replace(staging, final)
    _fsync_folder(final.parent)
    if aside.is_dir():
        shutil.rmtree(aside)
    elif aside.exists():
        aside.unlink()


def _no_space(err: BaseException) -> bool:
    """Whether ``err`` or an error it was raised from is ENOSPC (torch wraps the OSError of a
    failed write into a RuntimeError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        err = err.__cause__ or err.__context__
    return False


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (not supported everywhere: then skipped)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_partials(path: Path) -> None:
    """Remove partial files of ``path``'s name left by a writer that was killed (kill -9 leaves
    no chance to clean up); checkpoint folders belong to one run, so no other writer uses them."""
    for stale in path.parent.glob(f".{path.name}.*{PARTIAL_SUFFIX}"):
        stale.unlink(missing_ok=True)


def remove_partial_files(folder: _PATH) -> tuple[int, int]:
    """Remove every partial checkpoint file in ``folder`` (a run that resumes from it: its writer
    was killed mid-save and wrote nothing since); returns how many files and bytes."""
    count = size = 0
    for stale in Path(folder).glob(f".*{PARTIAL_SUFFIX}"):
        if stale.is_file():
            size += stale.stat().st_size
            stale.unlink(missing_ok=True)
            count += 1
    return count, size
