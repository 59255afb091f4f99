"""What the service tells its operators: JSON log lines and Prometheus metrics.

Log lines carry the route's template, the status, the time taken and the caller's key id;
never a body, a header, a query string or a path parameter (codes, session ids and challenge
ids are secrets or bearer tokens). Metrics: requests by route and status, their latency, and the
rules' decisions by operation and outcome. With several uvicorn workers, `capkey serve` points
``PROMETHEUS_MULTIPROC_DIR`` at a private folder and `/metrics` sums the workers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("capkey.server.access")
_FIELDS = "capkey_fields"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def log_fields(**fields: Any) -> dict[str, Any]:
    """`extra=` for a log call: fields the JSON formatter puts in the line."""
    return {_FIELDS: fields}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the call's fields, and the
    exception's type and traceback (a traceback shows code, not values)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage()}
        line.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            line["error"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("capkey_http_requests", "HTTP requests by route and status",
                                ("route", "status"), registry=self.registry)
        self.latency = Histogram("capkey_http_request_seconds", "HTTP request latency by route",
                                 ("route",), buckets=_BUCKETS, registry=self.registry)
        self.decisions = Counter("capkey_decisions", "Rules decisions by operation and outcome",
                                 ("operation", "outcome"), registry=self.registry)

    def decision(self, operation: str, outcome: str) -> None:
        self.decisions.labels(operation, outcome).inc()

    def exposition(self) -> tuple[bytes, str]:
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


class Observed:
    """ASGI middleware: times every request, counts it in `metrics` and writes its access log
    line; `route_of(scope)` names the matched route."""

    def __init__(self, app: ASGIApp, metrics: Metrics, route_of: Callable[[Scope], str]) -> None:
        self.app, self.metrics, self.route_of = app, metrics, route_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - t0
            route = self.route_of(scope)
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info("request", extra=log_fields(
                    method=scope["method"], route=route, status=status[0],
                    ms=round(seconds * 1000, 2), key=scope.get("state", {}).get("caller")))
