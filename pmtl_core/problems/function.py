"""Differentiable test functions ``fn: Tensor (d,) -> Tensor (m,)`` as multi-objective problems."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["FunctionProblem"]


class FunctionProblem:
    """A differentiable vector function of ``dim`` variables whose ``m`` outputs are minimised.

    ``lower``/``upper`` (scalars or length-``dim`` sequences) bound the variables: solutions are
    projected back into the box after every step, and random starts are drawn uniformly in it.
    Without bounds, starts are drawn uniformly in ``init_range``. Subclasses that know their
    Pareto front override :meth:`pareto_front`.

    >>> p = FunctionProblem(lambda x: torch.stack([x.pow(2).sum(), (x - 1).pow(2).sum()]), dim=2)
    >>> p.n_tasks, p.evaluate(torch.zeros(1, 2)).tolist()
    (2, [[0.0, 2.0]])
    """

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        dim: int,
        lower: float | Sequence[float] | Tensor | None = None,
        upper: float | Sequence[float] | Tensor | None = None,
        *,
        name: str = "function",
        task_names: Sequence[str] | None = None,
        init_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        if not callable(fn):
            raise TypeError("fn must be callable: a function Tensor (d,) -> Tensor (m,)")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.fn = fn
        self.dim = dim
        self.name = name
        self.lower = _bound(lower, dim, "lower")
        self.upper = _bound(upper, dim, "upper")
        if self.lower is not None and self.upper is not None and (self.lower > self.upper).any():
            raise ValueError("every lower bound must be <= its upper bound")
        if init_range[0] >= init_range[1]:
            raise ValueError(f"init_range must be (low, high) with low < high, got {init_range}")
        self.init_range = init_range
        probe = fn(self._centre())
        if not isinstance(probe, Tensor) or probe.dim() != 1 or probe.numel() < 1:
            raise ValueError(
                f"fn must map a ({dim},) tensor to a 1-D tensor of objectives, got "
                f"{type(probe).__name__} {tuple(getattr(probe, 'shape', ()))}"
            )
        self.n_tasks = probe.numel()
        names = tuple(task_names) if task_names else tuple(f"f{i + 1}" for i in range(self.n_tasks))
        if len(names) != self.n_tasks:
            raise ValueError(f"got {len(names)} task names for {self.n_tasks} objectives")
        self.task_names = names

    def evaluate(self, x: Tensor) -> Tensor:
        """Objectives ``(K, m)`` of ``K`` points ``x (K, d)``."""
        return torch.func.vmap(self.fn)(x)

    def value_and_jacobian(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Objectives ``(K, m)`` and their Jacobians ``(K, m, d)`` at ``x (K, d)``."""
        jac = torch.func.vmap(torch.func.jacrev(self.fn, has_aux=False))(x)
        return self.evaluate(x), jac

    def project(self, x: Tensor) -> Tensor:
        """Clamp ``x (K, d)`` into the bounds (identity when unbounded)."""
        if self.lower is not None:
            x = torch.maximum(x, self.lower.to(x))
        if self.upper is not None:
            x = torch.minimum(x, self.upper.to(x))
        return x

    def sample(
        self, k: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> Tensor:
        """``k`` random starting points ``(k, d)``, uniform in the box (or ``init_range``)."""
        low = self.lower if self.lower is not None else torch.full((self.dim,), self.init_range[0])
        high = self.upper if self.upper is not None else torch.full((self.dim,), self.init_range[1])
        u = torch.rand(k, self.dim, generator=generator, dtype=torch.float64)
        return (low + (high - low) * u).float().to(device)

    def pareto_front(self, n: int = 200) -> Tensor:
        """``n`` points ``(n, m)`` of the analytic Pareto front, when the problem knows it."""
        raise NotImplementedError(f"problem {self.name!r} has no analytic Pareto front")

    def front_point_on_ray(self, u: Tensor) -> Tensor:
        """The point ``(k, m)`` of the Pareto front on each ray ``u (k, m)``, when known."""
        raise NotImplementedError(f"problem {self.name!r} has no analytic Pareto front")

    def _centre(self) -> Tensor:
        low = self.lower if self.lower is not None else torch.full((self.dim,), self.init_range[0])
        high = self.upper if self.upper is not None else torch.full((self.dim,), self.init_range[1])
        return ((low + high) / 2).float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, m={self.n_tasks})"


def _bound(value: float | Sequence[float] | Tensor | None, dim: int, what: str) -> Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.dim() == 0:
        t = t.expand(dim).clone()
    if t.shape != (dim,):
        raise ValueError(
            f"{what} must be a scalar or have length {dim}, got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} bounds must be finite")
    return t
