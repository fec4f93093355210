"""MultiMNIST, MultiFashion and Multi-(Fashion+MNIST): two overlapping items, two tasks.

Generation rule (one sample): draw two source items of *different* classes; place the first with
its 28x28 frame's corner at ``(0, 0)`` (top-left) and the second at ``(8, 8)`` (bottom-right) of a
36x36 canvas, shift each independently by a uniform integer in ``[-4, 4]`` pixels along each
axis (pixels pushed past the canvas edge are cropped; MNIST digits have a 4-pixel empty border),
and overlap them by the pixel-wise maximum. Task ``top_left`` classifies the first item,
``bottom_right`` the second. Sources:

- ``multi_mnist``: both items from MNIST,
- ``multi_fashion``: both from Fashion-MNIST,
- ``multi_fashion_mnist``: the top-left item from MNIST, the bottom-right from Fashion-MNIST.

Train samples use the source train splits (120,000 by default), test samples the source test
splits (20,000). Everything is drawn from ``torch.Generator`` streams derived from ``seed`` and
the split name, so a seed gives the same data on every machine, and generation is whole-batch
tensor code (140,000 samples take seconds).

The result is cached as one safetensors file (``uint8`` images ``(N, 36, 36)``, ``int64`` labels
``(N, 2)``) under the cache directory, keyed by name, seed, sizes and :data:`FORMAT_VERSION`, with
its sha256 in a ``.sha256`` file beside it (``sha256sum -c`` format). Both are written atomically
(temp file, fsync, rename); a cache whose checksum does not match is rebuilt with a warning.
The cache directory has a size cap (``cache_max_bytes``, else ``$PMTL_CACHE_MAX_GB``, see
:mod:`pmtl_core.cache`): before a new file is written the least recently used ones are evicted
to make room, and a data set larger than the cap alone is used without being cached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from pmtl_core.atomic import atomic_write_bytes
from pmtl_core.cache import make_room, touch
from pmtl_core.models import LeNetConfig, ModelConfig
from pmtl_core.problems.dataset import ClassificationProblem, DataSplits, TensorData

__all__ = [
    "FORMAT_VERSION",
    "SOURCES",
    "Composition",
    "MissingDataError",
    "MultiDigitProblem",
    "build_splits",
    "compose",
    "default_cache_dir",
    "default_data_dir",
    "place",
    "read_source",
    "split_generator",
]

log = logging.getLogger(__name__)

#: Bump when the generation rule or the file layout changes: old caches are then ignored.
FORMAT_VERSION = 1
CANVAS = 36
ITEM = 28
MAX_SHIFT = 4
#: Nominal corner of each item's 28x28 frame on the canvas, before its random shift.
CORNERS = ((0, 0), (CANVAS - ITEM, CANVAS - ITEM))
#: Problem name -> torchvision data set of the (top-left, bottom-right) items.
SOURCES: dict[str, tuple[str, str]] = {
    "multi_mnist": ("MNIST", "MNIST"),
    "multi_fashion": ("FashionMNIST", "FashionMNIST"),
    "multi_fashion_mnist": ("MNIST", "FashionMNIST"),
}
_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


class MissingDataError(FileNotFoundError):
    """The raw MNIST / Fashion-MNIST files are not where they were looked for."""


@dataclass(frozen=True)
class Composition:
    """Generated samples and how they were made.

    ``images (N, 36, 36) uint8``, ``labels (N, 2) int64`` (top-left, bottom-right),
    ``sources (N, 2) int64`` (index of each item in its source split) and
    ``corners (N, 2, 2) int64`` (row, column of each item's frame corner after the shift).
    """

    images: Tensor
    labels: Tensor
    sources: Tensor
    corners: Tensor


def read_source(dataset: str, root: Path, *, train: bool, download: bool) -> tuple[Tensor, Tensor]:
    """Images ``(n, 28, 28) uint8`` and labels ``(n,) int64`` of a torchvision data set split."""
    import torchvision.datasets  # imported here: describing problems must not pay for it

    prefix = "train" if train else "t10k"
    raw = root / dataset / "raw"
    expected = [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]
    if not download and not all(p.is_file() for p in expected):
        raise MissingDataError(
            f"{dataset} raw files not found: expected {expected[0]} and {expected[1].name} "
            f"(torchvision layout <data root>/{dataset}/raw/*-ubyte). Point PMTL_DATA_DIR (or the "
            "problem's data_dir option) at the data root, or pass download=True to fetch it."
        )
    cls = getattr(torchvision.datasets, dataset)
    ds = cls(str(root), train=train, download=download)
    return ds.data.to(torch.uint8), ds.targets.to(torch.int64)


def place(items: Tensor, corners: Tensor) -> Tensor:
    """Paste each ``items[i] (28, 28)`` on an empty 36x36 canvas with its corner at
    ``corners[i] = (row, col)`` (may be negative; what falls outside is cropped).

    Returns ``(N, 36, 36)`` of the items' dtype. One sliced copy per *distinct* corner (at most
    81 for shifts of ±4), each over all the samples that share it, not a loop over samples.
    """
    out = torch.zeros(items.shape[0], CANVAS, CANVAS, dtype=items.dtype)
    distinct, group = torch.unique(corners, dim=0, return_inverse=True)
    for g, (r, c) in enumerate(distinct.tolist()):
        r0, r1, c0, c1 = max(r, 0), min(r + ITEM, CANVAS), max(c, 0), min(c + ITEM, CANVAS)
        if r0 < r1 and c0 < c1:
            idx = (group == g).nonzero().squeeze(1)
            out[idx, r0:r1, c0:c1] = items[idx, r0 - r : r1 - r, c0 - c : c1 - c]
    return out


def _pairs(labels_a: Tensor, labels_b: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``(n, 2)`` indices into sources a and b whose labels differ (resampling clashes)."""
    ia = torch.randint(len(labels_a), (n,), generator=generator)
    ib = torch.randint(len(labels_b), (n,), generator=generator)
    clash = (labels_a[ia] == labels_b[ib]).nonzero().squeeze(1)
    for _ in range(1000):
        if clash.numel() == 0:
            return torch.stack([ia, ib], dim=1)
        ib[clash] = torch.randint(len(labels_b), (clash.numel(),), generator=generator)
        clash = clash[labels_a[ia[clash]] == labels_b[ib[clash]]]
    raise ValueError("cannot pair items of different classes: do the sources have 2+ classes?")


def compose(
    top_left: tuple[Tensor, Tensor],
    bottom_right: tuple[Tensor, Tensor],
    n: int,
    generator: torch.Generator,
) -> Composition:
    """``n`` samples from the (images, labels) sources of the two positions (module rule)."""
    pairs = _pairs(top_left[1], bottom_right[1], n, generator)
    shifts = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (n, 2, 2), generator=generator)
    corners = torch.tensor(CORNERS).expand(n, 2, 2) + shifts
    images = torch.maximum(
        place(top_left[0][pairs[:, 0]], corners[:, 0]),
        place(bottom_right[0][pairs[:, 1]], corners[:, 1]),
    )
    labels = torch.stack([top_left[1][pairs[:, 0]], bottom_right[1][pairs[:, 1]]], dim=1)
    return Composition(images, labels, pairs, corners)


def split_generator(seed: int, split: str) -> torch.Generator:
    """An independent random stream per (seed, split): the test set does not depend on the
    train size."""
    digest = hashlib.sha256(f"multi_digit/{seed}/{split}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def build_splits(
    name: str, train_size: int, test_size: int, seed: int, data_root: Path, download: bool
) -> dict[str, Tensor]:
    """Generate both splits of ``name`` from the raw files under ``data_root`` (CPU tensors)."""
    tl, br = SOURCES[name]
    out: dict[str, Tensor] = {}
    for split, size, train in (("train", train_size, True), ("test", test_size, False)):
        a = read_source(tl, data_root, train=train, download=download)
        b = a if br == tl else read_source(br, data_root, train=train, download=download)
        comp = compose(a, b, size, split_generator(seed, split))
        out[f"{split}_images"], out[f"{split}_labels"] = comp.images, comp.labels
    return out


def default_cache_dir() -> Path:
    """``$PMTL_CACHE_DIR``, else ``$PMTL_HOME/cache``, else ``~/.cache/pmtl``."""
    if os.environ.get("PMTL_CACHE_DIR"):
        return Path(os.environ["PMTL_CACHE_DIR"])
    if os.environ.get("PMTL_HOME"):
        return Path(os.environ["PMTL_HOME"]) / "cache"
    return Path.home() / ".cache" / "pmtl"


def default_data_dir() -> Path:
    """``$PMTL_DATA_DIR``, else ``$PMTL_HOME/data``, else ``~/.cache/pmtl/data`` (where
    ``download=True`` then puts the files)."""
    if os.environ.get("PMTL_DATA_DIR"):
        return Path(os.environ["PMTL_DATA_DIR"])
    if os.environ.get("PMTL_HOME"):
        return Path(os.environ["PMTL_HOME"]) / "data"
    return Path.home() / ".cache" / "pmtl" / "data"


class MultiDigitProblem(ClassificationProblem):
    """One of the MultiMNIST family (see the module docstring); data are built lazily by
    :meth:`load`, then read from the cache."""

    task_names = ("top_left", "bottom_right")
    n_tasks = 2

    def __init__(
        self,
        name: str = "multi_mnist",
        *,
        train_size: int = 120_000,
        test_size: int = 20_000,
        seed: int = 0,
        download: bool = False,
        data_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        width: float = 1.0,
        cache_max_bytes: int | None = None,
    ) -> None:
        if name not in SOURCES:
            raise ValueError(f"unknown multi-digit problem {name!r}; choose one of {list(SOURCES)}")
        if train_size < 1 or test_size < 1:
            raise ValueError(
                f"train_size and test_size must be >= 1, got {train_size}, {test_size}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.name = name
        self.train_size, self.test_size, self.seed = train_size, test_size, seed
        self.download = download
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache_max_bytes = cache_max_bytes
        self.width = width
        self._model = ModelConfig(encoder=LeNetConfig(width=width), heads=(10, 10))

    @property
    def cache_path(self) -> Path:
        """Where this problem's data are cached (the checksum sits beside it)."""
        key = f"{self.name}-v{FORMAT_VERSION}-seed{self.seed}-{self.train_size}-{self.test_size}"
        return self.cache_root / "multi_digit" / f"{key}.safetensors"

    @property
    def cache_root(self) -> Path:
        """The cache directory whose total size is capped."""
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()

    def load(self, device: torch.device | str = "cpu") -> DataSplits:
        """Both splits on ``device``: read from the cache, or built and cached first."""
        path = self.cache_path
        tensors = _read_cache(path, self._expected_shapes())
        if tensors is None:
            started = time.perf_counter()
            root = self.data_dir if self.data_dir is not None else default_data_dir()
            tensors = build_splits(
                self.name, self.train_size, self.test_size, self.seed, root, self.download
            )
            log.info("built %s in %.1f s", path.name, time.perf_counter() - started)
            meta = {"name": self.name, "seed": self.seed, "train_size": self.train_size}
            _write_cache(
                path,
                tensors,
                {k: str(v) for k, v in meta.items()},
                root=self.cache_root,
                max_bytes=self.cache_max_bytes,
            )
        else:
            touch(path)  # most recently used: evicted last
        splits = DataSplits(
            TensorData(tensors["train_images"], tensors["train_labels"]),
            TensorData(tensors["test_images"], tensors["test_labels"]),
        )
        return splits.to(device)

    def transform(self, inputs: Tensor) -> Tensor:
        """``uint8 (B, 36, 36)`` images as ``float (B, 1, 36, 36)`` in ``[0, 1]``."""
        return inputs.unsqueeze(-3).to(torch.float32) / 255.0

    def model_config(self) -> dict[str, Any]:
        """The paper's LeNet encoder (times ``width``) and two 10-way heads."""
        return self._model.model_dump(mode="json")

    def _expected_shapes(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        for split, n in (("train", self.train_size), ("test", self.test_size)):
            shapes[f"{split}_images"] = ((n, CANVAS, CANVAS), torch.uint8)
            shapes[f"{split}_labels"] = ((n, 2), torch.int64)
        return shapes


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_cache(
    path: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]
) -> dict[str, Tensor] | None:
    """The cached tensors, or ``None`` (with a warning unless simply absent) to rebuild."""
    if not path.exists():
        return None
    try:
        blob = path.read_bytes()
        recorded = _checksum_path(path).read_text().split()[0]
    except (OSError, IndexError) as exc:
        log.warning("cache %s has no readable checksum (%s); rebuilding it", path, exc)
        return None
    if hashlib.sha256(blob).hexdigest() != recorded:
        log.warning("cache %s is corrupt or truncated (sha256 mismatch); rebuilding it", path)
        return None
    try:
        tensors = safetensors.torch.load(blob)
    except Exception as exc:  # any parse failure means: rebuild
        log.warning("cache %s cannot be parsed (%s); rebuilding it", path, exc)
        return None
    for key, (shape, dtype) in expected.items():
        t = tensors.get(key)
        if t is None or tuple(t.shape) != shape or t.dtype != dtype:
            log.warning("cache %s does not hold the expected %s; rebuilding it", path, key)
            return None
    return tensors


def _write_cache(
    path: Path,
    tensors: dict[str, Tensor],
    metadata: dict[str, str],
    *,
    root: Path | None = None,
    max_bytes: int | None = None,
) -> None:
    """Write the tensors, then their checksum, atomically, after making room for them under
    the cap of ``root`` (default: the file's directory); a failure only costs a rebuild."""
    blob = safetensors.torch.save(
        {k: tensors[k].contiguous() for k in _KEYS},
        metadata | {"format_version": str(FORMAT_VERSION)},
    )
    try:
        if not make_room(root or path.parent, len(blob) + 200, max_bytes=max_bytes, keep=[path]):
            log.warning(
                "%s (%.2f GB) is larger than the cache cap (PMTL_CACHE_MAX_GB); not cached",
                path.name,
                len(blob) / 1e9,
            )
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, blob)
        digest = hashlib.sha256(blob).hexdigest()
        atomic_write_bytes(_checksum_path(path), f"{digest}  {path.name}\n".encode())
    except OSError as exc:
        log.warning("could not write the cache %s (%s); data will be rebuilt next time", path, exc)
