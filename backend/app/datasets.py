"""Uploaded data sets: inspection, storage, quota, lookup, deletion and use by runs.

A data set is one CSV (header row) or Parquet file under ``datasets/{id}/data.{format}`` in
the artifact store, with a ``datasets`` row (owner, name, sha256, size, rows, columns). Files
are inspected in bounded memory (CSV in chunks, Parquet from its footer) before they are kept.
Runs name a data set by ``problem_options.dataset_id``; the API checks the caller owns it and
that the target columns make sense, and the worker calls :func:`resolve_dataset_options` to
turn the id into the file path the problem reads (``dataset_path``, a server-only option).

Every refusal is a :class:`DatasetError` whose ``status`` is the HTTP status to answer and whose
message is a sentence for the person who uploaded the file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.app.db.models import Dataset, Job, Run, User
from backend.app.storage import ArtifactStore, file_sha256

__all__ = [
    "DatasetError",
    "create_dataset",
    "dataset_file",
    "delete_dataset",
    "detect_format",
    "get_dataset",
    "inspect_table",
    "list_datasets",
    "resolve_dataset_options",
    "run_problem_info",
    "runs_using",
    "used_bytes",
]

MIB = 1 << 20
_CSV_CHUNK_ROWS = 50_000
#: Options of a data-set problem that the service fills in (never a client).
PATH_OPTION = "dataset_path"
ID_OPTION = "dataset_id"


class DatasetError(ValueError):
    """A refused upload or use of a data set; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------------- reading files


def detect_format(filename: str | None, head: bytes) -> str:
    """``"parquet"`` for a ``.parquet``/``.pq`` name or Parquet's ``PAR1`` magic, else ``"csv"``."""
    suffix = Path(filename or "").suffix.lower()
    if suffix in (".parquet", ".pq") or head[:4] == b"PAR1":
        return "parquet"
    return "csv"


def _merge_dtype(old: str | None, new: str) -> str:
    if old is None or old == new:
        return new
    if {old, new} <= {"int64", "float64"}:
        return "float64"
    return "object"


def _inspect_csv(path: Path, max_rows: int, max_columns: int) -> tuple[int, list[dict[str, str]]]:
    import pandas as pd

    rows = 0
    dtypes: dict[str, str | None] = {}
    try:
        with pd.read_csv(path, chunksize=_CSV_CHUNK_ROWS) as reader:
            for chunk in reader:
                if not dtypes:
                    if len(chunk.columns) > max_columns:
                        raise DatasetError(
                            f"The table has {len(chunk.columns)} columns; at most {max_columns} "
                            "are accepted."
                        )
                    dtypes = dict.fromkeys(map(str, chunk.columns))
                rows += len(chunk)
                if rows > max_rows:
                    raise DatasetError(
                        f"The table has more than {max_rows} rows; at most {max_rows} are accepted."
                    )
                for name, dtype in zip(dtypes, chunk.dtypes, strict=True):
                    dtypes[name] = _merge_dtype(dtypes[name], str(dtype))
            if not dtypes:  # a header row and nothing else: pandas yields no chunk
                header = pd.read_csv(path, nrows=0)
                dtypes = dict.fromkeys(map(str, header.columns), "object")
    except pd.errors.EmptyDataError:
        raise DatasetError("The file is empty: a CSV needs a header row and data rows.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(
            f"The file could not be read as a CSV table with a header row ({reason})."
        ) from None
    return rows, [{"name": n, "dtype": d or "object"} for n, d in dtypes.items()]


def _inspect_parquet(
    path: Path, max_rows: int, max_columns: int
) -> tuple[int, list[dict[str, str]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
        schema = meta.schema_arrow
        rows = int(meta.metadata.num_rows)
        empty = schema.empty_table().to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"The file could not be read as a Parquet table ({exc}).") from None
    if len(schema.names) > max_columns:
        raise DatasetError(
            f"The table has {len(schema.names)} columns; at most {max_columns} are accepted."
        )
    if rows > max_rows:
        raise DatasetError(f"The table has {rows} rows; at most {max_rows} are accepted.")
    return rows, [{"name": str(n), "dtype": str(d)} for n, d in empty.dtypes.items()]


def inspect_table(
    path: Path, fmt: str, *, max_rows: int, max_columns: int
) -> tuple[int, list[dict[str, str]]]:
    """Row count and ``[{name, dtype}]`` of a stored upload; :class:`DatasetError` (422) for
    an unreadable, empty or header-only file or one past the row/column caps."""
    if path.stat().st_size == 0:
        raise DatasetError("The file is empty: upload a CSV with a header row, or a Parquet file.")
    inspect = _inspect_parquet if fmt == "parquet" else _inspect_csv
    rows, columns = inspect(path, max_rows, max_columns)
    if not columns:
        raise DatasetError("The table has no columns.")
    if rows == 0:
        raise DatasetError(
            f"The table has a header ({len(columns)} columns) but no data rows; "
            "upload at least a few rows."
        )
    return rows, columns


# ---------------------------------------------------------------------- rows and files


def used_bytes(session: Session, owner: User) -> int:
    """Bytes of data sets ``owner`` keeps (what the quota counts)."""
    total = session.scalar(
        select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(Dataset.owner_id == owner.id)
    )
    return int(total or 0)


def create_dataset(
    session: Session,
    store: ArtifactStore,
    *,
    owner: User,
    upload: Path,
    filename: str | None,
    name: str | None,
    max_rows: int,
    max_columns: int,
    quota_bytes: int,
) -> Dataset:
    """Inspect ``upload`` (a file already inside the store), keep it as a new data set of
    ``owner`` and commit; the upload file is consumed (moved or deleted) in every case."""
    try:
        size = upload.stat().st_size
        used = used_bytes(session, owner)
        if used + size > quota_bytes:
            raise DatasetError(
                f"This upload ({size / MIB:.1f} MiB) would take your data sets to "
                f"{(used + size) / MIB:.1f} MiB, over your quota of {quota_bytes / MIB:.0f} MiB; "
                "delete data sets you no longer need first.",
                413,
            )
        with upload.open("rb") as fh:
            fmt = detect_format(filename, fh.read(4))
        n_rows, columns = inspect_table(upload, fmt, max_rows=max_rows, max_columns=max_columns)
        sha = file_sha256(upload)
        label = (name or "").strip() or Path(filename or "").name or "dataset"
        row = Dataset(
            owner_id=owner.id,
            name=label[:200],
            format=fmt,
            path="",
            sha256=sha,
            size_bytes=size,
            n_rows=n_rows,
            columns=columns,
        )
        session.add(row)
        session.flush()
        relative = f"datasets/{int(row.id)}/data.{fmt}"
        target = store.resolve(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(upload, target)
        row.path = relative
        try:
            session.commit()
        except Exception:
            target.unlink(missing_ok=True)
            raise
        return row
    finally:
        with contextlib.suppress(OSError):
            upload.unlink(missing_ok=True)


def list_datasets(session: Session, owner: User) -> list[Dataset]:
    """The caller's data sets, newest first."""
    stmt = select(Dataset).where(Dataset.owner_id == owner.id).order_by(Dataset.id.desc())
    return list(session.scalars(stmt))


def get_dataset(session: Session, owner: User, dataset_id: int) -> Dataset | None:
    """The data set if ``owner`` owns it (another user's data set is as good as missing)."""
    row = session.get(Dataset, dataset_id)
    return row if row is not None and row.owner_id == owner.id else None


def runs_using(session: Session, dataset_id: int, *, active_only: bool = True) -> list[int]:
    """Ids of the runs whose options name ``dataset_id`` (only those with a queued or running
    job when ``active_only``)."""
    stmt = select(Run.id, Run.problem_options)
    if active_only:
        busy = select(Job.run_id).where(Job.state.in_(("queued", "running")))
        stmt = stmt.where(Run.id.in_(busy))
    return sorted(
        run_id
        for run_id, options in session.execute(stmt)
        if isinstance(options, Mapping) and options.get(ID_OPTION) == dataset_id
    )


def delete_dataset(session: Session, store: ArtifactStore, row: Dataset) -> None:
    """Delete the data set's row and file; :class:`DatasetError` (409) while a queued or
    running run uses it (finished runs keep their exported models)."""
    busy = runs_using(session, row.id)
    if busy:
        listed = ", ".join(map(str, busy))
        raise DatasetError(
            f"Data set {row.id} is used by queued or running run(s) {listed}; cancel them or "
            "wait until they finish, then delete it.",
            409,
        )
    relative = row.path
    session.delete(row)
    session.commit()
    if relative:
        path = store.resolve(relative)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def dataset_file(root: Path, dataset_id: int) -> Path:
    """The stored file of data set ``dataset_id`` under the artifact ``root``; a
    :class:`DatasetError` if it is gone."""
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or dataset_id < 1:
        raise DatasetError(f"dataset_id must be a positive integer, got {dataset_id!r}")
    store = ArtifactStore(root)
    for fmt in ("csv", "parquet"):
        path = store.resolve(f"datasets/{dataset_id}/data.{fmt}")
        if path.is_file():
            return path
    raise DatasetError(f"Data set {dataset_id} is gone from the artifact store.", 404)


def _root(settings: Any) -> Path:
    if isinstance(settings, ArtifactStore):
        return settings.root
    if isinstance(settings, str | os.PathLike):
        return Path(settings)
    return Path(settings.artifact_root)


def resolve_dataset_options(
    problem: str, options: Mapping[str, Any] | None, settings: Any
) -> dict[str, Any]:
    """The run's ``options`` with ``dataset_path`` set to the stored file of ``dataset_id``,
    for problems whose options have both (``table``, and plugins that follow it); other
    problems' options come back unchanged. ``settings`` is the service's Settings (its
    ``artifact_root``), an ArtifactStore or the artifact root path."""
    from pmtl_core.problems import REGISTRY

    out = dict(options or {})
    spec = REGISTRY.get(problem)
    fields = getattr(getattr(spec, "Options", None), "model_fields", {})
    if PATH_OPTION not in fields or ID_OPTION not in fields:
        return out
    out.pop(PATH_OPTION, None)
    if out.get(ID_OPTION) is not None:
        out[PATH_OPTION] = str(dataset_file(_root(settings), out[ID_OPTION]))
    return out


# ---------------------------------------------------------------------- runs


def _check_targets(path: Path, fmt: str, targets: list[dict[str, Any]]) -> None:
    import pandas as pd

    columns = [t["column"] for t in targets]
    if fmt == "parquet":
        frame = pd.read_parquet(path, columns=columns)
    else:
        frame = pd.read_csv(path, usecols=lambda c: str(c) in columns)
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    for target in targets:
        values = frame[target["column"]].dropna()
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if target["kind"] == "regression" and not numeric:
            raise DatasetError(
                f"Target {target['column']!r} is not numeric (dtype {values.dtype}), so it "
                "cannot be a regression target; use kind 'classification'."
            )
        if values.nunique() < 2:
            raise DatasetError(
                f"Target {target['column']!r} is constant (it has {values.nunique()} distinct "
                "value(s)); a task needs at least two."
            )


def run_problem_info(
    session: Session,
    store: ArtifactStore | Any,
    owner: User,
    problem: str,
    options: Mapping[str, Any],
    info: dict[str, Any],
) -> dict[str, Any]:
    """``info`` (the problem's catalogue entry) for a run with these validated ``options``: for
    a data-set problem, checks that ``owner`` owns the data set, that the named columns exist
    and the targets are not constant, and sets the run's task count and names from the
    targets. Other problems' ``info`` comes back unchanged. Raises :class:`DatasetError`."""
    from pmtl_core.problems import REGISTRY

    spec = REGISTRY.get(problem)
    fields = getattr(getattr(spec, "Options", None), "model_fields", {})
    if ID_OPTION not in fields:
        return info
    dataset_id = options.get(ID_OPTION)
    if dataset_id is None:
        raise DatasetError(
            f"Problem {problem!r} needs dataset_id: upload a table with POST /datasets and "
            "pass its id."
        )
    row = get_dataset(session, owner, int(dataset_id))
    if row is None:
        raise DatasetError(f"Data set {dataset_id} not found.")
    known = [c["name"] for c in row.columns]
    targets = [dict(t) for t in options.get("targets") or []]
    both = sorted({t["column"] for t in targets} & set(options.get("features") or ()))
    if both:
        raise DatasetError(f"Column(s) {both} cannot be both a target and a feature.")
    for what, names in (
        ("target", [t["column"] for t in targets]),
        ("feature", list(options.get("features") or [])),
    ):
        missing = [n for n in names if n not in known]
        if missing:
            raise DatasetError(
                f"The {what} column(s) {missing} are not in data set {dataset_id} "
                f"({row.name!r}); its columns are: {', '.join(known)}."
            )
    _check_targets(dataset_file(_root(store), row.id), row.format, targets)
    out = dict(info)
    if targets:
        out["n_tasks"] = len(targets)
        out["task_names"] = [t["column"] for t in targets]
    return out
