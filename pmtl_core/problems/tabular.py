"""Palmer penguins: species and sex from body measurements, a small tabular two-task problem.

The data (Gorman, Williams & Fraser, 2014; 344 penguins from three islands of the Palmer
Archipelago) ship inside the ``palmerpenguins`` wheel as a CSV, so nothing is downloaded. Rows
missing a measurement or the sex are dropped (333 remain). Inputs are bill length, bill depth,
flipper length and body mass, standardised with the *train* split's mean and standard deviation,
plus the one-hot island (7 features). Tasks: ``species`` (Adelie, Chinstrap, Gentoo) and ``sex``
(female, male).

The trade-off is structural. The shared representation is one linear unit by default and each
head is linear in it, so the six species × sex groups lie on a line: species can be read off
as three intervals, but sex then alternates along the line (female, male, female, …), which
one threshold cannot separate — a model good at one task must give up on the other. Widen
``representation`` to 2 and both tasks fit together: the front shrinks to nearly one point.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, ClassVar

import torch
from torch import Tensor

from pmtl_core.models import MLPConfig, ModelConfig
from pmtl_core.problems.dataset import ClassificationProblem, DataSplits, TensorData

__all__ = ["ISLANDS", "MEASUREMENTS", "PenguinsProblem", "read_penguins"]

MEASUREMENTS = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
ISLANDS = ("Biscoe", "Dream", "Torgersen")
SPECIES = ("Adelie", "Chinstrap", "Gentoo")
SEXES = ("female", "male")


@lru_cache(maxsize=1)
def read_penguins() -> tuple[Tensor, Tensor]:
    """All complete rows: raw features ``(n, 7) float32`` (4 measurements, one-hot island) and
    targets ``(n, 2) int64`` (species, sex), read from the installed ``palmerpenguins`` wheel."""
    from importlib.resources import files

    try:
        resource = files("palmerpenguins").joinpath("data", "penguins.csv")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "the penguins problem reads its data from the palmerpenguins package: "
            "pip install palmerpenguins"
        ) from exc
    features, targets = [], []
    with resource.open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["sex"] not in SEXES or any(row[c] in ("", "NA") for c in MEASUREMENTS):
                continue
            features.append(
                [float(row[c]) for c in MEASUREMENTS] + [float(row["island"] == i) for i in ISLANDS]
            )
            targets.append([SPECIES.index(row["species"]), SEXES.index(row["sex"])])
    return torch.tensor(features), torch.tensor(targets, dtype=torch.int64)


class PenguinsProblem(ClassificationProblem):
    """Penguin ``species`` (3 classes) and ``sex`` (2 classes) through a shared MLP encoder.

    The split is a permutation drawn from ``seed``: the first ``test_size`` rows are the test
    split, the next ``train_size`` (default: all the rest) the train split.
    """

    name = "penguins"
    n_tasks = 2
    task_names = ("species", "sex")
    classes: ClassVar[dict[str, tuple[str, ...]]] = {"species": SPECIES, "sex": SEXES}

    def __init__(
        self,
        *,
        train_size: int | None = None,
        test_size: int = 67,
        seed: int = 0,
        hidden: Sequence[int] = (16,),
        representation: int = 1,
    ) -> None:
        if test_size < 1 or (train_size is not None and train_size < 1):
            raise ValueError(
                f"train_size and test_size must be >= 1, got {train_size}, {test_size}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.train_size, self.test_size, self.seed = train_size, test_size, seed
        encoder = MLPConfig(
            in_features=len(MEASUREMENTS) + len(ISLANDS),
            hidden=tuple(hidden),
            out=representation,
            out_relu=False,
        )
        self._model = ModelConfig(encoder=encoder, heads=(len(SPECIES), len(SEXES)))

    def load(self, device: torch.device | str = "cpu") -> DataSplits:
        """Split by ``seed`` and standardise the measurements with the train split's statistics."""
        features, targets = read_penguins()
        n = features.shape[0]
        train_size = n - self.test_size if self.train_size is None else self.train_size
        if train_size < 1 or self.test_size + train_size > n:
            raise ValueError(
                f"penguins has {n} complete rows: test_size ({self.test_size}) + train_size "
                f"({train_size}) must not exceed it and leave a train split"
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        test, train = order[: self.test_size], order[self.test_size : self.test_size + train_size]
        k = len(MEASUREMENTS)
        mean = features[train, :k].mean(0)
        std = features[train, :k].std(0, correction=0).clamp_min(1e-6)
        scaled = torch.cat([(features[:, :k] - mean) / std, features[:, k:]], dim=1)
        splits = DataSplits(
            TensorData(scaled[train], targets[train]), TensorData(scaled[test], targets[test])
        )
        return splits.to(device)

    def model_config(self) -> dict[str, Any]:
        """An MLP encoder (7 → hidden… → linear representation), a 3-way and a 2-way head."""
        return self._model.model_dump(mode="json")
