"""Problem registry and user-defined problems: lookup, option validation, descriptions, errors."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from pmtl_core.config import make_config
from pmtl_core.problems import (
    REGISTRY,
    ConcaveProblem,
    DatasetProblem,
    FunctionProblem,
    SphereProblem,
    describe_problems,
    get_problem,
    tabular,
)
from pmtl_core.problems import multi_digit as md
from pmtl_core.problems.multi_digit import MultiDigitProblem
from pmtl_core.problems.tabular import PenguinsProblem
from pmtl_core.problems.user import load_user_problem

NAMES = {
    "concave",
    "concave_unbalanced",
    "sphere3",
    "multi_mnist",
    "multi_fashion",
    "multi_fashion_mnist",
    "penguins",
    "table",
}


def test_registry_holds_every_problem_with_its_kind():
    assert set(REGISTRY) == NAMES
    for name, spec in REGISTRY.items():
        assert spec.name == name
        if spec.tasks_from_options:  # needs a table and targets: tests/pmtl_core/test_table.py
            continue
        problem = get_problem(name)
        assert problem.name == name
        expected = FunctionProblem if spec.kind == "function" else DatasetProblem
        assert isinstance(problem, expected)


def test_function_problems_are_the_synthetic_ones():
    assert isinstance(get_problem("concave"), ConcaveProblem)
    sphere = get_problem("sphere3", {"dim": 5})
    assert isinstance(sphere, SphereProblem) and sphere.n_tasks == 3 and sphere.dim == 5
    x = torch.randn(4, 20)
    plain, unbalanced = (
        get_problem("concave").evaluate(x),
        get_problem("concave_unbalanced").evaluate(x),
    )
    torch.testing.assert_close(unbalanced, plain * torch.tensor([1.0, 10.0]))


def test_dataset_options_reach_the_problem(tmp_path):
    problem = get_problem(
        "multi_fashion_mnist",
        {"train_size": 64, "test_size": 32, "seed": 3, "data_dir": str(tmp_path), "width": 2},
    )
    assert isinstance(problem, MultiDigitProblem)
    assert (problem.train_size, problem.test_size, problem.seed) == (64, 32, 3)
    assert problem.data_dir == tmp_path and problem.download is False
    assert problem.model_config()["encoder"]["width"] == 2
    penguins = get_problem("penguins", {"test_size": 50, "representation": 3})
    assert isinstance(penguins, PenguinsProblem) and penguins.test_size == 50


def test_default_configs_suit_the_problem():
    concave = REGISTRY["concave"].default_config
    assert concave["lr"] == 0.1 and concave["steps_per_epoch"] == 20
    assert concave["epochs"] == 50 and concave["momentum"] == 0
    paper = REGISTRY["multi_mnist"].default_config
    assert paper == {
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.9,
        "batch_size": 256,
        "epochs": 100,
        "lr_step": 15,
        "lr_gamma": 0.5,
    }
    assert REGISTRY["penguins"].default_config["batch_size"] <= 266


@pytest.mark.parametrize("name", sorted(NAMES))
def test_default_configs_are_valid_engine_configs(name):
    config = make_config(REGISTRY[name].default_config)
    for key, value in REGISTRY[name].default_config.items():
        assert getattr(config, key) == value


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("concave", {"dimm": 3}, "dimm"),
        ("concave", {"dim": 0}, "dim"),
        ("multi_mnist", {"train_size": -1}, "train_size"),
        ("multi_mnist", {"cache_dir": "/tmp"}, "cache_dir"),
        ("penguins", {"download": True}, "download"),
        ("penguins", ["seed", 1], "mapping"),
    ],
    ids=["unknown-key", "bad-value", "negative-size", "not-an-option", "foreign-option", "list"],
)
def test_invalid_options_are_value_errors(name, options, match):
    with pytest.raises(ValueError, match=match) as info:
        get_problem(name, options)
    assert name in str(info.value)


@pytest.mark.parametrize("name", ["multi_cifar", "", 3, None])
def test_unknown_names_list_the_valid_ones(name):
    with pytest.raises(ValueError, match="unknown problem") as info:
        get_problem(name)
    for valid in NAMES:
        assert valid in str(info.value)


def test_describe_problems_is_json_and_reads_no_data(monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("describing problems must not load data")

    monkeypatch.setattr(md, "build_splits", no_data)
    monkeypatch.setattr(md, "read_source", no_data)
    monkeypatch.setattr(tabular, "read_penguins", no_data)
    described = describe_problems()
    assert json.loads(json.dumps(described)) == described
    assert {d["name"] for d in described} == NAMES
    by_name = {d["name"]: d for d in described}
    mnist = by_name["multi_mnist"]
    assert mnist["kind"] == "dataset" and mnist["n_tasks"] == 2
    assert mnist["task_names"] == ["top_left", "bottom_right"]
    assert mnist["metric_names"] == ["accuracy"]
    assert {"train_size", "test_size", "seed", "download", "data_dir"} <= set(
        mnist["options"]["properties"]
    )
    assert mnist["options"]["additionalProperties"] is False
    assert by_name["sphere3"]["n_tasks"] == 3 and by_name["sphere3"]["metric_names"] == []
    assert by_name["concave"]["default_config"]["lr"] == 0.1
    # descriptions are copies: editing one leaves the registry alone
    by_name["concave"]["default_config"]["lr"] = 99
    assert REGISTRY["concave"].default_config["lr"] == 0.1


USER_MODULE = """
from pmtl_core.problems import ConcaveProblem

def make(dim=20, scale=1.0):
    return ConcaveProblem(dim, scales=(1.0, scale), name="mine")

def not_a_problem():
    return {"name": "mine"}

class Holder:
    @staticmethod
    def create(dim=3):
        return ConcaveProblem(dim)

CONSTANT = 3
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "pmtl_user_probs.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "pmtl_user_broken.py").write_text("import a_dependency_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "pmtl_user_probs"
    for name in ("pmtl_user_probs", "pmtl_user_broken"):
        sys.modules.pop(name, None)


def test_user_problem_gets_its_options_as_keywords(user_module):
    problem = get_problem(f"{user_module}:make", {"dim": 4, "scale": 2.0})
    assert problem.name == "mine" and problem.dim == 4
    torch.testing.assert_close(problem.scales, torch.tensor([1.0, 2.0]))
    assert load_user_problem(f"{user_module}:Holder.create").dim == 3


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("pmtl_user_probs", "malformed"),
        ("pmtl_user_probs:", "malformed"),
        (":make", "malformed"),
        ("a:b:c", "malformed"),
        ("pmtl user:make", "malformed"),
        ("no_such_module_xyz:make", "no such module"),
        ("pmtl_user_broken:make", "a_dependency_that_is_missing"),
        ("pmtl_user_probs:missing", "no attribute 'missing'"),
        ("pmtl_user_probs:CONSTANT", "not a callable"),
        ("pmtl_user_probs:not_a_problem", "not a problem"),
    ],
)
def test_user_problem_errors_say_what_went_wrong(user_module, path, match):
    with pytest.raises(ValueError, match=match):
        load_user_problem(path)
    if ":" in path:  # what get_problem hands to the user-problem loader
        with pytest.raises(ValueError, match=match):
            get_problem(path)


def test_user_problem_rejected_options(user_module):
    with pytest.raises(ValueError, match="rejected the options"):
        get_problem(f"{user_module}:make", {"colour": "red"})


def test_user_problems_can_be_refused(user_module):
    with pytest.raises(ValueError, match="not allowed"):
        get_problem(f"{user_module}:make", allow_user_defined=False)
