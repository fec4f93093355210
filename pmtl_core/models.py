"""Multi-task models: a shared encoder, one head per task, rebuilt from a JSON config.

``MultiTaskModel.forward(x)`` returns ``(z, [out_1 … out_m])``: the shared representation ``z``
(MGDA-UB differentiates the losses with respect to it) and every head's output. Two encoders:

- ``lenet``: the shared LeNet-style encoder of the Pareto MTL paper (Lin et al., 2019) for
  ``1 x 36 x 36`` MultiMNIST images — conv 9x9 (10 channels), ReLU, max-pool 2, conv 5x5
  (20 channels), ReLU, max-pool 2, flatten, linear to 50, ReLU; ``width`` multiplies the
  channel counts (the representation stays 50 wide, so the heads do not change),
- ``mlp``: linear layers with ReLU for tabular problems.

No normalisation layer carries running statistics (no BatchNorm): the engine trains K models as
one by ``torch.func.functional_call`` + ``vmap`` over stacked parameters, where a buffer updated
in place during the forward pass cannot be batched, and batch statistics would make one
sample's output depend on the rest of its batch. Every model here is a pure function of its
parameters and its input.

>>> import torch
>>> model = build_model({"encoder": {"type": "lenet"}, "heads": [10, 10]})
>>> z, outs = model(torch.zeros(4, 1, 36, 36))
>>> tuple(z.shape), [tuple(o.shape) for o in outs]
((4, 50), [(4, 10), (4, 10)])
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor, nn

__all__ = [
    "LeNetConfig",
    "MLPConfig",
    "ModelConfig",
    "MultiTaskModel",
    "build_model",
    "lenet_encoder",
    "mlp_encoder",
]


class MultiTaskModel(nn.Module):
    """A shared ``encoder`` followed by one head per task (``heads``, an ``nn.ModuleList``)."""

    def __init__(self, encoder: nn.Module, heads: Sequence[nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("a multi-task model needs at least one head")
        self.encoder = encoder
        self.heads = nn.ModuleList(heads)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The representation ``z (B, r)`` and each head's output, e.g. logits ``(B, C_i)``."""
        z = self.encoder(x)
        return z, [head(z) for head in self.heads]


def _channels(base: int, width: float) -> int:
    return max(1, round(base * width))


def lenet_encoder(
    width: float = 1.0, *, image_size: int = 36, in_channels: int = 1, features: int = 50
) -> nn.Sequential:
    """The Pareto MTL paper's LeNet-style encoder; ``width`` scales its channel counts."""
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    side = ((image_size - 8) // 2 - 4) // 2  # after conv 9, pool 2, conv 5, pool 2
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for the LeNet encoder (min 20)")
    c1, c2 = _channels(10, width), _channels(20, width)
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, kernel_size=9),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * side * side, features),
        nn.ReLU(),
    )


def mlp_encoder(
    in_features: int, hidden: Sequence[int] = (64,), out: int = 32, *, out_relu: bool = True
) -> nn.Sequential:
    """Linear layers ``in_features → hidden… → out``, each followed by a ReLU (the last one
    only if ``out_relu``: a very narrow representation is safer linear, since a ReLU unit that
    dies there cuts the heads off)."""
    sizes = [in_features, *hidden, out]
    if any(s < 1 for s in sizes):
        raise ValueError(f"layer sizes must be positive, got {sizes}")
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*(layers if out_relu else layers[:-1]))


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeNetConfig(_Config):
    """Config of :func:`lenet_encoder`."""

    type: Literal["lenet"] = "lenet"
    width: float = Field(1.0, gt=0, le=64)
    image_size: int = Field(36, ge=20)
    in_channels: int = Field(1, ge=1)
    features: int = Field(50, ge=1)


class MLPConfig(_Config):
    """Config of :func:`mlp_encoder`."""

    type: Literal["mlp"] = "mlp"
    in_features: int = Field(ge=1)
    hidden: tuple[Annotated[int, Field(ge=1)], ...] = (64,)
    out: int = Field(32, ge=1)
    out_relu: bool = True


class ModelConfig(_Config):
    """A whole model: the encoder and the output size of each task's linear head."""

    encoder: Annotated[LeNetConfig | MLPConfig, Field(discriminator="type")]
    heads: tuple[Annotated[int, Field(ge=1)], ...] = Field(min_length=1)
    #: the table problem's fitted input/target encoding (not part of the network; kept out of
    #: dumps, read by pmtl_core.load_predictor from the config itself)
    preprocessing: dict[str, Any] | None = Field(None, exclude=True)


def build_model(config: dict[str, Any] | ModelConfig) -> MultiTaskModel:
    """Build the model described by a JSON-able config (``ValueError`` if it is malformed)."""
    try:
        cfg = config if isinstance(config, ModelConfig) else ModelConfig.model_validate(config)
    except ValidationError as exc:
        raise ValueError(f"invalid model config: {exc}") from None
    enc = cfg.encoder
    if isinstance(enc, LeNetConfig):
        encoder = lenet_encoder(
            enc.width, image_size=enc.image_size, in_channels=enc.in_channels, features=enc.features
        )
        rep = enc.features
    else:
        encoder = mlp_encoder(enc.in_features, enc.hidden, enc.out, out_relu=enc.out_relu)
        rep = enc.out
    return MultiTaskModel(encoder, [nn.Linear(rep, n) for n in cfg.heads])
