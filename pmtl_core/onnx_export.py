"""ONNX export of a downloaded data-set model: its numeric input to one output per task.

``export_onnx(config, weights)`` rebuilds the network with :func:`pmtl_core.load_model` and
writes it with ``torch.onnx.export`` (the ``torch.export`` based exporter; needs the ``onnx``
and ``onnxscript`` packages, the ``onnx`` extra). The graph has one input ``input``: the
preprocessed features ``(N, F)`` of a table model (see
:meth:`pmtl_core.predictor.Predictor.inputs`) or images ``(N, C, H, W)`` of a LeNet model, with
a dynamic batch size; and one output per task, named by the task: logits ``(N, C)`` or a
standardised regression value ``(N, 1)``. The preprocessing stays in ``config.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from pmtl_core.export import load_model

__all__ = ["export_onnx", "input_shape"]

OPSET = 18


class _Heads(nn.Module):
    """The model without its representation output: input → (head_1, …, head_m)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        _, outs = self.model(x)
        return tuple(outs)


def input_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """The shape of one input sample of the model described by ``config``."""
    encoder = config["model"]["encoder"]
    if encoder["type"] == "mlp":
        return (int(encoder["in_features"]),)
    side = int(encoder.get("image_size", 36))
    return (int(encoder.get("in_channels", 1)), side, side)


def export_onnx(
    config: dict[str, Any] | str | os.PathLike[str],
    weights: bytes | str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
) -> bytes:
    """The ONNX model as bytes (also written to ``path`` when given); ``ValueError`` for a
    function problem's solution, which is a parameter vector, not a network."""
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text(encoding="utf-8"))
    if config.get("kind") != "dataset":
        raise ValueError(
            f"only models of data-set problems export to ONNX; {config.get('problem')!r} is a "
            f"{config.get('kind')} problem whose solution is a parameter vector"
        )
    model = _Heads(load_model(config, weights)).eval()
    example = torch.zeros(2, *input_shape(config))
    names = [str(t) for t in config["task_names"]]
    program = torch.onnx.export(
        model,
        (example,),
        None,
        input_names=["input"],
        output_names=names,
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        opset_version=OPSET,
        dynamo=True,
        verbose=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "model.onnx"
        program.save(str(target))
        data = target.read_bytes()
    if path is not None:
        Path(path).write_bytes(data)
    return data
