"""Problems: the protocol, differentiable test functions and multi-task data sets.

``REGISTRY`` maps every problem name to its :class:`ProblemSpec`; :func:`get_problem` builds one
by name (or from a user's ``package.module:factory``) and :func:`describe_problems` lists them
for the CLI, the REST API and the UI.
"""

from pmtl_core.problems._base import Problem
from pmtl_core.problems.dataset import DatasetProblem, DataSplits, TensorData
from pmtl_core.problems.function import FunctionProblem
from pmtl_core.problems.registry import REGISTRY, ProblemSpec, describe_problems, get_problem
from pmtl_core.problems.synthetic import ConcaveProblem, SphereProblem

__all__ = [
    "REGISTRY",
    "ConcaveProblem",
    "DataSplits",
    "DatasetProblem",
    "FunctionProblem",
    "Problem",
    "ProblemSpec",
    "SphereProblem",
    "TensorData",
    "describe_problems",
    "get_problem",
]
