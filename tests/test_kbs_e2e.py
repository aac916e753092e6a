"""The whole KBS loop over real HTTP (uvicorn on loopback): every refusal, and no side effects."""

from __future__ import annotations

import base64
import datetime as dt
import json
import sqlite3
import threading

import httpx
import pytest

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, Kbs, kbs, set_resource_policy, sim_platform
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedSnpProvider
from veritee.cli.main import main
from veritee.tee.snp.sim import DEFAULT_POLICY

__all__ = ["kbs", "sim_platform"]
ERR = "https://github.com/confidential-containers/kbs/errors/"


def provider(kbs: Kbs, measurement: bytes = GOOD_MEASUREMENT, **kw: object) -> SimulatedSnpProvider:
    return SimulatedSnpProvider(kbs.platform, measurement=measurement, **kw)  # type: ignore[arg-type]


def test_good_guest_receives_the_secret_by_cookie_and_by_bearer(kbs: Kbs) -> None:
    with KbsClient(kbs.url) as client:
        client.attest(provider(kbs))
        assert client.get_resource("default/disk/key") == SECRET
        assert client.get_resource("default/disk/key", use_bearer=True) == SECRET


def _refused_without_side_effects(kbs: Kbs, fn: object) -> KbsRefused:
    before = kbs.snapshot()
    with pytest.raises(KbsRefused) as info:
        fn()  # type: ignore[operator]
    after = kbs.snapshot()
    # /auth creates a session row by design; everything else must be unchanged.
    before.pop("kbs_sessions")
    after.pop("kbs_sessions")
    assert before == after
    return info.value


def test_wrong_measurement_is_denied_with_the_reason(kbs: Kbs) -> None:
    client = KbsClient(kbs.url)
    client.attest(provider(kbs, measurement=bytes(48)))
    exc = _refused_without_side_effects(kbs, lambda: client.get_resource("default/disk/key"))
    assert exc.status == 401 and exc.variant == "PolicyDeny"
    assert "snp_launch_measurement" in exc.detail and "warning" in exc.detail


def test_debug_policy_bit_is_denied(kbs: Kbs) -> None:
    client = KbsClient(kbs.url)
    client.attest(provider(kbs, policy=DEFAULT_POLICY | 1 << 19))
    exc = _refused_without_side_effects(kbs, lambda: client.get_resource("default/disk/key"))
    assert exc.variant == "PolicyDeny" and "configuration" in exc.detail


def test_replayed_nonce_is_refused(kbs: Kbs) -> None:
    first = KbsClient(kbs.url)
    old = first.attest(provider(kbs))
    replay = KbsClient(kbs.url)
    exc = _refused_without_side_effects(
        kbs, lambda: replay.attest(provider(kbs), nonce_override=old.nonce)
    )
    assert exc.variant == "AttestationError" and "nonce" in exc.detail


def test_nonce_is_single_use_within_a_session(kbs: Kbs) -> None:
    client = KbsClient(kbs.url)
    client.attest(provider(kbs))
    session = client.session_id
    # The same session posts /attest again with its cookie.
    body = {
        "runtime-data": {"nonce": "x", "tee-pubkey": client.tee_jwk.canonical_jwk()},
        "tee-evidence": {"primary_evidence": {}, "additional_evidence": ""},
    }
    r = httpx.post(
        f"{kbs.url}/kbs/v0/attest", json=body, headers={"Cookie": f"kbs-session-id={session}"}
    )
    assert r.status_code == 401
    assert "single-use" in r.json()["detail"]


def test_evidence_bound_to_another_key_is_refused(kbs: Kbs) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from veritee.broker.binding import HashAlgorithm, expected_report_data, primary_digest
    from veritee.broker.teekey import TeePublicKey

    client = KbsClient(kbs.url)
    nonce, alg = client.auth("snp")
    other = TeePublicKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    digest = primary_digest(nonce, other, "", alg)  # evidence bound to a key the guest won't send
    evidence = provider(kbs).evidence(expected_report_data(digest, 64))
    body = {
        "runtime-data": {"nonce": nonce, "tee-pubkey": client.tee_jwk.canonical_jwk()},
        "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
    }
    before = kbs.snapshot()
    r = httpx.post(
        f"{kbs.url}/kbs/v0/attest",
        json=body,
        headers={"Cookie": f"kbs-session-id={client.session_id}"},
    )
    assert r.status_code == 401 and r.json()["type"] == ERR + "AttestationError"
    assert "REPORT_DATA" in r.json()["detail"]
    assert kbs.snapshot() == before
    assert alg is HashAlgorithm.SHA384  # the default when the guest supports it


def test_expired_session_is_refused(kbs: Kbs) -> None:
    broker = kbs.service.broker
    client = KbsClient(kbs.url)
    nonce, _ = client.auth("snp")
    real = broker.clock
    broker.clock = lambda: real() + dt.timedelta(minutes=6)
    try:
        from veritee.broker.binding import expected_report_data, primary_digest

        digest = primary_digest(nonce, client.tee_jwk, "")
        evidence = provider(kbs).evidence(expected_report_data(digest, 64))
        body = {
            "runtime-data": {"nonce": nonce, "tee-pubkey": client.tee_jwk.canonical_jwk()},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""},
        }
        r = httpx.post(
            f"{kbs.url}/kbs/v0/attest",
            json=body,
            headers={"Cookie": f"kbs-session-id={client.session_id}"},
        )
    finally:
        broker.clock = real
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_tampered_or_foreign_token_is_refused(kbs: Kbs) -> None:
    client = KbsClient(kbs.url)
    att = client.attest(provider(kbs))
    header, payload, sig = att.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] = claims["exp"] + 3600
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    for token in (f"{header}.{forged}.{sig}", f"{header}.{payload}.{sig[:-4]}AAAA", "garbage"):
        r = httpx.get(
            f"{kbs.url}/kbs/v0/resource/default/disk/key",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 401, token[:20]
        assert r.json()["type"] == ERR + "TokenVerifierError"


def test_resource_policy_deny_and_unknown_resource(kbs: Kbs) -> None:
    client = KbsClient(kbs.url)
    client.attest(provider(kbs))
    with pytest.raises(KbsRefused) as info:
        client.get_resource("default/disk/missing")
    assert info.value.status == 401 and "does not exist" in info.value.detail
    set_resource_policy(kbs, "package policy\nimport rego.v1\ndefault allow := false\n")
    try:
        exc = _refused_without_side_effects(kbs, lambda: client.get_resource("default/disk/key"))
        assert exc.variant == "PolicyDeny"
    finally:
        set_resource_policy(kbs, "allow_simulated")


ADMIN_ROUTES = [
    ("POST", "/kbs/v0/resource/default/disk/key"),
    ("DELETE", "/kbs/v0/resource/default/disk/key"),
    ("POST", "/kbs/v0/attestation-policy"),
    ("GET", "/kbs/v0/attestation-policy"),
    ("POST", "/kbs/v0/resource-policy"),
    ("GET", "/kbs/v0/resource-policy"),
    ("POST", "/kbs/v0/reference-value"),
    ("GET", "/kbs/v0/reference-value/snp_launch_measurement"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_require_a_valid_admin_token(kbs: Kbs, method: str, path: str) -> None:
    from veritee.server.admin_auth import AdminKeyPair, mint_admin_token

    stranger = AdminKeyPair.generate()
    bad_tokens = [
        None,
        "Basic YWRtaW46YWRtaW4=",
        "Bearer not-a-jwt",
        "Bearer "
        + mint_admin_token(
            stranger.private_key, now=dt.datetime.now(dt.UTC), ttl=dt.timedelta(minutes=5)
        ),
        kbs.admin_headers(role="reader")["Authorization"],
        "Bearer "
        + mint_admin_token(
            kbs.admin.private_key,
            now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
            ttl=dt.timedelta(minutes=5),
        ),
    ]
    before = kbs.snapshot()
    for auth in bad_tokens:
        headers = {"Authorization": auth} if auth else {}
        r = httpx.request(method, f"{kbs.url}{path}", headers=headers, content=b"{}")
        assert r.status_code == 401, (auth, r.text)
        assert r.json()["type"] == ERR + "AdminAuthAccess"
    assert kbs.snapshot() == before


def test_protocol_version_mismatch_lists_supported(kbs: Kbs) -> None:
    r = httpx.post(
        f"{kbs.url}/kbs/v0/auth", json={"version": "0.1.1", "tee": "snp", "extra-params": ""}
    )
    assert r.status_code == 401
    assert r.json()["type"] == ERR + "AttestationError"
    assert "KBS Client Protocol Version Mismatch" in r.json()["detail"]
    assert "0.4.0" in r.json()["detail"]


def test_challenge_and_cookie_shape(kbs: Kbs) -> None:
    r = httpx.post(
        f"{kbs.url}/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp", "extra-params": ""}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["extra-params"] == ""
    assert len(base64.b64decode(body["nonce"], validate=True)) == 32
    cookie = r.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    assert name == "kbs-session-id"
    value = rest.split(";")[0]
    assert len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    assert "Expires=" in cookie


def test_selected_hash_algorithm_is_honoured(kbs: Kbs) -> None:
    """A guest that cannot do SHA-384 is told which hash to use, and binding follows it."""
    r = httpx.post(f"{kbs.url}/kbs/v0/auth", json={
        "version": "0.4.0", "tee": "snp",
        "extra-params": {"supported-hash-algorithms": ["SHA512"]}})
    assert r.json()["extra-params"] == {"selected-hash-algorithm": "sha512"}
    with KbsClient(kbs.url, hash_algorithms=("sha512",)) as client:
        _nonce, alg = client.auth("snp")
        assert alg.value == "sha512"
        client.attest(provider(kbs))
        assert client.get_resource("default/disk/key") == SECRET


def test_bad_input_never_gives_500(kbs: Kbs) -> None:
    cases = [
        ("POST", "/kbs/v0/auth", b"not json"),
        ("POST", "/kbs/v0/auth", b"[]"),
        ("POST", "/kbs/v0/auth", b'{"version":"0.4.0","tee":"nope"}'),
        ("POST", "/kbs/v0/attest", b"{}"),
        ("GET", "/kbs/v0/resource/a/b", b""),
        ("GET", "/kbs/v0/resource/a/b/c", b""),
        ("GET", "/kbs/v0/nope", b""),
        ("PUT", "/kbs/v0/auth", b""),
    ]
    for method, path, body in cases:
        r = httpx.request(method, f"{kbs.url}{path}", content=body)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert r.json()["type"].startswith(ERR)


def test_unknown_endpoint_is_404_invalid_request_path(kbs: Kbs) -> None:
    r = httpx.get(f"{kbs.url}/kbs/v0/no-such-plugin/x")
    assert r.status_code == 404 and r.json()["type"] == ERR + "InvalidRequestPath"


def test_oversized_body_is_refused(kbs: Kbs) -> None:
    r = httpx.post(f"{kbs.url}/kbs/v0/auth", content=b"x" * (3 << 20))
    assert r.status_code == 413


def test_concurrent_guests_no_database_locked(kbs: Kbs) -> None:
    errors: list[BaseException] = []

    def flow() -> None:
        try:
            with KbsClient(kbs.url) as c:
                c.attest(provider(kbs))
                assert c.get_resource("default/disk/key") == SECRET
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=flow) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]


def test_secret_is_never_stored_in_plaintext(kbs: Kbs) -> None:
    raw = b"".join(p.read_bytes() for p in kbs.data_dir.glob("veritee.db*"))
    assert SECRET not in raw
    assert b"the-disk-key" not in raw


def test_jwks_verifies_issued_tokens(kbs: Kbs) -> None:
    from joserfc import jwt
    from joserfc.jwk import KeySet

    client = KbsClient(kbs.url)
    att = client.attest(provider(kbs))
    keys = KeySet.import_key_set(httpx.get(f"{kbs.url}/.well-known/jwks.json").json())
    decoded = jwt.decode(att.token, keys, algorithms=["ES256"])
    cpu0 = decoded.claims["submods"]["cpu0"]
    assert cpu0["ear.veraison.annotated-evidence"]["runtime_data_claims"]["tee-pubkey"] == (
        client.tee_jwk.canonical_jwk()
    )


def test_audit_verify_names_the_first_broken_record(
    kbs: Kbs, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil
    from pathlib import Path

    copy = Path(str(tmp_path)) / "copy"
    shutil.copytree(kbs.data_dir, copy)
    assert main(["audit", "verify", "--data-dir", str(copy)]) == 0
    con = sqlite3.connect(copy / "veritee.db")
    con.execute("UPDATE audit_log SET decision='tampered' WHERE seq=2")
    con.commit()
    con.close()
    assert main(["audit", "verify", "--data-dir", str(copy)]) == 3
    assert "record 2" in capsys.readouterr().err


def test_logs_never_carry_secrets_or_tokens(kbs: Kbs, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    headers = kbs.admin_headers()
    r = httpx.post(f"{kbs.url}/kbs/v0/resource/default/log/check", content=b"log-canary-secret",
                   headers=headers)
    assert r.status_code == 200
    with KbsClient(kbs.url) as client:
        att = client.attest(provider(kbs))
        assert client.get_resource("default/log/check") == b"log-canary-secret"
        bad = KbsClient(kbs.url)
        bad.attest(provider(kbs, measurement=bytes(48)))
        with pytest.raises(KbsRefused):
            bad.get_resource("default/log/check")
    text = caplog.text
    assert "attested session" in text  # the service does log its decisions
    assert "log-canary-secret" not in text
    assert att.token not in text
    assert headers["Authorization"].split()[1] not in text
