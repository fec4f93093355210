"""Min-norm QP: ``min_{w in simplex} || sum_i w_i g_i ||^2``, exact (quadprog) and batched (torch).

Every gradient-based method here (MGDA, MGDA-UB, Pareto MTL) reduces to this problem on the
Gram matrix ``G = g g^T`` of a handful of gradients. ``min_norm`` solves any number of them at once
on the device of its input: Wolfe's minimum-norm-point algorithm (an active-set method that is
exact in a finite number of steps), vectorised over the batch, each iteration one batched small
linear solve. Two gradients use the closed form. The only host synchronisations are the
optional convergence checks every ``check_every`` iterations (and the NaN check, which callers
with known-finite inputs switch off). ``min_norm_exact`` solves one problem with quadprog
(Goldfarb–Idnani) and is the reference the tests compare to.

>>> g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
>>> min_norm(g)
tensor([0.5000, 0.5000])
"""

from __future__ import annotations

import numpy as np
import quadprog
import torch
from torch import Tensor

__all__ = ["min_norm", "min_norm_exact", "min_norm_exact_gram", "min_norm_gram", "norm_sq"]

_RIDGE = 1e-13  # relative ridge for singular KKT systems (Gram matrices are scaled to max diag 1)
_EAGER_ITERS = 1  # iterations that drop all negative coordinates at once (see _wolfe)
_EXACT_RIDGE = 1e-10  # relative ridge that makes quadprog's matrix positive definite


def min_norm(
    grads: Tensor,
    mask: Tensor | None = None,
    *,
    max_iter: int | None = None,
    check_every: int = 4,
    validate: bool = True,
) -> Tensor:
    """Simplex weights ``(..., n)`` minimising ``||sum_i w_i g_i||`` for ``grads (..., n, d)``.

    ``mask (..., n)`` (bool) restricts the support: masked-out gradients get weight 0. Batched
    over all leading dimensions; runs on the device of ``grads``. ``check_every``: iterations
    between convergence checks (each one a host sync; 0 runs ``max_iter`` iterations blindly).
    ``validate=False`` skips the NaN check (itself a host sync) for callers whose inputs are
    known to be finite, such as the training loop.
    """
    _check_rank(grads, 2, "grads", "(..., n, d)", finite=validate)
    gram = grads.double() @ grads.double().transpose(-1, -2)
    out_dtype = grads.dtype if grads.dtype.is_floating_point else torch.float32  # int grads
    return min_norm_gram(gram, mask, max_iter=max_iter, check_every=check_every, validate=False).to(
        out_dtype
    )


def min_norm_gram(
    gram: Tensor,
    mask: Tensor | None = None,
    *,
    max_iter: int | None = None,
    check_every: int = 4,
    validate: bool = True,
) -> Tensor:
    """Same as :func:`min_norm`, given the Gram matrices ``(..., n, n)`` of the gradients."""
    _check_rank(gram, 2, "gram", "(..., n, n)", finite=validate)
    n = gram.shape[-1]
    if gram.shape[-2] != n:
        raise ValueError(f"gram must be square in its last two dims, got shape {tuple(gram.shape)}")
    if n == 0:
        raise ValueError("min_norm needs at least one gradient (n >= 1)")
    out_dtype = gram.dtype if gram.dtype.is_floating_point else torch.float32
    g = gram.double()
    g = 0.5 * (g + g.transpose(-1, -2))
    batch = g.shape[:-2]
    if mask is None:
        allowed = torch.ones((*batch, n), dtype=torch.bool, device=g.device)
    else:
        if mask.shape != (*batch, n):
            raise ValueError(f"mask must have shape {(*batch, n)}, got {tuple(mask.shape)}")
        allowed = mask.to(device=g.device, dtype=torch.bool)
    # A problem with nothing allowed would have no feasible point; fall back to everything.
    allowed = torch.where(allowed.any(-1, keepdim=True), allowed, torch.ones_like(allowed))
    # Entries of masked-out gradients play no part; zeroed, they cannot overflow when the
    # allowed ones are tiny (a zero gradient alone allowed: scale = tiny) and turn w into NaN.
    pair = allowed.unsqueeze(-1) & allowed.unsqueeze(-2)
    g = torch.where(pair, g, torch.zeros_like(g))
    diag = torch.diagonal(g, dim1=-2, dim2=-1)
    scale = (diag * allowed).amax(-1).clamp_min(torch.finfo(torch.float64).tiny)
    g = g / scale[..., None, None]
    if n == 1:
        return torch.ones((*batch, 1), dtype=out_dtype, device=g.device)
    if n == 2:
        return _two_point(g, allowed).to(out_dtype)
    # Optimality is judged to the precision the Gram matrix was given in: float32 gradients
    # carry ~1e-7 relative noise, and chasing it would only cycle.
    tol = 10 * n * torch.finfo(out_dtype).eps
    w = _wolfe(g, allowed, max_iter if max_iter is not None else 8 + 4 * n, check_every, tol)
    return w.to(out_dtype)


def min_norm_exact(grads: Tensor | np.ndarray) -> Tensor:
    """Exact simplex weights for one problem ``grads (n, d)``, via quadprog (reference solver)."""
    g = torch.as_tensor(grads, dtype=torch.float64)
    _check_rank(g, 2, "grads", "(n, d)")
    if g.dim() != 2:
        raise ValueError(
            f"min_norm_exact solves one problem: grads must be (n, d), got {tuple(g.shape)}"
        )
    return min_norm_exact_gram(g @ g.T)


def min_norm_exact_gram(gram: Tensor | np.ndarray) -> Tensor:
    """Exact simplex weights for one Gram matrix ``(n, n)`` via quadprog.

    quadprog needs a positive-definite matrix, so a tiny ridge (1e-10 of the largest diagonal)
    is added; it changes the optimal objective by at most that much.
    """
    g = np.asarray(torch.as_tensor(gram, dtype=torch.float64).cpu(), dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square matrix (n, n), got shape {g.shape}")
    n = g.shape[0]
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    g = 0.5 * (g + g.T)
    scale = max(float(np.max(np.diag(g))), np.finfo(np.float64).tiny)
    p = g / scale + _EXACT_RIDGE * np.eye(n)
    constraints = np.concatenate([np.ones((n, 1)), np.eye(n)], axis=1)
    rhs = np.concatenate([[1.0], np.zeros(n)])
    w = quadprog.solve_qp(p, np.zeros(n), constraints, rhs, meq=1)[0]
    w = np.clip(w, 0.0, None)
    return torch.from_numpy(w / w.sum())


def norm_sq(gram: Tensor, w: Tensor) -> Tensor:
    """The objective ``w^T G w`` for batched ``gram (..., n, n)`` and ``w (..., n)``."""
    return torch.einsum("...i,...ij,...j->...", w, gram, w)


def _check_rank(t: Tensor, rank: int, name: str, shape: str, *, finite: bool = True) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < rank:
        raise ValueError(f"{name} must have shape {shape}, got shape {tuple(t.shape)}")
    if finite and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _two_point(g: Tensor, allowed: Tensor) -> Tensor:
    """Closed form for two gradients: the point of segment [g1, g2] nearest the origin."""
    g11, g12, g22 = g[..., 0, 0], g[..., 0, 1], g[..., 1, 1]
    denom = g11 + g22 - 2 * g12
    safe = denom > 1e-15
    w1 = torch.where(safe, (g22 - g12) / torch.where(safe, denom, 1.0), 0.5).clamp(0, 1)
    w1 = torch.where(allowed[..., 1], w1, 1.0)
    w1 = torch.where(allowed[..., 0], w1, 0.0)
    return torch.stack([w1, 1 - w1], dim=-1)


def _wolfe(g: Tensor, allowed: Tensor, max_iter: int, check_every: int, tol: float) -> Tensor:
    """Wolfe's minimum-norm-point algorithm (1976), vectorised over the batch.

    Keeps a support set ``S`` and a feasible ``w``; starts from the centre of the allowed face
    (so problems whose optimum has full support finish in one iteration). Each iteration: if
    ``w`` is the affine minimiser of ``S`` and not optimal, add the most violating coordinate;
    then compute the affine minimiser ``y`` of ``S`` (``y ∝ (G_SS + δI)^-1 1``, the ridge keeping
    linearly dependent gradients solvable). If ``y >= 0`` it becomes ``w``; otherwise ``w``
    moves toward ``y`` until a weight hits zero and that coordinate leaves ``S``. Finished
    problems are frozen; an iteration costs one batched ``n x n`` solve.
    """
    n = g.shape[-1]
    batch = g.shape[:-2]
    dev, dt = g.device, g.dtype
    eye = torch.eye(n, dtype=dt, device=dev)
    g_ridge = g + _RIDGE * eye
    w = allowed.to(dt) / allowed.sum(-1, keepdim=True)
    support = allowed.clone()
    at_affine = torch.zeros(batch, dtype=torch.bool, device=dev)
    done = torch.zeros(batch, dtype=torch.bool, device=dev)
    inf = torch.tensor(float("inf"), dtype=dt, device=dev)
    for it in range(max_iter):
        if it:  # the first iteration only solves on the full allowed support
            gw = (g @ w.unsqueeze(-1)).squeeze(-1)
            val = (gw * w).sum(-1, keepdim=True)
            best_slack, j = torch.where(allowed & ~support, gw, inf).min(-1, keepdim=True)
            # Nothing allowed left outside the support (slack inf) also means optimal.
            optimal = (best_slack >= val - tol) | torch.isinf(best_slack)
            done = done | (at_affine & optimal.squeeze(-1))
            add = (at_affine & ~done).unsqueeze(-1)
            support = support.scatter(-1, j, support.gather(-1, j) | add)
        s = support.to(dt)
        a = torch.where(support.unsqueeze(-1) & support.unsqueeze(-2), g_ridge, eye)
        z = torch.linalg.solve_ex(a, s.unsqueeze(-1))[0].squeeze(-1) * s
        y = z / z.sum(-1, keepdim=True)
        feasible = ((y > 0) | ~support).all(-1, keepdim=True)
        # Ratio test: the largest step from w toward y that keeps every weight >= 0.
        dec = support & (y <= 0)
        ratio = torch.where(dec, w / (w - y), inf)
        theta = ratio.amin(-1, keepdim=True).clamp(0, 1)
        drop = dec & (ratio <= theta * (1 + 1e-12))
        stepped = torch.where(drop, 0.0, (w + theta * (y - w)).clamp_min(0))
        if it < _EAGER_ITERS:
            # Early on, drop every coordinate that y wants negative at once and restart from the
            # clipped y (feasible); Wolfe's one-at-a-time steps take over afterwards.
            drop = dec
            stepped = y.clamp_min(0)
        new_w = torch.where(feasible, y, stepped / stepped.sum(-1, keepdim=True))
        keep = done.unsqueeze(-1)
        w = torch.where(keep, w, new_w)
        support = support & ~(drop & ~keep & ~feasible)
        at_affine = torch.where(done, at_affine, feasible.squeeze(-1))
        if check_every and (it + 1) % check_every == 0 and bool(done.all()):
            break
    return w
