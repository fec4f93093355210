"""Small, learnable multi-task problems for engine tests (built in memory, no files)."""

from __future__ import annotations

from typing import Any

import torch

from pmtl_core.problems.dataset import ClassificationProblem, DataSplits, TensorData


class TwoTaskBlobs(ClassificationProblem):
    """Two 3-class tasks on 8 features: labels are argmaxes of two different linear maps, so the
    tasks share structure but conflict. ``image=True`` reshapes inputs to 1x36x36 (LeNet)."""

    name = "blobs"
    n_tasks = 2
    task_names = ("first", "second")

    def __init__(
        self,
        n_train: int = 256,
        n_test: int = 64,
        *,
        image: bool = False,
        width: float = 1.0,
        seed: int = 3,
    ) -> None:
        self.n_train, self.n_test, self.image, self.width, self.seed = (
            n_train,
            n_test,
            image,
            width,
            seed,
        )

    def load(self, device: torch.device | str = "cpu") -> DataSplits:
        g = torch.Generator().manual_seed(self.seed)
        dim = 36 * 36 if self.image else 8
        w1, w2 = torch.randn(dim, 3, generator=g), torch.randn(dim, 3, generator=g)

        def split(n: int) -> TensorData:
            x = torch.randn(n, dim, generator=g)
            y = torch.stack([(x @ w1).argmax(1), (x @ w2).argmax(1)], dim=1)
            inputs = x.reshape(n, 1, 36, 36) if self.image else x
            return TensorData(inputs, y)

        return DataSplits(split(self.n_train), split(self.n_test)).to(device)

    def model_config(self) -> dict[str, Any]:
        if self.image:
            return {"encoder": {"type": "lenet", "width": self.width}, "heads": [3, 3]}
        return {
            "encoder": {"type": "mlp", "in_features": 8, "hidden": [16], "out": 12},
            "heads": [3, 3],
        }
