"""Device selection: the caller decides where tensors live; nothing is hard-coded."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (the first GPU if one is visible, else CPU).

    Raises ``ValueError`` for malformed names and for GPUs that are not there.
    """
    if isinstance(spec, torch.device):
        device = spec
    else:
        name = (spec or "auto").strip().lower()
        if name == "auto":
            return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {spec!r}; use cpu, cuda, cuda:N or auto") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but no CUDA GPU is visible")
        index = device.index if device.index is not None else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {spec!r} requested but only {torch.cuda.device_count()} GPU(s) are visible"
            )
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise ValueError(f"unsupported device type {device.type!r}; use cpu or cuda")
    return device
