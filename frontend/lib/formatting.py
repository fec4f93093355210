"""Small text formatters shared by the pages (status labels, vectors, numbers, durations)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

__all__ = [
    "STATUS_COLOUR",
    "duration",
    "file_size",
    "number",
    "status_badge",
    "vector",
    "when",
]

#: Streamlit markdown colour of each run/job state.
STATUS_COLOUR = {
    "queued": "gray",
    "running": "blue",
    "finished": "green",
    "failed": "red",
    "cancelled": "orange",
}


def status_badge(status: str) -> str:
    """``running`` as a coloured Streamlit-markdown badge."""
    return f":{STATUS_COLOUR.get(status, 'gray')}-badge[{status}]"


def number(value: float | None, digits: int = 4) -> str:
    """A compact number, ``—`` for missing or non-finite values."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    return f"{float(value):.{digits}g}"


def vector(values: Sequence[float], digits: int = 3) -> str:
    """``(0.707, 0.707)``."""
    return "(" + ", ".join(f"{float(v):.{digits}f}" for v in values) + ")"


def duration(seconds: float | None) -> str:
    """``75`` → ``1 min 15 s``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(moment: datetime | None) -> str:
    """A timestamp as ``2025-01-31 14:05`` (UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "—"


def file_size(n_bytes: int) -> str:
    """``1536`` → ``1.5 KiB`` (binary units, as ``PMTL_MAX_UPLOAD_MB`` counts them)."""
    size = float(max(0, n_bytes))
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
