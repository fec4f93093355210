"""The training engine, in one home: K subproblems of a run trained together on one device.

- :mod:`~pmtl_core.engine.loop`: :func:`train`, the epoch loop (callbacks, checkpoints, resume);
- :mod:`~pmtl_core.engine.records`: what callbacks receive (:class:`EpochRecord` and friends);
- :mod:`~pmtl_core.engine.state`: checkpoint state (resume point, compatibility, one model);
- :mod:`~pmtl_core.engine.base`: what both inner loops share (optimiser, schedule, transfer);
- :mod:`~pmtl_core.engine.dataset_loop` and :mod:`~pmtl_core.engine.function_loop`: the inner
  loops for data sets (stacked models) and for function problems (K points; ``solve`` too);
- :mod:`~pmtl_core.engine.stacked`: K models held as one stacked model, and their gradients.
"""

from pmtl_core.engine.dataset_loop import DatasetLoop
from pmtl_core.engine.function_loop import FunctionLoop
from pmtl_core.engine.loop import train
from pmtl_core.engine.records import (
    Divergence,
    EpochRecord,
    MetricPoint,
    RunInfo,
    TrainingStopped,
)
from pmtl_core.engine.stacked import StackedModels

__all__ = [
    "DatasetLoop",
    "Divergence",
    "EpochRecord",
    "FunctionLoop",
    "MetricPoint",
    "RunInfo",
    "StackedModels",
    "TrainingStopped",
    "train",
]
