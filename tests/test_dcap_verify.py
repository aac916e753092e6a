"""DCAP verification against real Intel-signed quotes and collateral, and a simulated platform.

Every accepted quote is paired with rejections, each asserting the error class and
that the message names the check: signatures and chain (before any collateral),
CRLs, TCB info and QE identity signatures and windows, identity matches, TCB level.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.dcap_corpus import ALL_IDS, ALL_SAMPLES, DcapSample, sample
from tests.dcap_sim import ISSUE, NEXT, NOW, bundle, collateral, generate, roots
from veritee.errors import (
    ChainError,
    CollateralUnavailableError,
    EvidenceFormatError,
    ExpiredError,
    MismatchError,
    RevokedError,
    SignatureError,
    VerificationError,
)
from veritee.pki.certs import load_certificates
from veritee.tee.dcap.claims import DcapClaims
from veritee.tee.dcap.gather import DcapSources, gather_collateral
from veritee.tee.dcap.quote import HEADER_SIZE, Quote, TeeType
from veritee.tee.dcap.sim import SimTcbLevel, SimulatedDcapPlatform
from veritee.tee.dcap.tcb import TdxTcb
from veritee.tee.dcap.tcbinfo import split_signed
from veritee.tee.dcap.verify import (
    DcapCollateral,
    IntelRoots,
    VerifiedDcapQuote,
    evaluate_collateral,
    verify_quote,
    verify_quote_signatures,
)
from veritee.tee.tdx.quote import TdReport
from veritee.tee.tdx.verify import tdx_tcb

needs_samples = pytest.mark.skipif(not ALL_SAMPLES, reason="corpus absent")
WITH_COLLATERAL = [s for s in ALL_SAMPLES if s.has_collateral]
WITHOUT_COLLATERAL = [s for s in ALL_SAMPLES if not s.has_collateral]


def intel_roots(quote: Quote) -> IntelRoots:
    return IntelRoots.intel(load_certificates(quote.signature_data.qe.certification_data.data))


def tdx_of(quote: Quote) -> TdxTcb | None:
    return tdx_tcb(TdReport.from_bytes(quote.body)) if quote.tee is TeeType.TDX else None


def full(
    s: DcapSample, *, at: dt.datetime | None = None, dirs: tuple[Path, ...] | None = None
) -> VerifiedDcapQuote:
    quote = Quote.from_bytes(s.quote)
    r = intel_roots(quote)
    when = at or s.full_at
    verified = verify_quote_signatures(quote, r, when)
    col = gather_collateral(verified, DcapSources(directories=dirs or s.collateral_dirs()))
    return evaluate_collateral(verified, col, r, when, tdx=tdx_of(quote))


# -- real hardware: stage 1 for every quote ---------------------------------------------------


@pytest.mark.parametrize("s", ALL_SAMPLES, ids=ALL_IDS)
def test_corpus_signatures_qe_report_and_pck_chain_verify(s: DcapSample) -> None:
    quote = Quote.from_bytes(s.quote)
    v = verify_quote_signatures(quote, intel_roots(quote), s.at)
    assert v.chain.root.subject.rfc4514_string().endswith("CN=Intel SGX Root CA")
    assert len(v.chain.certs) == s.checks["chain_len"]
    assert v.pck.fmspc.hex() == s.checks["fmspc"]
    assert v.chain.leaf.not_valid_before_utc.date().isoformat() == s.checks["pck_valid"][0]  # type: ignore[index]
    assert not v.simulated
    with pytest.raises(ChainError, match="no trusted Intel SGX Root CA"):
        verify_quote_signatures(quote, IntelRoots({}), s.at)


# -- real hardware: full collateral evaluation ------------------------------------------------


@pytest.mark.parametrize("s", WITH_COLLATERAL, ids=[s.name for s in WITH_COLLATERAL])
def test_corpus_collateral_evaluation_matches_manifest(s: DcapSample) -> None:
    tcb = s.tcb
    assert tcb is not None
    platform = tcb["platform_tcb"]
    if isinstance(platform, str):
        assert platform.startswith("NO_MATCHING_TCB_LEVEL")
        with pytest.raises(
            MismatchError, match=r"TCB level: .*matches no tcbLevel.*TCB_NOT_SUPPORTED"
        ):
            full(s)
        return
    status, advisories, tcb_date = platform  # type: ignore[misc]
    v = full(s)
    assert tcb["qe_tcb"] == ["UpToDate", []]
    assert v.tcb.status == status
    assert list(v.tcb.advisory_ids) == advisories
    assert v.tcb.platform_level.tcb_date.strftime("%Y-%m-%dT%H:%M:%SZ") == tcb_date
    assert v.tcb_info.tcb_evaluation_data_number == tcb["tcb_eval_num"]
    claims = DcapClaims.from_verified(v).to_json()
    assert claims["fmspc"] == tcb["fmspc"]
    assert claims["tcb_status"] == status
    assert claims["advisory_ids"] == advisories
    assert claims["root_key_id"] == (
        "46e403bd34f05a3f2817ab9badcaacc7ffc98e0f261008cd30dae936cace18d5"
        "dcf58eef31463613de1570d516200993"
    )
    assert claims["collateral_expiration_status"] == "0"
    assert claims["earliest_issue_date"] == "2018-05-21T10:45:10Z"  # the Intel SGX Root CA
    source = s.expected.get("source_states")
    if isinstance(source, dict) and "tcb_status" in source:
        assert claims["tcb_status"] == source["tcb_status"]
        assert claims["advisory_ids"] == source["advisory_ids"]


@pytest.mark.parametrize("s", WITHOUT_COLLATERAL, ids=[s.name for s in WITHOUT_COLLATERAL])
def test_missing_collateral_is_named_after_signatures_verify(s: DcapSample) -> None:
    with pytest.raises(CollateralUnavailableError) as info:
        full(s, at=s.at)
    message = info.value.message
    fmspc = str(s.checks["fmspc"]).upper()
    assert f"TCB info for FMSPC {fmspc}" in message
    for item in ("QE identity", "PCK CRL", "Root CA CRL"):
        assert item in message
    assert info.value.exit_code == 4


@needs_samples
def test_partial_collateral_names_only_what_is_missing() -> None:
    s = sample("go-tdx-guest-v5")
    with pytest.raises(CollateralUnavailableError) as info:
        full(s, at=s.at, dirs=(s.path,))
    assert "TCB info" not in info.value.message
    assert "TD QE identity" in info.value.message
    assert "PCK CRL (ca=platform)" in info.value.message


@needs_samples
def test_tampered_quote_is_refused_even_without_collateral() -> None:
    s = sample("trustee-v4-spr")
    raw = bytearray(s.quote)
    raw[HEADER_SIZE + 200] ^= 0x01  # inside MRTD
    quote = Quote.from_bytes(bytes(raw))
    with pytest.raises(SignatureError, match="quote signature") as info:
        verify_quote(quote, DcapCollateral(), intel_roots(quote), s.at, tdx=tdx_of(quote))
    assert info.value.exit_code == 3


# -- bit flips ---------------------------------------------------------------------------------


def _signed_ranges(quote: Quote) -> list[tuple[int, int]]:
    """Byte ranges covered by a signature or a binding: header+body, and the QE data."""
    sig_start = quote.signed_length + 4
    qe_start = sig_start + 128 + (6 if quote.signature_data.wrapped else 0)
    auth_end = qe_start + 384 + 64 + 2 + len(quote.signature_data.qe.qe_auth_data)
    return [(0, quote.signed_length), (sig_start, auth_end)]


def _assert_refused(s: DcapSample, data: bytes) -> None:
    try:
        quote = Quote.from_bytes(data)
        r = intel_roots(quote)
    except EvidenceFormatError:
        return  # refused as malformed (exit 2): a length, version, or the PEM itself
    with pytest.raises((VerificationError, EvidenceFormatError)) as info:
        verify_quote_signatures(quote, r, s.at)
    if isinstance(info.value, EvidenceFormatError):
        return
    assert info.value.exit_code == 3
    assert any(
        word in info.value.message
        for word in ("signature", "QE report", "chain", "PCK", "attestation key", "vendor")
    ), info.value.message


@needs_samples
@pytest.mark.parametrize("name", ["dcap-qvl-v4-uptodate", "trustee-v5-emr", "dcap-qvl-sgx"])
def test_every_bit_of_the_signed_regions_is_protected(name: str) -> None:
    s = sample(name)
    quote = Quote.from_bytes(s.quote)
    for start, end in _signed_ranges(quote):
        for bit in range(start * 8, end * 8):
            raw = bytearray(s.quote)
            raw[bit // 8] ^= 1 << (bit % 8)
            _assert_refused(s, bytes(raw))


@pytest.mark.parametrize("s", ALL_SAMPLES, ids=ALL_IDS)
def test_sampled_flips_in_signed_regions_and_pck_chain(s: DcapSample) -> None:
    rng = random.Random(s.name)
    quote = Quote.from_bytes(s.quote)
    bits = [
        rng.randrange(start * 8, end * 8) for start, end in _signed_ranges(quote) for _ in range(60)
    ]
    # The PCK certificate's base64 payload (not line breaks or padding-adjacent chars).
    pem = quote.signature_data.qe.certification_data.data
    pem_at = s.quote.index(pem)
    first_end = pem.index(b"-----END CERTIFICATE-----")
    payload = [i for i in range(pem.index(b"\n") + 1, first_end - 6) if pem[i : i + 1].isalnum()]
    bits += [(pem_at + rng.choice(payload)) * 8 + rng.randrange(6) for _ in range(40)]
    for bit in bits:
        raw = bytearray(s.quote)
        raw[bit // 8] ^= 1 << (bit % 8)
        _assert_refused(s, bytes(raw))


# -- transplants from other quotes -------------------------------------------------------------


def _transplant(target: DcapSample, donor: DcapSample, **fields: object) -> Quote:
    a, b = Quote.from_bytes(target.quote), Quote.from_bytes(donor.quote)
    qe = replace(a.signature_data.qe, **{k: getattr(b.signature_data.qe, k) for k in fields})
    return replace(a, signature_data=replace(a.signature_data, qe=qe))


@needs_samples
def test_qe_report_from_another_quote_is_refused() -> None:
    a, b = sample("dcap-qvl-v4-uptodate"), sample("dcap-qvl-hex-b0c06f-2024")
    quote = _transplant(a, b, qe_report=True, qe_report_signature=True)
    with pytest.raises(SignatureError, match="QE report signature does not verify with the PCK"):
        verify_quote_signatures(quote, intel_roots(quote), a.at)


@needs_samples
def test_pck_of_another_platform_is_refused() -> None:
    a, b = sample("dcap-qvl-v4-uptodate"), sample("dcap-qvl-hex-b0c06f-2024")
    quote = _transplant(a, b, certification_data=True)
    with pytest.raises(SignatureError, match="QE report signature does not verify with the PCK"):
        verify_quote_signatures(quote, intel_roots(quote), a.at)


@needs_samples
def test_whole_qe_certification_of_another_quote_does_not_bind_the_key() -> None:
    a, b = sample("dcap-qvl-v4-uptodate"), sample("dcap-qvl-hex-b0c06f-2024")
    quote = _transplant(
        a, b, qe_report=True, qe_report_signature=True, qe_auth_data=True, certification_data=True
    )
    with pytest.raises(SignatureError, match="QE report data is not SHA-256"):
        verify_quote_signatures(quote, intel_roots(quote), a.at)


# -- real collateral, altered or out of its window -------------------------------------------------


def _real_collateral(s: DcapSample, at: dt.datetime) -> tuple[Quote, IntelRoots, DcapCollateral]:
    quote = Quote.from_bytes(s.quote)
    r = intel_roots(quote)
    v = verify_quote_signatures(quote, r, at)
    return quote, r, gather_collateral(v, DcapSources(directories=s.collateral_dirs()))


@needs_samples
def test_real_tcb_info_altered_by_one_byte_is_refused() -> None:
    s = sample("dcap-qvl-v4-uptodate")
    quote, r, col = _real_collateral(s, s.at)
    assert col.tcb_info is not None
    forged = col.tcb_info.signed_bytes.replace(b'"OutOfDate"', b'"UpToDate"')
    col = replace(col, tcb_info=replace(col.tcb_info, signed_bytes=forged))
    with pytest.raises(SignatureError, match="TCB info signature does not verify"):
        verify_quote(quote, col, r, s.at, tdx=tdx_of(quote))


@needs_samples
def test_real_tcb_info_past_next_update_is_expired() -> None:
    s = sample("go-tdx-guest-v5")  # its TCB info ends 2026-03-03; CRLs and QE identity later
    at = dt.datetime(2026, 3, 3, 14, 49, 27, tzinfo=dt.UTC)
    quote, r, col = _real_collateral(s, at)
    with pytest.raises(
        ExpiredError, match=r"TCB info \(TDX, FMSPC 90C06F000000\) is past its nextUpdate"
    ):
        verify_quote(quote, col, r, at, tdx=tdx_of(quote))


@needs_samples
def test_real_stale_pck_crl_is_expired() -> None:
    s = sample("dcap-qvl-v4-uptodate")
    at = dt.datetime(2025, 7, 19, 10, 5, tzinfo=dt.UTC)  # PCK CRL nextUpdate 10:00:35
    quote, r, col = _real_collateral(s, at)
    with pytest.raises(ExpiredError, match="PCK CRL is stale"):
        verify_quote(quote, col, r, at, tdx=tdx_of(quote))


@needs_samples
def test_real_sgx_qe_identity_cannot_judge_a_tdx_quote() -> None:
    tdx, sgx = sample("dcap-qvl-v4-uptodate"), sample("dcap-qvl-sgx")
    quote, r, col = _real_collateral(tdx, tdx.at)
    sgx_doc = json.loads((sgx.path / "collateral.json").read_text())
    identity = split_signed(
        json.dumps(
            {
                "enclaveIdentity": json.loads(sgx_doc["qe_identity"]),
                "signature": sgx_doc["qe_identity_signature"],
            },
            separators=(",", ":"),
        ).encode(),
        "enclaveIdentity",
    )
    with pytest.raises(MismatchError, match="QE identity mismatch: identity is QE, need TD_QE"):
        verify_quote(quote, replace(col, qe_identity=identity), r, sgx.at, tdx=tdx_of(quote))


# -- simulated platform: precise negative cases ---------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> SimulatedDcapPlatform:
    return generate(TeeType.SGX)


def _sgx_quote(p: SimulatedDcapPlatform, **kwargs: object) -> Quote:
    from veritee.tee.dcap.report import EnclaveReport

    return p.quote(
        EnclaveReport.build(report_data=b"n".ljust(64, b"\0")).to_bytes(), version=3, **kwargs
    )  # type: ignore[arg-type]


def test_simulated_quote_verifies_only_with_its_root_passed_explicitly(
    sim: SimulatedDcapPlatform,
) -> None:
    quote = _sgx_quote(sim)
    v = verify_quote(quote, collateral(sim), roots(sim), NOW)
    assert v.simulated and v.tcb.status == "UpToDate"
    assert DcapClaims.from_verified(v).to_json()["simulated"] is True
    chain_certs = load_certificates(quote.signature_data.qe.certification_data.data)
    with pytest.raises(ChainError):
        verify_quote(quote, collateral(sim), IntelRoots.intel(chain_certs), NOW)


def test_revoked_pck_via_crl(sim: SimulatedDcapPlatform) -> None:
    crl = sim.crl(revoked=[sim.pck.serial_number], this_update=ISSUE, next_update=NEXT)
    with pytest.raises(RevokedError, match="PCK CRL: 'Intel SGX PCK Certificate'"):
        verify_quote(_sgx_quote(sim), collateral(sim, bundle(sim, pck_crl=crl)), roots(sim), NOW)
    root_crl = sim.crl(
        issuer="root", revoked=[sim.pck_ca.serial_number], this_update=ISSUE, next_update=NEXT
    )
    with pytest.raises(RevokedError, match="Root CA CRL: 'Intel SGX PCK Platform CA'"):
        verify_quote(
            _sgx_quote(sim), collateral(sim, bundle(sim, root_crl=root_crl)), roots(sim), NOW
        )


def test_crl_signed_by_another_key_is_refused(sim: SimulatedDcapPlatform) -> None:
    other = generate(TeeType.SGX)
    forged = other.crl(this_update=ISSUE, next_update=NEXT)
    with pytest.raises(ChainError):
        verify_quote(_sgx_quote(sim), collateral(sim, bundle(sim, pck_crl=forged)), roots(sim), NOW)


def test_tcb_info_signed_by_the_wrong_key(sim: SimulatedDcapPlatform) -> None:
    rogue = ec.generate_private_key(ec.SECP256R1())
    tcb = sim.tcb_info_body(issue=ISSUE, next_update=NEXT, key=rogue)
    with pytest.raises(SignatureError, match="TCB info signature does not verify"):
        verify_quote(_sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=tcb)), roots(sim), NOW)
    qe = sim.qe_identity_body(issue=ISSUE, next_update=NEXT, key=rogue)
    with pytest.raises(SignatureError, match="QE identity signature does not verify"):
        verify_quote(_sgx_quote(sim), collateral(sim, bundle(sim, qe_identity=qe)), roots(sim), NOW)


def test_tcb_info_past_next_update_or_not_yet_issued(sim: SimulatedDcapPlatform) -> None:
    stale = sim.tcb_info_body(
        issue=ISSUE - dt.timedelta(days=30), next_update=NOW - dt.timedelta(seconds=1)
    )
    with pytest.raises(ExpiredError, match=r"TCB info .* is past its nextUpdate"):
        verify_quote(_sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=stale)), roots(sim), NOW)
    future = sim.tcb_info_body(issue=NOW + dt.timedelta(seconds=1), next_update=NEXT)
    with pytest.raises(ExpiredError, match=r"TCB info .* is not yet valid"):
        verify_quote(
            _sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=future)), roots(sim), NOW
        )
    stale_qe = sim.qe_identity_body(issue=ISSUE, next_update=NOW - dt.timedelta(seconds=1))
    with pytest.raises(ExpiredError, match=r"QE identity \(QE\) is past its nextUpdate"):
        verify_quote(
            _sgx_quote(sim), collateral(sim, bundle(sim, qe_identity=stale_qe)), roots(sim), NOW
        )


def test_qe_identity_mismatch(sim: SimulatedDcapPlatform) -> None:
    cases = [
        ({"mrsigner": b"\x01" * 32}, "QE identity mismatch: MRSIGNER"),
        ({"isvprodid": 7}, "QE identity mismatch: ISVPRODID"),
        ({"qe_id": "TD_QE"}, "QE identity mismatch: identity is TD_QE, need QE"),
    ]
    for kwargs, message in cases:
        qe = sim.qe_identity_body(issue=ISSUE, next_update=NEXT, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(MismatchError, match=message):
            verify_quote(
                _sgx_quote(sim), collateral(sim, bundle(sim, qe_identity=qe)), roots(sim), NOW
            )


def test_tcb_info_for_another_fmspc_or_tee(sim: SimulatedDcapPlatform) -> None:
    other = sim.tcb_info_body(issue=ISSUE, next_update=NEXT, fmspc=b"\x00" * 6)
    with pytest.raises(MismatchError, match="FMSPC"):
        verify_quote(_sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=other)), roots(sim), NOW)
    tdx_info = sim.tcb_info_body(issue=ISSUE, next_update=NEXT, tcb_id="TDX")
    with pytest.raises(MismatchError, match="is for TDX, the quote is SGX"):
        verify_quote(
            _sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=tdx_info)), roots(sim), NOW
        )


def test_tcb_statuses_and_revoked_tcb(sim: SimulatedDcapPlatform) -> None:
    comps = sim.components
    for status in ("SWHardeningNeeded", "ConfigurationNeeded", "OutOfDate"):
        levels = [SimTcbLevel(comps, sim.pcesvn, status, advisories=("INTEL-SA-00001",))]
        tcb = sim.tcb_info_body(issue=ISSUE, next_update=NEXT, levels=levels)
        v = verify_quote(
            _sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=tcb)), roots(sim), NOW
        )
        assert (v.tcb.status, v.tcb.advisory_ids) == (status, ("INTEL-SA-00001",))
    revoked = sim.tcb_info_body(
        issue=ISSUE, next_update=NEXT, levels=[SimTcbLevel(comps, sim.pcesvn, "Revoked")]
    )
    with pytest.raises(RevokedError, match="TCB status is Revoked"):
        verify_quote(
            _sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=revoked)), roots(sim), NOW
        )


def test_qe_out_of_date_lowers_the_status(sim: SimulatedDcapPlatform) -> None:
    qe = sim.qe_identity_body(
        issue=ISSUE, next_update=NEXT, levels=((9, "UpToDate"), (8, "OutOfDate"))
    )
    v = verify_quote(_sgx_quote(sim), collateral(sim, bundle(sim, qe_identity=qe)), roots(sim), NOW)
    assert (v.tcb.status, v.supplemental.qe_tcb_status) == ("OutOfDate", "OutOfDate")
    below = sim.qe_identity_body(issue=ISSUE, next_update=NEXT, levels=((9, "UpToDate"),))
    with pytest.raises(MismatchError, match="QE identity: the QE's ISVSVN 8 is below"):
        verify_quote(
            _sgx_quote(sim), collateral(sim, bundle(sim, qe_identity=below)), roots(sim), NOW
        )


def test_configuration_needed_with_qe_out_of_date(sim: SimulatedDcapPlatform) -> None:
    levels = [SimTcbLevel(sim.components, sim.pcesvn, "ConfigurationNeeded", advisories=("A",))]
    tcb = sim.tcb_info_body(issue=ISSUE, next_update=NEXT, levels=levels)
    qe = sim.qe_identity_body(
        issue=ISSUE, next_update=NEXT, levels=((9, "UpToDate"), (8, "OutOfDate"))
    )
    v = verify_quote(
        _sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=tcb, qe_identity=qe)), roots(sim), NOW
    )
    assert v.tcb.status == "OutOfDateConfigurationNeeded"
    revoked_qe = sim.qe_identity_body(
        issue=ISSUE, next_update=NEXT, levels=((9, "UpToDate"), (8, "Revoked"))
    )
    with pytest.raises(RevokedError, match="Revoked"):
        verify_quote(
            _sgx_quote(sim), collateral(sim, bundle(sim, qe_identity=revoked_qe)), roots(sim), NOW
        )


def test_platform_below_every_level_is_tcb_not_supported(sim: SimulatedDcapPlatform) -> None:
    higher = tuple(c + 1 for c in sim.components)
    tcb = sim.tcb_info_body(
        issue=ISSUE, next_update=NEXT, levels=[SimTcbLevel(higher, sim.pcesvn, "UpToDate")]
    )
    with pytest.raises(MismatchError, match="TCB_NOT_SUPPORTED"):
        verify_quote(_sgx_quote(sim), collateral(sim, bundle(sim, tcb_info=tcb)), roots(sim), NOW)


def test_expired_pck_and_forged_quote_signature(sim: SimulatedDcapPlatform) -> None:
    later = NOW + dt.timedelta(days=365 * 8)
    with pytest.raises(ExpiredError, match="expired"):
        verify_quote_signatures(_sgx_quote(sim), roots(sim), later)
    rogue = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError, match="quote signature does not verify"):
        verify_quote_signatures(_sgx_quote(sim, signing_key=rogue), roots(sim), NOW)
    with pytest.raises(SignatureError, match="QE report signature"):
        verify_quote_signatures(_sgx_quote(sim, pck_key=rogue), roots(sim), NOW)


def test_pck_of_another_platform_same_ca(sim: SimulatedDcapPlatform) -> None:
    from cryptography.hazmat.primitives import serialization

    other_key = ec.generate_private_key(ec.SECP256R1())
    other = sim.issue_pck(other_key)
    pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (other, sim.pck_ca, sim.root)
    )
    with pytest.raises(SignatureError, match="QE report signature does not verify with the PCK"):
        verify_quote_signatures(_sgx_quote(sim, pem_chain=pem), roots(sim), NOW)


def test_missing_collateral_items_are_each_named(sim: SimulatedDcapPlatform) -> None:
    full_col = collateral(sim)
    for field, word in (
        ("tcb_info", "SGX TCB info for FMSPC"),
        ("qe_identity", "QE identity"),
        ("pck_crl", "PCK CRL (ca=platform)"),
        ("root_ca_crl", "Root CA CRL"),
    ):
        with pytest.raises(CollateralUnavailableError, match=re.escape(word)):
            verify_quote(_sgx_quote(sim), replace(full_col, **{field: None}), roots(sim), NOW)


def test_naive_time_is_refused(sim: SimulatedDcapPlatform) -> None:
    from veritee.errors import ConfigError

    with pytest.raises(ConfigError):
        verify_quote_signatures(_sgx_quote(sim), roots(sim), dt.datetime(2025, 6, 1))


def test_collateral_json_and_pcs_layouts_are_both_gathered(
    sim: SimulatedDcapPlatform, tmp_path: Path
) -> None:
    quote = _sgx_quote(sim)
    v = verify_quote_signatures(quote, roots(sim), NOW)
    for layout in ("pcs", "json"):
        d = sim.write_collateral(tmp_path / layout, issue=ISSUE, next_update=NEXT, layout=layout)
        (d / "notes.txt").write_text("not collateral")
        col = gather_collateral(v, DcapSources(directories=(d,)))
        assert col.missing() == []
        assert evaluate_collateral(v, col, roots(sim), NOW).tcb.status == "UpToDate"
