"""``ApiClient``: a typed httpx client for the REST API (prefix ``/api/v1``, bearer token).

Every method returns a model of :mod:`frontend.lib.models`. A response with an error status
raises :class:`ApiError` whose message is the server's ``detail`` made readable; a server that
cannot be reached raises :class:`ApiUnavailable`. The polled ``/front`` and ``/hypervolume``
are asked with ``If-None-Match``: an unchanged answer comes back as a bodiless 304.
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from frontend.lib.models import (
    Dataset,
    DatasetList,
    DatasetPreview,
    Download,
    Evaluation,
    Front,
    HypervolumeHistory,
    Method,
    MetricPage,
    Problem,
    Run,
    RunDetail,
    RunList,
    Split,
    User,
)

__all__ = ["API_PREFIX", "ApiClient", "ApiError", "ApiUnavailable", "format_detail"]

API_PREFIX = "/api/v1"
ETAG_CACHE_SIZE = 64  # answers kept for conditional polls, per client (one browser session)
M = TypeVar("M", bound=BaseModel)


class ApiUnavailable(RuntimeError):
    """The API did not answer (refused connection, DNS failure, timeout)."""


class ApiError(RuntimeError):
    """The API answered with an error status; ``str(err)`` is a readable message."""

    def __init__(self, status: int, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail

    @property
    def unauthorized(self) -> bool:
        """Whether the token was missing, invalid or revoked."""
        return self.status == 401


def _location(loc: Sequence[Any]) -> str:
    """``["body", "hyperparameters", "eps"]`` → ``hyperparameters → eps``."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return " → ".join(parts)


def format_detail(detail: Any) -> str:
    """Turn an error ``detail`` (a string or FastAPI's list of validation errors) into text."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict):
                where = _location(item.get("loc") or [])
                msg = str(item.get("msg", item))
                lines.append(f"{where}: {msg}" if where else msg)
            else:
                lines.append(str(item))
        return "; ".join(lines) if lines else "invalid request"
    if detail is None:
        return "unknown error"
    return str(detail)


def _filename(response: httpx.Response, fallback: str) -> str:
    disposition = response.headers.get("content-disposition", "")
    match = re.search(r'filename="?([^";]+)"?', disposition)
    return match.group(1) if match else fallback


class ApiClient:
    """Synchronous client of one API server for one token."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )
        # (path, query) -> (ETag, answer) of the polled routes that give ETags: a page polling
        # an unchanged front gets a bodiless 304 and the answer it already has
        self._etags: OrderedDict[tuple[str, tuple[tuple[str, Any], ...]], tuple[str, Any]] = (
            OrderedDict()
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def __del__(self) -> None:
        # A client kept in a browser session is dropped with the session: close its sockets.
        http = getattr(self, "_http", None)
        if http is not None:
            with contextlib.suppress(Exception):
                http.close()

    # ------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("/healthz") else f"{API_PREFIX}{path}"
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiUnavailable(f"the API at {self.base_url} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise ApiUnavailable(f"cannot reach the API at {self.base_url}: {exc}") from exc
        if response.is_error:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: httpx.Response) -> ApiError:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = response.text.strip() or response.reason_phrase
        message = format_detail(detail)
        if response.status_code == 401:
            message = f"not signed in: {message}"
        elif response.status_code >= 500:
            message = f"the API failed ({response.status_code}): {message}"
        return ApiError(response.status_code, message, detail)

    def _get(self, model: type[M], path: str, **params: Any) -> M:
        query = {k: v for k, v in params.items() if v is not None}
        return model.model_validate(self._request("GET", path, params=query).json())

    def _get_conditional(self, model: type[M], path: str, **params: Any) -> M:
        """``_get`` with ``If-None-Match``: a 304 returns the answer cached with that ETag."""
        query = {k: v for k, v in params.items() if v is not None}
        key = (path, tuple(sorted(query.items())))
        cached = self._etags.get(key)
        headers = {"If-None-Match": cached[0]} if cached else None
        response = self._request("GET", path, params=query, headers=headers)
        if response.status_code == 304 and cached is not None:
            self._etags.move_to_end(key)
            return cached[1]
        value = model.model_validate(response.json())
        etag = response.headers.get("ETag")
        if etag:
            self._etags[key] = (etag, value)
            self._etags.move_to_end(key)
            while len(self._etags) > ETAG_CACHE_SIZE:
                self._etags.popitem(last=False)
        return value

    def _post(self, model: type[M], path: str, body: Any = None) -> M:
        return model.model_validate(self._request("POST", path, json=body).json())

    # ------------------------------------------------------------ health & identity

    def healthy(self) -> bool:
        """Whether the API process answers ``/healthz`` (raises :class:`ApiUnavailable`)."""
        return self._request("GET", "/healthz").json().get("status") == "ok"

    def me(self) -> User:
        """The user the token belongs to."""
        return self._get(User, "/me")

    # ------------------------------------------------------------ catalogue

    def problems(self) -> list[Problem]:
        """Registered problems with their option schemas and default training settings."""
        data = self._request("GET", "/problems").json()
        return TypeAdapter(list[Problem]).validate_python(data)

    def methods(self) -> list[Method]:
        """Registered methods with their hyperparameter JSON schemas."""
        data = self._request("GET", "/methods").json()
        return TypeAdapter(list[Method]).validate_python(data)

    def training_schema(self) -> dict[str, Any]:
        """JSON schema of the training settings a run may override."""
        return dict(self._request("GET", "/training").json()["schema"])

    # ------------------------------------------------------------ runs

    def list_runs(self, offset: int = 0, limit: int = 50) -> RunList:
        """One page of the caller's runs, newest first."""
        return self._get(RunList, "/runs", offset=offset, limit=limit)

    def all_runs(self, limit: int = 1000) -> list[Run]:
        """Up to ``limit`` runs, newest first (pages through ``GET /runs``)."""
        runs: list[Run] = []
        while len(runs) < limit:
            page = self.list_runs(offset=len(runs), limit=min(200, limit - len(runs)))
            runs.extend(page.data)
            if not page.data or len(runs) >= page.count:
                break
        return runs

    def get_run(self, run_id: int) -> RunDetail:
        """One run with its preference vectors and jobs."""
        return self._get(RunDetail, f"/runs/{run_id}")

    def create_run(self, body: dict[str, Any]) -> RunDetail:
        """Submit a run (``RunCreate`` body); returns it with its jobs."""
        return self._post(RunDetail, "/runs", body)

    def add_preferences(self, run_id: int, vectors: Sequence[Sequence[float]]) -> RunDetail:
        """Add preference vectors to a run (one new job)."""
        body = {"vectors": [[float(x) for x in v] for v in vectors]}
        return self._post(RunDetail, f"/runs/{run_id}/preferences", body)

    def cancel_run(self, run_id: int) -> RunDetail:
        """Cancel queued jobs and ask running ones to stop."""
        return self._post(RunDetail, f"/runs/{run_id}/cancel")

    def delete_run(self, run_id: int) -> None:
        """Delete a run, its jobs, metrics and files."""
        self._request("DELETE", f"/runs/{run_id}")

    # ------------------------------------------------------------ metrics & front

    def metrics(self, run_id: int, after: int = 0, limit: int = 1000) -> MetricPage:
        """Metric points with ``seq > after`` (poll again with ``after=page.last_seq``)."""
        return self._get(MetricPage, f"/runs/{run_id}/metrics", after=after, limit=limit)

    def front(
        self, run_id: int, split: Split = "test", ref: Sequence[float] | None = None
    ) -> Front:
        """The current front on ``split`` (hypervolume against ``ref`` when given)."""
        return self._get_conditional(Front, f"/runs/{run_id}/front", split=split, ref=_ref(ref))

    def hypervolume(
        self, run_id: int, split: Split = "test", ref: Sequence[float] | None = None
    ) -> HypervolumeHistory:
        """Hypervolume after every epoch on ``split``."""
        return self._get_conditional(
            HypervolumeHistory, f"/runs/{run_id}/hypervolume", split=split, ref=_ref(ref)
        )

    # ------------------------------------------------------------ models

    def model_file(self, run_id: int, pref_id: int, epoch: int | None = None) -> Download:
        """The chosen model's weights (safetensors bytes): the newest, or those of ``epoch``.

        ``Download.epoch`` names the checkpoint; pass it to :meth:`model_config` so that the
        config belongs to the same one (training may have moved on in between)."""
        params = {} if epoch is None else {"epoch": epoch}
        response = self._request("GET", f"/runs/{run_id}/solutions/{pref_id}/model", params=params)
        served = response.headers.get("x-pmtl-epoch")
        return Download(
            content=response.content,
            filename=_filename(response, f"run{run_id}-pref{pref_id}.safetensors"),
            epoch=int(served) if served and served.isdigit() else None,
        )

    def model_config(self, run_id: int, pref_id: int, epoch: int | None = None) -> dict[str, Any]:
        """The JSON config that rebuilds the chosen model with ``pmtl_core``: the newest, or
        that of ``epoch`` (the ``Download.epoch`` of the weights)."""
        params = {} if epoch is None else {"epoch": epoch}
        path = f"/runs/{run_id}/solutions/{pref_id}/config"
        return dict(self._request("GET", path, params=params).json())

    # ------------------------------------------------------------ learned Pareto sets (psl)

    def evaluate(
        self,
        run_id: int,
        vectors: Sequence[Sequence[float]],
        split: Split = "train",
        samples: int | None = None,
        timeout: float | None = None,
    ) -> Evaluation:
        """Losses and metrics of any preferences under a ``psl`` run's one model (on
        ``samples`` examples of a data-set split when given: a faster estimate). ``timeout``
        overrides the client's for this call (many preferences on a data set take longer)."""
        body: dict[str, object] = {"vectors": [list(map(float, v)) for v in vectors]}
        body["split"] = split
        if samples is not None:
            body["samples"] = samples
        extra = {} if timeout is None else {"timeout": timeout}
        path = f"/runs/{run_id}/evaluate"
        return Evaluation.model_validate(self._request("POST", path, json=body, **extra).json())

    def preference_model(
        self, run_id: int, preference: Sequence[float], epoch: int | None = None
    ) -> Download:
        """The network of any preference of a ``psl`` run (safetensors bytes)."""
        params: dict[str, Any] = {"preference": _vector(preference)}
        if epoch is not None:
            params["epoch"] = epoch
        response = self._request("GET", f"/runs/{run_id}/model", params=params)
        served = response.headers.get("x-pmtl-epoch")
        return Download(
            content=response.content,
            filename=_filename(response, "model.safetensors"),
            epoch=int(served) if served and served.isdigit() else None,
        )

    def preference_config(
        self, run_id: int, preference: Sequence[float], epoch: int | None = None
    ) -> dict[str, Any]:
        """The JSON config that rebuilds :meth:`preference_model`'s network (same epoch)."""
        params: dict[str, Any] = {"preference": _vector(preference)}
        if epoch is not None:
            params["epoch"] = epoch
        return dict(self._request("GET", f"/runs/{run_id}/config", params=params).json())

    # ------------------------------------------------------------ data sets

    def list_datasets(self) -> list[Dataset]:
        """The caller's uploaded tables, newest first."""
        return self._get(DatasetList, "/datasets").data

    def get_dataset(self, dataset_id: int) -> Dataset:
        """One uploaded table with its columns and their dtypes."""
        return self._get(Dataset, f"/datasets/{dataset_id}")

    def upload_dataset(
        self,
        content: bytes,
        filename: str,
        name: str | None = None,
        timeout: float | None = 300.0,
    ) -> Dataset:
        """Upload a CSV (header row) or Parquet file (multipart ``file`` + optional ``name``);
        a large file may take longer than an ordinary request, hence its own ``timeout``."""
        files = {"file": (filename, content, "application/octet-stream")}
        data = {"name": name} if name else None
        response = self._request("POST", "/datasets", files=files, data=data, timeout=timeout)
        return Dataset.model_validate(response.json())

    def dataset_preview(self, dataset_id: int, rows: int = 20) -> DatasetPreview:
        """The first ``rows`` rows of an uploaded table."""
        return self._get(DatasetPreview, f"/datasets/{dataset_id}/preview", rows=rows)

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete an uploaded table (409 while a queued or running run uses it)."""
        self._request("DELETE", f"/datasets/{dataset_id}")


def _vector(values: Sequence[float]) -> str:
    return ",".join(f"{float(x):.9g}" for x in values)


def _ref(ref: Sequence[float] | None) -> str | None:
    return None if ref is None else ",".join(f"{float(x):.17g}" for x in ref)
