"""``load_predictor``: a downloaded table model predicts original labels and units from raw rows;
``export_onnx``: the network in onnxruntime matches torch within 1e-4."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from pmtl_core import load_model, load_predictor, train
from pmtl_core.config import make_config
from pmtl_core.export import export_model
from pmtl_core.models import build_model
from pmtl_core.onnx_export import export_onnx
from pmtl_core.problems.table import TableProblem

TARGETS = [
    {"column": "grade", "kind": "classification"},
    {"column": "weight_kg", "kind": "regression"},
]


def frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Integer class labels (3, 5, 7) and a regression target in kilograms (~70)."""
    rng = np.random.default_rng(seed)
    height = rng.normal(170, 10, size=n)
    shop = rng.choice(["north", "south"], size=n)
    grade = np.select([height < 165, height < 175], [3, 5], 7)
    weight = 0.9 * (height - 100) + 4 * (shop == "south") + rng.normal(0, 1, size=n)
    return pd.DataFrame({"height": height, "shop": shop, "grade": grade, "weight_kg": weight})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A table model trained for a few epochs and exported as a download would be."""
    tmp = tmp_path_factory.mktemp("predictor")
    problem = TableProblem(frame=frame(), targets=TARGETS)
    cfg = make_config(
        {"optimizer": "adam", "lr": 1e-2, "batch_size": 64, "lr_step": 0},
        {"epochs": 8, "device": "cpu"},
    )
    train(problem, "linear", 3, cfg, checkpoint_dir=tmp / "ckpt")
    newest = sorted((tmp / "ckpt").glob("ckpt-*.pt"))[-1]
    return export_model(newest, 1, tmp / "model")  # the balanced middle model


def test_predictions_are_in_original_labels_and_units(exported):
    config_path, weights_path = exported
    predictor = load_predictor(config_path, weights_path)
    rows = frame(80, seed=1)
    out = predictor.predict(rows.drop(columns=["grade", "weight_kg"]))
    assert set(out) == {"grade", "weight_kg"}
    assert out["grade"].dtype.kind == "i" and set(out["grade"]) <= {3, 5, 7}
    assert (out["grade"] == rows["grade"].to_numpy()).mean() > 0.7
    rmse = float(np.sqrt(np.mean((out["weight_kg"] - rows["weight_kg"].to_numpy()) ** 2)))
    assert 40 < float(out["weight_kg"].mean()) < 100  # kilograms, not standard deviations
    assert rmse < 4.0  # the spread of the target is ~9 kg
    proba = predictor.predict_proba(rows)
    assert proba["grade"].shape == (80, 3)
    np.testing.assert_allclose(proba["grade"].sum(1), 1, rtol=1e-5)


def test_the_config_alone_carries_the_preprocessing(exported):
    config_path, weights_path = exported
    config = json.loads(config_path.read_text())
    assert config["problem"] == "table" and config["task_names"] == ["grade", "weight_kg"]
    predictor = load_predictor(config, weights_path.read_bytes())
    assert predictor.feature_columns == ["height", "shop"]
    model = load_model(config, weights_path)  # the plain network loads too
    _, outs = model(torch.from_numpy(predictor.inputs(frame(5))))
    assert [tuple(o.shape) for o in outs] == [(5, 3), (5, 1)]
    with pytest.raises(ValueError, match="height"):
        predictor.predict(pd.DataFrame({"shop": ["north"]}))


def test_a_model_without_preprocessing_is_refused(tmp_path):
    config = {
        "format": 1,
        "kind": "dataset",
        "problem": "penguins",
        "model": {"encoder": {"type": "mlp", "in_features": 7}, "heads": [3, 2]},
        "task_names": ["species", "sex"],
    }
    save_file(dict(build_model(config["model"]).state_dict()), str(tmp_path / "w.safetensors"))
    with pytest.raises(ValueError, match="no table preprocessing"):
        load_predictor(config, tmp_path / "w.safetensors")


def _onnx_matches_torch(config, weights, x):
    import onnxruntime

    data = export_onnx(config, weights)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == list(config["task_names"])
    got = session.run(None, {"input": x})
    with torch.no_grad():
        _, outs = load_model(config, weights)(torch.from_numpy(x))
    for theirs, ours in zip(got, outs, strict=True):
        np.testing.assert_allclose(theirs, ours.numpy(), atol=1e-4, rtol=0)


def test_onnx_of_a_table_model_matches_torch(exported):
    config_path, weights_path = exported
    config = json.loads(config_path.read_text())
    x = load_predictor(config, weights_path).inputs(frame(37, seed=2))  # any batch size
    _onnx_matches_torch(config, weights_path, x)


def test_onnx_of_a_lenet_model_matches_torch(tmp_path):
    model_cfg = {"encoder": {"type": "lenet"}, "heads": [10, 10]}
    torch.manual_seed(0)
    save_file(dict(build_model(model_cfg).state_dict()), str(tmp_path / "w.safetensors"))
    config = {
        "format": 1,
        "kind": "dataset",
        "problem": "multi_mnist",
        "model": model_cfg,
        "task_names": ["top_left", "bottom_right"],
    }
    x = np.random.default_rng(0).random((3, 1, 36, 36), dtype=np.float32)
    _onnx_matches_torch(config, tmp_path / "w.safetensors", x)
    with pytest.raises(ValueError, match="function problem"):
        export_onnx({**config, "kind": "function", "problem": "concave"}, b"")
