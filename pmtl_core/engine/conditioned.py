"""A preference-conditioned network for data-set problems, and its plain network for one preference.

Pareto-set learning on a data set (method ``psl``) trains one network ``h(x, u)`` for every
preference ``u``. As in COSMOS (Ruchte & Grabocka, 2021), the preference enters as extra input:
``m`` constant channels beside an image (LeNet) or ``m`` extra features beside a row (MLP); the
rest is the problem's own architecture. Because the first layer is a convolution without padding
or a linear layer, a constant input contributes the same amount to every output position, so for
a fixed ``u`` the extra inputs fold exactly into the first layer's bias:

    b'(u) = b + sum_c u_c * sum_{i,j} W[:, C + c, i, j]      (convolution)
    b'(u) = b + W[:, F:] @ u                                  (linear)

:meth:`ConditionedModel.specialise` returns that plain network's weights, which load into
``problem.build_model()`` and so into :func:`pmtl_core.load_model`: a chosen trade-off downloads
as an ordinary model of the problem, with no conditioning left.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pmtl_core.models import MultiTaskModel, build_model

__all__ = ["ConditionedModel", "conditioned_config"]

FIRST = "encoder.0"
#: Samples per forward pass inside an evaluation batch (small enough to stay in cache).
_CHUNK = 512


def conditioned_config(model_config: dict[str, Any], n_tasks: int) -> dict[str, Any]:
    """The problem's model config with ``n_tasks`` more input channels (LeNet) or features (MLP)."""
    encoder = dict(model_config["encoder"])
    if encoder.get("type", "lenet") == "lenet":
        encoder["in_channels"] = int(encoder.get("in_channels", 1)) + n_tasks
    elif encoder["type"] == "mlp":
        encoder["in_features"] = int(encoder["in_features"]) + n_tasks
    else:  # pragma: no cover - ModelConfig admits only the two encoders
        raise ValueError(f"cannot condition encoder {encoder['type']!r} on a preference")
    return {**model_config, "encoder": encoder}


class ConditionedModel(nn.Module):
    """``h(x, u)``: the problem's multi-task model with the preference as ``m`` extra inputs."""

    def __init__(self, model_config: dict[str, Any], n_tasks: int) -> None:
        super().__init__()
        self.base_config = dict(model_config)
        self.n_tasks = n_tasks
        self.net: MultiTaskModel = build_model(conditioned_config(model_config, n_tasks))
        first = self.net.encoder[0]
        if isinstance(first, nn.Conv2d) and first.padding != (0, 0):
            raise ValueError("a padded first convolution cannot fold the preference into its bias")

    def forward(self, x: Tensor, u: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Outputs for inputs ``x (B, ...)`` under preferences ``u (B, m)``, one per sample."""
        u = u.to(x.dtype)
        extra = u if x.dim() == 2 else u[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.net(torch.cat([x, extra], dim=1))

    @torch.no_grad()
    def specialise(self, u: Tensor) -> dict[str, Tensor]:
        """The plain network's weights for one preference ``u (m,)``: the state of
        ``build_model(base_config)`` whose outputs equal ``h(·, u)``."""
        state = {n: t.detach().clone() for n, t in self.net.state_dict().items()}
        weight, bias = state[f"{FIRST}.weight"], state[f"{FIRST}.bias"]
        u = u.to(weight.dtype).to(weight.device)
        keep = weight.shape[1] - self.n_tasks
        extra = weight[:, keep:]
        if extra.dim() == 4:
            extra = extra.sum(dim=(-1, -2))
        state[f"{FIRST}.weight"] = weight[:, :keep].contiguous()
        state[f"{FIRST}.bias"] = bias + extra @ u
        return state

    @torch.no_grad()
    def evaluate(
        self, problem: Any, inputs: Tensor, targets: Tensor, preferences: Tensor, batch: int = 2048
    ) -> dict[str, Tensor]:
        """Mean task losses and metrics ``(n, m)`` over ``inputs`` of each preference ``(n, m)``
        (``{"losses": ..., "metric:<name>": ...}``); the preferences as given, not rescaled.

        Losses and metric sums are taken per ``batch`` of samples, as the engine's evaluation
        does. Within a batch, each chunk of inputs is transformed and sent through the first
        layer once for all preferences: a preference only shifts that layer's bias (see
        :meth:`specialise`), so only the rest of the network runs once per preference.
        """
        first = self.net.encoder[0]
        keep = first.weight.shape[1] - self.n_tasks
        weight, extra = first.weight[:, :keep].contiguous(), first.weight[:, keep:]
        if extra.dim() == 4:
            extra = extra.sum(dim=(-1, -2))
        prefs = preferences.to(first.weight.device, first.weight.dtype)
        biases = first.bias + prefs @ extra.T  # (n_prefs, out): the folded biases
        rest = self.net.encoder[1:]
        totals: list[dict[str, Tensor]] = [{} for _ in range(prefs.shape[0])]
        for start in range(0, inputs.shape[0], batch):
            x, y = inputs[start : start + batch], targets[start : start + batch]
            outs: list[list[list[Tensor]]] = [[] for _ in totals]
            for chunk in x.split(_CHUNK):
                tx = problem.transform(chunk)
                if isinstance(first, nn.Conv2d):
                    shared = nn.functional.conv2d(tx, weight, None, first.stride, 0, first.dilation)
                else:
                    shared = tx @ weight.T
                for i, bias in enumerate(biases):
                    z = rest(shared + (bias[:, None, None] if shared.dim() == 4 else bias))
                    outs[i].append([head(z) for head in self.net.heads])
            for row, chunks in zip(totals, outs, strict=True):
                out = [torch.cat(task) for task in zip(*chunks, strict=True)]
                part = {"losses": problem.task_losses(out, y) * x.shape[0]}
                part |= {f"metric:{k}": v.float() for k, v in problem.task_metrics(out, y).items()}
                for key, value in part.items():
                    row[key] = value if key not in row else row[key] + value
        n = inputs.shape[0]
        rows = [{key: value / n for key, value in row.items()} for row in totals]
        return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}

    def plain_model(self, u: Tensor) -> MultiTaskModel:
        """The plain network for preference ``u`` (eval mode)."""
        model = build_model(self.base_config)
        model.load_state_dict(self.specialise(u))
        return model.eval()
