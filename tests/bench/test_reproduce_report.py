"""bench/reproduce_report.py's progress line: it promises resumption only while runs are left."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _report():
    spec = importlib.util.spec_from_file_location(
        "reproduce_report", ROOT / "bench" / "reproduce_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_progress_line_says_the_rest_resume_only_when_runs_are_left():
    report = _report()
    assert report.progress_line([{"done": True}, {"done": False}]) == (
        "1 of 2 recorded runs finished (the others resume in later sessions)."
    )
    assert report.progress_line([{"done": True}, {"done": True}]) == (
        "2 of 2 recorded runs finished."
    )
