"""AppTest helpers: the entrypoint, page paths, and text/exception assertions."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ENTRY = Path(__file__).resolve().parents[2] / "frontend" / "streamlit_app.py"
PAGES = {
    "runs": "app_pages/runs.py",
    "new_run": "app_pages/new_run.py",
    "run_detail": "app_pages/run_detail.py",
    "compare": "app_pages/compare.py",
    "datasets": "app_pages/datasets.py",
}

__all__ = ["ENTRY", "PAGES", "no_exception", "texts"]


def texts(at: AppTest) -> str:
    """All visible text of markdown, captions, alerts and titles, joined (for assertions)."""
    parts: list[str] = []
    for group in (at.title, at.subheader, at.markdown, at.caption, at.error, at.warning, at.info):
        parts.extend(str(e.value) for e in group)
    parts.extend(str(e.value) for e in at.success)
    return "\n".join(parts)


def no_exception(at: AppTest) -> None:
    """Fail with the app's traceback if the script raised."""
    assert not at.exception, "\n".join(
        str(e.value) + "\n" + "\n".join(e.stack_trace) for e in at.exception
    )
