"""Checkpoint files: atomic writes, discovery of the newest loadable one, and checksums.

A checkpoint is one ``torch.save`` file per epoch, ``ckpt-epoch{E:04d}.pt``, holding everything
needed to continue bit-identically: the K stacked models, optimiser, scheduler, method state,
all random-number-generator states and the last epoch's losses. Files are written to a temporary
name in the same directory, fsynced and renamed, so a crash leaves either the old or the new
file, never half of one; the directory is fsynced too so the rename survives power loss.

The per-epoch loss history lives next to the checkpoints in ``history.jsonl`` (one JSON line per
epoch, appended and fsynced before the epoch's checkpoint is written), so a checkpoint's size
does not grow with the run's length. A resumed run keeps the lines up to its checkpoint's epoch
(:func:`read_history`, :func:`write_history`); a torn last line from a crash is ignored.
Checkpoints written before that format carry the whole history themselves and still load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from pmtl_core.atomic import atomic_write

__all__ = [
    "FORMAT",
    "HISTORY_FILE",
    "CheckpointError",
    "append_history",
    "latest",
    "list_checkpoints",
    "load",
    "read_history",
    "save",
    "sha256",
    "write_history",
]

FORMAT = 1
#: The per-epoch loss history of the checkpoints of one directory.
HISTORY_FILE = "history.jsonl"
_NAME = re.compile(r"^ckpt-epoch(\d{4,})\.pt$")
log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not one of ours."""


def checkpoint_name(epoch: int) -> str:
    """The file name of the checkpoint written after ``epoch``."""
    return f"ckpt-epoch{epoch:04d}.pt"


def save(state: dict[str, Any], directory: str | os.PathLike[str], epoch: int) -> Path:
    """Write ``state`` atomically as ``epoch``'s checkpoint in ``directory``; return its path."""
    path = Path(directory) / checkpoint_name(epoch)
    payload = {"format": FORMAT, "epoch": epoch, **state}
    return atomic_write(path, lambda fh: torch.save(payload, fh))  # creates the directory too


def load(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint; ``CheckpointError`` if it is missing, corrupt or of another format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise CheckpointError(f"checkpoint {path} is unreadable: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a format-{FORMAT} pmtl checkpoint")
    return state


def list_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint files in ``directory``, oldest epoch first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(directory: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint in ``directory`` that loads, skipping corrupt ones (with a warning)."""
    for path in reversed(list_checkpoints(directory)):
        try:
            load(path)
        except CheckpointError as exc:
            log.warning("skipping checkpoint: %s", exc)
            continue
        return path
    return None


def prune(directory: str | os.PathLike[str], keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    files = list_checkpoints(directory)
    for path in files[: max(len(files) - keep, 0)]:
        path.unlink(missing_ok=True)


History = dict[str, list[torch.Tensor]]


def _history_line(epoch: int, history: History, index: int) -> bytes:
    train = history["train"][index]
    test = history["test"][index] if len(history["test"]) > index else None
    row = {
        "epoch": epoch,
        "dtype": str(train.dtype).removeprefix("torch."),
        "train": train.tolist(),
        "test": None if test is None else test.tolist(),
    }
    # float32/float64 values survive the JSON round trip exactly (repr is shortest-exact);
    # NaN and inf of a diverged subproblem are written as NaN/Infinity, which json reads back.
    return (json.dumps(row) + "\n").encode()


def _history_lines(history: History, first: int, last: int) -> bytes:
    """Lines of epochs ``first..last`` (1-based) of ``history``."""
    return b"".join(_history_line(e, history, e - 1) for e in range(first, last + 1))


def append_history(directory: str | os.PathLike[str], history: History, first: int) -> None:
    """Append epochs ``first..len(history["train"])`` to the directory's history file, fsynced."""
    last = len(history["train"])
    if first > last:
        return
    path = Path(directory) / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(_history_lines(history, first, last))
        fh.flush()
        os.fsync(fh.fileno())


def write_history(directory: str | os.PathLike[str], history: History) -> None:
    """Replace the directory's history file (atomically) by all epochs of ``history``."""
    data = _history_lines(history, 1, len(history["train"]))
    atomic_write(Path(directory) / HISTORY_FILE, lambda fh: fh.write(data))


def read_history(directory: str | os.PathLike[str], epochs: int) -> History:
    """Epochs ``1..epochs`` of the directory's history file; ``CheckpointError`` if some are
    missing. Lines after ``epochs`` (written before a crash, after the last checkpoint) and a
    torn last line are ignored."""
    path = Path(directory) / HISTORY_FILE
    found: dict[int, dict[str, Any]] = {}
    if path.is_file():
        with open(path, "rb") as fh:
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # torn by a crash mid-append
                try:
                    row = json.loads(raw)
                except ValueError:
                    break
                if 1 <= int(row["epoch"]) <= epochs:
                    found[int(row["epoch"])] = row
    missing = [e for e in range(1, epochs + 1) if e not in found]
    if missing:
        raise CheckpointError(
            f"the loss history in {path} lacks epoch(s) {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''} needed to resume after epoch {epochs}"
        )
    out: History = {"train": [], "test": []}
    for e in range(1, epochs + 1):
        row = found[e]
        dtype = getattr(torch, row["dtype"])
        out["train"].append(torch.tensor(row["train"], dtype=dtype))
        if row["test"] is not None:
            out["test"].append(torch.tensor(row["test"], dtype=dtype))
    return out


def sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
