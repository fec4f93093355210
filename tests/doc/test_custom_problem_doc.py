"""docs/custom_problem.md stays true: its module is written out, loaded by path and exercised.

Python blocks whose first line is ``# file: PATH`` are written to ``PATH`` under a temp folder on
``sys.path``; every other Python block is executed in order, as a reader would run it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch.func import functional_call, stack_module_state, vmap

from pmtl_core.problems import DatasetProblem, get_problem

DOC = Path(__file__).resolve().parents[2] / "docs" / "custom_problem.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
FILE_MARK = re.compile(r"^# file: (\S+)\n")
DOTTED = "mypkg.mymod:make_problem"


def blocks() -> tuple[dict[str, str], list[str]]:
    files, snippets = {}, []
    for code in BLOCK.findall(DOC.read_text(encoding="utf-8")):
        mark = FILE_MARK.match(code)
        if mark:
            files[mark.group(1)] = code
        else:
            snippets.append(code)
    return files, snippets


@pytest.fixture
def documented_package(tmp_path, monkeypatch):
    files, snippets = blocks()
    assert "mypkg/mymod.py" in files, "the doc must show the module it tells readers to write"
    for rel, code in files.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield snippets
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def test_doc_names_the_factory_it_defines():
    text = DOC.read_text(encoding="utf-8")
    assert f"--problem {DOTTED}" in text
    assert "def make_problem(" in blocks()[0]["mypkg/mymod.py"]


def test_doc_snippets_run(documented_package):
    assert documented_package, "the doc must show how to use the problem"
    for code in documented_package:
        exec(compile(code, str(DOC), "exec"), {"__name__": "doc_snippet"})


def test_documented_problem_honours_the_engine_contract(documented_package, device):
    problem = get_problem(DOTTED, {"n_samples": 200})
    assert isinstance(problem, DatasetProblem) and problem.n_tasks == 2
    data = problem.load(device).train
    x, y = problem.transform(data.inputs[:16]), data.targets[:16]
    models = [problem.build_model().to(device) for _ in range(3)]
    params, buffers = stack_module_state(models)
    base = problem.build_model().to("meta")

    def evaluate(p, b):
        _, outs = functional_call(base, (p, b), (x,))
        return problem.task_losses(outs, y), problem.task_metrics(outs, y)

    losses, metrics = vmap(evaluate)(params, buffers)
    assert losses.shape == (3, 2) and set(metrics) == set(problem.metric_names)
    for k, model in enumerate(models):
        _, outs = model(x)
        torch.testing.assert_close(losses[k], problem.task_losses(outs, y))
    with pytest.raises(ValueError, match="rejected the options"):
        get_problem(DOTTED, {"n_sample": 10})
