"""Edge protections: request ids, security headers, per-client rate limits, metrics.

All of it is plain ASGI middleware so that handlers stay thin and every
response (errors included) gets the same treatment.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
]


class Metrics:
    """Prometheus metrics of the service.

    With several workers (``veritee serve --workers N``) ``PROMETHEUS_MULTIPROC_DIR``
    is set and every worker writes its counters there, so ``/metrics`` answers the
    sum over all workers whichever of them serves it. (The collateral cache
    counters stay per worker.)
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.attestations = Counter(
            "veritee_attestations_total",
            "Attestation requests by TEE and outcome",
            ["tee", "outcome"],
            registry=self.registry,
        )
        self.releases = Counter(
            "veritee_releases_total",
            "Resource requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.requests = Histogram(
            "veritee_request_seconds",
            "Request latency by route and status class",
            ["route", "status"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.registry.register(_CollateralCacheCollector())
        self.rate_limited = Counter(
            "veritee_rate_limited_total",
            "Requests refused by the per-client rate limit",
            ["route"],
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        """The text exposition: this process's registry, or every worker's."""
        if os.environ.get(MULTIPROCESS_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            merged.register(_CollateralCacheCollector())
            return generate_latest(merged)
        return generate_latest(self.registry)


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _CollateralCacheCollector:
    """Exports the collateral cache counters (hits, revalidations, misses, stale serves)."""

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        from veritee.collateral.http import CACHE_STATS

        family = CounterMetricFamily(
            "veritee_collateral_cache", "Collateral fetches by cache outcome", labels=["outcome"]
        )
        for outcome, count in sorted(CACHE_STATS.snapshot().items()):
            family.add_metric([outcome], count)
        yield family


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token bucket per (client, route), in memory of this process."""

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 10000) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, route: str, now: float | None = None) -> float:
        """0 when allowed, else the seconds to wait."""
        t = time.monotonic() if now is None else now
        key = (client, route)
        with self._lock:
            b = self._buckets.get(key)
            if b is None:
                if len(self._buckets) >= self.max_clients:
                    self._buckets.clear()  # bounded memory under a flood of addresses
                b = self._buckets[key] = _Bucket(self.burst, t)
            b.tokens = min(self.burst, b.tokens + (t - b.stamp) * self.rate)
            b.stamp = t
            if b.tokens >= 1:
                b.tokens -= 1
                return 0.0
            return (1 - b.tokens) / self.rate


def _route_of(path: str) -> str:
    """A bounded label for metrics and limits (never the raw path: it holds resource names)."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "kbs" and parts[1] == "v0":
        return f"/kbs/v0/{parts[2]}"
    return (
        "/" + parts[0]
        if parts and parts[0] in {"healthz", "readyz", "metrics", ".well-known"}
        else "other"
    )


class EdgeMiddleware:
    """Request id + security headers + rate limit + latency metric, around the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        limiter: RateLimiter | None,
        limited_routes: frozenset[str],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.limiter = limiter
        self.limited_routes = limited_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64]
        if not rid or not all(c.isalnum() or c in "-_." for c in rid):
            rid = secrets.token_hex(8)
        token = request_id.set(rid)
        route = _route_of(scope.get("path", ""))
        start = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                out = list(message.get("headers") or [])
                out.extend(SECURITY_HEADERS)
                out.append((b"x-request-id", rid.encode()))
                message["headers"] = out
            await send(message)

        try:
            if self.limiter is not None and route in self.limited_routes:
                client = (scope.get("client") or ("?", 0))[0]
                wait = self.limiter.allow(str(client), route)
                if wait > 0:
                    self.metrics.rate_limited.labels(route).inc()
                    await _too_many(send_wrapped, wait)
                    return
            await self.app(scope, receive, send_wrapped)
        finally:
            status = status_holder["status"]
            self.metrics.requests.labels(route, f"{status // 100}xx").observe(
                time.perf_counter() - start
            )
            request_id.reset(token)


async def _too_many(send: Send, wait: float) -> None:
    body = json.dumps(
        {
            "type": "https://github.com/confidential-containers/kbs/errors/HTTPFailed",
            "detail": "too many requests from this client; retry later",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(max(1, round(wait))).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line with the request id; messages never carry secrets.

    ``context`` is added to every line (e.g. ``simulator_trusted``), so no line of
    a deployment that trusts simulators can be mistaken for production.
    """

    def __init__(self, context: dict[str, object] | None = None) -> None:
        super().__init__()
        self.context = dict(context or {})

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            **self.context,
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": request_id.get(),
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)
