"""Checkpoint files: atomic writes, discovery of the newest loadable one, and checksums.

A checkpoint is one ``torch.save`` file per epoch, ``ckpt-epoch{E:04d}.pt``, holding everything
needed to continue bit-identically: the K stacked models, optimiser, scheduler, method state,
all random-number-generator states and the metric history. Files are written to a temporary
name in the same directory, fsynced and renamed, so a crash leaves either the old or the new
file, never half of one; the directory is fsynced too so the rename survives power loss.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from pmtl_core.atomic import atomic_write

__all__ = ["FORMAT", "CheckpointError", "latest", "list_checkpoints", "load", "save", "sha256"]

FORMAT = 1
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


def sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
