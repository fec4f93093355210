"""Devices of a local worker: which slots to run, and the environment of a slot's training process.

A training process sees only its own device, and no credentials: it talks to the database only
through its supervisor, so the database URL, passwords and tokens are left out of its
environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

__all__ = ["SECRET_VARIABLES", "child_environment", "parse_devices", "scrub_secrets"]

#: Variables never passed to a training process (exact names).
SECRET_VARIABLES = frozenset(
    {"PMTL_DATABASE_URL", "DATABASE_URL", "PGPASSWORD", "PGPASSFILE", "PMTL_TOKEN"}
)
#: Name fragments of variables never passed to a training process (upper case).
_SECRET_MARKERS = ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATE_KEY")


def parse_devices(devices: Sequence[str] | str = "auto") -> list[str]:
    """Slots to run: ``auto`` (every visible GPU, else the CPU), ``cpu``, ``cuda:0,cuda:1``."""
    items = devices.split(",") if isinstance(devices, str) else list(devices)
    names = [d.strip().lower() for d in items if d.strip()]
    if not names:
        raise ValueError("no device given; use cpu, auto or cuda:N[,cuda:M…]")
    if names == ["auto"]:
        count = _gpu_count()
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    out = []
    for name in names:
        if name == "cpu":
            out.append("cpu")
            continue
        index = name.removeprefix("cuda").removeprefix(":") or "0"
        if not name.startswith("cuda") or not index.isdigit():
            raise ValueError(f"unknown device {name!r}; use cpu, auto or cuda:N")
        count = _gpu_count()
        if int(index) >= count:
            raise ValueError(f"device {name!r} requested but {count} GPU(s) are visible")
        out.append(f"cuda:{int(index)}")
    duplicates = sorted({d for d in out if d != "cpu" and out.count(d) > 1})
    if duplicates:
        raise ValueError(f"each GPU takes one slot; {duplicates} given more than once")
    return out


def _gpu_count() -> int:
    import torch  # only when GPUs are asked about: the supervisor itself never trains

    return torch.cuda.device_count()


def scrub_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the database URL, passwords, secrets and tokens."""
    return {
        key: value
        for key, value in env.items()
        if key.upper() not in SECRET_VARIABLES
        and not any(marker in key.upper() for marker in _SECRET_MARKERS)
    }


def child_environment(
    device: str, base: Mapping[str, str] | None = None
) -> tuple[dict[str, str], str]:
    """The environment of a training process for ``device`` and the device it then uses.

    A GPU slot sees only its GPU (``CUDA_VISIBLE_DEVICES`` maps ``cuda:N`` of this process,
    honouring an inherited mask) and trains on ``cuda:0``; a CPU slot sees no GPU at all.
    Credentials are removed (:func:`scrub_secrets`).
    """
    env = scrub_secrets(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        return env, "cpu"
    index = int(device.split(":")[1])
    inherited = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    env["CUDA_VISIBLE_DEVICES"] = inherited[index] if index < len(inherited) else str(index)
    return env, "cuda:0"
