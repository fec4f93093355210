"""Data sets: upload a table (CSV or Parquet), list, inspect and delete them.

``POST /datasets`` is multipart (field ``file``, optional ``name``). The body is streamed: it is
counted as it arrives and refused with 413 past ``PMTL_MAX_UPLOAD_MB`` (plus a little room for
the multipart framing), and the file is copied in chunks into the artifact store before it is
inspected, so no upload is ever held whole in memory. Another user's data set is a 404.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive

from backend.app import datasets
from backend.app.api.common import errors
from backend.app.api.deps import CurrentUser, SessionDep, SettingsDep, StoreDep, release
from backend.app.db.models import Dataset

router = APIRouter(prefix="/datasets", tags=["datasets"])

DatasetId = Annotated[int, Path(ge=1, le=2**63 - 1, description="data set id")]

#: Room for the multipart framing and the ``name`` field on top of the file itself.
_FRAMING = 64 * 1024
_CHUNK = 1 << 20


class DatasetColumn(BaseModel):
    """One column of an uploaded table and its dtype as pandas reads it."""

    name: str
    dtype: str = Field(description="pandas dtype: int64, float64, bool, object/str, …")


class DatasetPublic(BaseModel):
    """An uploaded table."""

    id: int
    name: str
    format: str = Field(description="csv or parquet")
    n_rows: int
    columns: list[DatasetColumn]
    sha256: str
    size_bytes: int
    created_at: datetime


class DatasetList(BaseModel):
    """The caller's data sets, newest first."""

    data: list[DatasetPublic]
    count: int


def _public(row: Dataset) -> DatasetPublic:
    return DatasetPublic(
        id=row.id,
        name=row.name,
        format=row.format,
        n_rows=row.n_rows,
        columns=[DatasetColumn(**c) for c in row.columns],
        sha256=row.sha256,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
    )


class _TooLarge(Exception):
    """The streamed body passed its limit."""


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
        return message

    return wrapped


def _too_large(limit_mb: float) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"The file is larger than the upload limit of {limit_mb:g} MiB (PMTL_MAX_UPLOAD_MB).",
    )


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "CSV with a header row, or Parquet",
                        },
                        "name": {"type": "string", "maxLength": 200},
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=DatasetPublic,
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 413),
    openapi_extra=_UPLOAD_BODY,
)
async def upload_dataset(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    store: StoreDep,
    user: CurrentUser,
) -> DatasetPublic:
    """Upload a table (multipart field ``file``: CSV with a header row, or Parquet; optional
    ``name``); 413 past ``PMTL_MAX_UPLOAD_MB`` or the per-user quota, 422 for a file that is not
    a readable, non-empty table."""
    limit = int(settings.max_upload_mb * datasets.MIB)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + _FRAMING:
        raise _too_large(settings.max_upload_mb)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "Send the table as multipart/form-data with the file in the field 'file'.",
        )
    counted = Request(request.scope, _counting(request.receive, limit + _FRAMING))
    try:
        form = await counted.form(max_files=1, max_fields=4, max_part_size=64 * 1024)
    except _TooLarge:
        raise _too_large(settings.max_upload_mb) from None
    except StarletteHTTPException as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"The multipart body could not be read ({exc.detail}).",
        ) from None
    incoming = store.resolve(f"datasets/incoming/{secrets.token_hex(16)}.upload")
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "The upload has no file: send it in the multipart field 'file'.",
            )
        name = form.get("name")
        name = name if isinstance(name, str) else None
        size = await run_in_threadpool(_copy, upload, incoming, limit)
        if size is None:
            raise _too_large(settings.max_upload_mb)
        try:
            row = await run_in_threadpool(
                datasets.create_dataset,
                session,
                store,
                owner=user,
                upload=incoming,
                filename=upload.filename,
                name=name,
                max_rows=settings.max_dataset_rows,
                max_columns=settings.max_dataset_columns,
                quota_bytes=int(settings.dataset_quota_mb * datasets.MIB),
            )
        except datasets.DatasetError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        public = _public(row)
        release(session)
        return public
    finally:
        await form.close()
        incoming.unlink(missing_ok=True)


def _copy(upload: UploadFile, target: Any, limit: int) -> int | None:
    """Copy the spooled upload into ``target`` in chunks; its size, or None past ``limit``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    upload.file.seek(0)
    with open(target, "wb") as out:
        while chunk := upload.file.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                return None
            out.write(chunk)
    return size


@router.get("", response_model=DatasetList, responses=errors())
def list_datasets(session: SessionDep, user: CurrentUser) -> DatasetList:
    """The caller's data sets, newest first."""
    rows = datasets.list_datasets(session, user)
    page = DatasetList(data=[_public(r) for r in rows], count=len(rows))
    release(session)
    return page


def _get_or_404(session: SessionDep, user: CurrentUser, dataset_id: int) -> Dataset:
    row = datasets.get_dataset(session, user, dataset_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"data set {dataset_id} not found")
    return row


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=errors(404))
def get_dataset(dataset_id: DatasetId, session: SessionDep, user: CurrentUser) -> DatasetPublic:
    """One of the caller's data sets with its columns; another user's is a 404."""
    public = _public(_get_or_404(session, user, dataset_id))
    release(session)
    return public


class DatasetPreview(BaseModel):
    """The first rows of a data set as read (missing values are null)."""

    columns: list[str]
    rows: list[list[Any]]


def _preview_rows(path: Any, fmt: str, rows: int) -> DatasetPreview:
    """The first ``rows`` rows of a stored table, JSON-ready (NaN -> null, dates as ISO)."""
    import json

    import pandas as pd

    if fmt == "parquet":
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
        frame = pd.DataFrame() if batch is None else batch.to_pandas()
    else:
        frame = pd.read_csv(path, nrows=rows)
    shaped = json.loads(frame.head(rows).to_json(orient="split", index=False, date_format="iso"))
    return DatasetPreview(columns=[str(c) for c in shaped["columns"]], rows=shaped["data"])


@router.get("/{dataset_id}/preview", response_model=DatasetPreview, responses=errors(404))
def preview_dataset(
    dataset_id: DatasetId,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    rows: Annotated[int, Query(ge=1, le=1000, description="how many rows")] = 20,
) -> DatasetPreview:
    """The first ``rows`` rows of one of the caller's data sets (for a preview in the UI)."""
    row = _get_or_404(session, user, dataset_id)
    fmt, ident = row.format, row.id
    release(session)
    try:
        path = datasets.dataset_file(store.root, ident)
    except datasets.DatasetError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return _preview_rows(path, fmt, rows)


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(404, 409),
)
def delete_dataset(
    dataset_id: DatasetId, session: SessionDep, store: StoreDep, user: CurrentUser
) -> Response:
    """Delete a data set and its file; 409 while a queued or running run uses it (finished
    runs keep their models)."""
    row = _get_or_404(session, user, dataset_id)
    try:
        datasets.delete_dataset(session, store, row)
    except datasets.DatasetError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
