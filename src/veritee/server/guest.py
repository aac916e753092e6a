"""The guest side of the KBS protocol (auth, attest, resource) as plain ASGI.

Every CoCo guest's traffic goes through these three routes. FastAPI's request,
dependency and thread-pool machinery cost about as much CPU as the broker's own
work on them, so they are served here directly: still inside the edge
middleware (request ids, security headers, rate limits, metrics), CORS and
tenant routing, with the same Trustee error bodies. The admin API stays in
FastAPI; ``openapi.guest_paths`` documents these routes like the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from starlette.requests import cookie_parser

from veritee.broker.kbs import KeyBroker
from veritee.errors import VeriteeError
from veritee.server.hardening import ASGIApp, Metrics, Receive, Scope, Send
from veritee.server.kbs_errors import (
    KbsHttpError,
    database_unavailable,
    error_body,
    map_error,
    not_json,
    too_large,
)
from veritee.store.models import DEFAULT_TENANT

log = logging.getLogger("veritee.server")

COOKIE = "kbs-session-id"
AUTH = "/kbs/v0/auth"
ATTEST = "/kbs/v0/attest"
RESOURCE = "/kbs/v0/resource/"
# Broker calls block on the database and burn CPU on crypto and policy. When all
# they touch is local (SQLite, a key file, no collateral fetching) they run inline
# on the event loop: threads would only contend for the GIL, which measured 30-40%
# more CPU a flow. PostgreSQL, an HSM, a TPM or vendor fetches wait on I/O, so then
# a few threads overlap the waits (2 was best on loopback PostgreSQL in
# bench/ha_load.py; server.guest_threads sets another number).
IO_THREADS = 2


def default_threads(*, local_only: bool, configured: int) -> int:
    if configured >= 0:
        return configured
    return 0 if local_only else IO_THREADS


T = TypeVar("T")


class _Disconnected(Exception):
    """The client went away before sending its whole body: nothing to answer."""


class GuestApi:
    """ASGI middleware answering the guest routes; everything else goes to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        brokers: Callable[[str], KeyBroker],
        strict: bool,
        max_body: int,
        metrics: Metrics,
        threads: int,
    ) -> None:
        self.app = app
        self.brokers = brokers
        self.strict = strict
        self.max_body = max_body
        self.metrics = metrics
        self._executor = (
            ThreadPoolExecutor(threads, thread_name_prefix="veritee-guest") if threads else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            method: str = scope["method"]
            if path in (AUTH, ATTEST):
                if method != "POST":
                    await _respond(
                        send,
                        405,
                        error_body("InvalidRequestPath", "method not allowed on this endpoint"),
                    )
                elif path == AUTH:
                    await self._auth(scope, receive, send)
                else:
                    await self._attest(scope, receive, send)
                return
            if method == "GET" and path.startswith(RESOURCE):
                parts = path[len(RESOURCE) :].split("/")
                if len(parts) == 3 and all(parts):
                    await self._resource(scope, send, parts)
                    return
        await self.app(scope, receive, send)

    # -- routes ---------------------------------------------------------------------------------
    async def _auth(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self._json_body(scope, receive)
            challenge = await self._run("attest", self._broker(scope).auth, body)
        except KbsHttpError as exc:
            await _respond_error(send, exc)
            return
        except _Disconnected:
            return
        stamp = email.utils.format_datetime(challenge.expires_at, usegmt=True)
        # Trustee sets only Expires (no Path/Secure/HttpOnly); guests parse exactly this.
        cookie = f"{COOKIE}={challenge.session_id}; Expires={stamp}"
        await _respond(send, 200, _json(challenge.body), [(b"set-cookie", cookie.encode())])

    async def _attest(self, scope: Scope, receive: Receive, send: Send) -> None:
        session_id = _cookies(scope).get(COOKIE)
        try:
            body = await self._json_body(scope, receive)
            result = await self._run("attest", self._broker(scope).attest, session_id, body)
        except KbsHttpError as exc:
            self.metrics.attestations.labels("unknown", "refused").inc()
            await _respond_error(send, exc)
            return
        except _Disconnected:
            return
        self.metrics.attestations.labels(result.evidence.tee, result.decision.status).inc()
        extra = [(b"set-cookie", f"{COOKIE}={session_id}".encode())] if session_id else []
        await _respond(send, 200, _json({"token": result.token}), extra)

    async def _resource(self, scope: Scope, send: Send, parts: list[str]) -> None:
        bearer = None
        scheme, _, token = _header(scope, b"authorization").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            bearer = token.strip()
        try:
            jwe = await self._run(
                "resource",
                self._broker(scope).get_resource,
                parts,
                session_id=_cookies(scope).get(COOKIE),
                bearer=bearer,
            )
        except KbsHttpError as exc:
            self.metrics.releases.labels(exc.variant).inc()
            await _respond_error(send, exc)
            return
        self.metrics.releases.labels("released").inc()
        await _respond(send, 200, _json(jwe))

    # -- plumbing -------------------------------------------------------------------------------
    def _broker(self, scope: Scope) -> KeyBroker:
        state = scope.get("state")
        tenant = state.get("veritee_tenant") if isinstance(state, dict) else None
        return self.brokers(tenant if isinstance(tenant, str) else DEFAULT_TENANT)

    async def _run(self, area: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            if self._executor is None:
                return fn(*args, **kwargs)
            loop = asyncio.get_running_loop()
            call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
            return await loop.run_in_executor(self._executor, call)
        except VeriteeError as exc:
            mapped = map_error(exc, area=area, strict=self.strict)
            log.info("refused %s: %s (%s)", area, exc.code, mapped.variant)
            raise mapped from None
        except DBAPIError as exc:
            raise database_unavailable(exc) from None
        except Exception:
            log.exception("internal error")
            raise KbsHttpError(
                500, "PluginInternalError", "internal error (see server log)"
            ) from None

    async def _json_body(self, scope: Scope, receive: Receive) -> object:
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.max_body:
            raise too_large(self.max_body)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise too_large(self.max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError):
            raise not_json() from None


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _cookies(scope: Scope) -> dict[str, str]:
    raw = _header(scope, b"cookie")
    return cookie_parser(raw) if raw else {}


def _json(content: object) -> bytes:
    # The same bytes Starlette's JSONResponse renders.
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _respond_error(send: Send, exc: KbsHttpError) -> None:
    extra = [(b"retry-after", str(exc.retry_after).encode())] if exc.retry_after else []
    await _respond(send, exc.status, exc.body(), extra)


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
