"""MultiMNIST family: the generation rule, determinism, the checksummed cache, losses under vmap."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from pmtl_core.problems import multi_digit as md
from pmtl_core.problems.multi_digit import MissingDataError, MultiDigitProblem
from tests.conftest import require
from tests.settings import DATA_DIR

LOGGER = "pmtl_core.problems.multi_digit"
# What each problem is specified to draw from: (top-left, bottom-right) torchvision data sets.
SPECIFIED_SOURCES = {
    "multi_mnist": ("MNIST", "MNIST"),
    "multi_fashion": ("FashionMNIST", "FashionMNIST"),
    "multi_fashion_mnist": ("MNIST", "FashionMNIST"),
}


def data_root() -> Path:
    root = Path(DATA_DIR) if DATA_DIR else Path("/nonexistent")
    ok = all(
        (root / ds / "raw" / "train-images-idx3-ubyte").is_file()
        for ds in md.SOURCES["multi_fashion_mnist"]
    )
    require(ok, f"raw MNIST / Fashion-MNIST files not found under PMTL_DATA_DIR={DATA_DIR!r}")
    return root


@pytest.fixture(scope="module")
def sources() -> dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]]:
    root = data_root()
    return {
        (ds, train): md.read_source(ds, root, train=train, download=False)
        for ds in ("MNIST", "FashionMNIST")
        for train in (True, False)
    }


def small(name: str = "multi_mnist", cache: Path | None = None, **kw) -> MultiDigitProblem:
    options = {"train_size": 300, "test_size": 100, "seed": 0} | kw
    return MultiDigitProblem(name, data_dir=data_root(), cache_dir=cache, **options)


def reference_canvas(item: torch.Tensor, corner: tuple[int, int]) -> torch.Tensor:
    """The item pasted with plain slicing on a canvas with a 28-pixel margin, then cropped."""
    big = torch.zeros(36 + 56, 36 + 56, dtype=item.dtype)
    r, c = corner
    big[28 + r : 56 + r, 28 + c : 56 + c] = item
    return big[28:64, 28:64]


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(SPECIFIED_SOURCES))
def test_samples_are_two_items_of_different_classes_placed_as_recorded(name, sources):
    tl_name, br_name = SPECIFIED_SOURCES[name]
    tl, br = sources[(tl_name, True)], sources[(br_name, True)]
    comp = md.compose(tl, br, 2000, torch.Generator().manual_seed(3))
    assert comp.images.shape == (2000, 36, 36) and comp.images.dtype == torch.uint8
    assert comp.labels.shape == (2000, 2) and comp.labels.dtype == torch.int64
    assert (comp.labels[:, 0] != comp.labels[:, 1]).all()
    # labels are those of the source items that were placed
    assert torch.equal(comp.labels[:, 0], tl[1][comp.sources[:, 0]])
    assert torch.equal(comp.labels[:, 1], br[1][comp.sources[:, 1]])
    # shifts: within ±4 of the nominal corners (0, 0) and (8, 8), the full range is used
    shifts = comp.corners - torch.tensor([[0, 0], [8, 8]])
    assert shifts.abs().max() == 4 and shifts.min() == -4
    # every image is exactly the overlap (max) of the two items pasted at their corners
    for i in range(0, 2000, 37):
        a = reference_canvas(tl[0][comp.sources[i, 0]], tuple(comp.corners[i, 0].tolist()))
        b = reference_canvas(br[0][comp.sources[i, 1]], tuple(comp.corners[i, 1].tolist()))
        assert torch.equal(comp.images[i], torch.maximum(a, b)), f"sample {i}"


@pytest.mark.data
@pytest.mark.parametrize("name", sorted(SPECIFIED_SOURCES))
def test_splits_follow_the_specified_sources(name, sources):
    """The built data = the verified composition of the specified sources and splits."""
    built = md.build_splits(name, 300, 100, 5, data_root(), download=False)
    tl_name, br_name = SPECIFIED_SOURCES[name]
    for split, n, train in (("train", 300, True), ("test", 100, False)):
        comp = md.compose(
            sources[(tl_name, train)], sources[(br_name, train)], n, md.split_generator(5, split)
        )
        assert torch.equal(built[f"{split}_images"], comp.images)
        assert torch.equal(built[f"{split}_labels"], comp.labels)


@pytest.mark.data
def test_load_honours_sizes_and_device(tmp_path, device):
    splits = small(cache=tmp_path, train_size=250, test_size=70).load(device)
    assert splits.train.inputs.shape == (250, 36, 36) and splits.test.inputs.shape == (70, 36, 36)
    assert splits.train.targets.shape == (250, 2) and splits.test.targets.shape == (70, 2)
    assert splits.train.inputs.dtype == torch.uint8 and splits.train.targets.dtype == torch.int64
    assert splits.train.inputs.device.type == torch.device(device).type
    assert splits.train.targets.min() >= 0 and splits.train.targets.max() <= 9


@pytest.mark.data
def test_deterministic_for_a_seed_and_different_across_seeds(tmp_path):
    a = small(cache=tmp_path / "a").load()
    b = small(cache=tmp_path / "b").load()
    c = small(cache=tmp_path / "c", seed=1).load()
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(a.test.inputs, b.test.inputs)
    assert torch.equal(a.train.targets, b.train.targets)
    assert not torch.equal(a.train.inputs, c.train.inputs)
    assert not torch.equal(a.test.inputs, c.test.inputs)
    # the test split has its own random stream: it does not depend on the train size
    d = small(cache=tmp_path / "d", train_size=123).load()
    assert torch.equal(a.test.inputs, d.test.inputs)


@pytest.fixture
def build_counter(monkeypatch):
    calls = []
    real = md.build_splits

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(md, "build_splits", counting)
    return calls


@pytest.mark.data
def test_cache_is_written_atomically_and_reused(tmp_path, build_counter):
    problem = small(cache=tmp_path)
    first = problem.load()
    assert len(build_counter) == 1
    path = problem.cache_path
    checksum = path.with_name(path.name + ".sha256")
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, checksum.name])
    assert checksum.read_text() == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n"
    again = problem.load()
    fresh = small(cache=tmp_path).load()  # a new object with the same options
    assert len(build_counter) == 1
    assert torch.equal(first.train.inputs, again.train.inputs)
    assert torch.equal(first.test.targets, fresh.test.targets)


def flip_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def drop_checksum(path: Path) -> None:
    path.with_name(path.name + ".sha256").unlink()


@pytest.mark.data
@pytest.mark.parametrize(
    ("damage", "message"),
    [(flip_byte, "corrupt"), (truncate, "corrupt"), (drop_checksum, "no readable checksum")],
    ids=["flipped-byte", "truncated", "no-checksum"],
)
def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path, build_counter, caplog, damage, message):
    problem = small(cache=tmp_path)
    original = problem.load()
    damage(problem.cache_path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        rebuilt = problem.load()
    assert len(build_counter) == 2
    assert any(message in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert torch.equal(original.train.inputs, rebuilt.train.inputs)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        caplog.clear()
        problem.load()  # the rebuilt cache is sound again
    assert len(build_counter) == 2 and not caplog.records


@pytest.mark.data
def test_unwritable_cache_still_returns_the_data(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        splits = small(cache=blocker).load()
    assert len(splits.train) == 300
    assert any("could not write the cache" in r.getMessage() for r in caplog.records)


def test_cache_key_and_location(tmp_path, monkeypatch):
    monkeypatch.delenv("PMTL_CACHE_DIR", raising=False)
    monkeypatch.setenv("PMTL_HOME", str(tmp_path / "home"))
    base = MultiDigitProblem("multi_fashion", train_size=10, test_size=5, seed=2)
    assert base.cache_path.is_relative_to(tmp_path / "home" / "cache")
    monkeypatch.setenv("PMTL_CACHE_DIR", str(tmp_path / "c"))
    assert base.cache_path.is_relative_to(tmp_path / "c")
    assert MultiDigitProblem(cache_dir=tmp_path / "x").cache_path.is_relative_to(tmp_path / "x")
    variants = [
        base,
        MultiDigitProblem("multi_mnist", train_size=10, test_size=5, seed=2),
        MultiDigitProblem("multi_fashion", train_size=11, test_size=5, seed=2),
        MultiDigitProblem("multi_fashion", train_size=10, test_size=6, seed=2),
        MultiDigitProblem("multi_fashion", train_size=10, test_size=5, seed=3),
    ]
    assert len({p.cache_path for p in variants}) == len(variants)
    assert f"v{md.FORMAT_VERSION}" in base.cache_path.name


def test_missing_raw_data_names_the_fix(tmp_path):
    problem = MultiDigitProblem(train_size=4, test_size=2, data_dir=tmp_path, cache_dir=tmp_path)
    with pytest.raises(MissingDataError) as info:
        problem.load()
    text = str(info.value)
    assert "PMTL_DATA_DIR" in text and "download=True" in text
    assert str(tmp_path / "MNIST" / "raw") in text


def test_construction_is_lazy_and_validated(tmp_path):
    problem = MultiDigitProblem(data_dir=tmp_path / "nothing", cache_dir=tmp_path / "cache")
    assert problem.n_tasks == 2 and problem.task_names == ("top_left", "bottom_right")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="unknown multi-digit problem"):
        MultiDigitProblem("multi_cifar")
    with pytest.raises(ValueError, match="train_size"):
        MultiDigitProblem(train_size=0)


@pytest.mark.data
def test_losses_and_metrics_under_vmap_match_a_loop(tmp_path, device):
    problem = small(cache=tmp_path, width=0.5)
    batch = problem.load(device).train
    x = problem.transform(batch.inputs[:64])
    y = batch.targets[:64]
    assert x.shape == (64, 1, 36, 36) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    models = [problem.build_model().to(device) for _ in range(3)]
    params, buffers = stack_module_state(models)
    base = problem.build_model().to("meta")

    def evaluate(p, b):
        _, outs = functional_call(base, (p, b), (x,))
        return problem.task_losses(outs, y), problem.task_metrics(outs, y)["accuracy"]

    losses, correct = vmap(evaluate)(params, buffers)
    assert losses.shape == (3, 2) and correct.shape == (3, 2)
    for k, model in enumerate(models):
        _, outs = model(x)
        ref = torch.stack(
            [torch.nn.functional.cross_entropy(o, y[:, i]) for i, o in enumerate(outs)]
        )
        torch.testing.assert_close(losses[k], ref, atol=1e-5, rtol=1e-5)
        hits = torch.stack([(o.argmax(1) == y[:, i]).sum() for i, o in enumerate(outs)])
        torch.testing.assert_close(correct[k], hits.float())


@pytest.mark.data
def test_full_size_generation_is_fast(record_property):
    """120,000 train + 20,000 test samples, generated from the raw files."""
    root = data_root()
    started = time.perf_counter()
    built = md.build_splits("multi_mnist", 120_000, 20_000, 0, root, download=False)
    elapsed = time.perf_counter() - started
    record_property("multi_mnist_generation_seconds", round(elapsed, 2))
    assert built["train_images"].shape == (120_000, 36, 36)
    assert built["test_images"].shape == (20_000, 36, 36)
    assert (built["train_labels"][:, 0] != built["train_labels"][:, 1]).all()
    assert elapsed < 60, f"generation took {elapsed:.1f} s"
