"""OpenAPI declarations for routes whose bodies are parsed by hand (KBS wire format).

Handlers read raw bodies so that malformed input gets Trustee's error shape
instead of a framework error; these schemas document what they accept and
return, so clients and schemathesis see a complete contract.
"""

from __future__ import annotations

from typing import Any

ERROR = {
    "type": "object",
    "required": ["type", "detail"],
    "properties": {"type": {"type": "string"}, "detail": {"type": "string"}},
}
JWK = {"type": "object", "additionalProperties": {"type": "string"}}
AUTH_REQUEST = {
    "type": "object",
    "required": ["version", "tee"],
    "properties": {
        "version": {"type": "string", "example": "0.4.0"},
        "tee": {"type": "string", "example": "snp"},
        "extra-params": {},
    },
}
CHALLENGE = {
    "type": "object",
    "required": ["nonce", "extra-params"],
    "properties": {"nonce": {"type": "string"}, "extra-params": {}},
}
ATTESTATION = {
    "type": "object",
    "required": ["runtime-data", "tee-evidence"],
    "properties": {
        "init-data": {
            "type": "object",
            "properties": {"format": {"type": "string"}, "body": {"type": "string"}},
        },
        "runtime-data": {
            "type": "object",
            "required": ["nonce", "tee-pubkey"],
            "properties": {"nonce": {"type": "string"}, "tee-pubkey": JWK},
        },
        "tee-evidence": {
            "type": "object",
            "required": ["primary_evidence"],
            "properties": {"primary_evidence": {}, "additional_evidence": {"type": "string"}},
        },
    },
}
TOKEN = {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}
JWE = {
    "type": "object",
    "required": ["protected", "encrypted_key", "iv", "ciphertext", "tag"],
    "properties": {
        k: {"type": "string"} for k in ("protected", "encrypted_key", "iv", "ciphertext", "tag")
    },
}
POLICY_SET = {
    "type": "object",
    "required": ["policy"],
    "properties": {
        "type": {"type": "string"},
        "policy_id": {"type": "string"},
        "policy": {"type": "string", "description": "base64url Rego"},
    },
}
POLICY_LIST = {
    "type": "array",
    "items": {"type": "object", "additionalProperties": {"type": "string"}},
}
RV_MESSAGE = {
    "type": "object",
    "required": ["type", "payload"],
    "properties": {
        "version": {"type": "string"},
        "type": {"type": "string"},
        "payload": {"type": "string"},
    },
}
RV_REGISTERED = {
    "type": "object",
    "properties": {"registered": {"type": "array", "items": {"type": "string"}}},
}
RV_RECORD = {
    "type": "object",
    "required": ["name", "value"],
    "properties": {
        "version": {"type": "string"},
        "name": {"type": "string"},
        "expiration": {"type": "string"},
        "value": {},
    },
}
RV_STORED = {
    "type": "object",
    "required": ["name", "value", "state"],
    "properties": {
        "version": {"type": "string"},
        "name": {"type": "string"},
        "expiration": {"type": "string"},
        "value": {},
        "state": {"type": "string", "enum": ["valid", "expired", "refused"]},
        "problem": {"type": "string"},
        "source": {"type": "string"},
        "provenance": {"type": "object"},
    },
}
RV_LIST = {"type": "array", "items": RV_STORED}
RV_IMPORT = {
    "type": "object",
    "required": ["envelope"],
    "properties": {
        "envelope": {
            "type": "object",
            "description": "DSSE envelope holding an in-toto Statement",
            "required": ["payloadType", "payload", "signatures"],
            "properties": {
                "payloadType": {"type": "string", "example": "application/vnd.in-toto+json"},
                "payload": {"type": "string", "description": "base64 statement"},
                "signatures": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"keyid": {"type": "string"}, "sig": {"type": "string"}},
                    },
                },
            },
        },
        "name": {"type": "string", "description": "SLSA provenance: the value its subjects are"},
        "digest_alg": {"type": "string", "enum": ["sha256", "sha384", "sha512"]},
        "expiration": {"type": "string", "description": "RFC 3339 (default now + 12 months)"},
    },
}
JWKS = {
    "type": "object",
    "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": JWK}},
}
COOKIE = {"name": "kbs-session-id", "in": "cookie", "required": False, "schema": {"type": "string"}}
BEARER = {
    "name": "authorization",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Bearer <JWT>",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": "refused", **_json(ERROR)} for code in codes}


GUEST_ERRORS = (400, 401, 403, 404, 413, 429, 503)
ADMIN_ERRORS = (400, 401, 403, 404, 413, 503)


def spec(
    request: dict[str, Any] | None,
    response: dict[str, Any] | None,
    *,
    errors: tuple[int, ...],
    params: list[dict[str, Any]] | None = None,
    raw_body: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for a FastAPI route decorator."""
    extra: dict[str, Any] = {}
    if request is not None:
        extra["requestBody"] = {"required": True, **_json(request)}
    if raw_body:
        extra["requestBody"] = {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    if params:
        extra["parameters"] = params
    responses: dict[int | str, dict[str, Any]] = _errors(*errors)
    responses[200] = (
        {"description": "ok", **_json(response)} if response is not None else {"description": "ok"}
    )
    return {"openapi_extra": extra, "responses": responses}


def _operation(summary: str, op_id: str, parts: dict[str, Any]) -> dict[str, Any]:
    responses = {str(code): value for code, value in parts["responses"].items()}
    return {"summary": summary, "operationId": op_id, **parts["openapi_extra"],
            "responses": responses}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def guest_paths() -> dict[str, dict[str, Any]]:
    """OpenAPI path items of the guest routes, which are served outside FastAPI."""
    resource = spec(None, JWE, errors=GUEST_ERRORS, params=[COOKIE, BEARER])
    resource["openapi_extra"]["parameters"] = [
        _path_param("repository"), _path_param("rtype"), _path_param("tag"),
        *resource["openapi_extra"]["parameters"],
    ]
    return {
        "/kbs/v0/auth": {"post": _operation(
            "Auth", "auth", spec(AUTH_REQUEST, CHALLENGE, errors=GUEST_ERRORS))},
        "/kbs/v0/attest": {"post": _operation(
            "Attest", "attest",
            spec(ATTESTATION, TOKEN, errors=GUEST_ERRORS, params=[COOKIE]))},
        "/kbs/v0/resource/{repository}/{rtype}/{tag}": {"get": _operation(
            "Get Resource", "get_resource", resource)},
    }
