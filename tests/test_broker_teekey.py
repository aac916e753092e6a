"""runtime-data.tee-pubkey: exactly the typed JWK forms Trustee hashes, strictly decoded."""

from __future__ import annotations

import base64
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.broker.teekey import TeePublicKey, b64url_decode, b64url_encode
from veritee.errors import RequestError

# PROTOCOL.md 1.4's sample key.
VECTOR_X = "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis"
VECTOR_Y = "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"


def _ec_jwk(**extra: object) -> dict[str, object]:
    jwk: dict[str, object] = {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ECDH-ES+A256KW",
        "x": VECTOR_X,
        "y": VECTOR_Y,
    }
    jwk.update(extra)
    return jwk


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _rsa_jwk(key: rsa.RSAPublicKey, alg: str = "RSA-OAEP-256") -> dict[str, object]:
    numbers = key.public_numbers()
    return {
        "kty": "RSA",
        "alg": alg,
        "n": b64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url_encode(numbers.e.to_bytes(3, "big")),
    }


# --- accepted forms -----------------------------------------------------------


def test_protocol_vector_key_parses_and_matches_coordinates() -> None:
    key = TeePublicKey.from_jwk(_ec_jwk())
    public = key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert public.public_numbers().x == int.from_bytes(b64url_decode(VECTOR_X), "big")
    assert key.canonical_jwk() == _ec_jwk()
    assert not key.deprecated


def test_p521_key_round_trips() -> None:
    private = ec.generate_private_key(ec.SECP521R1())
    jwk = TeePublicKey.from_public_key(private.public_key()).canonical_jwk()
    assert jwk["crv"] == "P-521"
    assert len(b64url_decode(jwk["x"])) == 66
    parsed = TeePublicKey.from_jwk(jwk)
    assert parsed.public_key().public_numbers() == private.public_key().public_numbers()


def test_rsa_forms(rsa_key: rsa.RSAPrivateKey) -> None:
    oaep = TeePublicKey.from_jwk(_rsa_jwk(rsa_key.public_key()))
    assert oaep.canonical_jwk() == _rsa_jwk(rsa_key.public_key())
    assert set(oaep.canonical_jwk()) == {"kty", "alg", "n", "e"}
    assert not oaep.deprecated
    legacy = TeePublicKey.from_jwk(_rsa_jwk(rsa_key.public_key(), "RSA1_5"))
    assert legacy.deprecated
    assert legacy.public_key().public_numbers() == rsa_key.public_key().public_numbers()


def test_canonical_members_are_exactly_the_typed_form() -> None:
    key = TeePublicKey.from_jwk(_ec_jwk())
    assert set(key.canonical_jwk()) == {"kty", "crv", "alg", "x", "y"}


def test_from_public_key_matches_from_jwk(rsa_key: rsa.RSAPrivateKey) -> None:
    built = TeePublicKey.from_public_key(rsa_key.public_key())
    assert built == TeePublicKey.from_jwk(_rsa_jwk(rsa_key.public_key()))


# --- the interop trap and other rejections --------------------------------------


@pytest.mark.parametrize("member", ["kid", "use", "key_ops", "d", "n"])
def test_extra_member_is_named_and_explained(member: str) -> None:
    with pytest.raises(RequestError) as info:
        TeePublicKey.from_jwk(_ec_jwk(**{member: "x"}))
    text = str(info.value)
    assert repr(member) in text
    assert "kty/crv/alg/x/y" in text
    assert "kty/alg/n/e" in text


def test_extra_member_on_rsa_key(rsa_key: rsa.RSAPrivateKey) -> None:
    jwk = _rsa_jwk(rsa_key.public_key())
    jwk["kid"] = "1"
    with pytest.raises(RequestError, match="'kid'"):
        TeePublicKey.from_jwk(jwk)


@pytest.mark.parametrize("member", ["kty", "crv", "alg", "x", "y"])
def test_missing_member(member: str) -> None:
    jwk = _ec_jwk()
    del jwk[member]
    with pytest.raises(RequestError, match=member):
        TeePublicKey.from_jwk(jwk)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"crv": "P-384"}, "curve"),
        ({"crv": "secp256k1"}, "curve"),
        ({"alg": "ECDH-ES"}, "alg"),
        ({"alg": "RSA-OAEP-256"}, "alg"),
        ({"kty": "OKP"}, "key type"),
        ({"kty": "AKP"}, "key type"),
        ({"x": VECTOR_X + "="}, "base64url"),
        ({"x": VECTOR_X.replace("-", "+")}, "base64url"),
        ({"x": VECTOR_X[:-1]}, "base64url|bytes"),
        ({"x": VECTOR_X[:-1] + "t"}, "non-canonical"),  # stray trailing bits
        ({"x": b64url_encode(b"\x00" + b64url_decode(VECTOR_X))}, "32 bytes"),
        ({"x": b64url_encode(b64url_decode(VECTOR_X)[1:])}, "32 bytes"),
        ({"y": VECTOR_X}, "not on P-256"),
        ({"x": 5}, "string"),
        ({"y": None}, "string"),
    ],
)
def test_bad_ec_keys(change: dict[str, object], match: str) -> None:
    with pytest.raises(RequestError, match=match):
        TeePublicKey.from_jwk(_ec_jwk(**change))


def test_not_an_object() -> None:
    for value in (None, "jwk", [1], 3):
        with pytest.raises(RequestError, match="JSON object"):
            TeePublicKey.from_jwk(value)


def test_small_rsa_modulus_rejected() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(RequestError, match="1024 bits"):
        TeePublicKey.from_jwk(_rsa_jwk(small.public_key()))


def test_rsa_leading_zero_and_bad_exponent(rsa_key: rsa.RSAPrivateKey) -> None:
    jwk = _rsa_jwk(rsa_key.public_key())
    padded = dict(jwk, n=b64url_encode(b"\x00" + b64url_decode(str(jwk["n"]))))
    with pytest.raises(RequestError, match="leading zero"):
        TeePublicKey.from_jwk(padded)
    for exponent in (b"\x02", b"\x01\x00\x00", b"\x01"):  # even, even, < 3
        with pytest.raises(RequestError, match="exponent"):
            TeePublicKey.from_jwk(dict(jwk, e=b64url_encode(exponent)))
    with pytest.raises(RequestError, match="alg"):
        TeePublicKey.from_jwk(dict(jwk, alg="RSA-OAEP"))


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(RequestError, match="not on P-256"):
        TeePublicKey(kty="EC", alg="ECDH-ES+A256KW", crv="P-256", x=VECTOR_X, y=VECTOR_X)
    with pytest.raises(RequestError, match="no 'n'/'e'"):
        TeePublicKey(kty="EC", alg="ECDH-ES+A256KW", crv="P-256", x=VECTOR_X, y=VECTOR_Y, n="AQAB")


def test_b64url_decode_strictness() -> None:
    assert b64url_decode("") == b""
    assert b64url_decode("AA") == b"\x00"
    for bad in ("A", "AB", "AA==", "A A", "+/", "AAAAA"):
        with pytest.raises(ValueError):
            b64url_decode(bad)
    data = bytes(range(256))
    assert b64url_decode(b64url_encode(data)) == data
    assert "=" not in b64url_encode(data)
    assert b64url_encode(data) == base64.urlsafe_b64encode(data).decode().rstrip("=")


# --- property: untrusted input raises only RequestError ---------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_b64ish = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh0123456789-_=+/ ", max_size=90)
_members = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["EC", "RSA", "oct", ""]) | _json,
        "crv": st.sampled_from(["P-256", "P-521", "P-384"]) | _json,
        "alg": st.sampled_from(["ECDH-ES+A256KW", "RSA-OAEP-256", "RSA1_5"]) | _json,
        "x": _b64ish | st.just(VECTOR_X),
        "y": _b64ish | st.just(VECTOR_Y),
        "n": _b64ish,
        "e": _b64ish | st.just("AQAB"),
        "kid": _json,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json, _members))
def test_arbitrary_input_raises_only_request_error(value: object) -> None:
    try:
        key = TeePublicKey.from_jwk(value)
    except RequestError:
        return
    # Anything accepted is a canonical typed key that parses back to itself.
    assert TeePublicKey.from_jwk(key.canonical_jwk()) == key
    assert isinstance(value, dict)
    assert value == key.canonical_jwk()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_b64url_decode_raises_only_value_error(text: str) -> None:
    try:
        data = b64url_decode(text)
    except ValueError:
        return
    assert b64url_encode(data) == text
