"""A size-capped cache directory: least recently used entries are evicted to make room.

Built data sets (the MultiMNIST family, up to a few GB per seed and size) are cached as files
under one directory. :func:`make_room` is called before a new entry is written: it evicts the
least recently used entries until the new one fits under the cap, and removes temporary files
left by interrupted writes. :func:`touch` marks an entry used (its modification time: access
times are often not kept). An entry is a data file plus its side files (``name.*``, such as
the ``name.sha256`` checksum), evicted together.

The cap comes from the caller, else ``$PMTL_CACHE_MAX_GB`` (default :data:`DEFAULT_MAX_GB`);
0 means no cap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DEFAULT_MAX_GB", "default_max_bytes", "make_room", "touch"]

log = logging.getLogger(__name__)

#: Size cap of the cache directory when neither the caller nor the environment sets one.
DEFAULT_MAX_GB = 20.0
#: A temporary file older than this (seconds) is debris of an interrupted write.
STALE_TMP_SECONDS = 3600.0


def default_max_bytes() -> int:
    """``$PMTL_CACHE_MAX_GB`` (else :data:`DEFAULT_MAX_GB`) in bytes; 0 means no cap."""
    text = os.environ.get("PMTL_CACHE_MAX_GB", "").strip()
    try:
        gb = float(text) if text else DEFAULT_MAX_GB
    except ValueError:
        raise ValueError(f"PMTL_CACHE_MAX_GB must be a number of GB, got {text!r}") from None
    if gb < 0:
        raise ValueError(f"PMTL_CACHE_MAX_GB must be >= 0, got {gb}")
    return int(gb * 1e9)


def touch(path: Path) -> None:
    """Mark the entry ``path`` as just used (best effort)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _entries(root: Path) -> dict[Path, tuple[float, int, list[Path]]]:
    """Data file → (last use, total size with side files, its files); temp files excluded."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp")]
    names = set(files)
    entries: dict[Path, tuple[float, int, list[Path]]] = {}
    for path in files:
        # A side file ``x.safetensors.sha256`` belongs to ``x.safetensors`` when that exists.
        owner = path.with_suffix("") if path.with_suffix("") in names else path
        try:
            stat = path.stat()
        except OSError:
            continue
        used, size, members = entries.get(owner, (0.0, 0, []))
        if owner == path:
            used = stat.st_mtime
        entries[owner] = (used, size + stat.st_size, [*members, path])
    return entries


def _remove_stale_tmp(root: Path, now: float) -> None:
    for path in root.rglob("*.tmp"):
        try:
            if now - path.stat().st_mtime > STALE_TMP_SECONDS:
                path.unlink()
                log.info("removed the stale temporary file %s", path)
        except OSError:
            pass


def make_room(
    root: Path, incoming: int, *, max_bytes: int | None = None, keep: Iterable[Path] = ()
) -> bool:
    """Evict least recently used entries under ``root`` until ``incoming`` more bytes fit
    under the cap; False (nothing evicted) when ``incoming`` alone is larger than the cap.

    Entries in ``keep`` are never evicted. Concurrent users of the directory are tolerated:
    files that vanish meanwhile are skipped.
    """
    cap = default_max_bytes() if max_bytes is None else max_bytes
    root = Path(root)
    if not root.is_dir():
        return cap <= 0 or incoming <= cap
    _remove_stale_tmp(root, time.time())
    if cap <= 0:
        return True
    if incoming > cap:
        return False
    kept = {Path(p) for p in keep}
    entries = _entries(root)
    total = sum(size for _, size, _ in entries.values())
    for owner, (_, size, members) in sorted(entries.items(), key=lambda item: item[1][0]):
        if total + incoming <= cap:
            break
        if owner in kept:
            continue
        for member in members:
            with contextlib.suppress(OSError):
                member.unlink()
        total -= size
        log.info("evicted %s (%.1f MB) from the cache (cap %.1f GB)", owner, size / 1e6, cap / 1e9)
    return True
