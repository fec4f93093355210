"""One chosen model out of a stacked checkpoint: a safetensors file plus a JSON config.

``export_model`` cuts model ``index`` out of a checkpoint of K stacked models and writes
``model.safetensors`` (its parameters, nothing executable) and ``config.json`` (problem, model
architecture, task names, preference, method, epoch and its last losses). ``load_model``
rebuilds the ``nn.Module`` from the two, so a downloaded model needs only ``pmtl_core``:

    model = load_model("config.json", "model.safetensors")
    z, outputs = model(images)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from pmtl_core import checkpoints
from pmtl_core.front import write_json_atomic

__all__ = ["PointModel", "export_model", "load_model", "model_config"]

CONFIG_FORMAT = 1


class PointModel(nn.Module):
    """The solution of a function problem: a parameter vector ``x (d,)``; calling it returns x."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.zeros(dim))

    def forward(self) -> Tensor:
        return self.x


def model_config(state: dict[str, Any], index: int) -> dict[str, Any]:
    """The JSON config of model ``index`` of a loaded checkpoint."""
    k = state["preferences"].shape[0]
    if not 0 <= index < k:
        raise ValueError(f"checkpoint holds {k} models; index {index} is out of range")
    losses = {}
    for split, hist in state["history"].items():
        if hist:
            losses[split] = hist[-1][index].tolist()
    return {
        "format": CONFIG_FORMAT,
        "kind": state["kind"],
        "problem": state["problem"],
        "problem_options": state.get("meta", {}).get("problem_options", {}),
        "model": state["model_config"],
        "task_names": list(state["task_names"]),
        "preference": state["preferences"][index].tolist(),
        "index": index,
        "method": state["method"],
        "method_params": state["method_params"],
        "epoch": int(state["epoch"]),
        "losses": losses,
        "diverged": not bool(state["alive"][index]),
    }


def export_model(
    checkpoint: str | os.PathLike[str], index: int, out_dir: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Write ``config.json`` and ``model.safetensors`` for model ``index``; return both paths."""
    state = checkpoints.load(checkpoint)
    config = model_config(state, index)
    trainer = state["trainer"]
    if state["kind"] == "function":
        tensors = {"x": trainer["x"][index].contiguous()}
    else:
        tensors = {n: t[index].contiguous() for n, t in trainer["params"].items()}
        tensors.update({n: t[index].contiguous() for n, t in trainer.get("buffers", {}).items()})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "model.safetensors"
    tmp = out / ".model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pmtl", "problem": config["problem"]})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, weights)
    config_path = out / "config.json"
    write_json_atomic(config_path, config)
    return config_path, weights


def load_model(
    config: dict[str, Any] | str | os.PathLike[str], weights: bytes | str | os.PathLike[str]
) -> nn.Module:
    """Rebuild an exported model (in eval mode) from its config and safetensors weights."""
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text())
    if config.get("format") != CONFIG_FORMAT:
        raise ValueError(f"unsupported model config format {config.get('format')!r}")
    tensors = (
        load_safetensors_bytes(weights)
        if isinstance(weights, bytes | bytearray)
        else load_file(str(weights))
    )
    if config["kind"] == "function":
        model: nn.Module = PointModel(int(config["model"]["dim"]))
    else:
        from pmtl_core.models import build_model

        model = build_model(config["model"])
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights do not match the config: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    return model.eval()
