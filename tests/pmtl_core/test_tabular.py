"""Penguins: offline data from the installed wheel, the seeded split, scaling, vmap-able losses."""

from __future__ import annotations

import socket
from importlib.resources import files

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from pmtl_core.problems import tabular
from pmtl_core.problems.tabular import PenguinsProblem, read_penguins


def test_data_come_from_the_installed_package_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the penguins data must not touch the network")

    monkeypatch.setattr(socket, "socket", no_network)
    read_penguins.cache_clear()
    features, targets = read_penguins()
    assert files("palmerpenguins").joinpath("data", "penguins.csv").is_file()
    assert features.shape == (333, 7) and targets.shape == (333, 2)
    assert torch.isfinite(features).all()
    assert set(targets[:, 0].tolist()) == {0, 1, 2} and set(targets[:, 1].tolist()) == {0, 1}
    assert torch.equal(features[:, 4:].sum(1), torch.ones(333))  # one island each
    assert len({tuple(r) for r in features.tolist()}) == 333  # rows are distinct


def test_default_split_and_standardisation(device):
    splits = PenguinsProblem().load(device)
    train, test = splits.train, splits.test
    assert train.inputs.shape == (266, 7) and test.inputs.shape == (67, 7)
    assert train.targets.shape == (266, 2) and train.targets.dtype == torch.int64
    assert train.inputs.device.type == torch.device(device).type
    measured = train.inputs[:, :4]
    torch.testing.assert_close(measured.mean(0), torch.zeros(4, device=device), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        measured.std(0, correction=0), torch.ones(4, device=device), atol=1e-5, rtol=0
    )
    assert set(train.inputs[:, 4:].unique().tolist()) == {0.0, 1.0}
    # test rows are scaled with the train statistics, not their own
    assert test.inputs[:, :4].mean(0).abs().max() > 1e-3
    # train and test are disjoint and together hold every row
    rows = torch.cat([train.inputs, test.inputs]).tolist()
    assert len({tuple(r) for r in rows}) == 333


def test_split_is_deterministic_by_seed():
    a = PenguinsProblem(seed=4).load()
    b = PenguinsProblem(seed=4).load()
    c = PenguinsProblem(seed=5).load()
    assert torch.equal(a.train.inputs, b.train.inputs) and torch.equal(
        a.test.targets, b.test.targets
    )
    assert not torch.equal(a.test.targets, c.test.targets)


def test_sizes_are_honoured_and_checked():
    splits = PenguinsProblem(train_size=100, test_size=50).load()
    assert (len(splits.train), len(splits.test)) == (100, 50)
    with pytest.raises(ValueError, match="333 complete rows"):
        PenguinsProblem(train_size=300, test_size=50).load()
    with pytest.raises(ValueError, match="train_size and test_size"):
        PenguinsProblem(test_size=0)


def test_construction_reads_nothing(monkeypatch):
    def fail():
        raise AssertionError("constructing the problem must not read data")

    monkeypatch.setattr(tabular, "read_penguins", fail)
    problem = PenguinsProblem(representation=3)
    assert problem.task_names == ("species", "sex") and problem.metric_names == ("accuracy",)
    z, outs = problem.build_model()(torch.zeros(4, 7))
    assert z.shape == (4, 3) and [o.shape for o in outs] == [(4, 3), (4, 2)]


def test_model_config_is_json_and_rebuilds():
    config = PenguinsProblem(hidden=(5, 4), representation=2).model_config()
    assert config == {
        "encoder": {"type": "mlp", "in_features": 7, "hidden": [5, 4], "out": 2, "out_relu": False},
        "heads": [3, 2],
    }


def test_losses_and_metrics_under_vmap_match_a_loop(device):
    problem = PenguinsProblem()
    data = problem.load(device).train
    x, y = problem.transform(data.inputs), data.targets
    models = [problem.build_model().to(device) for _ in range(4)]
    params, buffers = stack_module_state(models)
    base = problem.build_model().to("meta")

    def evaluate(p, b):
        _, outs = functional_call(base, (p, b), (x,))
        return problem.task_losses(outs, y), problem.task_metrics(outs, y)

    losses, metrics = vmap(evaluate)(params, buffers)
    assert losses.shape == (4, 2) and set(metrics) == {"accuracy"}
    assert metrics["accuracy"].shape == (4, 2)
    for k, model in enumerate(models):
        _, outs = model(x)
        torch.testing.assert_close(losses[k], problem.task_losses(outs, y), atol=1e-5, rtol=1e-5)
        hits = torch.stack([(o.argmax(1) == y[:, i]).sum() for i, o in enumerate(outs)]).float()
        torch.testing.assert_close(metrics["accuracy"][k], hits)
        assert (metrics["accuracy"][k] <= len(y)).all()
