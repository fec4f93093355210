"""bench/reproduce.py's run locks: two processes working through one plan never train one run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
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


def test_a_run_held_by_a_live_process_is_skipped_and_released_after(reproduce):
    with reproduce.claim("a") as first:
        assert first
        with reproduce.claim("a") as second:
            assert not second
        with reproduce.claim("b") as other:
            assert other
    assert not (reproduce.LOCKS / "a.lock").exists()
    with reproduce.claim("a") as again:
        assert again


def test_another_process_holds_the_run_until_it_is_killed(reproduce):
    proc = _holder(reproduce.LOCKS, "run-x")
    try:
        with reproduce.claim("run-x") as mine:
            assert not mine
    finally:
        proc.kill()  # SIGKILL: the lock file stays behind, its owner is dead
        proc.wait()
        proc.stdout.close()
    assert (reproduce.LOCKS / "run-x.lock").read_text().split()[0] == str(proc.pid)
    with reproduce.claim("run-x") as mine:
        assert mine
        assert (reproduce.LOCKS / "run-x.lock").read_text().split()[0] == str(os.getpid())


def test_an_unreadable_lock_counts_as_held_only_while_fresh(reproduce):
    reproduce.LOCKS.mkdir(parents=True)
    lock = reproduce.LOCKS / "r.lock"
    lock.write_text("")
    with reproduce.claim("r") as mine:
        assert not mine
    old = time.time() - 120
    os.utime(lock, (old, old))
    with reproduce.claim("r") as mine:
        assert mine
