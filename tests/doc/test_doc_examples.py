"""The docs match behaviour: every Python and shell example of README.md and docs/ runs.

Each block is one test, id ``FILE:LINE`` of its opening fence, run in document order against a
real lab per doc file (``pmtl serve`` + ``pmtl worker --devices cpu`` on a fresh SQLite home,
started the way tests/frontend/_system.py does). The working directory of a file holds
``pmtl-data`` (the lab's home, with ``admin.token`` as ``pmtl up`` writes it) and ``.venv`` (the
repository's), so ``.venv/bin/pmtl`` and ``$(cat pmtl-data/admin.token)`` work as written; the
documented ``http://127.0.0.1:8000`` is the lab's free port, ``$RUN`` / ``$PREF`` (ids a reader
reads off the screen) are the newest run and its first preference, and ``TOKEN = "pmtl_..."`` in
Python is the admin's token. A block that cannot run here says so
with ``<!-- doc-test: skip (REASON) -->`` on the line before its fence, and is skipped with that
reason; ``<!-- doc-test: data -->`` marks blocks that need the MNIST files (``PMTL_DATA_DIR``).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest

from tests.conftest import require
from tests.doc._doc_examples import REPO, VENV_BIN, Block, DocSession, all_blocks, extract
from tests.frontend._system import System
from tests.settings import DATA_DIR

BLOCKS = all_blocks()
SHELL_TIMEOUT = 240.0
#: What makes a file's examples need the running lab (the API, a worker or the client CLI) ...
_NEEDS_LAB = re.compile(
    r"curl |\$API|127\.0\.0\.1:8000|lab:8000|admin\.token|pmtl (?:login|submit|status|watch|"
    r"download|serve|worker)"
)
#: ... or only its database (the admin commands).
_NEEDS_DB = re.compile(r"pmtl (?:db|user) ")


def _write_houses(workdir: Path) -> None:
    """docs/datasets.md's reader has ``houses.csv`` and ``new_listings.csv``: a small version."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 300
    area = rng.uniform(30, 200, n).round(1)
    district = rng.choice(["north", "south", "centre"], n)
    price = (area * 4.2 + rng.normal(0, 40, n)).round(1)
    sold = np.where(price / area < 4.2, "yes", "no")
    table = pd.DataFrame(
        {"area_m2": area, "district": district, "sold_within_30d": sold, "price_keur": price}
    )
    table.to_csv(workdir / "houses.csv", index=False)
    table[["area_m2", "district"]].head(20).to_csv(workdir / "new_listings.csv", index=False)


def _write_multi_mnist_download(workdir: Path) -> None:
    """docs/user_guide.md's reader has downloaded a MultiMNIST model (config.json and
    model.safetensors): one epoch on 256 images, exported as the API exports it."""
    if not DATA_DIR:
        return  # the block that needs it is marked `data` and skips (fails under CI=true)
    from pmtl_core import train
    from pmtl_core.checkpoints import latest
    from pmtl_core.config import make_config
    from pmtl_core.export import export_model
    from pmtl_core.problems import REGISTRY, get_problem

    options = {"train_size": 256, "test_size": 128, "data_dir": DATA_DIR}
    problem = get_problem("multi_mnist", options)
    config = make_config(REGISTRY["multi_mnist"].default_config, {"epochs": 1, "device": "cpu"})
    checkpoints = workdir / "mm-checkpoints"
    train(problem, "pareto_mtl", 2, config, checkpoint_dir=checkpoints)
    export_model(latest(checkpoints), 0, workdir)


#: Files a doc's reader is told they already have, written into that doc's working directory.
READER_FILES = {
    "docs/datasets.md": _write_houses,
    "docs/user_guide.md": _write_multi_mnist_download,
}


class Labs:
    """One session (and, when its examples need it, one running lab) per doc file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.doc: str | None = None
        self.session: DocSession | None = None
        self.stack = contextlib.ExitStack()

    def for_block(self, block: Block) -> DocSession:
        """The session of ``block``'s file; the previous file's lab is stopped first."""
        if block.doc != self.doc:
            self.close()
            self.doc, self.session = block.doc, self._open(block.doc)
        assert self.session is not None
        return self.session

    def _open(self, doc: str) -> DocSession:
        workdir = self.root / doc.replace("/", "_").removesuffix(".md")
        home = workdir / "pmtl-data"
        workdir.mkdir(parents=True)
        (workdir / ".venv").symlink_to(VENV_BIN.parent)
        runnable = [b for b in extract(REPO / doc) if b.runnable and b.skip is None]
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "XDG_CONFIG_HOME": str(workdir / ".config")}
        api_url, token = "http://127.0.0.1:8000", ""
        if any(_NEEDS_LAB.search(b.code) for b in runnable):
            system = self.stack.enter_context(System.start(home))
            token = _admin_token(system.env["PMTL_DATABASE_URL"], home)
            env = {**system.env, **env}
            api_url = system.api_url
        else:
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("PMTL_")}, **env}
            if DATA_DIR:
                env["PMTL_DATA_DIR"] = DATA_DIR
            if any(_NEEDS_DB.search(b.code) for b in runnable):
                from backend.app.db.migrate import upgrade

                home.mkdir()
                env["PMTL_HOME"] = str(home)
                env["PMTL_DATABASE_URL"] = f"sqlite:///{home / 'pmtl.db'}"
                upgrade(env["PMTL_DATABASE_URL"])
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
        if token:  # the reader followed the quick start: `pmtl login` with the admin token
            env["PMTL_TOKEN"] = token
        if doc in READER_FILES:
            READER_FILES[doc](workdir)
        return DocSession(workdir=workdir, env=env, api_url=api_url, token=token)

    def close(self) -> None:
        """Stop the current file's lab, if any."""
        self.stack.close()
        self.stack = contextlib.ExitStack()
        self.doc = self.session = None


def _admin_token(db_url: str, home: Path) -> str:
    """Create the lab's admin, as ``pmtl up`` does, and keep its token in ``admin.token``."""
    from backend.app.core.security import create_user
    from backend.app.db.session import create_db_engine, make_session_factory, session_scope

    engine = create_db_engine(db_url)
    try:
        with session_scope(make_session_factory(engine)) as db:
            _, token = create_user(db, "admin", True)
    finally:
        engine.dispose()
    (home / "admin.token").write_text(token + "\n")
    return token


@pytest.fixture(scope="module")
def labs(tmp_path_factory) -> Labs:
    labs = Labs(tmp_path_factory.mktemp("doc-examples"))
    yield labs
    labs.close()


def _params() -> list:
    params = []
    for block in BLOCKS:
        if not block.runnable:
            continue
        marks = [pytest.mark.data] if block.needs_data else []
        params.append(pytest.param(block, id=block.id, marks=marks))
    return params


def test_blocks_are_found():
    """The extractor sees the docs' examples (an empty list would pass everything)."""
    ids = [b.id for b in BLOCKS]
    assert len(ids) == len(set(ids))
    assert sum(b.runnable for b in BLOCKS) >= 30
    assert {"README.md", "docs/api.md", "docs/user_guide.md"} <= {b.doc for b in BLOCKS}


def test_skip_markers_give_a_reason_and_sit_on_code():
    """A skip marker names why; markers on non-code blocks would hide nothing and mislead."""
    for block in BLOCKS:
        if block.skip is not None or block.needs_data:
            assert block.runnable, f"{block.id}: doc-test marker on a ```{block.lang} block"


@pytest.mark.slow
@pytest.mark.parametrize("block", _params())
def test_doc_example_runs(block: Block, labs: Labs) -> None:
    """Run one example as a reader would, after the earlier examples of its file."""
    if block.skip is not None:
        pytest.skip(f"{block.id}: {block.skip}")
    if block.needs_data:
        require(bool(DATA_DIR) and Path(DATA_DIR).is_dir(), "PMTL_DATA_DIR with the MNIST files")
    session = labs.for_block(block)
    if block.lang == "python":
        session.run_python(block)
        return
    result = session.run_shell(block, SHELL_TIMEOUT)
    assert result.returncode == 0, (
        f"{block.id} exited with status {result.returncode}:\n{block.code}\n--- output\n"
        f"{result.stdout[-4000:]}"
    )
