"""Pareto MTL Lab core: exact multi-objective algorithms and a fast multi-task training engine.

The library knows nothing of the web or the database. Entry points: :func:`solve` for
differentiable test functions, :func:`train` for multi-task data sets (K preference vectors
trained together), :func:`load_model` for a downloaded model, :func:`load_predictor` for a
downloaded table model (raw rows in, predictions out), the method registry
:data:`pmtl_core.methods.REGISTRY` and the problem registry :data:`pmtl_core.problems.REGISTRY`.
"""

from pmtl_core.engine import train
from pmtl_core.export import load_model
from pmtl_core.front import Front
from pmtl_core.solve import DivergenceError, solve

__all__ = ["DivergenceError", "Front", "load_model", "load_predictor", "solve", "train"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``load_predictor`` on first use: it brings pandas, which the rest does not need."""
    if name == "load_predictor":
        from pmtl_core.predictor import load_predictor

        return load_predictor
    raise AttributeError(f"module 'pmtl_core' has no attribute {name!r}")
