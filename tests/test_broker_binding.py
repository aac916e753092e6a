"""Runtime-data binding: PROTOCOL.md 1.4 vectors, hash selection, report-data fitting."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.broker.binding import (
    DEFAULT_HASH,
    HashAlgorithm,
    check_report_data,
    device_digest,
    device_runtime_data,
    expected_report_data,
    primary_digest,
    select_hash,
)
from veritee.broker.teekey import TeePublicKey
from veritee.errors import MismatchError, RequestError
from veritee.jcs import canonicalize

NONCE = base64.b64encode(bytes(range(32))).decode()
KEY = TeePublicKey.from_jwk(
    {
        "kty": "EC",
        "crv": "P-256",
        "alg": "ECDH-ES+A256KW",
        "x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
        "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE",
    }
)
DEVICE_CANONICAL = (
    b'{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","tee-pubkey":'
    b'{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC",'
    b'"x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",'
    b'"y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}}'
)
DEVICE_SHA384 = (
    "41ffe199be4ee3b264c0c0760d296f85c8a05f5ad1cdcf7e0a102cd583d75fee"
    "b34773e0dd84d3d5cc84a3dbdbf609cc"
)
PRIMARY_SHA384 = (
    "7e3c430d1b20027dfa91ba1dd104beca19d90df8d91b7fb9511a6854d70541021"
    "962a1b216b184b0b17813eba377f204"
)


def test_protocol_device_vector() -> None:
    assert NONCE == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert canonicalize(device_runtime_data(NONCE, KEY)) == DEVICE_CANONICAL
    assert device_digest(NONCE, KEY).hex() == DEVICE_SHA384
    assert device_digest(NONCE, KEY, HashAlgorithm.SHA384).hex() == DEVICE_SHA384


def test_protocol_primary_vector() -> None:
    assert primary_digest(NONCE, KEY, "").hex() == PRIMARY_SHA384
    # additional-evidence sorts first and is present even when empty.
    expected = b'{"additional-evidence":"",' + DEVICE_CANONICAL[1:]
    assert hashlib.sha384(expected).hexdigest() == PRIMARY_SHA384


def test_default_is_sha384() -> None:
    assert DEFAULT_HASH is HashAlgorithm.SHA384


def test_other_algorithms_and_inputs_change_the_digest() -> None:
    d256 = device_digest(NONCE, KEY, HashAlgorithm.SHA256)
    d512 = device_digest(NONCE, KEY, HashAlgorithm.SHA512)
    assert d256 == hashlib.sha256(DEVICE_CANONICAL).digest()
    assert d512 == hashlib.sha512(DEVICE_CANONICAL).digest()
    assert primary_digest(NONCE, KEY, '{"nvidia":"x"}') != primary_digest(NONCE, KEY, "")
    assert device_digest(NONCE[:-2] + "A=", KEY) != device_digest(NONCE, KEY)
    other = TeePublicKey.from_public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert device_digest(NONCE, other) != device_digest(NONCE, KEY)


def test_additional_evidence_is_hashed_verbatim() -> None:
    additional = '{"nvidia": "é\\n"}'
    expected = canonicalize(
        {"additional-evidence": additional, "nonce": NONCE, "tee-pubkey": KEY.canonical_jwk()}
    )
    assert primary_digest(NONCE, KEY, additional) == hashlib.sha384(expected).digest()


def test_lone_surrogate_is_a_request_error() -> None:
    # json.loads('"\\ud800"') yields a lone surrogate; the guest could never have hashed it.
    with pytest.raises(RequestError, match="Unicode"):
        primary_digest(NONCE, KEY, "\ud800")
    with pytest.raises(RequestError, match="Unicode"):
        device_digest("\udfff", KEY)


@pytest.mark.parametrize(
    ("name", "alg"),
    [
        ("sha256", HashAlgorithm.SHA256),
        ("SHA384", HashAlgorithm.SHA384),
        ("Sha512", HashAlgorithm.SHA512),
    ],
)
def test_parse_is_case_insensitive(name: str, alg: HashAlgorithm) -> None:
    parsed = HashAlgorithm.parse(name)
    assert parsed is alg
    assert parsed.digest_size == len(parsed.digest(b"")) == hashlib.new(name.lower()).digest_size


@pytest.mark.parametrize("name", ["sha1", "sm3", "", "sha-384", None, 384, ["sha384"]])
def test_parse_rejects(name: object) -> None:
    with pytest.raises(RequestError, match="unsupported hash algorithm"):
        HashAlgorithm.parse(name)


@pytest.mark.parametrize(
    ("extra_params", "expected"),
    [
        ("", None),
        (None, None),
        ({}, None),
        ({"supported-hash-algorithms": ["Sha256", "Sha384", "Sha512"]}, None),
        (["sha384"], None),
        ([], None),
        ({"supported-hash-algorithms": "sha512"}, None),
        ({"supported-hash-algorithms": ["sha256", "sha512"]}, HashAlgorithm.SHA512),
        ({"supported-hash-algorithms": ["SHA256"]}, HashAlgorithm.SHA256),
        (["sm3", "sha512", 7], HashAlgorithm.SHA512),
    ],
)
def test_select_hash(extra_params: object, expected: HashAlgorithm | None) -> None:
    assert select_hash(extra_params) is expected


def test_select_hash_refuses_when_nothing_usable() -> None:
    with pytest.raises(RequestError, match="supported-hash-algorithms"):
        select_hash({"supported-hash-algorithms": ["sm3", "sha1"]})


def test_expected_report_data_pads_and_truncates() -> None:
    digest = bytes(range(1, 49))  # a SHA-384-sized value
    assert expected_report_data(digest, 64) == digest + bytes(16)
    assert expected_report_data(digest, 32) == digest[:32]
    assert expected_report_data(digest, 48) == digest
    with pytest.raises(ValueError):
        expected_report_data(digest, 0)


def test_check_report_data() -> None:
    digest = primary_digest(NONCE, KEY, "")
    check_report_data(digest + bytes(16), digest)
    check_report_data(digest[:32], digest)  # TPM extraData
    for bad in (digest + b"\x01" + bytes(15), bytes(64), digest[:31] + b"\x00", b""):
        with pytest.raises(MismatchError):
            check_report_data(bad, digest)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.text(max_size=10),
        st.lists(st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=5),
        st.dictionaries(
            st.sampled_from(["supported-hash-algorithms", "x"]),
            st.lists(st.sampled_from(["sha256", "SHA512", "md5", "sha384", ""]), max_size=4)
            | st.integers(),
        ),
    )
)
def test_select_hash_raises_only_request_error(value: object) -> None:
    try:
        selected = select_hash(value)
    except RequestError:
        return
    assert selected is None or selected in (HashAlgorithm.SHA256, HashAlgorithm.SHA512)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=12), st.integers(), st.none(), st.binary(max_size=8)))
def test_parse_raises_only_request_error(value: object) -> None:
    try:
        parsed = HashAlgorithm.parse(value)
    except RequestError:
        return
    assert isinstance(value, str)
    assert parsed.value == value.lower()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_digests_of_arbitrary_text_raise_only_request_error(nonce: str, additional: str) -> None:
    try:
        digest = primary_digest(nonce, KEY, additional)
    except RequestError:
        return
    assert len(digest) == 48
    assert (
        digest
        == hashlib.sha384(
            canonicalize(
                {
                    "additional-evidence": additional,
                    "nonce": nonce,
                    "tee-pubkey": KEY.canonical_jwk(),
                }
            )
        ).digest()
    )
