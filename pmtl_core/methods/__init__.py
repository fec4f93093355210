"""Multi-objective methods, one module each, behind one interface and one registry.

Every method maps the losses ``(K, m)`` of K subproblems and the Gram matrices ``(K, m, m)`` of
their task gradients to task weights ``(K, m)``; see :class:`Method`. ``REGISTRY`` is the single
name → class table that the CLI, the REST API and the UI read.

>>> import torch
>>> from pmtl_core.methods import get_method
>>> method = get_method("mgda")(torch.tensor([[1.0, 0.0]]))
>>> method(torch.tensor([[1.0, 1.0]]), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
tensor([[1., 1.]])
"""

from __future__ import annotations

from typing import Any

from pmtl_core.methods._base import GradTarget, Method, MethodParams
from pmtl_core.methods.epo import EPO, EPOParams
from pmtl_core.methods.gradnorm import GradNorm, GradNormParams
from pmtl_core.methods.linear import Linear, LinearParams
from pmtl_core.methods.mgda import MGDA, MGDAParams
from pmtl_core.methods.mgda_ub import MGDAUB, MGDAUBParams
from pmtl_core.methods.mt2o import MT2O, MT2OParams
from pmtl_core.methods.pareto_mtl import ParetoMTL, ParetoMTLParams
from pmtl_core.methods.pareto_mtl_restore import ParetoMTLRestore, ParetoMTLRestoreParams
from pmtl_core.methods.psl import PSL, PSLParams
from pmtl_core.methods.single_task import SingleTask, SingleTaskParams
from pmtl_core.methods.uncertainty import Uncertainty, UncertaintyParams

__all__ = [
    "EPO",
    "MGDA",
    "MGDAUB",
    "MT2O",
    "PSL",
    "REGISTRY",
    "EPOParams",
    "GradNorm",
    "GradNormParams",
    "GradTarget",
    "Linear",
    "LinearParams",
    "MGDAParams",
    "MGDAUBParams",
    "MT2OParams",
    "Method",
    "MethodParams",
    "PSLParams",
    "ParetoMTL",
    "ParetoMTLParams",
    "ParetoMTLRestore",
    "ParetoMTLRestoreParams",
    "SingleTask",
    "SingleTaskParams",
    "Uncertainty",
    "UncertaintyParams",
    "describe_methods",
    "get_method",
]

REGISTRY: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (
        ParetoMTL,
        ParetoMTLRestore,
        MGDA,
        MGDAUB,
        Linear,
        EPO,
        MT2O,
        PSL,
        GradNorm,
        Uncertainty,
        SingleTask,
    )
}


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``; ``ValueError`` lists the valid names."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown method {name!r}; choose one of: {valid}") from None


def describe_methods() -> list[dict[str, Any]]:
    """Name, summary, capabilities and hyperparameter JSON schema of every method."""
    return [
        {
            "name": cls.name,
            "summary": cls.summary,
            "uses_preferences": cls.uses_preferences,
            "needs_gradients": cls.needs_gram,
            "couples_subproblems": cls.couples_subproblems,
            "warm_startable": cls.warm_startable,
            "variant_of": cls.variant_of,
            "learns_pareto_set": cls.learns_pareto_set,
            "problem_kinds": list(cls.problem_kinds),
            "hyperparameters": cls.Params.model_json_schema(),
        }
        for cls in REGISTRY.values()
    ]
