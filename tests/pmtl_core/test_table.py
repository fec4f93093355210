"""Problem ``table``: train-split preprocessing, the seeded split, JSON round trip, errors that
name the column, vmap-able losses and metrics, and training that learns both kinds of task."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from pmtl_core import train
from pmtl_core.config import make_config
from pmtl_core.problems import REGISTRY, get_problem
from pmtl_core.problems.table import TableProblem, split_rows
from pmtl_core.problems.table_preprocess import TablePreprocessor, TargetSpec, read_table
from tests._tables import TARGETS, make_table


def test_split_is_seeded_disjoint_and_complete():
    train_a, test_a = split_rows(100, 0.2, 3)
    train_b, test_b = split_rows(100, 0.2, 3)
    assert np.array_equal(train_a, train_b) and np.array_equal(test_a, test_b)
    assert len(test_a) == 20 and sorted([*train_a, *test_a]) == list(range(100))
    assert not np.array_equal(test_a, split_rows(100, 0.2, 4)[1])
    with pytest.raises(ValueError, match="too few"):
        split_rows(1, 0.5, 0)


def test_preprocessing_uses_train_statistics_only_and_round_trips_through_json():
    frame = make_table()
    train_rows = np.arange(300)
    pre = TablePreprocessor.fit(frame, train_rows, ["x1", "x2", "colour"], _specs())
    assert pre.input_names == [
        "x1",
        "x1__missing",
        "x2",
        *[f"colour={'<missing>' if c is None else c}" for c in pre.features[2]["categories"]],
    ]
    assert None in pre.features[2]["categories"]  # missing is a category of its own
    x = pre.transform(frame.iloc[train_rows])
    assert x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_allclose(x[:, [0, 2]].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x[:, [0, 2]].std(0), 1, atol=1e-4)
    x1 = frame["x1"].iloc[train_rows]
    assert pre.features[0]["median"] == pytest.approx(float(x1.median()))
    missing_row = int(np.flatnonzero(x1.isna().to_numpy())[0])
    assert x[missing_row, 1] == 1.0
    # Test-split statistics do not leak: changing them changes nothing.
    shifted = frame.copy()
    shifted.loc[300:, "x2"] += 1000
    again = TablePreprocessor.fit(shifted, train_rows, ["x1", "x2", "colour"], _specs())
    assert again.to_json() == pre.to_json()
    restored = TablePreprocessor.from_json(json.loads(json.dumps(pre.to_json())))
    np.testing.assert_array_equal(restored.transform(frame), pre.transform(frame))
    y = pre.encode_targets(frame)
    assert set(np.unique(y[:, 0])) == {0.0, 1.0}
    assert pre.targets[0]["classes"] == ["no", "yes"]
    assert abs(float(y[train_rows, 1].mean())) < 1e-5


def test_unseen_categories_encode_as_zeros_and_absent_numbers_as_the_median():
    frame = make_table()
    pre = TablePreprocessor.fit(frame, np.arange(len(frame)), ["x1", "colour"], _specs())
    rows = pd.DataFrame({"x1": [np.nan, "oops"], "colour": ["purple", np.nan]})
    x = pre.transform(rows)
    onehot = x[:, 2:]
    assert onehot[0].sum() == 0  # purple was never seen
    missing_col = pre.features[1]["categories"].index(None)
    assert onehot[1, missing_col] == 1
    median = (pre.features[0]["median"] - pre.features[0]["mean"]) / pre.features[0]["std"]
    np.testing.assert_allclose(x[:, 0], [median, median], rtol=1e-6)
    np.testing.assert_array_equal(x[:, 1], [1, 1])  # both flagged missing
    with pytest.raises(ValueError, match="x1"):
        pre.transform(rows.drop(columns=["x1"]))


def _specs() -> list[TargetSpec]:
    return [TargetSpec(t["column"], t["kind"]) for t in TARGETS]


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        ([TARGETS[0], {"column": "nope", "kind": "regression"}], "'nope'"),
        ([TARGETS[0], {"column": "const", "kind": "regression"}], "'const' is constant"),
        ([TARGETS[0], {"column": "one", "kind": "classification"}], "'one' is constant"),
        ([TARGETS[0], {"column": "colour", "kind": "regression"}], "'colour' is not numeric"),
    ],
    ids=["missing", "constant-regression", "one-class", "text-regression"],
)
def test_bad_targets_are_value_errors_naming_the_column(targets, match):
    frame = make_table().assign(const=2.0, one="a")
    with pytest.raises(ValueError, match=match):
        TableProblem(frame=frame, targets=targets).load()


def test_construction_checks_its_options_without_reading_data(tmp_path):
    missing = tmp_path / "nowhere.csv"
    problem = TableProblem(path=missing, targets=TARGETS)  # nothing is read yet
    assert (problem.n_tasks, problem.task_names) == (2, ("label", "price"))
    assert problem.metric_names == ("accuracy", "rmse")
    with pytest.raises(ValueError, match="unknown kind 'bogus'"):
        TableProblem(path=missing, targets=[TARGETS[0], {"column": "p", "kind": "bogus"}])
    with pytest.raises(ValueError, match="two or more"):
        TableProblem(path=missing, targets=TARGETS[:1])
    with pytest.raises(ValueError, match="both a target and a feature"):
        TableProblem(path=missing, targets=TARGETS, features=["label", "x1"])
    with pytest.raises(ValueError, match="dataset_path"):
        TableProblem(targets=TARGETS)


def test_registry_builds_it_from_a_csv_or_parquet_file(tmp_path):
    frame = make_table(120)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.parquet"), frame)
    for name in ("t.csv", "t.parquet"):
        options = {"dataset_path": str(tmp_path / name), "targets": TARGETS}
        splits = get_problem("table", options).load()
        assert splits.train.inputs.shape[0] == 96 and splits.test.inputs.shape[0] == 24
    assert REGISTRY["table"].tasks_from_options
    with pytest.raises(ValueError, match="at least 2"):
        get_problem("table", {"dataset_path": "x.csv", "targets": TARGETS[:1]})


def test_losses_and_metrics_are_pure_tensor_code_under_vmap():
    problem = TableProblem(frame=make_table(), targets=TARGETS)
    data = problem.load()
    models = [problem.build_model() for _ in range(3)]
    params, buffers = stack_module_state(models)
    template = models[0]
    x, y = data.test.inputs, data.test.targets

    def losses(p, b):
        _, outs = functional_call(template, (p, b), (x,))
        return problem.task_losses(outs, y), problem.task_metrics(outs, y)

    with torch.no_grad():
        stacked, metrics = vmap(losses)(params, buffers)
    assert stacked.shape == (3, 2) and torch.isfinite(stacked).all()
    for k, model in enumerate(models):
        with torch.no_grad():
            _, outs = model(x)
            single = problem.task_losses(outs, y)
        torch.testing.assert_close(stacked[k], single)
        assert math.isnan(float(metrics["accuracy"][k, 1]))  # no accuracy for a regression
        assert math.isnan(float(metrics["rmse"][k, 0]))
        std = problem.preprocessor.targets[1]["std"]
        rmse = float(single[1].sqrt()) * std * len(y)
        assert float(metrics["rmse"][k, 1]) == pytest.approx(rmse, rel=1e-4)


def test_model_config_carries_the_preprocessing_and_builds_the_network():
    problem = TableProblem(frame=make_table(), targets=TARGETS)
    config = problem.model_config()
    assert config["heads"] == [2, 1]
    assert config["encoder"]["in_features"] == problem.preprocessor.n_inputs
    assert TablePreprocessor.from_json(config["preprocessing"]).to_json() == (
        problem.preprocessor.to_json()
    )
    from pmtl_core.models import build_model

    assert sum(p.numel() for p in build_model(config).parameters()) == sum(
        p.numel() for p in problem.build_model().parameters()
    )


def test_training_learns_both_tasks(tmp_path):
    problem = TableProblem(frame=make_table(500), targets=TARGETS)
    cfg = make_config(REGISTRY["table"].default_config, {"epochs": 6, "device": "cpu"})
    front = train(problem, "linear", 2, cfg, checkpoint_dir=tmp_path)
    losses = front.objectives
    assert torch.isfinite(losses).all()
    # Each end of the front learns its task well past chance (ln 2 = 0.69 for the label,
    # 1.0 for the standardised price) with the default settings.
    assert float(losses[:, 0].min()) < 0.5 and float(losses[:, 1].min()) < 0.3


def test_integer_labels_with_gaps_come_back_as_integers():
    frame = make_table(200)
    frame["grade"] = np.where(frame["x2"] > 5, 2, 1)
    frame.loc[::10, "grade"] = np.nan  # pandas now holds 1.0 / 2.0
    targets = [{"column": "grade", "kind": "classification"}, TARGETS[1]]
    problem = TableProblem(frame=frame, targets=targets)
    assert problem.preprocessor.targets[0]["classes"] == [1, 2]
    assert len(problem.load().train) == 144  # the 20 rows without a grade are dropped
    labels = problem.preprocessor.decode(0, np.array([[0.1, 0.9], [0.8, 0.2]]))
    assert labels.tolist() == [2, 1] and labels.dtype.kind == "i"
