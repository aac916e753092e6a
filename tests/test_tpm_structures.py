"""TPM byte formats: exact round-trips on real and tpm2-tools data, truncation, and
arbitrary bytes raising only EvidenceFormatError for every parser."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tpm_corpus import QUOTE_IDS, QUOTES, QuoteSample
from veritee.errors import EvidenceFormatError
from veritee.tee.tpm.credential import Credential
from veritee.tee.tpm.ekcert import load_ek_certificate
from veritee.tee.tpm.eventlog import (
    ImageLoadEvent,
    SpecIdEvent,
    UefiVariableData,
    parse_signature_data,
    parse_signature_lists,
)
from veritee.tee.tpm.kbs import TpmEvidence
from veritee.tee.tpm.pcrs import PcrBanks, parse_pcr_file
from veritee.tee.tpm.sim import SimulatedTpm
from veritee.tee.tpm.structures import (
    Attest,
    PcrSelection,
    PcrSelectionList,
    TpmAlg,
    TpmtPublic,
    TpmtSignature,
)
from veritee.tee.tpm.verify import load_attestation_key


@pytest.mark.parametrize("q", QUOTES, ids=QUOTE_IDS)
def test_corpus_structures_round_trip_and_truncations_fail(q: QuoteSample) -> None:
    for raw, parse in ((q.attest, Attest.from_bytes), (q.signature, TpmtSignature.from_bytes),
                       (q.ak, TpmtPublic.from_bytes)):
        value = parse(raw)
        assert value.to_bytes() == raw
        for cut in range(len(raw)):
            with pytest.raises(EvidenceFormatError):
                parse(raw[:cut])
        with pytest.raises(EvidenceFormatError, match="trailing"):
            parse(raw + b"\0")
    public = TpmtPublic.from_bytes(q.ak)
    assert TpmtPublic.parse_any(public.to_tpm2b()) == public == TpmtPublic.parse_any(q.ak)
    with pytest.raises(EvidenceFormatError):
        TpmtPublic.from_tpm2b(public.to_tpm2b()[:-1])


def test_tpm2_tools_pcr_file_forms_round_trip() -> None:
    sim = SimulatedTpm.generate()
    sim.extend(3, b"x")
    sel = PcrSelectionList((PcrSelection.of(TpmAlg.SHA256, [0, 3, 16, 23]),
                            PcrSelection.of(TpmAlg.SHA1, list(range(12))),
                            PcrSelection.of(TpmAlg.SHA384, [3])))
    banks = sim.pcr_banks()
    blob = banks.to_tpm2_tools(sel)
    assert len(blob) == 4 + 16 * 8 + 4 + 3 * (4 + 8 * 66)  # 17 values: three TPML_DIGESTs
    sel2, parsed = PcrBanks.from_tpm2_tools(blob)
    assert sel2 == sel and parsed.values_for(sel) == banks.values_for(sel)
    assert parse_pcr_file(blob) == parsed
    values = b"".join(banks.values_for(sel))
    assert PcrBanks.from_values(values, sel) == parsed == parse_pcr_file(values, sel)
    as_json = json.dumps(parsed.to_json()).encode()
    assert parse_pcr_file(as_json) == parsed
    assert parse_pcr_file(json.dumps({"pcrs": parsed.to_json()}).encode()) == parsed
    with pytest.raises(EvidenceFormatError):
        PcrBanks.from_values(values[:-1], sel)
    with pytest.raises(EvidenceFormatError):
        parse_pcr_file(values)  # raw values need the quote's selection
    with pytest.raises(EvidenceFormatError, match="selects"):
        PcrBanks.from_tpm2_tools(blob[:7] + bytes([blob[7] | 2]) + blob[8:])  # selects PCR 1 too
    lst = PcrBanks.from_sha256_list([v.hex() for v in banks.values_for(
        PcrSelectionList((PcrSelection.of(TpmAlg.SHA256, list(range(24))),)))])
    assert lst.get(TpmAlg.SHA256, 3) == banks.get(TpmAlg.SHA256, 3)


def test_simulated_structures_round_trip_for_every_scheme() -> None:
    sel = PcrSelectionList((PcrSelection.of(TpmAlg.SHA256, [0, 1]),))
    for scheme, h in ((TpmAlg.RSASSA, TpmAlg.SHA256), (TpmAlg.RSAPSS, TpmAlg.SHA384),
                      (TpmAlg.ECDSA, TpmAlg.SHA256)):
        sim = SimulatedTpm.generate(scheme, h)
        msg, sig = sim.quote(sel, b"n")
        assert Attest.from_bytes(msg).to_bytes() == msg
        assert TpmtSignature.from_bytes(sig.to_bytes()) == sig
        assert TpmtPublic.from_tpm2b(sim.public.to_tpm2b()) == sim.public
        assert sim.public.scheme.scheme == scheme and sim.public.scheme.hash_alg == h


def _cert_der() -> bytes:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "t")])
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER)


CERT = _cert_der()
PARSERS: list[Callable[[bytes], object]] = [
    Attest.from_bytes,
    TpmtPublic.from_bytes,
    TpmtPublic.from_tpm2b,
    TpmtPublic.parse_any,
    TpmtSignature.from_bytes,
    PcrSelectionList.from_bytes,
    lambda b: PcrBanks.from_tpm2_tools(b),
    parse_pcr_file,
    TpmEvidence.from_json,
    load_ek_certificate,
    load_attestation_key,
    UefiVariableData.from_bytes,
    parse_signature_lists,
    parse_signature_data,
    ImageLoadEvent.from_bytes,
    lambda b: ImageLoadEvent.from_bytes(b).file_paths(),
    SpecIdEvent.from_bytes,
    Credential.from_tpm2_tools,
]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(range(len(PARSERS))))
def test_arbitrary_bytes_only_raise_format_error(data: bytes, which: int) -> None:
    with contextlib.suppress(EvidenceFormatError):
        PARSERS[which](data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_inputs_only_raise_format_error(data: st.DataObject) -> None:
    seeds: list[tuple[bytes, Callable[[bytes], object]]] = [
        (CERT, load_ek_certificate), (CERT + bytes(40), load_ek_certificate),
    ]
    for q in QUOTES[:2]:
        seeds += [(q.attest, Attest.from_bytes), (q.signature, TpmtSignature.from_bytes),
                  (q.ak, load_attestation_key), (q.ak, TpmtPublic.from_bytes)]
    raw, parse = data.draw(st.sampled_from(seeds))
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    blob = bytes(b[: data.draw(st.integers(0, len(b)))])
    try:
        value = parse(blob)
    except EvidenceFormatError:
        return
    if isinstance(value, Attest | TpmtSignature | TpmtPublic):
        assert value.to_bytes() == blob


@settings(max_examples=200, deadline=None)
@given(
    json_value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=70),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["ak_public", "tpm_quote", "message", "signature", "pcrs", "x"]),
            inner, max_size=4),
        max_leaves=12,
    )
)
def test_kbs_evidence_json_of_any_shape_only_raises_format_error(json_value: object) -> None:
    with contextlib.suppress(EvidenceFormatError):
        TpmEvidence.from_json(json.dumps(json_value))
