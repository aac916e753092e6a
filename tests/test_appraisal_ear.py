"""EAR tokens: issue/verify round trip, joserfc cross-check, every forgery rejected."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, KeySet

from veritee.appraisal.ear import (
    AR4SI_KEYS,
    EAR_PROFILE,
    Extension,
    Submod,
    TokenSigner,
    ec_thumbprint,
    issue_ear,
    status_from_vector,
    tee_pubkey_from_claims,
    verify_ear,
)
from veritee.errors import (
    ConfigError,
    ExpiredError,
    PolicyError,
    SignatureError,
    VerificationError,
)

NOW = dt.datetime(2026, 9, 1, 12, 0, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(minutes=5)
TEE_PUBKEY = {
    "kty": "EC",
    "crv": "P-256",
    "alg": "ECDH-ES+A256KW",
    "x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
    "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE",
}
ANNOTATED = {
    "snp": {"measurement": "ab" * 48, "policy_debug_allowed": False, "reported_tcb_snp": 22},
    "report_data": "cd" * 64,
    "init_data": "00" * 32,
    "init_data_claims": None,
    "runtime_data_claims": {"nonce": "AAEC", "tee-pubkey": TEE_PUBKEY},
}
VECTOR = {"instance-identity": 0, "configuration": 2, "executables": 3, "hardware": 2}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def signer() -> TokenSigner:
    return TokenSigner.generate()


@pytest.fixture(scope="module")
def other() -> TokenSigner:
    return TokenSigner.generate()


def _issue(signer: TokenSigner, now: dt.datetime = NOW, issuer: str = "veritee") -> str:
    submod = Submod.appraise(
        VECTOR,
        "default_cpu",
        ANNOTATED,
        extensions=[
            Extension("ear.trustee.identifiers", -18, {"validated": {"container_images": ["img"]}})
        ],
    )
    return issue_ear(
        signer, {"cpu0": submod}, now=now, ttl=TTL, issuer=issuer, verifier_build="veritee 0.1.0"
    )


# --- AR4SI ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "status"),
    [
        ([], "none"),
        ([0, 1, -1], "none"),
        ([0, 2], "affirming"),
        ([31, -31, 3], "affirming"),
        ([2, 32], "warning"),
        ([95, -95], "warning"),
        ([-32, 2], "warning"),
        ([33, 96], "contraindicated"),
        ([127], "contraindicated"),
        ([-128, 2], "contraindicated"),
        ([-96], "contraindicated"),
        ([2, 128], "contraindicated"),  # out of range fails closed
        ([2, -129], "contraindicated"),
    ],
)
def test_status_from_vector_tiers(values: list[int], status: str) -> None:
    vector = dict(zip(AR4SI_KEYS, values, strict=False))
    assert status_from_vector(vector) == status


def test_trustee_default_policy_values() -> None:
    # PROTOCOL.md 3.1: the pessimistic defaults and what a fully matched SNP gets.
    assert status_from_vector({"executables": 33, "hardware": 97, "configuration": 36}) == (
        "contraindicated"
    )
    assert status_from_vector({"executables": 3, "hardware": 2, "configuration": 2}) == (
        "affirming"
    )
    assert status_from_vector({"executables": 33, "hardware": 2, "configuration": 2}) == "warning"


def test_status_from_vector_non_integer_is_contraindicated() -> None:
    assert status_from_vector({"hardware": True}) == "contraindicated"
    assert status_from_vector({"hardware": 2.0}) == "contraindicated"  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"status": "great"}, "status"),
        ({"trust_vector": {"hardwar": 2}}, "AR4SI"),
        ({"trust_vector": {"hardware": 200}}, "-128..127"),
        ({"trust_vector": {"hardware": True}}, "-128..127"),
        ({"extensions": [Extension("a", 1, 1), Extension("a", 2, 2)]}, "twice"),
    ],
)
def test_submod_validation(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = {
        "status": "affirming",
        "trust_vector": {"hardware": 2},
        "policy_id": "default_cpu",
        "annotated_evidence": ANNOTATED,
    }
    base.update(kwargs)
    with pytest.raises(PolicyError, match=match):
        Submod(**base)  # type: ignore[arg-type]


def test_extension_cannot_shadow_standard_claims() -> None:
    with pytest.raises(PolicyError, match="collides"):
        Extension("ear.status", 1000, "affirming")


# --- keys -----------------------------------------------------------------------


def test_kid_is_rfc7638_thumbprint(signer: TokenSigner) -> None:
    jwk = signer.public_jwk()
    assert set(jwk) == {"kty", "crv", "alg", "x", "y", "kid"}
    assert jwk["alg"] == "ES256"
    assert jwk["crv"] == "P-256"
    # Cross-check with joserfc's own RFC 7638 implementation.
    assert jwk["kid"] == ECKey.import_key(signer.public_key()).thumbprint()
    canonical = json.dumps(
        {"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}, separators=(",", ":")
    )
    assert jwk["kid"] == _b64(hashlib.sha256(canonical.encode()).digest())
    assert jwk["kid"] == ec_thumbprint("P-256", jwk["x"], jwk["y"])
    assert signer.jwks() == {"keys": [jwk]}
    assert "kid=" in repr(signer)
    assert jwk["x"] not in repr(signer)


def test_save_and_load_pem(tmp_path: Path, signer: TokenSigner) -> None:
    path = tmp_path / "ear.pem"
    signer.save_pem(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = TokenSigner.load_pem(path)
    assert loaded.kid == signer.kid
    token = _issue(loaded)
    assert verify_ear(token, [signer.public_jwk()], now=NOW)["iss"] == "veritee"
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        signer.save_pem(path)


def test_load_pem_refuses_readable_or_wrong_keys(tmp_path: Path, signer: TokenSigner) -> None:
    path = tmp_path / "ear.pem"
    signer.save_pem(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        TokenSigner.load_pem(path)
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    p384.chmod(0o600)
    with pytest.raises(ConfigError, match="P-256"):
        TokenSigner.load_pem(p384)
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a key")
    junk.chmod(0o600)
    with pytest.raises(ConfigError, match="PEM"):
        TokenSigner.load_pem(junk)
    with pytest.raises(ConfigError, match="cannot open"):
        TokenSigner.load_pem(tmp_path / "absent.pem")


# --- round trip -------------------------------------------------------------------


def test_round_trip_shape(signer: TokenSigner) -> None:
    token = _issue(signer, issuer="veritee-test")
    header = json.loads(_unb64(token.split(".")[0]))
    assert list(header) == ["alg", "typ", "kid", "jwk"]
    assert header["alg"] == "ES256"
    assert header["typ"] == "JWT"
    assert header["kid"] == signer.kid
    assert header["jwk"] == signer.public_jwk()

    claims = verify_ear(token, [signer.public_jwk()], now=NOW + dt.timedelta(minutes=1))
    assert claims["eat_profile"] == EAR_PROFILE
    assert claims["iat"] == int(NOW.timestamp())
    assert claims["exp"] == int(NOW.timestamp()) + 300
    assert claims["iss"] == "veritee-test"
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 32
    assert claims["ear.verifier-id"] == {
        "developer": "urn:veritee",
        "build": "veritee 0.1.0",
    }
    submods = claims["submods"]
    assert isinstance(submods, dict)
    cpu0 = submods["cpu0"]
    assert cpu0["ear.status"] == "affirming"
    assert cpu0["ear.trustworthiness-vector"] == VECTOR
    assert cpu0["ear.appraisal-policy-id"] == "default_cpu"
    assert cpu0["ear.veraison.annotated-evidence"] == ANNOTATED
    assert cpu0["ear.trustee.identifiers"] == {"validated": {"container_images": ["img"]}}
    assert tee_pubkey_from_claims(claims) == TEE_PUBKEY
    # The path PROTOCOL.md 1.7 names, spelled out.
    assert (
        claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"][  # type: ignore[index]
            "tee-pubkey"
        ]
        == TEE_PUBKEY
    )


def test_each_token_has_a_fresh_jti(signer: TokenSigner) -> None:
    first = verify_ear(_issue(signer), [signer.public_key()], now=NOW)
    second = verify_ear(_issue(signer), [signer.public_key()], now=NOW)
    assert first["jti"] != second["jti"]


def test_joserfc_verifies_our_token_with_the_jwks(signer: TokenSigner) -> None:
    token = _issue(signer)
    keyset = KeySet.import_key_set(signer.jwks())  # type: ignore[arg-type]
    decoded = jose_jwt.decode(token, keyset, algorithms=["ES256"])
    assert decoded.header["kid"] == signer.kid
    assert decoded.claims["submods"]["cpu0"]["ear.status"] == "affirming"
    # And our verifier agrees with joserfc on the claims.
    assert decoded.claims == verify_ear(token, signer.jwks()["keys"], now=NOW)


def test_joserfc_signed_token_verifies_with_us(signer: TokenSigner) -> None:
    private = ECKey.import_key(signer._key)  # the same key, signed by another implementation
    claims = {"iat": int(NOW.timestamp()), "exp": int(NOW.timestamp()) + 60, "tee-pubkey": {}}
    token = jose_jwt.encode({"alg": "ES256", "kid": signer.kid}, claims, private)
    assert verify_ear(token, [signer.public_jwk()], now=NOW) == claims


def test_issue_rejects_bad_arguments(signer: TokenSigner) -> None:
    submod = Submod.appraise(VECTOR, "p", ANNOTATED)
    with pytest.raises(ValueError, match="submod"):
        issue_ear(signer, {}, now=NOW, ttl=TTL, verifier_build="b")
    with pytest.raises(ConfigError, match="lifetime"):
        issue_ear(signer, {"cpu0": submod}, now=NOW, ttl=dt.timedelta(0), verifier_build="b")
    with pytest.raises(ConfigError, match="timezone"):
        issue_ear(
            signer, {"cpu0": submod}, now=NOW.replace(tzinfo=None), ttl=TTL, verifier_build="b"
        )


# --- rejections -------------------------------------------------------------------


def _forge(header: dict[str, object], claims: dict[str, object], sign: object = None) -> str:
    """A token with chosen header and claims; ``sign`` maps the signing input to bytes."""
    h = _b64(json.dumps(header).encode())
    p = _b64(json.dumps(claims).encode())
    signature = sign(f"{h}.{p}".encode()) if callable(sign) else b""
    return f"{h}.{p}.{_b64(signature)}"


def _claims(now: dt.datetime = NOW) -> dict[str, object]:
    ts = int(now.timestamp())
    return {"iat": ts, "exp": ts + 300, "submods": {}}


def test_expired(signer: TokenSigner) -> None:
    token = _issue(signer)
    verify_ear(token, [signer.public_jwk()], now=NOW + TTL + dt.timedelta(seconds=29))
    with pytest.raises(ExpiredError, match="expired at 2026-09-01T12:05:00"):
        verify_ear(token, [signer.public_jwk()], now=NOW + TTL + dt.timedelta(seconds=30))
    with pytest.raises(ExpiredError, match="expired"):
        verify_ear(token, [signer.public_jwk()], now=NOW + TTL, leeway=dt.timedelta(0))


def test_future_dated(signer: TokenSigner) -> None:
    token = _issue(signer, now=NOW + dt.timedelta(minutes=2))
    verify_ear(token, [signer.public_jwk()], now=NOW + dt.timedelta(minutes=1, seconds=31))
    with pytest.raises(ExpiredError, match="future"):
        verify_ear(token, [signer.public_jwk()], now=NOW)


def test_not_before(signer: TokenSigner) -> None:
    claims = {**_claims(), "nbf": int(NOW.timestamp()) + 120}
    token = signer.sign_compact({"alg": "ES256", "kid": signer.kid}, json.dumps(claims).encode())
    with pytest.raises(ExpiredError, match="not valid before"):
        verify_ear(token, [signer.public_jwk()], now=NOW)


def test_wrong_key(signer: TokenSigner, other: TokenSigner) -> None:
    token = _issue(signer)
    with pytest.raises(SignatureError, match="not a trusted key"):
        verify_ear(token, [other.public_jwk()], now=NOW)
    # A token signed by an untrusted key but claiming a trusted kid.
    impostor = other.sign_compact(
        {"alg": "ES256", "kid": signer.kid}, json.dumps(_claims()).encode()
    )
    with pytest.raises(SignatureError, match="does not verify"):
        verify_ear(impostor, [signer.public_jwk()], now=NOW)
    # ... or carrying its own jwk in the header next to a trusted kid.
    impostor = other.sign_compact(
        {"alg": "ES256", "kid": signer.kid, "jwk": other.public_jwk()},
        json.dumps(_claims()).encode(),
    )
    # Even with both keys trusted, a header whose kid and jwk disagree is refused.
    with pytest.raises(SignatureError, match="not the key its kid names"):
        verify_ear(impostor, [signer.public_jwk(), other.public_key()], now=NOW)


def test_header_jwk_alone_is_never_trusted(signer: TokenSigner, other: TokenSigner) -> None:
    # Trustee-style token: no kid, only the signer's jwk in the header.
    token = other.sign_compact(
        {"alg": "ES256", "typ": "JWT", "jwk": other.public_jwk()}, json.dumps(_claims()).encode()
    )
    with pytest.raises(SignatureError, match="never trusted by itself"):
        verify_ear(token, [signer.public_jwk()], now=NOW)
    # Once that key is configured (pinned), the same token verifies.
    assert verify_ear(token, [signer.public_jwk(), other.public_key()], now=NOW)["submods"] == {}


def test_declared_kid_in_jwks_is_honoured(other: TokenSigner) -> None:
    token = other.sign_compact({"alg": "ES256", "kid": "as-key-1"}, json.dumps(_claims()).encode())
    jwk = {**other.public_jwk(), "kid": "as-key-1"}
    assert verify_ear(token, [jwk], now=NOW)["exp"] == _claims()["exp"]


def test_no_key_named(signer: TokenSigner) -> None:
    token = signer.sign_compact({"alg": "ES256"}, json.dumps(_claims()).encode())
    with pytest.raises(SignatureError, match="names no key"):
        verify_ear(token, [signer.public_jwk()], now=NOW)


def test_alg_none(signer: TokenSigner) -> None:
    for alg in ("none", "None", "NONE"):
        token = _forge({"alg": alg, "kid": signer.kid}, _claims())
        with pytest.raises(SignatureError, match="algorithm"):
            verify_ear(token, [signer.public_jwk()], now=NOW)


def test_hs256_with_public_key_as_secret(signer: TokenSigner) -> None:
    # The classic confusion attack: HMAC keyed with the (public) verification key.
    secrets_tried = [
        json.dumps(signer.public_jwk()).encode(),
        signer.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        signer.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
    ]
    for secret in secrets_tried:
        for alg, digest in (("HS256", hashlib.sha256), ("HS384", hashlib.sha384)):
            token = _forge(
                {"alg": alg, "kid": signer.kid},
                _claims(),
                lambda data, s=secret, d=digest: hmac.new(s, data, d).digest(),
            )
            with pytest.raises(SignatureError, match="algorithm"):
                verify_ear(token, [signer.public_jwk()], now=NOW)


@pytest.mark.parametrize("alg", ["ES384", "ES512", "RS256", "PS384", "EdDSA", "es256", ""])
def test_other_algorithms_rejected(signer: TokenSigner, alg: str) -> None:
    token = _issue(signer)
    header = json.loads(_unb64(token.split(".")[0]))
    header["alg"] = alg
    forged = _b64(json.dumps(header).encode()) + token[token.index(".") :]
    with pytest.raises(SignatureError, match="algorithm"):
        verify_ear(forged, [signer.public_jwk()], now=NOW)


def test_modified_payload(signer: TokenSigner) -> None:
    token = _issue(signer)
    h, p, s = token.split(".")
    claims = json.loads(_unb64(p))
    claims["submods"]["cpu0"]["ear.status"] = "affirming"
    claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["runtime_data_claims"][
        "tee-pubkey"
    ]["x"] = "AAAA"
    forged = f"{h}.{_b64(json.dumps(claims).encode())}.{s}"
    with pytest.raises(SignatureError, match="does not verify"):
        verify_ear(forged, [signer.public_jwk()], now=NOW)
    # A one-bit change anywhere in the payload too.
    raw = bytearray(_unb64(p))
    raw[len(raw) // 2] ^= 0x20
    with pytest.raises(VerificationError):
        verify_ear(f"{h}.{_b64(bytes(raw))}.{s}", [signer.public_jwk()], now=NOW)


def test_modified_header(signer: TokenSigner) -> None:
    token = _issue(signer)
    h, p, s = token.split(".")
    header = json.loads(_unb64(h))
    header["typ"] = "at+jwt"
    with pytest.raises(SignatureError, match="does not verify"):
        verify_ear(f"{_b64(json.dumps(header).encode())}.{p}.{s}", [signer.public_jwk()], now=NOW)


def test_modified_signature(signer: TokenSigner) -> None:
    token = _issue(signer)
    h, p, s = token.split(".")
    raw = bytearray(_unb64(s))
    raw[10] ^= 0x01
    with pytest.raises(SignatureError, match="does not verify"):
        verify_ear(f"{h}.{p}.{_b64(bytes(raw))}", [signer.public_jwk()], now=NOW)
    with pytest.raises(SignatureError, match="64-byte"):
        verify_ear(f"{h}.{p}.{_b64(bytes(raw) + b'x')}", [signer.public_jwk()], now=NOW)


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"iat": 1}, "'exp'"),
        ({"exp": 2**40}, "'iat'"),
        ({"exp": "tomorrow", "iat": 1}, "'exp'"),
        ({"exp": True, "iat": 1}, "'exp'"),
        ({"exp": 10**400, "iat": 1}, "'exp'"),
        ({"exp": 2**40, "iat": -(10**30)}, "'iat'"),
    ],
)
def test_bad_time_claims(signer: TokenSigner, claims: dict[str, object], match: str) -> None:
    token = signer.sign_compact({"alg": "ES256", "kid": signer.kid}, json.dumps(claims).encode())
    with pytest.raises(VerificationError, match=match):
        verify_ear(token, [signer.public_jwk()], now=NOW)


def test_crit_and_duplicate_members_rejected(signer: TokenSigner) -> None:
    token = signer.sign_compact(
        {"alg": "ES256", "kid": signer.kid, "crit": ["exp"]}, json.dumps(_claims()).encode()
    )
    with pytest.raises(VerificationError, match="critical"):
        verify_ear(token, [signer.public_jwk()], now=NOW)
    payload = b'{"iat":%d,"exp":%d,"exp":99}' % (NOW.timestamp(), NOW.timestamp() + 60)
    token = signer.sign_compact({"alg": "ES256", "kid": signer.kid}, payload)
    with pytest.raises(VerificationError, match="duplicate"):
        verify_ear(token, [signer.public_jwk()], now=NOW)


def test_issuer_check(signer: TokenSigner) -> None:
    token = _issue(signer)
    verify_ear(token, [signer.public_jwk()], now=NOW, issuer="veritee")
    with pytest.raises(VerificationError, match="issuer"):
        verify_ear(token, [signer.public_jwk()], now=NOW, issuer="someone-else")


def test_bad_trusted_keys_are_config_errors(signer: TokenSigner) -> None:
    token = _issue(signer)
    bad_keys: list[object] = [
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {**signer.public_jwk(), "crv": "P-384"},
        {**signer.public_jwk(), "alg": "ES384"},
        {**signer.public_jwk(), "x": signer.public_jwk()["y"]},  # off the curve
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        "a key",
    ]
    for bad in bad_keys:
        with pytest.raises(ConfigError, match="trusted token key #0"):
            verify_ear(token, [bad], now=NOW)  # type: ignore[list-item]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "...",
        "e30.e30.",
        "e30.e30.AAAA",
        "!!.e30.AA",
        "e30.é.AA",
        "W10.e30.AA",
    ],
)
def test_malformed_tokens(signer: TokenSigner, token: str) -> None:
    with pytest.raises(VerificationError):
        verify_ear(token, [signer.public_jwk()], now=NOW)


def test_not_a_string(signer: TokenSigner) -> None:
    with pytest.raises(VerificationError, match="string"):
        verify_ear(b"abc", [signer.public_jwk()], now=NOW)  # type: ignore[arg-type]


# --- tee-pubkey paths -------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {
            "submods": {
                "cpu0": {
                    "ear.veraison.annotated-evidence": {
                        "runtime_data_claims": {"tee-pubkey": TEE_PUBKEY}
                    }
                }
            }
        },
        {"customized_claims": {"runtime_data": {"tee-pubkey": TEE_PUBKEY}}},
        {"tdx": {"attester_runtime_data": {"tee-pubkey": TEE_PUBKEY}}},
        {"tdx": {"attester_user_data": {"tee-pubkey": TEE_PUBKEY}}},
        {"tee-pubkey": TEE_PUBKEY},
    ],
)
def test_tee_pubkey_paths(claims: dict[str, object]) -> None:
    assert tee_pubkey_from_claims(claims) == TEE_PUBKEY


def test_tee_pubkey_absent_or_malformed() -> None:
    assert tee_pubkey_from_claims({}) is None
    assert tee_pubkey_from_claims({"submods": {"gpu0": {}}}) is None
    assert tee_pubkey_from_claims({"submods": {"cpu0": "x"}, "tee-pubkey": "str"}) is None
    # The EAR path wins over the legacy top-level one.
    other = {**TEE_PUBKEY, "x": "other"}
    claims: dict[str, object] = {
        "tee-pubkey": other,
        "submods": {
            "cpu0": {
                "ear.veraison.annotated-evidence": {
                    "runtime_data_claims": {"tee-pubkey": TEE_PUBKEY}
                }
            }
        },
    }
    assert tee_pubkey_from_claims(claims) == TEE_PUBKEY


# --- properties: untrusted tokens raise only VerificationError ---------------------

_KEY = TokenSigner.generate()
_TRUSTED = [_KEY.public_jwk()]
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9_\-]{0,40}(\.[A-Za-z0-9_\-]{0,90}){2}"))
def test_arbitrary_strings_raise_only_verification_error(token: str) -> None:
    with pytest.raises(VerificationError):
        verify_ear(token, _TRUSTED, now=NOW)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["kid", "jwk", "typ", "crit", "x5c"]),
        st.just(_KEY.kid) | st.just(_KEY.public_jwk()) | _json,
    ),
    st.dictionaries(st.sampled_from(["iat", "exp", "nbf", "iss", "submods"]), _json) | _json,
)
def test_validly_signed_arbitrary_content(header: dict[str, object], claims: object) -> None:
    try:
        payload = json.dumps(claims).encode()
    except ValueError:
        return
    token = _KEY.sign_compact({"alg": "ES256", **header}, payload)
    try:
        result = verify_ear(token, _TRUSTED, now=NOW)
    except VerificationError:
        return
    assert isinstance(result, dict)
    assert result == json.loads(payload)
