"""What the headers and lists say about live work: progress inside an epoch and queue places.

Pure functions of the API's ``EpochProgress`` and ``QueuePlace`` (no Streamlit), shared by the
run page and the Runs list so that both word the same state the same way.
"""

from __future__ import annotations

import math

from frontend.lib.models import EpochProgress, QueuePlace

__all__ = ["about", "current_in_epoch", "in_epoch_text", "ordinal", "queue_text"]


def about(seconds: float) -> str:
    """A rough duration for an estimate: ``~40 s``, ``~2 min``, ``~3 h 10 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"~{max(5, 5 * math.ceil(seconds / 5))} s"
    if seconds < 3600:
        return f"~{math.ceil(seconds / 60)} min"
    hours, minutes = divmod(math.ceil(seconds / 60), 60)
    return f"~{hours} h {minutes:02d} min"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``11th``, ``22nd``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def current_in_epoch(progress: EpochProgress | None, epoch_done: int) -> EpochProgress | None:
    """``progress`` if it is about the epoch after ``epoch_done`` (the one the chart reached),
    else None: a report the chart has already overtaken, or one ahead of it, is not shown."""
    if progress is None or progress.epoch != epoch_done + 1:
        return None
    return progress


def in_epoch_text(progress: EpochProgress) -> str:
    """``epoch 4: batch 120/469 (26%) · 1,024 samples/s · ~2 min left in this epoch`` (a
    function problem counts steps, and its speed is in steps/s)."""
    p = progress
    unit = p.unit
    parts = [f"epoch {p.epoch}: {unit} {p.batch}/{p.batches} ({p.fraction * 100:.0f}%)"]
    if p.samples_per_s is not None:
        parts.append(f"{p.samples_per_s:,.0f} samples/s")
    elif p.batches_per_s is not None:
        parts.append(f"{p.batches_per_s:.3g} {'steps' if unit == 'step' else 'batches'}/s")
    else:
        parts.append("measuring speed")
    if p.seconds_left is not None:
        parts.append(f"{about(p.seconds_left)} left in this epoch")
    if p.job_seconds_left is not None:
        parts.append(f"{about(p.job_seconds_left)} to the last epoch")
    return " · ".join(parts)


def queue_text(place: QueuePlace) -> str:
    """``2nd in line (1 job ahead) · waits behind 1 running job (run #2)``."""
    if place.position == 1:
        line = "next in line"
    else:
        ahead = place.position - 1
        line = f"{ordinal(place.position)} in line ({ahead} job{'s' if ahead > 1 else ''} ahead)"
    if not place.running_jobs:
        return f"{line} · no job is running: it starts when a worker polls (is one up?)"
    runs = ", ".join(f"#{r}" for r in place.running_run_ids)
    plural = "s" if place.running_jobs > 1 else ""
    label = "runs" if len(place.running_run_ids) > 1 else "run"
    return f"{line} · waits behind {place.running_jobs} running job{plural} ({label} {runs})"
