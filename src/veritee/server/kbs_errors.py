"""Trustee's error body and how veritee's typed errors map onto it."""

from __future__ import annotations

import json
import logging

from sqlalchemy.exc import DBAPIError

from veritee.errors import (
    AuthError,
    CollateralUnavailableError,
    EvidenceFormatError,
    KeyringUnavailableError,
    NotFoundError,
    PolicyDenied,
    PolicyError,
    ProtocolVersionError,
    RequestError,
    VerificationError,
    VeriteeError,
)

ERROR_TYPE = "https://github.com/confidential-containers/kbs/errors/"
log = logging.getLogger("veritee.server")


class KbsHttpError(Exception):
    def __init__(
        self, status: int, variant: str, detail: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.variant = variant
        self.detail = detail
        self.retry_after = retry_after

    def body(self) -> bytes:
        return error_body(self.variant, self.detail)


def error_body(variant: str, detail: str) -> bytes:
    doc = {"type": ERROR_TYPE + variant, "detail": detail}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def too_large(limit: int) -> KbsHttpError:
    return KbsHttpError(413, "HTTPFailed", f"request body larger than {limit} bytes")


def not_json() -> KbsHttpError:
    return KbsHttpError(401, "SerdeError", "request body is not valid JSON")


def database_unavailable(exc: DBAPIError) -> KbsHttpError:
    """The transaction was rolled back; nothing was half-written. Clients retry."""
    log.error("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
    return KbsHttpError(
        503, "StorageBackendInitialization", "database unavailable, retry later", retry_after=1
    )


def map_error(exc: VeriteeError, *, area: str, strict: bool) -> KbsHttpError:
    """Trustee's variants; 401 everywhere unless strict status codes are on."""
    detail = str(exc)
    if isinstance(exc, KeyringUnavailableError):
        return KbsHttpError(503, "PluginInternalError", "key store unavailable, retry later")
    if isinstance(exc, PolicyDenied):
        return KbsHttpError(403 if strict else 401, "PolicyDeny", detail)
    if isinstance(exc, NotFoundError):
        return KbsHttpError(404 if strict else 401, "PluginInternalError", detail)
    if isinstance(exc, PolicyError):
        return KbsHttpError(400 if strict else 401, "PolicyEngineError", detail)
    if isinstance(exc, AuthError):
        variant = "AdminAuthAccess" if area == "admin" else "TokenNotFound"
        return KbsHttpError(401, variant, detail)
    if isinstance(exc, ProtocolVersionError):
        return KbsHttpError(401, "AttestationError", detail)
    if area == "resource" and isinstance(exc, VerificationError):
        return KbsHttpError(401, "TokenVerifierError", detail)
    if isinstance(exc, EvidenceFormatError | VerificationError | CollateralUnavailableError):
        return KbsHttpError(401, "AttestationError", detail)
    if isinstance(exc, RequestError):
        return KbsHttpError(400 if strict else 401, "SerdeError", detail)
    return KbsHttpError(401, "PluginInternalError", detail)
