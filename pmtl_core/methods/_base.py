"""The shared interface of all multi-objective methods.

A :class:`Method` is configured once with the preference vectors of the K subproblems it
drives and its typed hyperparameters (a pydantic model, which is what the REST API validates and
the UI renders as a form). At every iteration it maps the K subproblems' losses ``(K, m)`` and,
when it needs them, the Gram matrices of their per-task gradients ``(K, m, m)`` to task weights
``alpha (K, m)``: the caller then descends along ``sum_i alpha_ki grad L_ki`` for each k (for
example by back-propagating ``sum_k sum_i alpha_ki L_ki`` with ``alpha`` detached). Methods never
see parameters or models, so the same code serves the synthetic ``solve`` loop and the training
engine. Everything stays on the device of the inputs; no host synchronisation happens here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from pmtl_core.preferences import validate

__all__ = ["GradTarget", "Method", "MethodParams"]

GradTarget = Literal["shared", "representation"]


class MethodParams(BaseModel):
    """Base of every method's hyperparameters: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Method(ABC):
    """Maps losses ``(K, m)`` and gradient Gram matrices ``(K, m, m)`` to task weights ``(K, m)``.

    Class attributes describe the method to the engine, the API and the UI:

    - ``name``: the registry key; ``summary``: one line for humans.
    - ``needs_gram``: whether :meth:`forward` reads the Gram matrices (if not, the engine skips
      the per-task backward passes and runs one backward of the weighted loss).
    - ``uses_preferences``: whether the preference vectors change what is solved.
    - ``couples_subproblems``: whether the K subproblems exchange parameters (see :meth:`mixing`),
      so they must be trained together in one job.
    - ``warm_startable``: whether a new preference vector may start from a neighbour's model.
    - ``gram_params``: which parameters the per-task gradients (and so the Gram matrices) cover
      on data sets: ``shared`` (the encoder) or ``all`` (every parameter a task reaches, its own
      head included, as Pareto MTL's reference code does).
    - ``shared_init``: whether the K models must start from one initialisation (MT2O transfers
      parameters between them, which only makes sense for models of one origin).
    - ``variant_of``: ``None`` for a method as its paper describes it; otherwise the name of the
      method it changes (a named variant, with its own evidence in docs/results.md).
    - ``learns_pareto_set``: one preference-conditioned model for the whole front (``psl``)
      instead of one model per preference vector.
    - ``problem_kinds``: the kinds of problem (``function``, ``dataset``) the method trains.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    needs_gram: ClassVar[bool] = True
    uses_preferences: ClassVar[bool] = True
    couples_subproblems: ClassVar[bool] = False
    warm_startable: ClassVar[bool] = True
    gram_params: ClassVar[Literal["shared", "all"]] = "shared"
    shared_init: ClassVar[bool] = False
    variant_of: ClassVar[str | None] = None
    learns_pareto_set: ClassVar[bool] = False
    problem_kinds: ClassVar[tuple[str, ...]] = ("function", "dataset")
    # names of tensor attributes that make up the method's state (checkpointed and restored)
    _state: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        preferences: Tensor,
        params: MethodParams | dict | None = None,
        *,
        all_preferences: Tensor | None = None,
    ) -> None:
        """``preferences (K, m)``: one row per subproblem; ``all_preferences (P, m)``: every
        preference of the run (Pareto MTL's sectors are cut by all of them; defaults to
        ``preferences``)."""
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params.model_validate(params)
        elif not isinstance(params, self.Params):
            raise TypeError(
                f"{self.name} expects {self.Params.__name__}, got {type(params).__name__}"
            )
        self.params = params
        device = preferences.device if isinstance(preferences, Tensor) else None
        self.preferences = validate(preferences).to(device)
        k, m = self.preferences.shape
        if all_preferences is None:
            self.all_preferences = self.preferences
        else:
            self.all_preferences = validate(all_preferences, m).to(self.preferences.device)
        self.n_subproblems, self.n_tasks = k, m
        self.step_count = torch.zeros((), dtype=torch.long, device=self.preferences.device)

    def bind(self, *, steps_per_epoch: int, total_steps: int, dataset: bool) -> None:
        """Learn the run's length before the first step (budgets counted in iterations).

        ``steps_per_epoch``: iterations per epoch; ``total_steps``: iterations of the whole run;
        ``dataset``: a data-set problem (else a function problem). Most methods ignore it.
        """
        del steps_per_epoch, total_steps, dataset

    @property
    def grad_target(self) -> GradTarget:
        """What the per-task gradients are taken with respect to: all shared parameters, or the
        shared representation (MGDA-UB's upper bound; memory independent of the encoder)."""
        return getattr(self.params, "grad_wrt", "shared")

    def __call__(self, losses: Tensor, gram: Tensor | None = None) -> Tensor:
        """Check shapes, then return task weights ``alpha (K, m)`` for this iteration."""
        k, m = self.n_subproblems, self.n_tasks
        if losses.shape != (k, m):
            raise ValueError(
                f"{self.name}: losses must have shape {(k, m)}, got {tuple(losses.shape)}"
            )
        if self.needs_gram:
            if gram is None:
                raise ValueError(f"{self.name} needs the Gram matrices of the task gradients")
            if gram.shape != (k, m, m):
                raise ValueError(
                    f"{self.name}: gram must have shape {(k, m, m)}, got {tuple(gram.shape)}"
                )
        alpha = self.forward(losses.detach(), None if gram is None else gram.detach())
        self.step_count += 1
        return alpha

    @abstractmethod
    def forward(self, losses: Tensor, gram: Tensor | None) -> Tensor:
        """Task weights ``(K, m)`` from losses ``(K, m)`` and Gram matrices ``(K, m, m)``."""

    def mixing(self, step: int, total_steps: int) -> Tensor | None:
        """A row-stochastic ``(K, K)`` matrix ``M``: iteration ``step`` of ``total_steps`` moves
        the K parameter sets to ``M θ - lr · d`` (the step from the gradients taken at ``θ``),
        or ``None`` for independent subproblems (every method but MT2O)."""
        del step, total_steps
        return None

    def state_dict(self) -> dict[str, Tensor]:
        """The method's state (phase flags, learned weights …) for checkpoints."""
        return {"step_count": self.step_count.clone()} | {
            name: getattr(self, name).clone() for name in self._state
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a state produced by :meth:`state_dict` (same K and m)."""
        for name in ("step_count", *self._state):
            if name not in state:
                raise ValueError(f"{self.name}: checkpointed method state lacks {name!r}")
            current = getattr(self, name)
            value = state[name]
            if value.shape != current.shape:
                raise ValueError(
                    f"{self.name}: state {name!r} has shape {tuple(value.shape)}, "
                    f"expected {tuple(current.shape)}"
                )
            setattr(self, name, value.to(device=current.device, dtype=current.dtype).clone())

    def to(self, device: torch.device | str) -> Method:
        """Move preferences and state to ``device`` (returns self)."""
        self.preferences = self.preferences.to(device)
        self.all_preferences = self.all_preferences.to(device)
        self.step_count = self.step_count.to(device)
        for name in self._state:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}(K={self.n_subproblems}, m={self.n_tasks}, {args})"

    def __str__(self) -> str:
        return self.name
