"""Checkpoint state of a run: where to resume from, whether it fits, one model out of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pmtl_core import checkpoints
from pmtl_core.methods import Method

__all__ = ["check_compatible", "model_from_checkpoint", "resume_path"]


def resume_path(resume: bool | str | Path, checkpoint_dir: str | Path | None) -> Path | None:
    if isinstance(resume, str | Path):
        return Path(resume)
    if resume and checkpoint_dir is not None:
        return checkpoints.latest(checkpoint_dir)
    return None


def check_compatible(state: dict[str, Any], problem: Any, cls: type[Method], prefs: Tensor) -> None:
    if state["problem"] != problem.name or state["method"] != cls.name:
        raise ValueError(
            f"checkpoint is for {state['method']} on {state['problem']}, "
            f"not {cls.name} on {problem.name}"
        )
    if state["preferences"].shape != prefs.shape or not torch.allclose(
        state["preferences"].float(), prefs.cpu().float(), atol=1e-6
    ):
        raise ValueError("checkpoint was trained with other preference vectors")


def model_from_checkpoint(state: dict[str, Any], index: int) -> dict[str, Tensor]:
    """Model ``index`` of a checkpoint as a single model's state (for warm starts)."""
    trainer = state["trainer"]
    k = state["preferences"].shape[0]
    if not 0 <= index < k:
        raise ValueError(f"checkpoint holds {k} models; index {index} is out of range")
    if state["kind"] == "function":
        return {"x": trainer["x"][index]}
    out = {n: t[index] for n, t in trainer["params"].items()}
    out.update({n: t[index] for n, t in trainer.get("buffers", {}).items()})
    return out
