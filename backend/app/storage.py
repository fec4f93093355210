"""The artifact store: checkpoints and exported models under one root directory.

Paths are built only from integer ids (``runs/{run_id}/jobs/{job_id}/…``), so no client string
ever becomes part of a path; every resolved path is checked to stay inside the root. Writes are
atomic (temporary file in the same directory, fsync, rename, fsync of the directory), and files
are verified against the SHA-256 recorded in their ``artifacts`` row before use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from pmtl_core.atomic import atomic_write

__all__ = ["ArtifactStore", "StorageError", "file_sha256"]

_CHUNK = 1 << 20


class StorageError(RuntimeError):
    """A path escapes the artifact root, or a file is missing or corrupt."""


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _older(path: Path, now: float, age: float) -> bool:
    """Whether ``path`` was last modified more than ``age`` seconds ago (False if gone)."""
    try:
        return now - path.stat().st_mtime > age
    except OSError:
        return False


def _check_id(value: int, what: str) -> int:
    # bool is an int subclass; a negative or non-integer id never names a directory.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StorageError(f"{what} must be a non-negative integer, got {value!r}")
    return value


class ArtifactStore:
    """Files of runs under ``root``; relative paths are what ``artifacts.path`` stores.

    ``exports_keep``: exported model epochs kept per preference (:mod:`backend.app.exports`).
    """

    def __init__(self, root: Path, exports_keep: int = 2) -> None:
        self.root = Path(root).resolve()
        self.exports_keep = max(1, exports_keep)

    # -------------------------------------------------------------- paths

    def run_dir(self, run_id: int) -> Path:
        """Directory of everything a run owns."""
        return self.resolve(f"runs/{_check_id(run_id, 'run id')}")

    def job_dir(self, run_id: int, job_id: int) -> Path:
        """Directory of one job of a run."""
        return self.resolve(
            f"runs/{_check_id(run_id, 'run id')}/jobs/{_check_id(job_id, 'job id')}"
        )

    def checkpoint_dir(self, run_id: int, job_id: int) -> Path:
        """Where the engine writes a job's checkpoints."""
        return self.job_dir(run_id, job_id) / "checkpoints"

    def model_dir(self, run_id: int, job_id: int, preference_id: int, epoch: int) -> Path:
        """Where one exported model (weights + config) of a preference at an epoch lives."""
        pref = _check_id(preference_id, "preference id")
        return self.job_dir(run_id, job_id) / "models" / str(pref) / str(_check_id(epoch, "epoch"))

    def resolve(self, relative: str | Path) -> Path:
        """Absolute path of ``relative`` under the root; ``StorageError`` if it escapes."""
        rel = Path(relative)
        if rel.is_absolute():
            raise StorageError(f"artifact paths are relative to the store root, got {rel}")
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise StorageError(f"path {relative!s} resolves outside the artifact root")
        return path

    def relative(self, path: Path) -> str:
        """The root-relative POSIX path stored in ``artifacts.path``."""
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(self.root):
            raise StorageError(f"{path} is outside the artifact root {self.root}")
        return resolved.relative_to(self.root).as_posix()

    # -------------------------------------------------------------- writes

    def write_bytes(self, relative: str | Path, data: bytes) -> tuple[str, int]:
        """Atomically write ``data``; returns (sha256, size)."""
        return self.write_chunks(relative, [data])

    def write_chunks(self, relative: str | Path, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Atomically write the concatenated ``chunks``; returns (sha256, size)."""
        target = self.resolve(relative)
        digest = hashlib.sha256()
        size = 0

        def write(handle: BinaryIO) -> None:
            nonlocal size
            for chunk in chunks:
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)

        atomic_write(target, write)
        return digest.hexdigest(), size

    def import_file(self, source: Path, relative: str | Path) -> tuple[str, int]:
        """Atomically move (same filesystem) or copy ``source`` to ``relative``; (sha256, size)."""
        target = self.resolve(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(source)
        with source.open("rb") as handle:
            sha, size = self.write_chunks(relative, iter(lambda: handle.read(_CHUNK), b""))
        source.unlink(missing_ok=True)
        return sha, size

    # -------------------------------------------------------------- reads

    def verify(self, relative: str | Path, sha256: str) -> Path:
        """The absolute path of a stored file whose SHA-256 is ``sha256``; else StorageError."""
        path = self.resolve(relative)
        if not path.is_file():
            raise StorageError(f"artifact {relative!s} is missing")
        actual = file_sha256(path)
        if actual != sha256:
            raise StorageError(f"artifact {relative!s} is corrupt (sha256 {actual} != {sha256})")
        return path

    def is_valid(self, relative: str | Path, sha256: str) -> bool:
        """Whether the file exists inside the root and matches ``sha256``."""
        try:
            self.verify(relative, sha256)
        except (StorageError, OSError):
            return False
        return True

    # -------------------------------------------------------------- deletion

    def clean_stale(self, max_age_s: float = 3600.0) -> int:
        """Remove debris under the root; the number of paths removed.

        Debris: temporary files of interrupted atomic writes (``.*.tmp``) and export scratch
        directories (``.export-*``) older than ``max_age_s`` (younger ones may be in use),
        checkpoints set aside as unusable (``*.discarded``) of the same age, and run trees
        renamed for deletion (``.deleted-*``) whose removal was interrupted.
        """
        if not self.root.is_dir():
            return 0
        now = time.time()
        removed = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            for name in list(dirnames):
                path = here / name
                if name.startswith(".deleted-") or (
                    name.startswith(".export-") and _older(path, now, max_age_s)
                ):
                    shutil.rmtree(path, ignore_errors=True)
                    dirnames.remove(name)
                    removed += 1
            for name in filenames:
                path = here / name
                stale = (name.startswith(".") and name.endswith(".tmp")) or name.endswith(
                    ".discarded"
                )
                if stale and _older(path, now, max_age_s):
                    try:
                        path.unlink()
                        removed += 1
                    except OSError:
                        pass
        return removed

    def delete_run(self, run_id: int) -> bool:
        """Remove a run's whole tree; True if something was removed."""
        directory = self.run_dir(run_id)
        if not directory.exists():
            return False
        # Rename first so a concurrent writer cannot recreate a half-deleted tree under the
        # same name, then remove the renamed copy.
        trash = directory.with_name(f".deleted-{directory.name}-{os.getpid()}-{id(self)}")
        try:
            os.replace(directory, trash)
        except OSError:
            trash = directory
        shutil.rmtree(trash, ignore_errors=True)
        return True
