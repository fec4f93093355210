"""Bounded disk: the data-set cache's size cap (LRU), the artifact store's stale-file sweep and
the pruning of exported models."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from backend.app import exports
from backend.app.core.config import Settings
from backend.app.db.models import Artifact, Preference
from backend.app.db.session import session_scope
from backend.app.storage import ArtifactStore
from pmtl_core import cache
from pmtl_core.problems import multi_digit as md
from tests.backend._api import Api


def _file(path: Path, size: int, age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


# ---------------------------------------------------------------- pmtl_core.cache


def test_make_room_evicts_least_recently_used_entries_with_their_side_files(tmp_path: Path):
    old = _file(tmp_path / "d" / "old.safetensors", 400, age=300)
    side = _file(tmp_path / "d" / "old.safetensors.sha256", 10, age=300)
    mid = _file(tmp_path / "d" / "mid.safetensors", 400, age=200)
    new = _file(tmp_path / "d" / "new.safetensors", 400, age=100)
    cache.touch(mid)  # used just now: now the newest
    assert cache.make_room(tmp_path, 100, max_bytes=1000)
    assert not old.exists() and not side.exists()  # the oldest entry, checksum and all
    assert new.exists() and mid.exists()
    assert cache.make_room(tmp_path, 300, max_bytes=1000, keep=[new])
    assert new.exists() and not mid.exists()  # kept entries are never evicted


def test_make_room_refuses_what_cannot_fit_and_sweeps_stale_temp_files(tmp_path: Path):
    entry = _file(tmp_path / "a.safetensors", 100)
    stale = _file(tmp_path / ".a.safetensors.x1.tmp", 50, age=2 * cache.STALE_TMP_SECONDS)
    fresh = _file(tmp_path / ".b.safetensors.x2.tmp", 50)
    assert not cache.make_room(tmp_path, 2000, max_bytes=1000)
    assert entry.exists()  # nothing evicted for an entry that can never fit
    assert not stale.exists() and fresh.exists()  # a young temp file may be a live write
    assert cache.make_room(tmp_path, 10**12, max_bytes=0)  # 0: no cap


def test_cap_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PMTL_CACHE_MAX_GB", "1.5")
    assert cache.default_max_bytes() == 1_500_000_000
    monkeypatch.delenv("PMTL_CACHE_MAX_GB")
    assert cache.default_max_bytes() == int(cache.DEFAULT_MAX_GB * 1e9)
    monkeypatch.setenv("PMTL_CACHE_MAX_GB", "lots")
    with pytest.raises(ValueError, match="PMTL_CACHE_MAX_GB"):
        cache.default_max_bytes()


def _fake_splits(name, train_size, test_size, seed, data_root, download):
    """Generated tensors of the right shapes (the cache policy, not the data, is under test)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", train_size), ("test", test_size)):
        out[f"{split}_images"] = torch.randint(0, 255, (n, 36, 36), generator=g, dtype=torch.uint8)
        out[f"{split}_labels"] = torch.randint(0, 10, (n, 2), generator=g)
    return out


def test_multi_digit_caches_stay_under_the_cap(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(md, "build_splits", _fake_splits)
    one = 200 * 36 * 36 + 200 * 2 * 8  # bytes of one 150 + 50 sample data set, about
    problems = [
        md.MultiDigitProblem(
            train_size=150, test_size=50, seed=s, cache_dir=tmp_path, cache_max_bytes=int(2.5 * one)
        )
        for s in range(3)
    ]
    for problem in problems:
        problem.load()
    cached = sorted((tmp_path / "multi_digit").glob("*.safetensors"))
    assert [p.name for p in cached] == [problems[1].cache_path.name, problems[2].cache_path.name]
    total = sum(p.stat().st_size for p in (tmp_path / "multi_digit").iterdir())
    assert total <= 2.5 * one
    # Reading a cached data set makes it the most recently used one.
    problems[1].load()
    md.MultiDigitProblem(
        train_size=150, test_size=50, seed=9, cache_dir=tmp_path, cache_max_bytes=int(2.5 * one)
    ).load()
    assert problems[1].cache_path.exists() and not problems[2].cache_path.exists()


def test_a_data_set_larger_than_the_cap_is_used_but_not_cached(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(md, "build_splits", _fake_splits)
    problem = md.MultiDigitProblem(
        train_size=150, test_size=50, cache_dir=tmp_path, cache_max_bytes=1000
    )
    splits = problem.load()
    assert splits.train.inputs.shape == (150, 36, 36)
    assert not problem.cache_path.exists()


def test_the_service_hands_its_cache_settings_to_the_library(tmp_path: Path):
    settings = Settings(_env_file=None, home=tmp_path, cache_max_gb=3.0)
    env = settings.library_environment()
    assert env["PMTL_CACHE_DIR"] == str((tmp_path / "cache").resolve())
    assert float(env["PMTL_CACHE_MAX_GB"]) == 3.0


# ---------------------------------------------------------------- artifact store


def test_clean_stale_removes_debris_and_nothing_else(tmp_path: Path):
    store = ArtifactStore(tmp_path)
    job = store.job_dir(1, 1)
    keep = [
        _file(job / "checkpoints" / "ckpt-epoch0001.pt", 10, age=10_000),
        _file(job / "checkpoints" / ".ckpt-epoch0002.pt.abc.tmp", 10),  # a live write
    ]
    gone = [
        _file(job / "checkpoints" / ".ckpt-epoch0003.pt.def.tmp", 10, age=10_000),
        _file(job / "checkpoints" / "ckpt-epoch0004.pt.discarded", 10, age=10_000),
    ]
    trash = tmp_path / "runs" / ".deleted-7-123-456"
    _file(trash / "jobs" / "1" / "x.pt", 10)
    scratch = _file(job / "models" / "3" / ".export-old" / "w.bin", 10, age=10_000).parent
    os.utime(scratch, (time.time() - 10_000,) * 2)
    assert store.clean_stale(max_age_s=3600) == 4
    assert all(p.exists() for p in keep)
    assert not any(p.exists() for p in gone)
    assert not trash.exists() and not scratch.exists()
    assert ArtifactStore(tmp_path / "missing").clean_stale() == 0


def test_old_exports_of_a_preference_are_pruned(api: Api):
    run = api.create_run(preferences={"count": 1})
    claim = api.claim()
    store = api.app.state.store
    with session_scope(api.factory) as session:
        pref = session.scalar(select(Preference).where(Preference.run_id == run["id"]))
        for epoch in range(1, 5):
            directory = store.model_dir(run["id"], claim.job_id, pref.id, epoch)
            for kind, name in (("model", exports.WEIGHTS), ("model_config", exports.CONFIG)):
                sha, size = store.write_bytes(store.relative(directory / name), b"{}")
                session.add(
                    Artifact(
                        run_id=run["id"],
                        job_id=claim.job_id,
                        preference_id=pref.id,
                        kind=kind,
                        epoch=epoch,
                        path=store.relative(directory / name),
                        sha256=sha,
                        size=size,
                    )
                )
        session.flush()
        exports._prune(session, store, pref, keep=2)
    with session_scope(api.factory) as session:
        epochs = session.scalars(
            select(Artifact.epoch).where(Artifact.kind.in_(("model", "model_config")))
        ).all()
    assert sorted(set(epochs)) == [3, 4] and len(epochs) == 4
    models = store.job_dir(run["id"], claim.job_id) / "models"
    assert sorted(p.name for p in next(models.iterdir()).iterdir()) == ["3", "4"]
