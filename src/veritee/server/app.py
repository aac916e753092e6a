"""The FastAPI application: KBS routes under /kbs/v0, admin API, JWKS, health.

Handlers are thin: read the transport (cookie, bearer, body), call the broker,
map outcomes to Trustee's error shape. Bad client input never yields a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from veritee.appraisal.dsse import load_trusted_keys
from veritee.broker import refstore
from veritee.broker.kbs import KeyBroker
from veritee.clock import utcnow
from veritee.errors import (
    VeriteeError,
)
from veritee.server import openapi as oa
from veritee.server import tenants
from veritee.server.admin_auth import verify_admin_token
from veritee.server.bootstrap import Service, open_service
from veritee.server.config import FileKeyringConfig, FileTokenSignerConfig, ServiceConfig
from veritee.server.guest import GuestApi, default_threads
from veritee.server.hardening import EdgeMiddleware, Metrics, RateLimiter
from veritee.server.kbs_errors import (
    KbsHttpError,
    database_unavailable,
    error_body,
    map_error,
    not_json,
    too_large,
)
from veritee.server.openapi import spec
from veritee.server.tenants import TenantPaths, TenantRegistry, tenant_of
from veritee.store.models import DEFAULT_TENANT

log = logging.getLogger("veritee.server")
# PEM public keys of the builders whose signed reference-value statements are accepted.
TRUSTED_BUILDERS_DIR = "trusted-builders"


def _error(status: int, variant: str, detail: str) -> Response:
    return Response(error_body(variant, detail), status_code=status, media_type="application/json")


def create_app(config: ServiceConfig, *, trust_simulator: bool | None = None) -> FastAPI:
    service = open_service(config, trust_simulator=trust_simulator)
    return build_app(service)


def build_app(service: Service) -> FastAPI:
    config = service.config
    broker = service.broker
    registry = TenantRegistry(config.data_dir, broker, service.admin_keys, broker.for_tenant)

    def tb(request: Request) -> KeyBroker:
        """The broker of the tenant this request is addressed to."""
        return registry.broker(tenant_of(request.state))

    strict = config.strict_status_codes
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything loaded at start (modules, policies, keys) lives as long as the
        # process: keep it out of the cyclic collector's way, so its pauses stay short.
        gc.collect()
        gc.freeze()
        # Expired sessions are refused on access; this also removes the rows.
        task = asyncio.create_task(_sweep_sessions(service, SWEEP_INTERVAL_S))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            gc.unfreeze()  # an embedding process (tests, the demo) collects them again

    app = FastAPI(
        title="veritee",
        version=_version(),
        description="First-party attestation service and key broker (KBS protocol 0.4.0).",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    metrics = Metrics()
    app.state.metrics = metrics
    # The guest routes (auth, attest, resource): plain ASGI, innermost of our middleware
    # (added first: Starlette wraps later additions around earlier ones).
    app.add_middleware(
        GuestApi,
        brokers=registry.broker,
        strict=strict,
        max_body=config.max_body_bytes,
        metrics=metrics,
        threads=default_threads(local_only=_local_only(service), configured=config.guest_threads),
    )
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type"],
        )
    app.add_middleware(
        EdgeMiddleware,
        metrics=metrics,
        limiter=RateLimiter(config.rate_limit_per_s, config.rate_limit_burst),
        limited_routes=frozenset({"/kbs/v0/auth", "/kbs/v0/attest"}),
    )
    app.add_middleware(TenantPaths, registry=registry)
    if config.insecure_allow_all:
        log.warning("ADMIN AUTHENTICATION IS OFF (insecure_allow_all): anyone can change secrets")
    if broker.settings.trust_simulator:
        log.warning("trusting SIMULATED TEEs: evidence from simulators will be accepted")

    async def body_json(request: Request) -> object:
        raw = await _body(request, config.max_body_bytes)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise not_json() from None

    def admin(request: Request) -> str:
        if config.insecure_allow_all:
            log.warning("admin request accepted without authentication (insecure_allow_all)")
            return "admin:insecure"
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise KbsHttpError(
                401, "AdminAuthAccess", "admin token required (Authorization: Bearer)"
            )
        try:
            identity = verify_admin_token(
                token.strip(), list(registry.admin_keys(tenant_of(request.state))), now=utcnow()
            )
        except VeriteeError as exc:
            raise KbsHttpError(401, "AdminAuthAccess", str(exc)) from None
        tenant = tenant_of(request.state)
        prefix = "" if tenant == DEFAULT_TENANT else f"{tenant}:"
        return f"admin:{prefix}{identity.subject}"

    @app.exception_handler(KbsHttpError)
    async def _kbs_error(_: Request, exc: KbsHttpError) -> Response:
        return _error(exc.status, exc.variant, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error(404, "InvalidRequestPath", "no such endpoint")
        if exc.status_code == 405:
            return _error(405, "InvalidRequestPath", "method not allowed on this endpoint")
        return _error(exc.status_code, "HTTPFailed", str(exc.detail))

    @app.exception_handler(DBAPIError)
    async def _database_down(_: Request, exc: DBAPIError) -> Response:
        err = database_unavailable(exc)
        response = _error(err.status, err.variant, err.detail)
        response.headers["retry-after"] = str(err.retry_after)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:  # pragma: no cover
        log.exception("internal error")
        return _error(500, "PluginInternalError", "internal error (see server log)")

    async def run(area: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # Broker work blocks (database, crypto): keep it off the event loop.
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        except VeriteeError as exc:
            mapped = map_error(exc, area=area, strict=strict)
            log.info("refused %s: %s (%s)", area, exc.code, mapped.variant)
            raise mapped from None

    # -- admin routes ---------------------------------------------------------------------------
    @app.post(
        "/kbs/v0/resource/{repository}/{rtype}/{tag}",
        **spec(None, None, errors=oa.ADMIN_ERRORS, params=[oa.BEARER], raw_body=True),
    )
    async def put_resource(request: Request, repository: str, rtype: str, tag: str) -> Response:
        who = admin(request)
        data = await _body(request, config.max_body_bytes)
        await run("admin", tb(request).put_resource, [repository, rtype, tag], data, admin=who)
        return Response(status_code=200)

    @app.delete(
        "/kbs/v0/resource/{repository}/{rtype}/{tag}",
        **spec(None, None, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def delete_resource(request: Request, repository: str, rtype: str, tag: str) -> Response:
        who = admin(request)
        await run("admin", tb(request).delete_resource, [repository, rtype, tag], admin=who)
        return Response(status_code=200)

    @app.post(
        "/kbs/v0/attestation-policy",
        **spec(oa.POLICY_SET, None, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def set_attestation_policy(request: Request) -> Response:
        who = admin(request)
        await run("admin", tb(request).set_attestation_policy, await body_json(request), admin=who)
        return Response(status_code=200)

    @app.get(
        "/kbs/v0/attestation-policy",
        **spec(None, oa.POLICY_LIST, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def get_attestation_policy(request: Request) -> Response:
        admin(request)
        return JSONResponse(await run("admin", tb(request).get_policies, "attestation"))

    @app.post(
        "/kbs/v0/resource-policy",
        **spec(oa.POLICY_SET, None, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def set_resource_policy(request: Request) -> Response:
        who = admin(request)
        await run("admin", tb(request).set_resource_policy, await body_json(request), admin=who)
        return Response(status_code=200)

    @app.get(
        "/kbs/v0/resource-policy",
        **spec(None, oa.POLICY_LIST, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def get_resource_policy(request: Request) -> Response:
        admin(request)
        return JSONResponse(await run("admin", tb(request).get_policies, "resource"))

    @app.post(
        "/kbs/v0/reference-value",
        **spec(oa.RV_MESSAGE, oa.RV_REGISTERED, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def register_reference_value(request: Request) -> Response:
        who = admin(request)
        names = await run(
            "admin", tb(request).register_reference_values, await body_json(request), admin=who
        )
        return JSONResponse({"registered": names})

    @app.get(
        "/kbs/v0/reference-value/{name}",
        **spec(None, oa.RV_RECORD, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def get_reference_value(request: Request, name: str) -> Response:
        admin(request)
        return JSONResponse(await run("admin", tb(request).get_reference_value, name))

    @app.get(
        "/kbs/v0/reference-values",
        **spec(None, oa.RV_LIST, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def list_reference_values(request: Request) -> Response:
        admin(request)
        return JSONResponse(await run("admin", refstore.list_values, tb(request)))

    @app.delete(
        "/kbs/v0/reference-value/{name}",
        **spec(None, None, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def remove_reference_value(request: Request, name: str) -> Response:
        who = admin(request)
        await run("admin", refstore.remove, tb(request), name, admin=who)
        return Response(status_code=200)

    @app.post(
        "/kbs/v0/reference-value/import",
        **spec(oa.RV_IMPORT, oa.RV_REGISTERED, errors=oa.ADMIN_ERRORS, params=[oa.BEARER]),
    )
    async def import_reference_values(request: Request) -> Response:
        who = admin(request)
        body = await body_json(request)

        tenant = tenant_of(request.state)
        home = (
            config.data_dir
            if tenant == DEFAULT_TENANT
            else (config.data_dir / tenants.TENANTS_DIR / tenant)
        )

        def verify_and_store() -> list[str]:
            # Read per request: trusting a new builder key needs no restart. Each
            # tenant trusts its own builders.
            trusted = load_trusted_keys(home / TRUSTED_BUILDERS_DIR)
            return refstore.import_statement(tb(request), body, trusted, admin=who)

        return JSONResponse({"registered": await run("admin", verify_and_store)})

    # -- public ---------------------------------------------------------------------------------
    @app.get("/.well-known/jwks.json", **spec(None, oa.JWKS, errors=()))
    async def jwks() -> Response:
        return JSONResponse(broker.signer.jwks())

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", responses={503: {"description": "database or keyring unavailable"}})
    async def readyz() -> Response:
        def probe() -> dict[str, str]:
            status = {"database": "ok", "keyring": "ok", "signer": "ok"}
            try:
                with service.db.read() as s:
                    s.execute(text("SELECT 1"))
            except Exception:
                status["database"] = "unavailable"
            try:
                keyring = broker.keyring
                blob = keyring.wrap(b"\0" * 32, b"veritee-readyz")
                if keyring.unwrap(blob, b"veritee-readyz") != b"\0" * 32:
                    status["keyring"] = "wrong key"
            except Exception:
                status["keyring"] = "unavailable"
            try:
                # The token signer may live in an HSM too: prove it can still sign.
                broker.signer.sign_compact({"alg": "ES256", "typ": "readyz"}, b"readyz")
                status["signer"] = "ok"
            except Exception:
                status["signer"] = "unavailable"
            return status

        status = await run_in_threadpool(probe)
        ok = all(v == "ok" for v in status.values())
        return JSONResponse(
            {"status": "ready" if ok else "not ready", **status}, status_code=200 if ok else 503
        )

    def openapi_document() -> dict[str, Any]:
        # The guest routes are plain ASGI (server/guest.py): described here, with the rest.
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )
            for path, operations in oa.guest_paths().items():
                doc["paths"].setdefault(path, {}).update(operations)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi_document  # type: ignore[method-assign]
    return app


SWEEP_INTERVAL_S = 60.0


def _local_only(service: Service) -> bool:
    """Does a guest request touch nothing but local files (no network, no device)?"""
    config = service.config
    keyrings = (config.keyring_config.primary, config.keyring_config.previous)
    return (
        service.db.is_sqlite
        and not config.fetch
        and all(k is None or isinstance(k, FileKeyringConfig) for k in keyrings)
        and isinstance(config.token_signer_config, FileTokenSignerConfig)
    )


async def _sweep_sessions(service: Service, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await run_in_threadpool(service.broker.sweep_sessions)
            if removed:
                log.info("swept %d expired sessions", removed)
        except Exception:  # the database may be away for a while: try again later
            log.warning("session sweep failed; will retry")


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _version() -> str:
    from veritee import __version__

    return __version__


def create_app_from_env() -> FastAPI:
    """uvicorn factory for multi-worker runs: the data directory comes from the environment."""
    data_dir = os.environ.get("VERITEE_DATA_DIR")
    if not data_dir:
        raise RuntimeError("VERITEE_DATA_DIR is not set")
    trust = os.environ.get("VERITEE_TRUST_SIMULATOR") == "1"
    return create_app(ServiceConfig.load(Path(data_dir)), trust_simulator=trust or None)
