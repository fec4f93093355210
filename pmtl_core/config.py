"""``EngineConfig``: the training settings shared by the library, the CLI, the API and workers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

__all__ = ["API_FIELDS", "EngineConfig", "make_config"]


class EngineConfig(BaseModel):
    """How the K subproblems of one run are trained (defaults: the Pareto MTL paper's setup)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(100, ge=1, le=100_000, description="passes over the training data")
    batch_size: int = Field(256, ge=1, le=65_536, description="samples per step")
    lr: float = Field(1e-3, gt=0.0, le=100.0, description="learning rate")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="L2 penalty")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="optimiser")
    lr_step: int = Field(15, ge=0, description="epochs between learning-rate decays (0: never)")
    lr_gamma: float = Field(0.5, gt=0.0, le=1.0, description="learning-rate decay factor")
    lr_milestones: list[PositiveInt] = Field(
        default_factory=list,
        max_length=1000,
        description="epochs after which the learning rate is multiplied by lr_gamma "
        "(replaces lr_step when given; the paper: 15, 30, 45, 60, 75, 90 of 100)",
    )
    steps_per_epoch: int = Field(
        20, ge=1, le=100_000, description="steps per reported epoch (function problems)"
    )
    eval_batch_size: int = Field(2048, ge=1, le=1_000_000, description="samples per eval batch")
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, le=1000, description="newest checkpoints kept")
    device: str = Field("auto", description="cpu, cuda, cuda:N or auto")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of data order and initialisation")


#: Fields a run submitted through the API may set (device, seed and checkpointing belong to
#: the worker and the run itself).
API_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "optimizer",
    "lr_step",
    "lr_gamma",
    "steps_per_epoch",
)


def make_config(*layers: dict[str, Any] | EngineConfig | None) -> EngineConfig:
    """Merge settings left to right (later wins) over the defaults and validate the result."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is None:
            continue
        merged.update(layer.model_dump() if isinstance(layer, EngineConfig) else layer)
    return EngineConfig.model_validate(merged)
