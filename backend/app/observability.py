"""Prometheus metrics of one app (own registry) and the request-body size limit.

Queue figures are read from the database at scrape time, so every API replica reports the same
numbers and nothing is lost when a process restarts: ``pmtl_queue_jobs{state}`` (gauge),
``pmtl_jobs_started_total``, ``pmtl_jobs_finished_total``, ``pmtl_jobs_failed_total``
(counters over the jobs still in the database; deleting runs lowers them, which Prometheus
treats as a counter reset). Requests are timed by route template in
``pmtl_http_request_duration_seconds``; its ``method`` label is one of :data:`HTTP_METHODS` or
``OTHER`` (a client must not be able to create label series by inventing method tokens).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.app.db.models import Job
from backend.app.db.session import DatabaseError, session_scope

__all__ = [
    "HTTP_METHODS",
    "BodyLimitMiddleware",
    "QueueCollector",
    "RequestMetricsMiddleware",
    "build_registry",
    "method_label",
]

log = logging.getLogger(__name__)
JOB_STATES = ("queued", "running", "finished", "failed", "cancelled")
#: Method tokens labelled as themselves (RFC 9110 and PATCH); any other token is ``OTHER``.
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)


def method_label(method: str) -> str:
    """The ``method`` label of a request: a known HTTP method, else ``OTHER``."""
    return method if method in HTTP_METHODS else "OTHER"


class QueueCollector(Collector):
    """Job counts by state and lifetime counters, queried when Prometheus scrapes."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def describe(self) -> list[Metric]:
        """The metric names, without touching the database (used at registration)."""
        return [
            GaugeMetricFamily("pmtl_queue_jobs", "Jobs by state", labels=["state"]),
            *(
                CounterMetricFamily(name, name)
                for name in ("pmtl_jobs_started", "pmtl_jobs_finished", "pmtl_jobs_failed")
            ),
        ]

    def collect(self) -> Iterator[Metric]:
        """Yield the queue gauge and job counters (nothing if the database is unavailable)."""
        try:
            with session_scope(self.factory) as session:
                by_state = dict(
                    session.execute(select(Job.state, func.count(Job.id)).group_by(Job.state)).all()
                )
                started = session.scalar(
                    select(func.count(Job.id)).where(Job.started_at.is_not(None))
                )
        except DatabaseError as exc:
            log.warning("queue metrics unavailable: %s", exc)
            return
        depth = GaugeMetricFamily("pmtl_queue_jobs", "Jobs by state", labels=["state"])
        for state in sorted(set(JOB_STATES) | set(by_state)):
            depth.add_metric([state], by_state.get(state, 0))
        yield depth
        for name, value, text in (
            ("pmtl_jobs_started", started or 0, "Jobs that have started at least once"),
            ("pmtl_jobs_finished", by_state.get("finished", 0), "Jobs that finished"),
            ("pmtl_jobs_failed", by_state.get("failed", 0), "Jobs that failed for good"),
        ):
            yield CounterMetricFamily(name, text, value=value)


def build_registry(factory: sessionmaker[Session]) -> tuple[CollectorRegistry, Histogram]:
    """A fresh registry with the queue collector and the request-latency histogram."""
    registry = CollectorRegistry()
    registry.register(QueueCollector(factory))
    latency = Histogram(
        "pmtl_http_request_duration_seconds",
        "Latency of HTTP requests by route template",
        labelnames=("method", "route", "status"),
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    )
    return registry, latency


class RequestMetricsMiddleware:
    """Times every HTTP request; the label is the matched route template, never the raw path.

    ``route_of(scope)`` names the template of the matched route (``unmatched`` if none).
    """

    def __init__(
        self, app: ASGIApp, histogram: Histogram, route_of: Callable[[Scope], str]
    ) -> None:
        self.app = app
        self.histogram = histogram
        self.route_of = route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and record it under its route template."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = self.route_of(scope)
            self.histogram.labels(method_label(scope["method"]), route, str(status_code)).observe(
                time.perf_counter() - start
            )


class BodyLimitMiddleware:
    """Answers 413 when a request body exceeds ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        #: paths whose routes stream and bound their own bodies (data set uploads)
        self.exempt = frozenset(exempt)

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"request body larger than the limit of {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check Content-Length, then buffer the body up to the limit before the app runs."""
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send)
            return
        # Read the (bounded) body first so an oversized chunked upload is refused before any
        # handler sees it; then replay it to the app.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._reject(send)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
