"""The OpenAPI document is complete, and schemathesis against the live service finds
no 5xx and no response that breaks the schema."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, settings

from tests.kbs_fixtures import Kbs, kbs, sim_platform

__all__ = ["kbs", "sim_platform"]

schemathesis = pytest.importorskip("schemathesis")

KBS_ROUTES = {
    ("post", "/kbs/v0/auth"), ("post", "/kbs/v0/attest"),
    ("get", "/kbs/v0/resource/{repository}/{rtype}/{tag}"),
    ("post", "/kbs/v0/resource/{repository}/{rtype}/{tag}"),
    ("delete", "/kbs/v0/resource/{repository}/{rtype}/{tag}"),
    ("post", "/kbs/v0/attestation-policy"), ("get", "/kbs/v0/attestation-policy"),
    ("post", "/kbs/v0/resource-policy"), ("get", "/kbs/v0/resource-policy"),
    ("post", "/kbs/v0/reference-value"), ("get", "/kbs/v0/reference-value/{name}"),
}


def test_openapi_document_describes_every_route(kbs: Kbs) -> None:
    doc = httpx.get(f"{kbs.url}/openapi.json").json()
    ops = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert ops >= KBS_ROUTES
    for method, path in KBS_ROUTES:
        op = doc["paths"][path][method]
        assert "200" in op["responses"] and "401" in op["responses"], (method, path)
        if method == "post":
            assert "requestBody" in op, (method, path)


def _runner(strategy: object, base_url: str) -> object:
    from hypothesis import given

    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)  # type: ignore[arg-type]
    def check(case: object) -> None:
        case.call_and_validate(base_url=base_url)  # type: ignore[attr-defined]

    return check


def test_schemathesis_finds_no_5xx_and_no_schema_violation(kbs: Kbs) -> None:
    schema = schemathesis.openapi.from_url(f"{kbs.url}/openapi.json")
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            _runner(operation.as_strategy(), kbs.url)()  # type: ignore[operator]
            ran += 1
        except Exception as exc:  # collected so one run reports every failing operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:800])
    assert not failures, "\n".join(failures)
    assert ran >= len(KBS_ROUTES)
