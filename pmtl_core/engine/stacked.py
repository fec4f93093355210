"""K models of one architecture held as one stacked model, and their per-task gradients.

The K models of a run are independent, so their parameters are stacked along a leading
dimension (``torch.func.stack_module_state``) and evaluated in one call with ``torch.func.vmap``
over ``functional_call``: convolutions become grouped convolutions and linear layers batched
matmuls, and every batch is read once for all K models. On the CPU, grouped convolutions are
about twice as slow as K ordinary ones (``bench/train_throughput.py``), so there the encoder is
run per model on views of the stacked parameters (``encoder="loop"``); the parameters,
gradients, optimiser and everything downstream stay stacked either way.

Because the models do not share parameters, the gradient of ``sum_k L_{k,t}`` is every
model's task-``t`` gradient at once: ``m`` backward passes give all ``K x m`` task gradients,
and ``K`` Gram matrices ``(K, m, m)`` follow from batched matmuls over the flattened
shared-parameter gradients. With ``grad_target="representation"`` (MGDA-UB) the task gradients
are taken with respect to the encoder output only, so each of the ``m`` passes stops at the
heads and one weighted backward through the encoder follows.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = ["EncoderStrategy", "StackedModels", "mix_stacked"]

#: How the K encoders are evaluated: ``vmap`` (grouped kernels, best on GPUs), ``loop`` (one
#: call per model on views of the stacked parameters, best on CPUs), ``auto`` picks by device.
EncoderStrategy = Literal["auto", "vmap", "loop"]


@torch.no_grad()
def mix_stacked(t: Tensor, matrix: Tensor) -> None:
    """In place: ``t[k] = sum_j matrix[k, j] t[j]`` for a stacked tensor ``t (K, ...)``."""
    t.copy_(torch.einsum("kj,j...->k...", matrix.to(t), t))


def _sub(params: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


class StackedModels:
    """K copies of a ``MultiTaskModel`` (encoder + heads) held as stacked ``(K, ...)`` tensors."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        device: torch.device,
        encoder: EncoderStrategy = "auto",
    ) -> None:
        if encoder not in ("auto", "vmap", "loop"):
            raise ValueError(f"encoder strategy must be auto, vmap or loop, not {encoder!r}")
        if not models:
            raise ValueError("need at least one model to stack")
        for attr in ("encoder", "heads"):
            if not hasattr(models[0], attr):
                raise TypeError(
                    f"models must have `encoder` and `heads` (MultiTaskModel); missing {attr!r}"
                )
        self.k = len(models)
        self.n_tasks = len(models[0].heads)
        self.template = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state(list(models))
        self.params = {n: p.detach().to(device).requires_grad_(True) for n, p in params.items()}
        self.buffers = {n: b.detach().to(device) for n, b in buffers.items()}
        self.shared = [n for n in self.params if n.startswith("encoder.")]
        if not self.shared:
            raise ValueError("the encoder has no parameters: nothing is shared between tasks")
        if encoder == "auto":
            encoder = "loop" if torch.device(device).type == "cpu" else "vmap"
        self.encoder_strategy = encoder

    # ------------------------------------------------------------------ forward

    def encode(self, x: Tensor) -> Tensor:
        """Encoder outputs ``(K, B, ...)`` of the shared input batch ``x (B, ...)``."""

        def run(p: dict[str, Tensor], b: dict[str, Tensor]) -> Tensor:
            return functional_call(self.template.encoder, (p, b), (x,))

        params, buffers = _sub(self.params, "encoder."), _sub(self.buffers, "encoder.")
        if self.encoder_strategy == "vmap":
            return vmap(run, randomness="different")(params, buffers)
        return torch.stack(
            [
                run({n: v[k] for n, v in params.items()}, {n: v[k] for n, v in buffers.items()})
                for k in range(self.k)
            ]
        )

    def heads(self, z: Tensor) -> list[Tensor]:
        """Per-task outputs, each ``(K, B, ...)``, from encoder outputs ``z (K, B, ...)``."""
        outs = []
        for t, head in enumerate(self.template.heads):
            prefix = f"heads.{t}."

            def run(p: dict[str, Tensor], b: dict[str, Tensor], zk: Tensor, head=head) -> Tensor:
                return functional_call(head, (p, b), (zk,))

            outs.append(
                vmap(run, randomness="different")(
                    _sub(self.params, prefix), _sub(self.buffers, prefix), z
                )
            )
        return outs

    # ------------------------------------------------------------------ gradients

    def task_grams_exact(
        self, losses: Tensor, over: Literal["shared", "all"] = "shared"
    ) -> tuple[Tensor, list[list[Tensor | None]]]:
        """Gram matrices ``(K, m, m)`` and every parameter's per-task gradients (``grads[t][j]``
        for parameter ``j``; ``None`` where task ``t`` does not reach it), from ``m`` backward
        passes. ``over``: the Gram covers the shared parameters, or ``all`` of them (each
        task's gradient with its own head, as Pareto MTL's reference code takes it)."""
        names = list(self.params)
        tensors = [self.params[n] for n in names]
        grads: list[list[Tensor | None]] = []
        for t in range(self.n_tasks):
            g = torch.autograd.grad(
                losses[:, t].sum(), tensors, retain_graph=t < self.n_tasks - 1, allow_unused=True
            )
            grads.append(list(g))
        gram = losses.new_zeros(self.k, self.n_tasks, self.n_tasks)
        for j, name in enumerate(names):
            if over == "shared" and name not in self.shared:
                continue
            flat = torch.stack(
                [
                    g[j].reshape(self.k, -1)
                    if g[j] is not None
                    else tensors[j].new_zeros(self.k, tensors[j][0].numel())
                    for g in grads
                ],
                dim=1,
            )  # (K, m, n_j)
            gram = gram + flat @ flat.transpose(1, 2)
        return gram, grads

    def task_grams_representation(self, losses: Tensor, z: Tensor) -> Tensor:
        """Gram matrices ``(K, m, m)`` of the task gradients w.r.t. the encoder output ``z``."""
        flat = torch.stack(
            [
                torch.autograd.grad(losses[:, t].sum(), z, retain_graph=True)[0].reshape(self.k, -1)
                for t in range(self.n_tasks)
            ],
            dim=1,
        )
        return flat @ flat.transpose(1, 2)

    def set_combined_grads(
        self, grads: list[list[Tensor | None]], alpha: Tensor, alive: Tensor
    ) -> None:
        """``param.grad = sum_t alpha[:, t] * grads[t]`` per model; zero for dead models."""
        for j, p in enumerate(self.params.values()):
            total = None
            for t in range(self.n_tasks):
                g = grads[t][j]
                if g is None:
                    continue
                term = alpha[:, t].reshape(-1, *([1] * (g.dim() - 1))).to(g.dtype) * g
                total = term if total is None else total + term
            if total is None:
                total = torch.zeros_like(p)
            p.grad = self._mask(total, alive)

    def mask_grads(self, alive: Tensor) -> None:
        """Zero the gradients of dead (diverged) models, NaNs included."""
        for p in self.params.values():
            if p.grad is not None:
                p.grad = self._mask(p.grad, alive)

    @staticmethod
    def _mask(g: Tensor, alive: Tensor) -> Tensor:
        return torch.where(alive.reshape(-1, *([1] * (g.dim() - 1))), g, torch.zeros_like(g))

    # ------------------------------------------------------------------ parameters

    @torch.no_grad()
    def load_model(self, k: int, state: dict[str, Tensor]) -> None:
        """Overwrite model ``k`` with a single model's parameters and buffers."""
        for name, tensor in (*self.params.items(), *self.buffers.items()):
            if name not in state:
                raise ValueError(f"warm-start state lacks {name!r}")
            if state[name].shape != tensor.shape[1:]:
                raise ValueError(
                    f"warm-start tensor {name!r} has shape {tuple(state[name].shape)}, "
                    f"expected {tuple(tensor.shape[1:])}"
                )
            tensor[k].copy_(state[name])

    def model_state(self, k: int) -> dict[str, Tensor]:
        """Parameters and buffers of model ``k`` (detached, on CPU)."""
        out = {n: p[k].detach().cpu().clone() for n, p in self.params.items()}
        out.update({n: b[k].detach().cpu().clone() for n, b in self.buffers.items()})
        return out

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {
            "params": {n: p.detach().cpu() for n, p in self.params.items()},
            "buffers": {n: b.cpu() for n, b in self.buffers.items()},
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, dict[str, Tensor]]) -> None:
        for group, own in (("params", self.params), ("buffers", self.buffers)):
            theirs = state[group]
            if set(theirs) != set(own):
                raise ValueError(f"checkpoint {group} do not match this model's architecture")
            for n, t in own.items():
                if theirs[n].shape != t.shape:
                    raise ValueError(
                        f"checkpoint tensor {n!r} has shape {tuple(theirs[n].shape)}, "
                        f"expected {tuple(t.shape)}"
                    )
                t.copy_(theirs[n])
