"""The artifact store: id-only paths, containment, atomic writes, SHA-256 checks, deletion."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from backend.app.storage import ArtifactStore, StorageError, file_sha256


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_paths_are_built_from_integer_ids_under_the_root(store: ArtifactStore):
    assert store.job_dir(3, 7) == store.root / "runs" / "3" / "jobs" / "7"
    assert store.checkpoint_dir(3, 7).parent == store.job_dir(3, 7)
    assert store.model_dir(3, 7, 11, 2) == store.job_dir(3, 7) / "models" / "11" / "2"
    for bad in (-1, True, "3", 2.0, None):
        with pytest.raises(StorageError, match="non-negative integer"):
            store.job_dir(bad, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("rel", ["../outside", "runs/../../x", "/etc/passwd", "runs/1/../../../x"])
def test_paths_escaping_the_root_are_rejected(store: ArtifactStore, rel: str):
    with pytest.raises(StorageError):
        store.resolve(rel)
    with pytest.raises(StorageError):
        store.write_bytes(rel, b"x")


def test_a_symlink_pointing_outside_is_rejected(store: ArtifactStore, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    store.root.mkdir(parents=True)
    (store.root / "runs").symlink_to(outside)
    with pytest.raises(StorageError, match="outside the artifact root"):
        store.resolve("runs/1/file")


def test_atomic_write_returns_sha_and_size_and_leaves_no_temp_files(store: ArtifactStore):
    data = os.urandom(3 * 1024 * 1024 + 5)
    sha, size = store.write_bytes("runs/1/jobs/2/blob.bin", data)
    assert size == len(data) and sha == hashlib.sha256(data).hexdigest()
    path = store.resolve("runs/1/jobs/2/blob.bin")
    assert path.read_bytes() == data and file_sha256(path) == sha
    assert [p.name for p in path.parent.iterdir()] == ["blob.bin"]
    assert store.relative(path) == "runs/1/jobs/2/blob.bin"


def test_a_failed_write_keeps_the_old_file_and_no_temp_file(store: ArtifactStore):
    store.write_bytes("runs/1/a.bin", b"old")

    def chunks():
        yield b"new partial"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.write_chunks("runs/1/a.bin", chunks())
    directory = store.resolve("runs/1")
    assert store.resolve("runs/1/a.bin").read_bytes() == b"old"
    assert [p.name for p in directory.iterdir()] == ["a.bin"]


def test_verify_detects_missing_and_corrupt_files(store: ArtifactStore):
    sha, _ = store.write_bytes("runs/1/c.pt", b"content")
    assert store.verify("runs/1/c.pt", sha) == store.resolve("runs/1/c.pt")
    assert store.is_valid("runs/1/c.pt", sha)
    store.resolve("runs/1/c.pt").write_bytes(b"contenT")
    assert not store.is_valid("runs/1/c.pt", sha)
    with pytest.raises(StorageError, match="corrupt"):
        store.verify("runs/1/c.pt", sha)
    with pytest.raises(StorageError, match="missing"):
        store.verify("runs/1/none.pt", sha)
    assert not store.is_valid("../escape", sha)


def test_import_file_moves_a_file_in_atomically(store: ArtifactStore, tmp_path: Path):
    source = tmp_path / "export.safetensors"
    source.write_bytes(b"weights")
    sha, size = store.import_file(source, "runs/4/jobs/5/models/6/1/model.safetensors")
    assert not source.exists()
    assert size == 7 and store.is_valid("runs/4/jobs/5/models/6/1/model.safetensors", sha)


def test_delete_run_removes_only_that_runs_tree(store: ArtifactStore):
    store.write_bytes("runs/1/jobs/1/x", b"1")
    store.write_bytes("runs/2/jobs/3/y", b"2")
    assert store.delete_run(1) is True
    assert not store.run_dir(1).exists()
    assert store.resolve("runs/2/jobs/3/y").read_bytes() == b"2"
    assert store.delete_run(1) is False
    assert sorted(p.name for p in (store.root / "runs").iterdir()) == ["2"]
