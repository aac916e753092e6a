"""Nitro verification: real AWS-signed documents, and precise rejections (tampering, nonce,
expiry, other roots) on real and simulated documents."""

from __future__ import annotations

import datetime as dt
import random
import warnings

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.device_corpus import NITRO_IDS, NITRO_SAMPLES, NitroSample
from veritee.errors import (
    ChainError,
    EvidenceFormatError,
    ExpiredError,
    MismatchError,
    SignatureError,
    VerificationError,
)
from veritee.pki.certs import fingerprint, load_certificate
from veritee.tee.nitro.claims import NitroClaims
from veritee.tee.nitro.document import NitroDocument
from veritee.tee.nitro.sim import SimulatedNitroHypervisor
from veritee.tee.nitro.verify import (
    AWS_NITRO_ROOT_FINGERPRINT,
    NitroRoots,
    document_from_certificate,
    verify_document,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def hv() -> SimulatedNitroHypervisor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimulatedNitroHypervisor.generate(now=NOW)


def _verify(sample: NitroSample, data: bytes | None = None, **kw: object) -> object:
    doc = NitroDocument.from_bytes(sample.cose if data is None else data)
    return verify_document(doc, NitroRoots(), sample.at, **kw)  # type: ignore[arg-type]


# -- real hardware --------------------------------------------------------------------------


@pytest.mark.parametrize("sample", NITRO_SAMPLES, ids=NITRO_IDS)
def test_corpus_document_verifies_and_claims_match_manifest(sample: NitroSample) -> None:
    verified = verify_document(NitroDocument.from_bytes(sample.cose), NitroRoots(), sample.at)
    obs = sample.observed
    assert not verified.simulated
    assert fingerprint(verified.chain.root) == obs["root_fp"] == AWS_NITRO_ROOT_FINGERPRINT
    assert len(verified.chain.certs) == 1 + int(str(obs["ncab"]))
    start, end = (dt.datetime.fromisoformat(str(t)) for t in obs["valid_window"])  # type: ignore[union-attr]
    leaf = verified.chain.leaf
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (start, end)
    claims = NitroClaims.from_verified(verified).to_json()
    assert claims["module_id"] == obs["module_id"]
    assert claims["timestamp"] == obs["timestamp_ms"]
    assert claims["digest"] == obs["digest"]
    assert claims["pcr0"] == obs["pcr0"]
    assert sum(1 for k in claims if k.startswith("pcr")) == obs["npcrs"]
    assert (claims["nonce"] or "") == obs["nonce"]
    assert (claims["public_key"] or "") == obs["public_key"]
    user_data = bytes.fromhex(str(claims["user_data"])) if claims["user_data"] else b""
    assert repr(user_data[:40]) == obs["user_data"]
    assert claims["debug"] is (obs["pcr0"] == "00" * 48)
    assert claims["debug"] is ("debug" in sample.name.replace("nondebug", ""))
    for name, value in sample.expected["source_states"].items():  # type: ignore[union-attr]
        if name.startswith("pcr"):
            assert claims[name] == value
    assert claims["simulated"] is False


@pytest.mark.parametrize("sample", NITRO_SAMPLES, ids=NITRO_IDS)
def test_corpus_expired_an_hour_after_and_before_the_leaf(sample: NitroSample) -> None:
    doc = NitroDocument.from_bytes(sample.cose)
    leaf = load_certificate(doc.document.certificate)
    for when in (
        leaf.not_valid_after_utc + dt.timedelta(hours=1),
        leaf.not_valid_before_utc - dt.timedelta(seconds=1),
    ):
        with pytest.raises(ExpiredError):
            verify_document(doc, NitroRoots(), when)
    verify_document(doc, NitroRoots(), leaf.not_valid_after_utc)  # the last valid instant


@pytest.mark.parametrize("sample", NITRO_SAMPLES, ids=NITRO_IDS)
def test_corpus_nonce_binding(sample: NitroSample) -> None:
    nonce = NitroDocument.from_bytes(sample.cose).document.nonce
    if nonce:
        _verify(sample, expected_nonce=nonce)
        wrong = bytes([nonce[0] ^ 1]) + nonce[1:]
        with pytest.raises(MismatchError, match="nonce"):
            _verify(sample, expected_nonce=wrong)
    else:
        with pytest.raises(MismatchError, match="no nonce"):
            _verify(sample, expected_nonce=b"\x01" * 32)


def _locate(raw: bytes, needle: bytes) -> range:
    start = raw.index(needle)
    return range(start, start + len(needle))


def _flip(raw: bytes, bit: int) -> bytes:
    b = bytearray(raw)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@pytest.mark.parametrize("sample", NITRO_SAMPLES, ids=NITRO_IDS)
def test_corpus_single_bit_flips_are_rejected_with_the_right_error(sample: NitroSample) -> None:
    raw = sample.cose
    doc = NitroDocument.from_bytes(raw).document
    rng = random.Random(sample.name)
    leaf = _locate(raw, doc.certificate)
    signature = range(len(raw) - 96, len(raw))
    pcrs = _locate(raw, b"".join(v for _, v in sorted(doc.pcrs.items())[:1]))
    module = _locate(raw, doc.module_id.encode())

    def bits(region: range, n: int) -> list[int]:
        return [8 * rng.choice(region) + rng.randrange(8) for _ in range(n)]

    # Signed values the format cannot check: the COSE signature fails.
    for bit in bits(signature, 12) + bits(pcrs, 12) + bits(module, 8):
        with pytest.raises((SignatureError, EvidenceFormatError)):
            _verify(sample, _flip(raw, bit))
    # Inside the signing certificate's signed part: its issuer's signature fails.
    tbs = range(leaf.start + 8, leaf.start + 300)
    for bit in bits(tbs, 12):
        with pytest.raises((ChainError, EvidenceFormatError, SignatureError)):
            _verify(sample, _flip(raw, bit))
    # Anywhere at all: never accepted.
    for bit in rng.sample(range(len(raw) * 8), 120):
        with pytest.raises((VerificationError, EvidenceFormatError)):
            _verify(sample, _flip(raw, bit))


@pytest.mark.skipif(not NITRO_SAMPLES, reason="corpus absent")
def test_pcr_and_nonce_flips_are_signature_errors_exactly() -> None:
    sample = next(s for s in NITRO_SAMPLES if s.name == "evervault-2022-10-13-nondebug")
    raw = sample.cose
    doc = NitroDocument.from_bytes(raw).document
    assert doc.nonce is not None
    for value in (doc.pcrs[0], doc.pcrs[8], doc.nonce):
        spot = _locate(raw, value)
        with pytest.raises(SignatureError):
            _verify(sample, _flip(raw, 8 * spot.start + 3))


@pytest.mark.skipif(not NITRO_SAMPLES, reason="corpus absent")
def test_tls_certificate_binding() -> None:
    sample = next(s for s in NITRO_SAMPLES if (s.path / "tls_cert_with_doc_in_san.pem").is_file())
    carried = document_from_certificate((sample.path / "tls_cert_with_doc_in_san.pem").read_bytes())
    doc = NitroDocument.from_bytes(carried.document)
    verify_document(doc, NitroRoots(), sample.at, expected_user_data=carried.tls_public_key)
    other = NITRO_SAMPLES[0] if NITRO_SAMPLES[0] is not sample else NITRO_SAMPLES[1]
    with pytest.raises(MismatchError, match="user_data"):
        verify_document(
            NitroDocument.from_bytes(other.cose),
            NitroRoots(),
            other.at,
            expected_user_data=carried.tls_public_key,
        )


@pytest.mark.skipif(not NITRO_SAMPLES, reason="corpus absent")
def test_real_document_does_not_chain_to_another_root(hv: SimulatedNitroHypervisor) -> None:
    sample = NITRO_SAMPLES[0]
    doc = NitroDocument.from_bytes(sample.cose)
    # Replace the AWS root in the cabundle by the simulator's root, which the caller trusts.
    payload = cbor2.loads(doc.payload)
    payload["cabundle"][0] = hv.root.public_bytes(serialization.Encoding.DER)
    swapped = NitroDocument.from_bytes(
        cbor2.dumps([doc.protected, {}, cbor2.dumps(payload), doc.signature])
    )
    with pytest.raises(ChainError):
        verify_document(swapped, NitroRoots().with_root(hv.root), sample.at)


# -- simulated hypervisor -------------------------------------------------------------------


def test_simulator_verifies_only_against_its_root_passed_explicitly(
    hv: SimulatedNitroHypervisor,
) -> None:
    doc = NitroDocument.from_bytes(hv.document(nonce=b"x" * 32).to_bytes())
    with pytest.raises(ChainError, match="pinned AWS Nitro root"):
        verify_document(doc, NitroRoots(), NOW)
    with pytest.raises(ChainError):
        verify_document(doc, NitroRoots.aws([hv.root]), NOW)  # filtered: not AWS's root
    verified = verify_document(doc, NitroRoots().with_root(hv.root), NOW, expected_nonce=b"x" * 32)
    assert verified.simulated
    claims = NitroClaims.from_verified(verified).to_json()
    assert claims["simulated"] is True and claims["debug"] is False
    assert claims["nonce"] == (b"x" * 32).hex() and claims["user_data"] is None


def test_simulated_rejections(hv: SimulatedNitroHypervisor) -> None:
    roots = NitroRoots().with_root(hv.root)
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(SignatureError):
        verify_document(hv.document(signing_key=other), roots, NOW)
    doc = hv.document(debug=True, tagged=True, public_key=b"k" * 91, user_data=b"")
    verified = verify_document(doc, roots, NOW, expected_public_key=b"k" * 91)
    assert NitroClaims.from_verified(verified).to_json()["debug"] is True
    with pytest.raises(MismatchError, match="public_key"):
        verify_document(doc, roots, NOW, expected_public_key=b"j" * 91)
    # The hypervisor rotated its leaf: the old document stops verifying an hour after expiry,
    # even though its chain is memoized from the calls above.
    leaf_end = hv.leaf.not_valid_after_utc
    with pytest.raises(ExpiredError):
        verify_document(doc, roots, leaf_end + dt.timedelta(hours=1))
    later = hv.with_leaf(not_before=leaf_end)
    verify_document(later.document(), roots, leaf_end + dt.timedelta(hours=1))


def test_a_leaf_from_another_hypervisor_is_a_chain_error(hv: SimulatedNitroHypervisor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stranger = SimulatedNitroHypervisor.generate(now=NOW)
    doc = hv.document()
    payload = cbor2.loads(doc.payload)
    payload["cabundle"] = cbor2.loads(stranger.document().payload)["cabundle"]
    mixed = NitroDocument.from_bytes(
        cbor2.dumps([doc.protected, {}, cbor2.dumps(payload), doc.signature])
    )
    roots = NitroRoots().with_root(hv.root).with_root(stranger.root)
    with pytest.raises(ChainError):
        verify_document(mixed, roots, NOW)
