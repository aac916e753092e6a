"""Admin bearer JWTs (EdDSA): valid, every defect named, garbage only ever AuthError."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt as jose_jwt
from joserfc.jwk import OKPKey

from veritee.errors import AuthError, ConfigError
from veritee.server.admin_auth import (
    AdminIdentity,
    AdminKeyPair,
    load_public_keys,
    mint_admin_token,
    verify_admin_token,
)

NOW = dt.datetime(2026, 9, 1, 12, 0, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.fixture(scope="module")
def pair() -> AdminKeyPair:
    return AdminKeyPair.generate()


@pytest.fixture(scope="module")
def stranger() -> AdminKeyPair:
    return AdminKeyPair.generate()


def _sign(key: Ed25519PrivateKey, header: object, claims: object) -> str:
    """Sign arbitrary header/claims the way an attacker with some key would."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return signing_input + "." + _b64(key.sign(signing_input.encode()))


def _claims(**changes: object) -> dict[str, object]:
    ts = int(NOW.timestamp())
    claims: dict[str, object] = {
        "iss": "veritee",
        "sub": "alice",
        "aud": "veritee",
        "role": "admin",
        "iat": ts,
        "exp": ts + 3600,
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _assert_not_echoed(token: str, exc: AuthError) -> None:
    text = str(exc)
    for part in token.split("."):
        if len(part) >= 8:
            assert part not in text
            assert part[:16] not in text


# --- valid ----------------------------------------------------------------------


def test_valid_token(pair: AdminKeyPair) -> None:
    token = mint_admin_token(pair.private_key, now=NOW, ttl=HOUR, subject="alice")
    identity = verify_admin_token(token, [pair.public_key], now=NOW + dt.timedelta(minutes=5))
    assert identity == AdminIdentity(subject="alice", role="admin")
    header = json.loads(_unb64(token.split(".")[0]))
    assert header == {"alg": "EdDSA", "typ": "JWT"}
    claims = json.loads(_unb64(token.split(".")[1]))
    assert set(claims) == {"iss", "sub", "aud", "role", "iat", "exp", "jti"}
    assert claims["exp"] - claims["iat"] == 3600


def test_any_configured_key_may_sign(pair: AdminKeyPair, stranger: AdminKeyPair) -> None:
    token = mint_admin_token(stranger.private_key, now=NOW, ttl=HOUR)
    keys = [pair.public_key, stranger.public_key]
    assert verify_admin_token(token, keys, now=NOW).role == "admin"


def test_trustee_style_token(pair: AdminKeyPair) -> None:
    # Trustee's setup script: aud ["KBS"], iss/sub free-form.
    token = _sign(
        pair.private_key, {"alg": "EdDSA", "typ": "JWT"}, _claims(aud=["KBS"], iss="kbs-setup")
    )
    identity = verify_admin_token(token, [pair.public_key], now=NOW, audience="KBS")
    assert identity.role == "admin"
    with pytest.raises(AuthError, match="audience"):
        verify_admin_token(token, [pair.public_key], now=NOW)


# joserfc flags "EdDSA" as deprecated by RFC 9864 (in favour of "Ed25519"); Trustee uses EdDSA.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_joserfc_cross_check(pair: AdminKeyPair) -> None:
    token = mint_admin_token(pair.private_key, now=NOW, ttl=HOUR)
    decoded = jose_jwt.decode(token, OKPKey.import_key(pair.public_key), algorithms=["EdDSA"])
    assert decoded.claims["role"] == "admin"
    other = jose_jwt.encode(
        {"alg": "EdDSA"}, _claims(), OKPKey.import_key(pair.private_key), algorithms=["EdDSA"]
    )
    assert verify_admin_token(other, [pair.public_key], now=NOW).subject == "alice"


# --- each failure named --------------------------------------------------------------


def test_expired(pair: AdminKeyPair) -> None:
    token = mint_admin_token(pair.private_key, now=NOW, ttl=HOUR)
    verify_admin_token(token, [pair.public_key], now=NOW + HOUR + dt.timedelta(seconds=29))
    with pytest.raises(AuthError, match="expired") as info:
        verify_admin_token(token, [pair.public_key], now=NOW + HOUR + dt.timedelta(seconds=30))
    _assert_not_echoed(token, info.value)


def test_issued_in_the_future(pair: AdminKeyPair) -> None:
    token = mint_admin_token(pair.private_key, now=NOW + dt.timedelta(minutes=10), ttl=HOUR)
    with pytest.raises(AuthError, match="future"):
        verify_admin_token(token, [pair.public_key], now=NOW)


def test_not_before(pair: AdminKeyPair) -> None:
    token = _sign(pair.private_key, {"alg": "EdDSA"}, _claims(nbf=int(NOW.timestamp()) + 600))
    with pytest.raises(AuthError, match="not valid before"):
        verify_admin_token(token, [pair.public_key], now=NOW)


def test_wrong_key(pair: AdminKeyPair, stranger: AdminKeyPair) -> None:
    token = mint_admin_token(stranger.private_key, now=NOW, ttl=HOUR)
    with pytest.raises(AuthError, match="does not verify with any configured admin key") as info:
        verify_admin_token(token, [pair.public_key], now=NOW)
    _assert_not_echoed(token, info.value)


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "ES256", "RS256", "Ed25519", ""])
def test_other_algorithms(pair: AdminKeyPair, alg: str) -> None:
    token = _sign(pair.private_key, {"alg": alg, "typ": "JWT"}, _claims())
    with pytest.raises(AuthError, match="algorithm"):
        verify_admin_token(token, [pair.public_key], now=NOW)


def test_alg_none_unsigned(pair: AdminKeyPair) -> None:
    token = _b64(b'{"alg":"none"}') + "." + _b64(json.dumps(_claims()).encode()) + "."
    with pytest.raises(AuthError, match="algorithm"):
        verify_admin_token(token, [pair.public_key], now=NOW)


def test_tampered_payload(pair: AdminKeyPair) -> None:
    token = mint_admin_token(pair.private_key, now=NOW, ttl=HOUR, role="reader")
    h, p, s = token.split(".")
    claims = json.loads(_unb64(p))
    claims["role"] = "admin"
    forged = f"{h}.{_b64(json.dumps(claims).encode())}.{s}"
    with pytest.raises(AuthError, match="does not verify") as info:
        verify_admin_token(forged, [pair.public_key], now=NOW)
    _assert_not_echoed(forged, info.value)


def test_tampered_signature(pair: AdminKeyPair) -> None:
    h, p, s = mint_admin_token(pair.private_key, now=NOW, ttl=HOUR).split(".")
    raw = bytearray(_unb64(s))
    raw[0] ^= 1
    with pytest.raises(AuthError, match="does not verify"):
        verify_admin_token(f"{h}.{p}.{_b64(bytes(raw))}", [pair.public_key], now=NOW)
    with pytest.raises(AuthError, match="64-byte"):
        verify_admin_token(f"{h}.{p}.{_b64(bytes(raw[:63]))}", [pair.public_key], now=NOW)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"role": None}, "no 'role' claim"),
        ({"role": "reader"}, "role is not allowed"),
        ({"role": ["admin"]}, "role is not allowed"),
        ({"aud": "someone-else"}, "another audience"),
        ({"aud": None}, "no 'aud' claim"),
        ({"exp": None}, "no 'exp' claim"),
        ({"iat": None}, "no 'iat' claim"),
        ({"exp": "soon"}, "claim 'exp' is not a NumericDate"),
        ({"exp": True}, "claim 'exp' is not a NumericDate"),
        ({"exp": 10**400}, "claim 'exp' is not a NumericDate"),
        ({"iat": -(10**30)}, "claim 'iat' is not a NumericDate"),
        ({"sub": 5}, "'sub'"),
    ],
)
def test_claim_defects(pair: AdminKeyPair, changes: dict[str, object], match: str) -> None:
    token = _sign(pair.private_key, {"alg": "EdDSA", "typ": "JWT"}, _claims(**changes))
    with pytest.raises(AuthError, match=match) as info:
        verify_admin_token(token, [pair.public_key], now=NOW)
    _assert_not_echoed(token, info.value)


def test_audience_list_and_custom_roles(pair: AdminKeyPair) -> None:
    token = _sign(pair.private_key, {"alg": "EdDSA"}, _claims(aud=["x", "veritee"], role="ops"))
    identity = verify_admin_token(token, [pair.public_key], now=NOW, roles=("admin", "ops"))
    assert identity == AdminIdentity(subject="alice", role="ops")
    with pytest.raises(AuthError, match="role"):
        verify_admin_token(token, [pair.public_key], now=NOW)


def test_crit_rejected(pair: AdminKeyPair) -> None:
    token = _sign(pair.private_key, {"alg": "EdDSA", "crit": ["exp"]}, _claims())
    with pytest.raises(AuthError, match="critical"):
        verify_admin_token(token, [pair.public_key], now=NOW)


def test_missing_and_oversized(pair: AdminKeyPair) -> None:
    for token in ("", None, 42, b"abc"):
        with pytest.raises(AuthError, match="missing"):
            verify_admin_token(token, [pair.public_key], now=NOW)
    with pytest.raises(AuthError, match="longer"):
        verify_admin_token("a" * 20000, [pair.public_key], now=NOW)


def test_no_keys_configured_is_config_error(pair: AdminKeyPair) -> None:
    token = mint_admin_token(pair.private_key, now=NOW, ttl=HOUR)
    with pytest.raises(ConfigError):
        verify_admin_token(token, [], now=NOW)
    with pytest.raises(ConfigError):
        load_public_keys([])


# --- key files ------------------------------------------------------------------------


def test_save_and_load(tmp_path: Path, pair: AdminKeyPair) -> None:
    private, public = tmp_path / "private.key", tmp_path / "public.pub"
    pair.save(private, public)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded_public = AdminKeyPair.load_public(public)
    token = mint_admin_token(AdminKeyPair.load(private).private_key, now=NOW, ttl=HOUR)
    assert verify_admin_token(token, load_public_keys([public]), now=NOW).role == "admin"
    assert verify_admin_token(token, [loaded_public], now=NOW).subject == "admin"
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        pair.save(private, tmp_path / "other.pub")
    private.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        AdminKeyPair.load(private)


def test_load_public_rejects_wrong_keys(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pub"
    bad.write_text("not pem")
    with pytest.raises(ConfigError, match="PEM"):
        AdminKeyPair.load_public(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        AdminKeyPair.load_public(tmp_path / "absent.pub")


def test_openssl_generated_key_works(tmp_path: Path) -> None:
    # Trustee's setup: `openssl genpkey -algorithm ed25519`.
    private = tmp_path / "private.key"
    try:
        subprocess.run(
            ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)],
            check=True,
            capture_output=True,
        )
        public_pem = subprocess.run(
            ["openssl", "pkey", "-in", str(private), "-pubout"],
            check=True,
            capture_output=True,
        ).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        pytest.skip("openssl is not available")
    private.chmod(0o600)
    public = tmp_path / "public.pub"
    public.write_bytes(public_pem)
    token = mint_admin_token(AdminKeyPair.load(private).private_key, now=NOW, ttl=HOUR)
    assert verify_admin_token(token, [AdminKeyPair.load_public(public)], now=NOW).role == "admin"


def test_repr_shows_no_private_key(pair: AdminKeyPair) -> None:
    from cryptography.hazmat.primitives import serialization

    raw = pair.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    text = repr(pair)
    assert _b64(raw) not in text
    assert raw.hex() not in text


# --- garbage in, AuthError out ------------------------------------------------------

_KEYS = AdminKeyPair.generate()
_segment = st.from_regex(r"[A-Za-z0-9_\-]{0,60}", fullmatch=True)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120),
        st.binary(max_size=40),
        st.integers(),
        st.none(),
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", _segment, _segment, _segment),
    )
)
def test_garbage_raises_only_auth_error(token: object) -> None:
    with pytest.raises(AuthError) as info:
        verify_admin_token(token, [_KEYS.public_key], now=NOW)
    if isinstance(token, str):
        _assert_not_echoed(token, info.value)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["alg", "typ", "crit", "kid"]), _json)
    | st.just({"alg": "EdDSA"}),
    st.dictionaries(
        st.sampled_from(["iat", "exp", "nbf", "aud", "role", "sub"]),
        _json | st.just("admin") | st.just("veritee") | st.just(int(NOW.timestamp())),
    )
    | _json,
)
def test_validly_signed_garbage_raises_only_auth_error(header: object, claims: object) -> None:
    try:
        token = _sign(_KEYS.private_key, header, claims)
    except ValueError:
        return
    try:
        identity = verify_admin_token(token, [_KEYS.public_key], now=NOW)
    except AuthError:
        return
    # Accepted only when every rule holds.
    assert isinstance(header, dict)
    assert header["alg"] == "EdDSA"
    assert isinstance(claims, dict)
    assert claims["role"] == "admin"
    assert identity.role == "admin"
