"""DSSE: the spec's own test vectors, signatures made with `cryptography`, and every refusal."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee.appraisal.dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    TrustedKey,
    load_trusted_keys,
    pae,
    sign_envelope,
    verify_envelope,
)
from veritee.errors import ConfigError, RequestError, SignatureError

# secure-systems-lab/dsse testvectors/vectors.json (commit 82043adf): keys are RFC 8032
# test keys; each vector gives the envelope, the expected PAE and accept/reject.
SPEC_KEYS = {
    "A": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "B": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
}
STATEMENT_B64 = "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ=="
SIG_A = "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA=="
SIG_B = "c1+67/aT0yqEpwx8PsVY3MLHsj9D0CZ014/Fv/QlG59P+9CobUZ7xECJ/V3USG0Ob9CiE5LjReEZUzNF2l7eBw=="
PAE_STATEMENT = (
    "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e20343320"
    "7b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d"
)
SPEC_VECTORS = [
    # id, envelope, trusted, threshold, supported types, pae hex, expect
    ("single-signature",
     {"payload": STATEMENT_B64, "payloadType": INTOTO_PAYLOAD_TYPE,
      "signatures": [{"sig": SIG_A, "keyid": "A"}]},
     ["A"], 1, [INTOTO_PAYLOAD_TYPE], PAE_STATEMENT, "accept"),
    ("url-safe-base64",
     {"payload": "-_-_Pj8=", "payloadType": INTOTO_PAYLOAD_TYPE,
      "signatures": [{"sig": "P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrs"
                             "GW886DbWNWcCmX5twLrAw==", "keyid": "A"}]},
     ["A"], 1, [INTOTO_PAYLOAD_TYPE],
     "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203520"
     "fbffbf3e3f", "accept"),
    ("payload-type-swapped",
     {"payload": STATEMENT_B64, "payloadType": "application/vnd.example.other+json",
      "signatures": [{"sig": SIG_A, "keyid": "A"}]},
     ["A"], 1, [INTOTO_PAYLOAD_TYPE, "application/vnd.example.other+json"], None, "reject"),
    ("non-ascii-payload-type",
     {"payload": STATEMENT_B64, "payloadType": "application/vnd.exämple+json",
      "signatures": [{"sig": "xmSk/ug66ysT7ayhkCIjhAq42zgZXSsEWuzUaNL7w2eGAdF/NU6/fRXPtmfN+5DNSA"
                             "s5/i2lUnHjbbjPsu0tAw==", "keyid": "A"}]},
     ["A"], 1, ["application/vnd.exämple+json"],
     "445353457631203239206170706c69636174696f6e2f766e642e6578c3a46d706c652b6a736f6e20343320"
     "7b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d",
     "accept"),
    ("empty-payload",
     {"payload": "", "payloadType": INTOTO_PAYLOAD_TYPE,
      "signatures": [{"sig": "gSggCAaTLTYyRH6FIDBem6meyIynsYy8RTHVzwx9tnTb7Bg/1jMWnuVgI/gffqmbsC"
                             "2VX5/jHfkkDqsj7CDbDg==", "keyid": "A"}]},
     ["A"], 1, [INTOTO_PAYLOAD_TYPE],
     "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203020",
     "accept"),
    ("empty-payload-type",
     {"payload": STATEMENT_B64, "payloadType": "",
      "signatures": [{"sig": "iC3q/+3Rm0+lpAJRueDmDh15PnwCfxKmS0NAfKsbv+zgulXQC/WM9trc+j1XEqlwDI"
                             "g/vf/uNfebeD6sxInrDg==", "keyid": "A"}]},
     ["A"], 1, [INTOTO_PAYLOAD_TYPE], None, "reject"),
    ("threshold-two-distinct-keys",
     {"payload": STATEMENT_B64, "payloadType": INTOTO_PAYLOAD_TYPE,
      "signatures": [{"sig": SIG_A, "keyid": "A"}, {"sig": SIG_B, "keyid": "B"}]},
     ["A", "B"], 2, [INTOTO_PAYLOAD_TYPE], PAE_STATEMENT, "accept"),
    ("threshold-two-one-key-twice",
     {"payload": STATEMENT_B64, "payloadType": INTOTO_PAYLOAD_TYPE,
      "signatures": [{"sig": SIG_A, "keyid": "A"}, {"sig": SIG_A, "keyid": "A"}]},
     ["A", "B"], 2, [INTOTO_PAYLOAD_TYPE], PAE_STATEMENT, "reject"),
    ("threshold-two-without-keyids",
     {"payload": STATEMENT_B64, "payloadType": INTOTO_PAYLOAD_TYPE,
      "signatures": [{"sig": SIG_A}, {"sig": SIG_B}]},
     ["A", "B"], 2, [INTOTO_PAYLOAD_TYPE], PAE_STATEMENT, "accept"),
]


def _spec_key(label: str) -> TrustedKey:
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(SPEC_KEYS[label]))
    return TrustedKey.from_public_key(key, label)


@pytest.mark.parametrize("vector", SPEC_VECTORS, ids=[v[0] for v in SPEC_VECTORS])
def test_dsse_spec_vectors(vector: tuple[object, ...]) -> None:
    _, doc, trusted, threshold, types, pae_hex, expect = vector
    envelope = Envelope.from_json(doc)
    if pae_hex is not None:
        assert pae(envelope.payload_type, envelope.payload).hex() == pae_hex
    keys = [_spec_key(k) for k in trusted]  # type: ignore[attr-defined]
    if expect == "accept":
        verified = verify_envelope(
            envelope, keys, payload_types=types, threshold=threshold  # type: ignore[arg-type]
        )
        assert verified.payload == envelope.payload
        assert len(verified.signers) >= threshold  # type: ignore[operator]
    else:
        with pytest.raises((SignatureError, RequestError)):
            verify_envelope(
                envelope, keys, payload_types=types, threshold=threshold  # type: ignore[arg-type]
            )


def test_protocol_md_example_ecdsa_p256_raw_signature() -> None:
    """protocol.md's worked example: ECDSA P-256, signature as raw r || s."""
    x = 46950820868899156662930047687818585632848591499744589407958293238635476079160
    y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
    key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    doc = {
        "payload": "aGVsbG8gd29ybGQ=",
        "payloadType": "http://example.com/HelloWorld",
        "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHq"
                               "JPcIAriEGAHTVeCUjW2JIZA=="}],
    }
    envelope = Envelope.from_json(doc)
    assert pae(envelope.payload_type, envelope.payload) == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    trusted = [TrustedKey.from_public_key(key, "example")]
    verified = verify_envelope(envelope, trusted, payload_types=["http://example.com/HelloWorld"])
    assert verified.payload == b"hello world"
    changed = Envelope(envelope.payload_type, b"hello world!", envelope.signatures)
    with pytest.raises(SignatureError):
        verify_envelope(changed, trusted, payload_types=["http://example.com/HelloWorld"])


def _pem(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("make", [
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda: ec.generate_private_key(ec.SECP384R1()),
    Ed25519PrivateKey.generate,
], ids=["p256", "p384", "ed25519"])
def test_signatures_made_with_cryptography_verify(make: object) -> None:
    key = make()  # type: ignore[operator]
    payload = json.dumps({"_type": "https://in-toto.io/Statement/v1"}).encode()
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, payload, [(key, "builder")])
    if isinstance(key, ec.EllipticCurvePrivateKey):
        decode_dss_signature(envelope.signatures[0].sig)  # in-toto's encoding: DER
    trusted = TrustedKey.from_pem(_pem(key), "builder")
    # Round trip through the JSON envelope, as it travels.
    again = Envelope.from_json(json.dumps(envelope.to_json()))
    verified = verify_envelope(again, [trusted])
    assert verified.signers == (trusted,)
    assert verified.payload_sha256 == __import__("hashlib").sha256(payload).hexdigest()


def test_an_independent_ecdsa_signature_over_the_pae_verifies() -> None:
    """Signed here by hand over the PAE bytes, not through sign_envelope."""
    key = ec.generate_private_key(ec.SECP384R1())
    payload = b'{"_type":"https://in-toto.io/Statement/v1"}'
    message = b"DSSEv1 %d %s %d %s" % (len(INTOTO_PAYLOAD_TYPE), INTOTO_PAYLOAD_TYPE.encode(),
                                       len(payload), payload)
    sig = key.sign(message, ec.ECDSA(hashes.SHA384()))
    doc = {"payloadType": INTOTO_PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
           "signatures": [{"keyid": "", "sig": base64.urlsafe_b64encode(sig).decode()}]}
    verified = verify_envelope(Envelope.from_json(doc), [TrustedKey.from_pem(_pem(key))])
    assert verified.payload == payload


def _signed(payload: bytes = b'{"_type":"https://in-toto.io/Statement/v1"}'
            ) -> tuple[Envelope, TrustedKey, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    trusted = TrustedKey.from_pem(_pem(key), "ci-builder")
    return sign_envelope(INTOTO_PAYLOAD_TYPE, payload, [(key, "ci-builder")]), trusted, key


def test_unsigned_statement_is_refused() -> None:
    envelope, trusted, _ = _signed()
    with pytest.raises(SignatureError, match="no signature"):
        verify_envelope(Envelope(envelope.payload_type, envelope.payload, ()), [trusted])


def test_statement_signed_by_an_untrusted_key_is_refused() -> None:
    envelope, _, _ = _signed()
    other = TrustedKey.from_pem(_pem(Ed25519PrivateKey.generate()), "someone-else")
    with pytest.raises(SignatureError, match="no DSSE signature verifies with a trusted"):
        verify_envelope(envelope, [other])


def test_tampered_statement_is_refused_and_named() -> None:
    envelope, trusted, _ = _signed()
    tampered = Envelope(envelope.payload_type, envelope.payload.replace(b"v1", b"v2"),
                        envelope.signatures)
    with pytest.raises(SignatureError, match="ci-builder does not verify: the statement"):
        verify_envelope(tampered, [trusted])
    swapped = Envelope("application/json", envelope.payload, envelope.signatures)
    with pytest.raises(SignatureError, match="altered after signing"):
        verify_envelope(swapped, [trusted], payload_types=["application/json"])


def test_no_trusted_keys_means_nothing_is_accepted() -> None:
    envelope, _, _ = _signed()
    with pytest.raises(SignatureError, match="no trusted builder keys"):
        verify_envelope(envelope, [])


def test_unsupported_payload_type_after_a_good_signature() -> None:
    key = Ed25519PrivateKey.generate()
    envelope = sign_envelope("application/json", b"{}", [(key, "")])
    with pytest.raises(RequestError, match="payloadType 'application/json' is not supported"):
        verify_envelope(envelope, [TrustedKey.from_pem(_pem(key))])


@pytest.mark.parametrize("doc", [
    None, [], "not json", {"payload": "aGk="},
    {"payloadType": 1, "payload": ""},
    {"payloadType": "t", "payload": "!!!"},
    {"payloadType": "t", "payload": "a"},
    {"payloadType": "t", "payload": "", "signatures": {}},
    {"payloadType": "t", "payload": "", "signatures": ["x"]},
    {"payloadType": "t", "payload": "", "signatures": [{"sig": "%%"}]},
    {"payloadType": "t", "payload": "", "signatures": [{"sig": "", "keyid": 3}]},
    {"payloadType": "t", "payload": "", "signatures": [{"sig": ""}] * 17},
])
def test_malformed_envelopes_are_request_errors(doc: object) -> None:
    with pytest.raises(RequestError):
        Envelope.from_json(doc)


def test_trusted_key_directory(tmp_path: Path) -> None:
    assert load_trusted_keys(tmp_path / "absent") == ()
    keys = tmp_path / "trusted-builders"
    keys.mkdir()
    ed = Ed25519PrivateKey.generate()
    p384 = ec.generate_private_key(ec.SECP384R1())
    (keys / "ed.pem").write_bytes(_pem(ed))
    (keys / "p384.pub").write_bytes(_pem(p384))
    (keys / "README").write_text("not a key, not read")
    loaded = load_trusted_keys(keys)
    assert [k.label for k in loaded] == ["ed", "p384"]
    assert [k.algorithm for k in loaded] == ["ed25519", "ecdsa-p384-sha384"]
    der = ed.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    assert loaded[0].keyid == __import__("hashlib").sha256(der).hexdigest()
    (keys / "rsa.pem").write_bytes(_pem(rsa.generate_private_key(65537, 2048)))
    with pytest.raises(ConfigError, match="RSAPublicKey is not accepted"):
        load_trusted_keys(keys)
    (keys / "rsa.pem").write_text("garbage")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_trusted_keys(keys)
    (keys / "rsa.pem").unlink()
    (keys / "k1.pem").write_bytes(_pem(ec.generate_private_key(ec.SECP256K1())))
    with pytest.raises(ConfigError, match="secp256k1 is not accepted"):
        load_trusted_keys(keys)


def test_keyid_hint_is_only_a_hint() -> None:
    """A hint naming no trusted key does not stop the right key from being found."""
    key = ec.generate_private_key(ec.SECP256R1())
    envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, b"{}", [(key, "made-up-id")])
    trusted = [TrustedKey.from_pem(_pem(Ed25519PrivateKey.generate()), "x"),
               TrustedKey.from_pem(_pem(key), "real")]
    assert verify_envelope(envelope, trusted).signers[0].label == "real"


def test_one_key_signing_twice_does_not_meet_a_threshold_of_two() -> None:
    key = Ed25519PrivateKey.generate()
    one = sign_envelope(INTOTO_PAYLOAD_TYPE, b"{}", [(key, "k"), (key, "k")])
    trusted = [TrustedKey.from_pem(_pem(key), "k"),
               TrustedKey.from_pem(_pem(Ed25519PrivateKey.generate()), "other")]
    with pytest.raises(SignatureError, match="signed by 1 trusted key"):
        verify_envelope(one, trusted, threshold=2)
    assert len(verify_envelope(one, trusted).signers) == 1
