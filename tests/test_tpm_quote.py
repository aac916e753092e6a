"""Quote verification on real GCE vTPM quotes and on simulated ones.

Each accepted quote is paired with rejections: any altered byte of the signed
structure or the signature, other PCR values, another nonce, an AK of another kind,
a non-restricted AK, a scheme the AK is not bound to; and clock/reboot checks.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS
from tests.tpm_corpus import QUOTE_IDS, QUOTES, QuoteSample
from veritee.errors import (
    ChainError,
    EvidenceFormatError,
    ExpiredError,
    MismatchError,
    SignatureError,
    VerificationError,
)
from veritee.pki.certs import fingerprint
from veritee.tee.tpm.claims import TpmClaims
from veritee.tee.tpm.ekcert import EkTrustStore, load_ek_certificate, verify_ek_certificate
from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.sim import SimulatedTpm
from veritee.tee.tpm.structures import (
    Attest,
    ClockInfo,
    ObjectAttr,
    PcrSelection,
    PcrSelectionList,
    TpmAlg,
    TpmtSignature,
    hash_alg,
)
from veritee.tee.tpm.verify import (
    AttestationKey,
    check_successor,
    load_attestation_key,
    verify_quote,
)


def _verify(q: QuoteSample, attest: bytes | None = None, sig: bytes | None = None,
            pcrs: PcrBanks | None = None, nonce: bytes | None = b"") -> object:
    a = Attest.from_bytes(q.attest if attest is None else attest)
    s = TpmtSignature.from_bytes(q.signature if sig is None else sig)
    return verify_quote(a, s, load_attestation_key(q.ak), q.pcrs if pcrs is None else pcrs,
                        expected_nonce=nonce)


@pytest.mark.parametrize("q", QUOTES, ids=QUOTE_IDS)
def test_corpus_quote_verifies_and_claims_match_manifest(q: QuoteSample) -> None:
    a = Attest.from_bytes(q.attest)
    assert a.to_bytes() == q.attest
    verified = verify_quote(a, TpmtSignature.from_bytes(q.signature), load_attestation_key(q.ak),
                            q.pcrs, expected_nonce=b"")
    attest = q.expected["attest"]
    assert isinstance(attest, dict)
    assert a.qualified_signer.hex() == attest["signer"]
    assert (a.clock_info.clock, a.clock_info.reset_count, a.clock_info.restart_count) == (
        attest["clock"], attest["resets"], attest["restarts"])
    assert f"{a.firmware_version:016x}" == attest["fw"]
    assert verified.quote.pcr_digest.hex() == attest["pcr_digest"]
    claims = TpmClaims.from_verified(verified).to_json()
    pcrs = q.expected["pcrs"]
    assert isinstance(pcrs, dict)
    for pcr, value in pcrs.items():
        assert claims["pcrs"][q.bank][pcr] == value  # type: ignore[index]
    if q.bank == "sha256":
        assert claims["pcr08"] == pcrs["8"] and claims["init_data"] == pcrs["8"]
    assert claims["report_data"] == "" and claims["nonce_checked"] is True
    assert claims["clock"] == attest["clock"]


@pytest.mark.parametrize("q", QUOTES, ids=QUOTE_IDS)
def test_every_signed_byte_and_signature_byte_matters(q: QuoteSample) -> None:
    rng = random.Random(q.name)
    positions = sorted(set(rng.sample(range(len(q.attest)), min(40, len(q.attest))))
                       | {0, 4, 6, len(q.attest) - 1})
    for pos in positions:
        bad = bytearray(q.attest)
        bad[pos] ^= 1 << rng.randrange(8)
        try:
            _verify(q, attest=bytes(bad))
        except (SignatureError, EvidenceFormatError):
            continue
        raise AssertionError(f"altered byte {pos} of the quote was accepted")
    for pos in rng.sample(range(6, len(q.signature)), 20):
        bad = bytearray(q.signature)
        bad[pos] ^= 1
        with pytest.raises(SignatureError):
            _verify(q, sig=bytes(bad))


@pytest.mark.parametrize("q", QUOTES, ids=QUOTE_IDS)
def test_other_pcr_values_or_nonce_are_refused(q: QuoteSample) -> None:
    alg = hash_alg(q.bank)
    table = q.pcrs.as_dict()
    for pcr in (0, 7, 23):
        changed = {a: dict(v) for a, v in table.items()}
        changed[alg][pcr] = bytes([changed[alg][pcr][0] ^ 1]) + changed[alg][pcr][1:]
        with pytest.raises(MismatchError, match="PCR digest"):
            _verify(q, pcrs=PcrBanks.from_mapping(changed))
    missing = {a: {p: v for p, v in bank.items() if p != 5} for a, bank in table.items()}
    with pytest.raises(EvidenceFormatError, match="PCR 5"):
        _verify(q, pcrs=PcrBanks.from_mapping(missing))
    with pytest.raises(MismatchError, match="nonce"):
        _verify(q, nonce=b"\x00")
    # Without an expected nonce the quote verifies but says freshness was not checked.
    v = _verify(q, nonce=None)
    assert v.nonce_checked is False  # type: ignore[attr-defined]


@pytest.mark.skipif(not QUOTES, reason="corpus absent")
def test_ak_of_another_machine_or_kind_is_refused() -> None:
    gce = next(q for q in QUOTES if q.name.startswith("gce-cos85") and q.bank == "sha256")
    win = next(q for q in QUOTES if q.name.startswith("gcp-windows"))
    with pytest.raises(SignatureError):
        verify_quote(Attest.from_bytes(gce.attest), TpmtSignature.from_bytes(gce.signature),
                     load_attestation_key(win.ak), gce.pcrs, expected_nonce=b"")
    # The Windows AK is bound to RSASSA/SHA-1: an RSASSA/SHA-256 signature does not fit it.
    with pytest.raises(SignatureError, match="bound to"):
        verify_quote(Attest.from_bytes(gce.attest), TpmtSignature.from_bytes(gce.signature),
                     load_attestation_key(win.ak), gce.pcrs, expected_nonce=b"")
    ak = load_attestation_key(gce.ak)
    assert ak.public is not None
    unrestricted = replace(ak.public, object_attributes=ak.public.object_attributes
                           & ~int(ObjectAttr.RESTRICTED))
    with pytest.raises(VerificationError, match="restricted"):
        verify_quote(Attest.from_bytes(gce.attest), TpmtSignature.from_bytes(gce.signature),
                     AttestationKey(ak.key, unrestricted), gce.pcrs, expected_nonce=b"")
    pem = ak.key.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    v = verify_quote(Attest.from_bytes(gce.attest), TpmtSignature.from_bytes(gce.signature),
                     load_attestation_key(pem), gce.pcrs, expected_nonce=b"")
    assert v.ak.public is None


@pytest.mark.skipif(CORPUS is None or not QUOTES, reason="corpus absent")
def test_gce_ak_certificate_chains_to_google_vtpm_root() -> None:
    assert CORPUS is not None
    d = CORPUS / "tpm" / "gce-cos85-quote-no-nonce"
    roots = CORPUS / "roots" / "google"
    store = EkTrustStore.from_blobs([p.read_bytes() for p in sorted(roots.iterdir())])
    cert = load_ek_certificate((d / "ak_cert.der").read_bytes())
    ak = load_attestation_key((d / "ak_pub.tpmt_public").read_bytes())
    at = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    v = verify_ek_certificate(cert, store, at, tpm_public=ak.public)
    assert "long-common-name" in v.quirks
    assert len(v.chain) == 2
    assert fingerprint(v.chain[-1]) == (
        "9bd5285f8fb18502a7947e621ffd470266f49fcd3b73e19a190f690ad32a7caf")
    with pytest.raises(ExpiredError):
        verify_ek_certificate(cert, store, dt.datetime(2021, 1, 1, tzinfo=dt.UTC))
    only_root = EkTrustStore.from_blobs([(roots / "tpm_ek_root_1.cer").read_bytes()])
    with pytest.raises(ChainError):
        verify_ek_certificate(cert, only_root, at)
    win = load_attestation_key(
        (CORPUS / "tpm" / "gcp-windows-shielded-vm" / "ak_pub.tpmt_public").read_bytes())
    with pytest.raises(MismatchError):
        verify_ek_certificate(cert, store, at, tpm_public=win.public)


# -- simulated TPM: every scheme, random selections ------------------------------------------

_SIMS: dict[tuple[int, int], SimulatedTpm] = {}


def _sim(scheme: int, h: int) -> SimulatedTpm:
    key = (scheme, h)
    if key not in _SIMS:
        curve = ec.SECP384R1() if h == TpmAlg.SHA384 else None
        _SIMS[key] = SimulatedTpm.generate(scheme, h, curve=curve)
    return _SIMS[key]


SCHEMES = [(TpmAlg.RSASSA, TpmAlg.SHA256), (TpmAlg.RSASSA, TpmAlg.SHA1),
           (TpmAlg.RSAPSS, TpmAlg.SHA256), (TpmAlg.ECDSA, TpmAlg.SHA256),
           (TpmAlg.ECDSA, TpmAlg.SHA384)]


@settings(max_examples=60, deadline=None)
@given(
    scheme=st.sampled_from(SCHEMES),
    banks=st.lists(st.sampled_from([TpmAlg.SHA1, TpmAlg.SHA256, TpmAlg.SHA384]),
                   min_size=1, max_size=3, unique=True),
    pcr_sets=st.lists(st.sets(st.integers(0, 23), min_size=1), min_size=3, max_size=3),
    nonce=st.binary(max_size=32),
    measure=st.binary(min_size=1, max_size=16),
)
def test_simulated_quotes_verify_and_tampering_is_caught(
    scheme: tuple[int, int], banks: list[int], pcr_sets: list[set[int]], nonce: bytes,
    measure: bytes,
) -> None:
    sim = _sim(*scheme)
    sim.extend(measure[0] % 24, measure)
    sel = PcrSelectionList(tuple(PcrSelection.of(b, sorted(p))
                                 for b, p in zip(banks, pcr_sets[: len(banks)], strict=True)))
    msg, sig = sim.quote(sel, nonce)
    pcrs = sim.pcr_banks()
    attest = Attest.from_bytes(msg)
    assert attest.to_bytes() == msg and TpmtSignature.from_bytes(sig.to_bytes()) == sig
    v = verify_quote(attest, sig, sim.ak, pcrs, expected_nonce=nonce)
    assert {(a, p) for a, p, _ in v.pcrs.values} == set(sel.items())
    with pytest.raises(MismatchError):
        verify_quote(attest, sig, sim.ak, pcrs, expected_nonce=nonce + b"\x01")
    alg, pcr = next(iter(sel.items()))
    table = pcrs.as_dict()
    table[alg][pcr] = bytes(len(table[alg][pcr])) if any(table[alg][pcr]) else b"\x01" * len(
        table[alg][pcr])
    with pytest.raises(MismatchError):
        verify_quote(attest, sig, sim.ak, PcrBanks.from_mapping(table), expected_nonce=nonce)
    other = replace(attest, extra_data=nonce + b"!")
    with pytest.raises(SignatureError):
        verify_quote(other, sig, sim.ak, pcrs, expected_nonce=nonce + b"!")


def test_clock_rollback_and_reboot_between_quotes() -> None:
    base = ClockInfo(clock=5000, reset_count=3, restart_count=1, safe=1)
    check_successor(base, replace(base, clock=6000))
    with pytest.raises(MismatchError, match="clock went back"):
        check_successor(base, replace(base, clock=4999))
    with pytest.raises(MismatchError, match="rebooted"):
        check_successor(base, replace(base, reset_count=4, restart_count=0, clock=10))
    check_successor(base, replace(base, reset_count=4, restart_count=0, clock=10),
                    allow_reboot=True)
    with pytest.raises(MismatchError, match="reset count went back"):
        check_successor(base, replace(base, reset_count=2), allow_reboot=True)
    with pytest.raises(MismatchError, match="restarted"):
        check_successor(base, replace(base, restart_count=2))
    with pytest.raises(MismatchError, match="restart count went back"):
        check_successor(base, replace(base, restart_count=0))
    sim = _sim(TpmAlg.RSASSA, TpmAlg.SHA256)
    sel = PcrSelectionList((PcrSelection.of(TpmAlg.SHA256, [0]),))
    first = Attest.from_bytes(sim.quote(sel, b"a")[0]).clock_info
    second = Attest.from_bytes(sim.quote(sel, b"b")[0]).clock_info
    check_successor(first, second)
    with pytest.raises(MismatchError):
        check_successor(second, first)
