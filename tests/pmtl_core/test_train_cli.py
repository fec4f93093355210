"""``pmtl train`` as a user runs it: a real process, killed with SIGKILL, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pmtl_core import checkpoints
from pmtl_core.cli import app
from tests.conftest import require
from tests.settings import DATA_DIR, DEVICE


def _pmtl(*args: str) -> list[str]:
    return [sys.executable, "-c", "from pmtl_core.cli import main; main()", *args]


def test_train_writes_fronts_png_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--problem",
            "concave",
            "--method",
            "pareto_mtl",
            "--prefs",
            "5",
            "--epochs",
            "4",
            "--device",
            str(DEVICE),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    front = json.loads((out / "front.json").read_text())
    assert len(front["objectives"]) == 5 and front["method"] == "pareto_mtl"
    assert (out / "front.png").read_bytes()[:4] == b"\x89PNG"
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert checkpoints.latest(out / "checkpoints").name == "ckpt-epoch0004.pt"


def test_train_reports_bad_input_without_a_traceback(tmp_path):
    result = CliRunner().invoke(
        app, ["train", "--problem", "concave", "--prefs", "[[1, -1]]", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "negative" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--problem",
        "concave",
        "--method",
        "pareto_mtl",
        "--prefs",
        "4",
        "--epochs",
        "40",
        "--config",
        '{"steps_per_epoch": 200}',
        "--device",
        str(DEVICE),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(_pmtl(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline and len(checkpoints.list_checkpoints(out / "checkpoints")) < 2
    ):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up
    proc.wait(timeout=30)
    last = checkpoints.latest(out / "checkpoints")
    assert last is not None
    killed_at = checkpoints.load(last)["epoch"]
    assert killed_at < 40
    done = subprocess.run(
        _pmtl("train", "--resume", str(out)), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    epochs = [
        json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs[-1] == 40
    assert sorted(set(epochs)) == list(range(1, 41))  # nothing missing after the resume
    assert checkpoints.load(checkpoints.latest(out / "checkpoints"))["epoch"] == 40


@pytest.mark.data
@pytest.mark.slow
def test_train_on_reduced_multimnist_learns_both_tasks(tmp_path):
    require(
        bool(DATA_DIR) and Path(DATA_DIR, "MNIST", "raw").is_dir(),
        "PMTL_DATA_DIR with MNIST/raw is needed for MultiMNIST",
    )
    out = tmp_path / "run"
    options = json.dumps({"train_size": 4096, "test_size": 1024, "data_dir": DATA_DIR})
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--problem",
            "multi_mnist",
            "--method",
            "pareto_mtl",
            "--prefs",
            "3",
            "--epochs",
            "3",
            "--lr",
            "0.02",
            "--batch-size",
            "64",
            "--problem-options",
            options,
            "--device",
            str(DEVICE),
            "--out",
            str(out),
        ],
        env={"PMTL_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert result.exit_code == 0, result.output
    front = json.loads((out / "front.json").read_text())
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    acc = {p["index"]: p["metrics"]["accuracy"] for p in last["points"] if p["split"] == "test"}
    # the balanced preference (1, 1)/sqrt(2) learns both tasks well above chance (0.1) in 192
    # steps; the extreme ones spend their first steps reaching their sectors (init phase)
    assert min(acc[1]) > 0.3, acc
    assert len(front["test_objectives"]) == 3
    assert all(v == v and v < 10 for row in front["test_objectives"] for v in row)  # finite
    before = {p["index"]: p["losses"] for p in first["points"] if p["split"] == "train"}
    after = {p["index"]: p["losses"] for p in last["points"] if p["split"] == "train"}
    assert all(a < b for a, b in zip(after[1], before[1], strict=True))


def test_resume_writes_into_the_given_directory_wherever_it_was_created(tmp_path, monkeypatch):
    from pmtl_core.train_cli import TrainRequest

    first = tmp_path / "first"
    first.mkdir()
    monkeypatch.chdir(first)
    args = [
        "train",
        "--problem",
        "concave",
        "--method",
        "linear",
        "--prefs",
        "2",
        "--epochs",
        "1",
        "--out",
        "run",
        "--device",
        str(DEVICE),
    ]
    assert CliRunner().invoke(app, args).exit_code == 0
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    (first / "run").rename(moved)
    monkeypatch.chdir(tmp_path)
    assert TrainRequest.load(moved).out == str(moved)
    result = CliRunner().invoke(app, ["train", "--resume", str(moved)])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "run").exists() and (moved / "front.json").is_file()
