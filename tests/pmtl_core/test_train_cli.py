"""``pmtl train`` as a user runs it: a real process, killed with SIGKILL, then resumed."""

from __future__ import annotations

import json
import os
import shlex
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


EPOCHS = 12


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    # killed once two epochs are checkpointed (each takes seconds), long before the last one
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
        str(EPOCHS),
        "--config",
        '{"steps_per_epoch": 100}',
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
    assert killed_at < EPOCHS
    done = subprocess.run(
        _pmtl("train", "--resume", str(out)), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    epochs = [
        json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs[-1] == EPOCHS
    assert sorted(set(epochs)) == list(range(1, EPOCHS + 1))  # nothing missing after the resume
    assert checkpoints.load(checkpoints.latest(out / "checkpoints"))["epoch"] == EPOCHS


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


def _concave_args(out: Path | None = None, *extra: str) -> list[str]:
    args = ["train", "--problem", "concave", "--method", "linear", "--prefs", "2"]
    args += ["--epochs", "1", "--device", str(DEVICE), *extra]
    return [*args, "--out", str(out)] if out is not None else args


def test_resume_without_a_checkpoint_says_so_and_starts_over_only_when_asked(tmp_path):
    from pmtl_core.front import write_json_atomic
    from pmtl_core.train_cli import TrainRequest

    # what `pmtl train` has written when it is stopped inside its first epoch: the request only
    run = tmp_path / "run"
    run.mkdir()
    request = TrainRequest(
        problem="concave",
        method="linear",
        preferences=2,
        config={"epochs": 1, "seed": 3, "device": str(DEVICE)},
        out=str(run),
    )
    write_json_atomic(run / "run.json", request.model_dump())
    result = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 1, result.output
    assert "nothing to resume" in result.output and "no checkpoint" in result.output
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]  # nothing trained, nothing new
    # the message gives the command that starts the same run over; it works as printed
    command = result.output.split("start it over from the beginning: ", 1)[1].splitlines()[0]
    argv = shlex.split(command)
    assert argv[:2] == ["pmtl", "train"] and "--overwrite" in argv and str(run) in argv
    again = CliRunner().invoke(app, argv[1:])
    assert again.exit_code == 0, again.output
    assert TrainRequest.load(run).config["seed"] == 3
    assert checkpoints.latest(run / "checkpoints") is not None and (run / "front.json").is_file()


def test_train_never_overwrites_an_earlier_run_without_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "mine"
    first = CliRunner().invoke(app, _concave_args(out, "--seed", "1"))
    assert first.exit_code == 0, first.output
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = CliRunner().invoke(app, _concave_args(out, "--seed", "2"))
    assert again.exit_code == 1
    assert "--overwrite" in again.output and "Traceback" not in again.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched
    replaced = CliRunner().invoke(app, [*_concave_args(out, "--seed", "2"), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((out / "run.json").read_text())["config"]["seed"] == 2
    # without --out every run gets a new folder of its own, and says where it is
    runs = []
    for _ in range(2):
        result = CliRunner().invoke(app, _concave_args())
        assert result.exit_code == 0, result.output
        runs.append(result.output)
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("concave-linear-") for f in folders)
    assert all((f / "front.json").is_file() for f in folders)
    for folder, output in zip(folders, runs, strict=True):
        assert f"runs/{folder.name}/front.json" in output


def test_train_download_flag_reaches_the_problem(monkeypatch, tmp_path):
    """The README's MultiMNIST command with ``--download``: the problem is built with
    download=True (stopped right there: nothing is fetched in the tests)."""
    import pmtl_core.problems

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    commands = [
        line for line in readme.splitlines() if line.startswith((".venv/bin/pmtl ", "pmtl "))
    ]
    lines = [line for line in commands if " train " in line and "--download" in line]
    assert lines, "the README shows how to let torchvision download MNIST"
    argv = shlex.split(lines[0].split("#")[0])
    assert Path(argv[0]).name == "pmtl" and argv[1] == "train"
    built = []

    def build(name, options=None, **kwargs):
        built.append(real(name, options, **kwargs))
        raise ValueError("stopped before loading any data")

    real = pmtl_core.problems.get_problem
    monkeypatch.setattr(pmtl_core.problems, "get_problem", build)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 1 and "stopped before loading any data" in result.output
    assert built and built[0].name == "multi_mnist" and built[0].download is True
    # and without the flag a missing data set says how to get it
    monkeypatch.setattr(pmtl_core.problems, "get_problem", real)
    empty = tmp_path / "no-data"
    empty.mkdir()
    no_flag = [a for a in argv[1:] if a != "--download"]
    missing = CliRunner().invoke(
        app,
        [
            *no_flag,
            "--problem-options",
            json.dumps({"data_dir": str(empty), "train_size": 8}),
            "--out",
            str(tmp_path / "x"),
            "--device",
            "cpu",
        ],
        env={"PMTL_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert missing.exit_code == 1 and "raw files not found" in missing.output
    assert "--download" in missing.output
