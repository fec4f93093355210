"""Pareto MTL Lab core: exact multi-objective algorithms and a fast multi-task training engine.

The library knows nothing of the web or the database. Entry points: :func:`solve` for
differentiable test functions, :func:`train` for multi-task data sets (K preference vectors
trained together), :func:`load_model` for a downloaded model, the method registry
:data:`pmtl_core.methods.REGISTRY` and the problem registry :data:`pmtl_core.problems.REGISTRY`.
"""

from pmtl_core.engine import train
from pmtl_core.export import load_model
from pmtl_core.front import Front
from pmtl_core.solve import DivergenceError, solve

__all__ = ["DivergenceError", "Front", "load_model", "solve", "train"]
__version__ = "0.1.0"
