"""bench/reproduce.py's run locks: two processes working through one plan never train one run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reproduce(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("reproduce", ROOT / "bench" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "reproduce", module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "LOCKS", tmp_path / "locks")
    return module


def _holder(lock_dir: Path, run_id: str) -> subprocess.Popen:
    """Another process that takes the claim and keeps it until killed."""
    script = str(ROOT / "bench" / "reproduce.py")
    code = (
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('r', {script!r})\n"
        "m = sys.modules['r'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(m)\n"
        f"m.LOCKS = __import__('pathlib').Path({str(lock_dir)!r})\n"
        f"with m.claim({run_id!r}) as mine:\n"
        "    print(mine, flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "True"
    return proc


def test_a_held_run_is_skipped_and_free_again_after(reproduce):
    with reproduce.claim("a") as first:
        assert first
        with reproduce.claim("a") as second:  # another open file: flock excludes it too
            assert not second
        with reproduce.claim("b") as other:
            assert other
    with reproduce.claim("a") as again:
        assert again


def test_another_process_holds_the_run_until_it_is_killed(reproduce):
    proc = _holder(reproduce.LOCKS, "run-x")
    try:
        with reproduce.claim("run-x") as mine:
            assert not mine
        assert (reproduce.LOCKS / "run-x.lock").read_text().split() == [str(proc.pid)]
    finally:
        proc.kill()  # SIGKILL: no clean-up runs; the lock file stays behind
        proc.wait()
        proc.stdout.close()
    with reproduce.claim("run-x") as mine:
        assert mine
        assert (reproduce.LOCKS / "run-x.lock").read_text().split() == [str(os.getpid())]
        assert (reproduce.LOCKS / "run-x.lock").read_text().split() == [str(os.getpid())]
