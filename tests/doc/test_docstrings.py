"""Every docstring example in ``pmtl_core`` is run as a test, so the documentation cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import types

import pytest

import pmtl_core

FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _raise(name: str) -> None:
    raise ImportError(f"cannot import {name} while collecting pmtl_core modules")


MODULES = sorted(
    info.name for info in pkgutil.walk_packages(pmtl_core.__path__, "pmtl_core.", onerror=_raise)
)


def run_examples(module: types.ModuleType) -> tuple[doctest.TestResults, str]:
    """Run the module's doctests; return the counts and the runner's report of failures."""
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=report.append)
    return runner.summarize(verbose=False), "".join(report)


@pytest.mark.parametrize("name", ["pmtl_core", *MODULES])
def test_docstring_examples_pass(name):
    results, report = run_examples(importlib.import_module(name))
    assert results.failed == 0, f"{results.failed} docstring example(s) failed in {name}:\n{report}"


def test_collection_finds_the_documented_modules():
    # Modules whose docstrings carry examples must be both collected and exercised.
    for name in ("pmtl_core.indicators", "pmtl_core.preferences", "pmtl_core.solvers"):
        assert name in MODULES
        assert run_examples(importlib.import_module(name))[0].attempted > 0


def test_a_wrong_example_is_reported():
    module = types.ModuleType("pmtl_core_fake_doc")
    module.__doc__ = ">>> 1 + 1\n3\n"
    results, report = run_examples(module)
    assert results.failed == 1
    assert "Expected:" in report
