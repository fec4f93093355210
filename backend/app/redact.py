"""What users and terminals may see of server-side errors and settings.

Job errors are stored for the run's owner to read, so :func:`public_error` keeps what helps
them (the exception types and messages) and drops what describes the server: traceback frames,
absolute paths (a file's name is kept), this host's names, IPv4 addresses and everything of a
URL after its scheme (host, credentials, path). The whole text is logged on the server before.
:func:`mask_url` hides the password of a database URL printed on a terminal.
"""

from __future__ import annotations

import functools
import re
import socket

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["MAX_ERROR_CHARS", "mask_url", "public_error"]

#: Longest error text kept on a job (cut at the front, so the final cause stays).
MAX_ERROR_CHARS = 20_000

_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*)://[^\s'\"<>()\[\]{},]+")
# An absolute path starts with "/" that does not follow a word, a dot, a colon, another slash
# or "…": "1/2", "and/or", "runs/3", URLs and already shortened paths are not paths.
_PATH = re.compile(r"(?<![\w.:/~\-…])/[\w.@%+~\-]+(?:/[\w.@%+~\-]*)*")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^@/]*@")


@functools.cache
def _host_names() -> tuple[str, ...]:
    """This machine's names (short, full, FQDN), longest first; empty ones and ``localhost``
    left out."""
    names: set[str] = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.update({name, name.split(".")[0]})
    return tuple(
        sorted((n for n in names if len(n) >= 2 and n != "localhost"), key=len, reverse=True)
    )


def _without_frames(text: str) -> str:
    """Drop traceback headers and frames (``File "…"`` lines and their source lines)."""
    if _TRACEBACK not in text:
        return text
    kept: list[str] = []
    in_frame = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == _TRACEBACK or stripped in _CHAINED:
            in_frame = False
            continue
        if line.startswith('  File "'):
            in_frame = True
            continue
        if in_frame and line.startswith("    "):
            continue  # the frame's source line and its ^^^^ markers
        in_frame = False
        if stripped or (kept and kept[-1].strip()):
            kept.append(line)
    return "\n".join(kept).strip()


def _short_path(match: re.Match[str]) -> str:
    name = match.group(0).rstrip("/").rsplit("/", 1)[-1]
    # A file's name helps ("…/ckpt-epoch0003.pt"); a directory's may be a user's name.
    return f"…/{name}" if "." in name.strip(".") and not name.startswith(".") else "<path>"


def public_error(text: str) -> str:
    """``text`` as the run's owner may read it: no frames, paths, host names or URLs."""
    text = _without_frames(text)
    text = _URL.sub(lambda m: f"{m.group(1)}://…", text)
    text = _PATH.sub(_short_path, text)
    for name in _host_names():
        text = re.sub(rf"(?<![\w.\-]){re.escape(name)}(?![\w\-])", "<host>", text)
    text = _IPV4.sub("<address>", text)
    if len(text) > MAX_ERROR_CHARS:
        text = "…" + text[-(MAX_ERROR_CHARS - 1) :]
    return text


def mask_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return _PASSWORD.sub(r"\1***@", url)
