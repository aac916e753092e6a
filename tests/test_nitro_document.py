"""The Nitro COSE_Sign1 / attestation document format: exact round trips, strictness, fuzzing."""

from __future__ import annotations

import base64
import datetime as dt
import warnings

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.device_corpus import NITRO_IDS, NITRO_SAMPLES, NitroSample
from veritee.errors import EvidenceFormatError
from veritee.tee.nitro.document import (
    FIELD_ORDER,
    AttestationDocument,
    NitroDocument,
    decode_document_blob,
    document_from_san_names,
)
from veritee.tee.nitro.sim import SimulatedNitroHypervisor
from veritee.tee.nitro.verify import document_from_certificate

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _SIM_DOC = SimulatedNitroHypervisor.generate(now=NOW).document(nonce=b"n" * 32).to_bytes()


@pytest.fixture(scope="module")
def hv() -> SimulatedNitroHypervisor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimulatedNitroHypervisor.generate(now=NOW)


@pytest.mark.parametrize("sample", NITRO_SAMPLES, ids=NITRO_IDS)
def test_corpus_documents_round_trip_and_match_manifest(sample: NitroSample) -> None:
    doc = NitroDocument.from_bytes(sample.cose)
    assert doc.to_bytes() == sample.cose
    assert AttestationDocument.from_bytes(doc.payload).to_bytes() == doc.payload
    obs = sample.observed
    att = doc.document
    assert doc.tagged is (obs["tag"] is not None)
    assert att.module_id == obs["module_id"]
    assert att.timestamp == obs["timestamp_ms"]
    assert att.digest == obs["digest"]
    assert len(att.pcrs) == obs["npcrs"]
    assert att.pcrs[0].hex() == obs["pcr0"]
    assert len(att.cabundle) == obs["ncab"]
    assert (att.nonce or b"").hex() == obs["nonce"]
    assert (att.public_key or b"").hex() == obs["public_key"]
    # The collector printed Python's repr of the first 40 bytes of user_data.
    assert repr((att.user_data or b"")[:40]) == obs["user_data"]


@pytest.mark.skipif(not NITRO_SAMPLES, reason="corpus absent")
def test_base64_and_tls_certificate_carriers_give_the_same_bytes() -> None:
    b64 = next(s for s in NITRO_SAMPLES if (s.path / "attestation_doc.b64").is_file())
    assert decode_document_blob((b64.path / "attestation_doc.b64").read_bytes()) == b64.cose
    assert decode_document_blob(base64.b64encode(b64.cose)) == b64.cose
    assert decode_document_blob(b64.cose.hex().encode()) == b64.cose
    san = next(s for s in NITRO_SAMPLES if (s.path / "tls_cert_with_doc_in_san.pem").is_file())
    carried = document_from_certificate((san.path / "tls_cert_with_doc_in_san.pem").read_bytes())
    assert carried.document == san.cose
    # Evervault binds the TLS key: user_data is the certificate's SubjectPublicKeyInfo.
    assert NitroDocument.from_bytes(carried.document).document.user_data == carried.tls_public_key


def test_san_hex_may_span_several_labels(hv: SimulatedNitroHypervisor) -> None:
    raw = hv.document(nonce=b"n").to_bytes()
    text = raw.hex()
    labels = [text[i : i + 62] for i in range(0, len(text), 62)]
    # "beef" is also hex: the parser must not swallow a hex-looking host label.
    name = ".".join([*labels, "beef", "enclave", "example"])
    assert document_from_san_names(["enclave.example", name]) == raw
    with pytest.raises(EvidenceFormatError):
        document_from_san_names(["enclave.example", "cafe.example"])


def test_tagged_and_untagged_round_trip(hv: SimulatedNitroHypervisor) -> None:
    for tagged in (False, True):
        doc = hv.document(user_data=b"u", tagged=tagged)
        raw = doc.to_bytes()
        assert raw[0] == (0xD2 if tagged else 0x84)
        again = NitroDocument.from_bytes(raw)
        assert again == doc and again.to_bytes() == raw


def _rebuild(doc: NitroDocument, **changes: object) -> bytes:
    """Re-encode ``doc`` with its payload map changed (unsigned: the format is what's tested)."""
    payload = cbor2.loads(doc.payload)
    payload.update(changes)
    return cbor2.dumps([doc.protected, {}, cbor2.dumps(payload), doc.signature])


def test_the_format_refuses_what_aws_forbids(hv: SimulatedNitroHypervisor) -> None:
    doc = hv.document()
    bad_payloads = [
        {"digest": "SHA256"},
        {"module_id": ""},
        {"timestamp": 0},
        {"timestamp": -5},
        {"timestamp": "now"},
        {"pcrs": {}},
        {"pcrs": {0: bytes(32)}},
        {"pcrs": {32: bytes(48)}},
        {"pcrs": {i: bytes(48) for i in range(33)}},
        {"cabundle": []},
        {"cabundle": [b""]},
        {"certificate": bytes(1025)},
        {"user_data": bytes(513)},
        {"nonce": bytes(513)},
        {"public_key": b""},
        {"nonce": "text"},
        {"extra": b"x"},
    ]
    for change in bad_payloads:
        with pytest.raises(EvidenceFormatError):
            NitroDocument.from_bytes(_rebuild(doc, **change))
    payload = cbor2.loads(doc.payload)
    del payload["cabundle"]
    with pytest.raises(EvidenceFormatError, match="missing"):
        NitroDocument.from_bytes(
            cbor2.dumps([doc.protected, {}, cbor2.dumps(payload), doc.signature])
        )


def test_non_preferred_cbor_is_refused(hv: SimulatedNitroHypervisor) -> None:
    doc = hv.document()
    # PCR index 0 as a one-byte-argument uint (0x18 0x00) instead of its minimal form 0x00.
    head = b"dpcrs\xb0\x00\x58\x30"
    assert head in doc.payload
    payload = doc.payload.replace(head, b"dpcrs\xb0\x18\x00\x58\x30")
    assert cbor2.loads(payload) == cbor2.loads(doc.payload)  # same value, other bytes
    with pytest.raises(EvidenceFormatError, match="preferred"):
        NitroDocument.from_bytes(cbor2.dumps([doc.protected, {}, payload, doc.signature]))
    # A duplicated key (last-wins parsers would read the second value).
    assert doc.payload[0] == 0xA9  # a map of 9 entries
    dup = b"\xaa" + doc.payload[1:] + cbor2.dumps("nonce") + cbor2.dumps(b"x")
    with pytest.raises(EvidenceFormatError):
        NitroDocument.from_bytes(cbor2.dumps([doc.protected, {}, dup, doc.signature]))


def test_cose_envelope_is_strict(hv: SimulatedNitroHypervisor) -> None:
    doc = hv.document()
    cases = [
        [cbor2.dumps({1: -7}), {}, doc.payload, doc.signature],  # ES256
        [cbor2.dumps({1: -35, 2: [1]}), {}, doc.payload, doc.signature],  # crit
        [doc.protected, {4: b"kid"}, doc.payload, doc.signature],  # unprotected header
        [doc.protected, {}, doc.payload, doc.signature[:64]],
        [doc.protected, {}, doc.payload],
        [b"", {}, doc.payload, doc.signature],
    ]
    for case in cases:
        with pytest.raises(EvidenceFormatError):
            NitroDocument.from_bytes(cbor2.dumps(case))
    with pytest.raises(EvidenceFormatError, match="tag"):
        NitroDocument.from_bytes(cbor2.dumps(cbor2.CBORTag(98, cbor2.loads(doc.to_bytes()))))
    with pytest.raises(EvidenceFormatError, match="larger"):
        NitroDocument.from_bytes(b"\x84" + bytes(70_000))


# -- property tests: nothing but EvidenceFormatError, whatever the input ---------------------

_cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=64)
    | st.text(max_size=16),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.integers(0, 40) | st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
_field_values = st.one_of(
    _cbor_values,
    st.binary(min_size=48, max_size=48),
    st.dictionaries(st.integers(0, 40), st.binary(min_size=47, max_size=49), max_size=4),
    st.lists(st.binary(max_size=8), max_size=3),
    st.integers(min_value=0, max_value=2**63),
)
_payloads = st.dictionaries(st.sampled_from(FIELD_ORDER), _field_values, max_size=9)


def _only_format_errors(data: bytes) -> None:
    """Parsing raises nothing but EvidenceFormatError, and what parses round-trips exactly."""
    try:
        doc = NitroDocument.from_bytes(data)
    except EvidenceFormatError:
        return
    assert doc.to_bytes() == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_format_errors(data: bytes) -> None:
    _only_format_errors(data)
    _only_format_errors(b"\x84" + data)
    _only_format_errors(b"\xd2\x84" + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cbor_values)
def test_arbitrary_cbor_raises_only_format_errors(value: object) -> None:
    _only_format_errors(cbor2.dumps(value))
    _only_format_errors(cbor2.dumps([value, {}, cbor2.dumps(value), value]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_payloads, st.booleans())
def test_document_shaped_cbor_raises_only_format_errors(
    payload: dict[str, object], tagged: bool
) -> None:
    body = [cbor2.dumps({1: -35}), {}, cbor2.dumps(payload), bytes(96)]
    _only_format_errors(cbor2.dumps(cbor2.CBORTag(18, body) if tagged else body))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_shape_raises_only_format_errors(data: st.DataObject) -> None:
    raw = _SIM_DOC
    pos = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255))
    _only_format_errors(raw[:pos] + bytes([value]) + raw[pos + 1 :])
    _only_format_errors(raw[:pos])
