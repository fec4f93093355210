"""Doc examples as tests: extract the fenced code blocks of the docs and run them in order.

A block is a ```python, ```bash, ```sh or ```console fence of README.md or docs/*.md. The line
before the fence may carry a marker: ``<!-- doc-test: skip (REASON) -->`` (the block cannot run
here, and REASON says why) or ``<!-- doc-test: data -->`` (it needs the MNIST files under
``PMTL_DATA_DIR``). Blocks of one file run in document order in one working directory, against one
real lab (``pmtl serve`` + ``pmtl worker`` on a fresh SQLite home) that the session starts; shell
variables a block assigns are kept for the next blocks, Python blocks share one namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
#: Files whose examples another test runs (tests/doc/test_custom_problem_doc.py).
TESTED_ELSEWHERE = frozenset({"docs/custom_problem.md"})
RUNNABLE = frozenset({"python", "bash", "sh", "console"})

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<what>skip|data)\s*(?:\((?P<why>.+)\))?\s*-->\s*$")
_ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_]\w*)=", re.MULTILINE)
#: The documented API address; the session's lab listens on a free port instead.
_DOC_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost|lab):8000")

#: Shell prelude: strict mode, HTTP errors fail the example, and ``pmtl serve|worker`` (services
#: that run until stopped) stand for the lab the session already runs with those very commands.
SHELL_PRELUDE = r"""set -eo pipefail
curl() { command curl --fail-with-body "$@"; }
pmtl() {
  case "$1" in
    serve|worker) echo "doc-test: 'pmtl $1' runs already: the lab at $PMTL_API_URL" >&2 ;;
    *) command pmtl "$@" ;;
  esac
}
_admin_api() {
  command curl -sf -H "Authorization: Bearer $(cat pmtl-data/admin.token)" \
    "$PMTL_API_URL/api/v1/$1"
}
"""
#: Placeholders a reader reads off their screen: ``$RUN`` (the newest run, as ``pmtl status``
#: lists it) and ``$PREF`` (a preference of ``$RUN``, once the run is over, as a reader who
#: watched it picks one), defined unless an earlier example of the file set them.
_GIVEN = {
    "RUN": 'RUN=${RUN:-$(_admin_api "runs?limit=1" | jq .data[0].id)}\n',
    "PREF": (
        'if [ -z "${PREF:-}" ]; then\n'
        '  command pmtl watch "$RUN" >/dev/null 2>&1 || true\n'
        '  PREF=$(_admin_api "runs/$RUN" | jq ".preferences[0].id")\n'
        "fi\n"
    ),
}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a doc file."""

    doc: str  # path relative to the repository, e.g. "docs/api.md"
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None  # the reason given by a skip marker
    needs_data: bool = False

    @property
    def id(self) -> str:
        """Stable test id: file and line of the opening fence."""
        return f"{self.doc}:{self.line}"

    @property
    def runnable(self) -> bool:
        """Whether the test runs this kind of block (Python or shell)."""
        return self.lang in RUNNABLE


def doc_files() -> list[Path]:
    """README.md and docs/*.md, minus the files another test already runs."""
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return [f for f in files if f.relative_to(REPO).as_posix() not in TESTED_ELSEWHERE]


def extract(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with its marker; ``ValueError`` on a stray marker."""
    lines = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(REPO).as_posix()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        marker = _MARKER.match(lines[i])
        if marker and not (i + 1 < len(lines) and _FENCE.match(lines[i + 1])):
            raise ValueError(f"{rel}:{i + 1}: a doc-test marker must be right before a fence")
        if not fence:
            i += 1
            continue
        indent, start = len(fence.group("indent")), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            line = lines[i]  # dedent a fence indented in a list item by the fence's indent
            body.append(line[indent:] if line[:indent].isspace() or not indent else line.lstrip())
            i += 1
        prev = _MARKER.match(lines[start - 1]) if start else None
        skip = None
        if prev and prev.group("what") == "skip":
            skip = prev.group("why")
            if not skip:
                raise ValueError(f"{rel}:{start}: a skip marker needs a reason: skip (REASON)")
        blocks.append(
            Block(
                doc=rel,
                line=start + 1,
                lang=fence.group("lang").lower(),
                code="\n".join(body) + "\n",
                skip=skip,
                needs_data=bool(prev and prev.group("what") == "data"),
            )
        )
        i += 1
    return blocks


def all_blocks() -> list[Block]:
    """The blocks of every doc file, in file and document order."""
    return [b for path in doc_files() for b in extract(path)]


def console_commands(code: str) -> str:
    """The commands of a console transcript: the ``$ `` lines, without the prompt."""
    return "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ ")) + "\n"


@dataclass
class DocSession:
    """The working directory, shell variables and Python namespace of one doc file."""

    workdir: Path
    env: dict[str, str]
    api_url: str
    token: str
    names: set[str] = field(default_factory=set)
    namespace: dict = field(default_factory=dict)

    def localise(self, code: str) -> str:
        """The code with the documented API address replaced by the session's lab."""
        return _DOC_URL.sub(self.api_url, code)

    def run_shell(self, block: Block, timeout: float) -> subprocess.CompletedProcess:
        """Run a shell block with bash in its own process group; keep the variables it sets."""
        code = console_commands(block.code) if block.lang == "console" else block.code
        self.names.update(_ASSIGN.findall(code))
        state = self.workdir / ".doc-test-state.sh"
        keep = " ".join(sorted(self.names))
        script = (
            SHELL_PRELUDE
            + f"[ -f {state} ] && source {state}\n"
            + (f"trap 'declare -p {keep} > {state} 2>/dev/null || true' EXIT\n" if keep else "")
            + self.localise(with_placeholders(code))
        )
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            # A prompt (``pmtl login`` without --token) reads the token, as a reader types it.
            out, _ = proc.communicate(self.token + "\n", timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc.pid)
            out, _ = proc.communicate()
            out += f"\n[doc-test: timed out after {timeout:g} s]"
        finally:
            _stop_group(proc.pid)  # anything the block left in the background
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)

    def run_python(self, block: Block) -> None:
        """Execute a Python block in this file's namespace, from its working directory."""
        code = self.localise(block.code).replace('"pmtl_..."', repr(self.token))
        with _chdir(self.workdir), _environ(self.env):
            exec(compile(code, block.id, "exec"), self.namespace)


def with_placeholders(code: str) -> str:
    """``code`` with each placeholder the block uses and does not assign defined just before
    the command that first uses it (outside comments and quoted text; else at the top)."""
    lines = code.splitlines()
    for name, given in _GIVEN.items():
        use = re.compile(rf"\${{?{name}\b")
        if name in _ASSIGN.findall(code) and not use.search(code.split(f"{name}=")[0]):
            continue  # the block sets it before any use
        first = next(
            (i for i, line in enumerate(lines) if use.search(re.sub(r"(^|\s)#.*", "", line))),
            None,
        )
        if first is None:
            continue
        while first and lines[first - 1].rstrip().endswith("\\"):  # a continued command
            first -= 1
        if "\n".join(lines[:first]).count("'") % 2:  # inside a quoted argument
            first = 0
        lines[first:first] = given.splitlines()
    return "\n".join(lines) + "\n"


def _stop_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    keys = [k for k in env if k.startswith("PMTL_") or k == "XDG_CONFIG_HOME"]
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: env[k] for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
