"""SNP verification against real AMD-signed reports and a simulated platform.

Every accepted report is paired with rejections: tampering, another chip's or
another TCB's VCEK, another product's ASK, expiry, revocation, wrong report data.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS, SNP_IDS, SNP_SAMPLES, SnpSample
from veritee.errors import (
    ChainError,
    ExpiredError,
    MismatchError,
    RevokedError,
    SignatureError,
    VerificationError,
)
from veritee.pki.certs import load_certificate, load_certificates
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.report import SIGNED_SIZE, Product, SnpReport, TcbVersion
from veritee.tee.snp.sim import SimulatedSnpPlatform
from veritee.tee.snp.verify import SnpCollateral, TrustRoots, verify_report

UTC = dt.UTC


def collateral_for(sample: SnpSample) -> SnpCollateral:
    return SnpCollateral(
        vek=load_certificate(sample.vek),
        intermediates=tuple(load_certificates(sample.roots.read_bytes())),
    )


def roots_for(col: SnpCollateral) -> TrustRoots:
    return TrustRoots.amd(col.intermediates)


def verify_sample(sample: SnpSample, data: bytes | None = None, **kw: object) -> object:
    col = collateral_for(sample)
    report = SnpReport.from_bytes(sample.report if data is None else data)
    return verify_report(report, col, roots_for(col), sample.at, **kw)  # type: ignore[arg-type]


# -- real hardware ------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_corpus_report_verifies_and_claims_match_manifest(sample: SnpSample) -> None:
    col = collateral_for(sample)
    verified = verify_report(SnpReport.from_bytes(sample.report), col, roots_for(col), sample.at)
    obs = sample.observed
    assert verified.product.value.lower() == obs["product"]
    assert verified.signing_key.name == obs["endorsement_key"]
    assert not verified.simulated
    claims = SnpClaims.from_verified(verified).to_json()
    assert claims["measurement"] == obs["measurement"]
    assert claims["report_data"] == obs["report_data"]
    assert claims["init_data"] == obs["host_data"]
    assert claims["chip_id"] == obs["chip_id"]
    policy = int(str(obs["policy"]), 16)
    assert claims["policy_debug_allowed"] is bool(policy >> 19 & 1)
    assert claims["policy_abi_major"] == (policy >> 8) & 0xFF
    tcb = bytes.fromhex(str(obs["reported_tcb"]))
    if obs["product"] == "turin":
        assert (claims["reported_tcb_fmc"], claims["reported_tcb_bootloader"]) == (tcb[0], tcb[1])
        assert (claims["reported_tcb_tee"], claims["reported_tcb_snp"]) == (tcb[2], tcb[3])
    else:
        assert (claims["reported_tcb_bootloader"], claims["reported_tcb_tee"]) == (tcb[0], tcb[1])
        assert claims["reported_tcb_snp"] == tcb[6]
        assert "reported_tcb_fmc" not in claims
    assert claims["reported_tcb_microcode"] == tcb[7]
    assert claims["platform_smt_enabled"] is bool(int(str(obs["platform_info"]), 16) & 1)


def _signed_region_flips(data: bytes, bits: list[int]) -> list[bytes]:
    out = []
    for bit in bits:
        b = bytearray(data)
        b[bit // 8] ^= 1 << (bit % 8)
        out.append(bytes(b))
    return out


def _assert_rejected(sample: SnpSample, data: bytes) -> None:
    from veritee.errors import EvidenceFormatError

    col = collateral_for(sample)
    roots = roots_for(col)
    try:
        report = SnpReport.from_bytes(data)
    except EvidenceFormatError:
        return  # a reserved bit or the version: refused by the format itself
    with pytest.raises(VerificationError):
        verify_report(report, col, roots, sample.at)


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_every_bit_of_one_signed_region_is_protected() -> None:
    sample = next(s for s in SNP_SAMPLES if s.name == "oak-genoa")
    for data in _signed_region_flips(sample.report, list(range(SIGNED_SIZE * 8))):
        _assert_rejected(sample, data)


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_sampled_bit_flips_and_signature_flips_rejected(sample: SnpSample) -> None:
    rng = random.Random(sample.name)
    bits = rng.sample(range(SIGNED_SIZE * 8), 150)
    bits += [0x2A0 * 8 + rng.randrange(144 * 8) for _ in range(20)]  # inside R and S
    for data in _signed_region_flips(sample.report, bits):
        _assert_rejected(sample, data)


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_vcek_of_another_chip_is_rejected() -> None:
    a = next(s for s in SNP_SAMPLES if s.name == "virtee-milan")
    b = next(s for s in SNP_SAMPLES if s.name == "trustee-milan-vcek")
    col = replace(collateral_for(a), vek=load_certificate(b.vek))
    with pytest.raises(VerificationError) as info:
        verify_report(SnpReport.from_bytes(a.report), col, roots_for(col), a.at)
    assert info.value.exit_code == 3


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_ask_of_another_product_is_rejected() -> None:
    assert CORPUS is not None
    sample = next(s for s in SNP_SAMPLES if s.name == "virtee-milan")
    genoa = tuple(load_certificates((CORPUS / "roots/amd/ask_ark_genoa.pem").read_bytes()))
    col = SnpCollateral(vek=load_certificate(sample.vek), intermediates=genoa)
    with pytest.raises(ChainError):
        verify_report(SnpReport.from_bytes(sample.report), col, TrustRoots.amd(genoa), sample.at)


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_milan_ask_with_genoa_ark_pinned_only_is_rejected() -> None:
    """The Milan ASK is present but only Genoa's ARK is trusted: no path."""
    assert CORPUS is not None
    sample = next(s for s in SNP_SAMPLES if s.name == "virtee-milan")
    milan = load_certificates((CORPUS / "roots/amd/ask_ark_milan.pem").read_bytes())
    genoa = load_certificates((CORPUS / "roots/amd/ask_ark_genoa.pem").read_bytes())
    col = SnpCollateral(vek=load_certificate(sample.vek), intermediates=(milan[0], *genoa))
    with pytest.raises(ChainError):
        verify_report(SnpReport.from_bytes(sample.report), col, TrustRoots.amd(genoa), sample.at)


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_outside_vek_validity_is_rejected(sample: SnpSample) -> None:
    col = collateral_for(sample)
    assert col.vek is not None
    report = SnpReport.from_bytes(sample.report)
    for when in (
        col.vek.not_valid_after_utc + dt.timedelta(seconds=1),
        col.vek.not_valid_before_utc - dt.timedelta(seconds=1),
    ):
        with pytest.raises(ExpiredError):
            verify_report(report, col, roots_for(col), when)


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_report_data_binding(sample: SnpSample) -> None:
    rd = bytes.fromhex(str(sample.observed["report_data"]))
    verify_sample(sample, expected_report_data=rd.rstrip(b"\0"))
    with pytest.raises(MismatchError):
        verify_sample(sample, expected_report_data=bytes(64 - len(rd)) + b"\x01" * len(rd))


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_without_pinned_root_nothing_verifies() -> None:
    sample = SNP_SAMPLES[0]
    col = collateral_for(sample)
    with pytest.raises(ChainError):
        verify_report(SnpReport.from_bytes(sample.report), col, TrustRoots({}), sample.at)


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_vlek_report_with_a_vcek_is_rejected() -> None:
    vlek = next(s for s in SNP_SAMPLES if s.observed["endorsement_key"] == "VLEK")
    vcek = next(s for s in SNP_SAMPLES if s.name == "trustee-milan-vcek")
    col = replace(collateral_for(vlek), vek=load_certificate(vcek.vek))
    with pytest.raises(MismatchError):
        verify_report(SnpReport.from_bytes(vlek.report), col, roots_for(col), vlek.at)


# -- simulated platform: precise negative cases ---------------------------------------------


def sim_collateral(p: SimulatedSnpPlatform, vek: x509.Certificate | None = None) -> SnpCollateral:
    return SnpCollateral(vek=vek or p.vcek, intermediates=(p.ask, p.ark))


NOW = dt.datetime(2026, 6, 1, tzinfo=UTC)


def test_simulated_report_verifies_only_with_explicit_root(sim_milan: SimulatedSnpPlatform) -> None:
    report = sim_milan.report(report_data=b"nonce")
    col = sim_collateral(sim_milan)
    v = verify_report(
        report, col, TrustRoots.amd(()).with_root(sim_milan.ark), NOW, expected_report_data=b"nonce"
    )
    assert v.simulated
    assert SnpClaims.from_verified(v).simulated is True
    with pytest.raises(ChainError):
        verify_report(report, col, TrustRoots.amd(col.intermediates), NOW)


def test_simulated_turin_report_uses_fmc_layout(sim_turin: SimulatedSnpPlatform) -> None:
    report = sim_turin.report()
    assert report.reported_tcb.fmc == 0
    parsed = SnpReport.from_bytes(report.to_bytes())
    assert parsed == report
    v = verify_report(
        parsed, sim_collateral(sim_turin), TrustRoots.amd(()).with_root(sim_turin.ark), NOW
    )
    assert v.product is Product.TURIN
    assert SnpClaims.from_verified(v).to_json()["reported_tcb_fmc"] == 0


def test_vcek_for_another_chip_same_key_is_a_mismatch(sim_milan: SimulatedSnpPlatform) -> None:
    other = sim_milan.issue_vcek(sim_milan.tcb, chip_id=b"\x42" * 64)
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    with pytest.raises(MismatchError, match="another chip"):
        verify_report(sim_milan.report(), sim_collateral(sim_milan, other), roots, NOW)


def test_masked_chip_id_skips_only_the_hwid_check(sim_milan: SimulatedSnpPlatform) -> None:
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    report = sim_milan.report(mask_chip_id=True)
    assert not any(report.chip_id)
    verify_report(report, sim_collateral(sim_milan), roots, NOW)


def test_vcek_for_another_tcb_is_a_mismatch(sim_milan: SimulatedSnpPlatform) -> None:
    newer = replace(sim_milan.tcb, microcode=sim_milan.tcb.microcode + 1)
    vcek = sim_milan.issue_vcek(newer)
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    with pytest.raises(MismatchError, match="microcode SPL"):
        verify_report(sim_milan.report(), sim_collateral(sim_milan, vcek), roots, NOW)


def test_tcb_rollback_report_needs_its_own_vcek(sim_milan: SimulatedSnpPlatform) -> None:
    """A report claiming an older TCB than the VCEK given is refused (no rollback)."""
    older = TcbVersion(bootloader=2, tee=0, snp=8, microcode=115)
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    with pytest.raises(MismatchError):
        verify_report(sim_milan.report(tcb=older), sim_collateral(sim_milan), roots, NOW)
    older_vcek = sim_milan.issue_vcek(older)
    v = verify_report(
        sim_milan.report(tcb=older), sim_collateral(sim_milan, older_vcek), roots, NOW
    )
    assert v.report.reported_tcb == older


def test_report_signed_by_another_key_is_refused(sim_milan: SimulatedSnpPlatform) -> None:
    rogue = ec.generate_private_key(ec.SECP384R1())
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    with pytest.raises(SignatureError):
        verify_report(sim_milan.report(signing_key=rogue), sim_collateral(sim_milan), roots, NOW)


def test_product_name_mismatch_is_refused(sim_milan: SimulatedSnpPlatform) -> None:
    vcek = sim_milan.issue_vcek(sim_milan.tcb, product_name="Genoa")
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    with pytest.raises(MismatchError, match="product name"):
        verify_report(sim_milan.report(), sim_collateral(sim_milan, vcek), roots, NOW)


def _crl(
    p: SimulatedSnpPlatform,
    revoked: list[int],
    next_update: dt.datetime,
    signer: object | None = None,
) -> x509.CertificateRevocationList:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(p.ark.subject)
        .last_update(dt.datetime(2025, 1, 1, tzinfo=UTC))
        .next_update(next_update)
    )
    for serial in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(dt.datetime(2025, 1, 1, tzinfo=UTC))
            .build()
        )
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    return b.sign(signer or p.ark_key, hashes.SHA384(), rsa_padding=pss)  # type: ignore[arg-type]


def test_crl_revoking_the_ask_is_honoured(sim_milan: SimulatedSnpPlatform) -> None:
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    later = dt.datetime(2027, 1, 1, tzinfo=UTC)
    ok = _crl(sim_milan, [12345], later)
    verify_report(sim_milan.report(), replace(sim_collateral(sim_milan), crls=(ok,)), roots, NOW)
    revoked = _crl(sim_milan, [sim_milan.ask.serial_number], later)
    with pytest.raises(RevokedError):
        verify_report(
            sim_milan.report(), replace(sim_collateral(sim_milan), crls=(revoked,)), roots, NOW
        )


def test_stale_or_forged_crl_fails_closed(sim_milan: SimulatedSnpPlatform) -> None:
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    stale = _crl(sim_milan, [], dt.datetime(2025, 2, 1, tzinfo=UTC))
    with pytest.raises(ExpiredError, match="stale"):
        verify_report(
            sim_milan.report(), replace(sim_collateral(sim_milan), crls=(stale,)), roots, NOW
        )
    forged = _crl(sim_milan, [], dt.datetime(2027, 1, 1, tzinfo=UTC), signer=sim_milan.ask_key)
    with pytest.raises(ChainError, match="CRL signature"):
        verify_report(
            sim_milan.report(), replace(sim_collateral(sim_milan), crls=(forged,)), roots, NOW
        )


def test_expired_chain_is_refused(sim_milan: SimulatedSnpPlatform) -> None:
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    short = sim_milan.issue_vcek(sim_milan.tcb, validity=dt.timedelta(days=10))
    with pytest.raises(ExpiredError, match="expired"):
        verify_report(sim_milan.report(), sim_collateral(sim_milan, short), roots, NOW)


def test_naive_time_is_refused(sim_milan: SimulatedSnpPlatform) -> None:
    from veritee.errors import ConfigError

    roots = TrustRoots.amd(()).with_root(sim_milan.ark)
    with pytest.raises(ConfigError):
        verify_report(sim_milan.report(), sim_collateral(sim_milan), roots, dt.datetime(2026, 1, 1))


# -- SNP reports carried inside Azure CVM HCL reports (the manifest's azure-snp-vtpm samples) --


def _azure_cases() -> list[tuple[str, bytes, bytes, dict[str, object]]]:
    import json

    if CORPUS is None:
        return []
    base = CORPUS / "azure-snp-vtpm"
    raw = base / "trustee-milan-raw"
    genoa = base / "trustee-genoa-evidence"
    ev = json.loads((genoa / "evidence-genoa.json").read_text())
    return [
        (
            "milan-raw",
            (raw / "hcl-report.bin").read_bytes(),
            (raw / "vcek.pem").read_bytes(),
            json.loads((raw / "expected.json").read_text())["observed_by_collector"],
        ),
        (
            "genoa-evidence",
            bytes(ev["report"]),
            (genoa / "vcek-genoa.pem").read_bytes(),
            json.loads((genoa / "expected.json").read_text())["observed_by_collector"],
        ),
    ]


@pytest.mark.parametrize("case", _azure_cases(), ids=lambda c: c[0])
def test_snp_report_inside_azure_hcl_report_verifies(
    case: tuple[str, bytes, bytes, dict[str, object]],
) -> None:
    assert CORPUS is not None
    _, hcl, vcek_pem, obs = case
    assert hcl[:4] == b"HCLA"
    report = SnpReport.from_bytes(hcl[32 : 32 + 1184])  # the HCL header is 32 bytes
    product = str(obs["product"])
    chain = tuple(load_certificates((CORPUS / f"roots/amd/ask_ark_{product}.pem").read_bytes()))
    vcek = load_certificates(vcek_pem)[0]
    start = dt.datetime.fromisoformat(str(obs["vcek_validity"][0]))  # type: ignore[index]
    v = verify_report(
        report,
        SnpCollateral(vek=vcek, intermediates=chain),
        TrustRoots.amd(chain),
        start + dt.timedelta(days=1),
    )
    assert v.product.value.lower() == product
    assert report.version == obs["snp_v"]
    assert report.chip_id[:8].hex() == obs["chip"]
    tampered = bytearray(report.to_bytes())
    tampered[0x50] ^= 1
    with pytest.raises(SignatureError):
        verify_report(
            SnpReport.from_bytes(bytes(tampered)),
            SnpCollateral(vek=vcek, intermediates=chain),
            TrustRoots.amd(chain),
            start + dt.timedelta(days=1),
        )


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_corrupted_vek_in_the_evidence_is_a_format_or_verification_error(
    sim_milan: SimulatedSnpPlatform, data: st.DataObject
) -> None:
    """Byte damage anywhere in a carried VCEK: a typed error, never a bare ValueError."""
    from veritee.errors import CollateralUnavailableError, EvidenceFormatError
    from veritee.tee.snp.certtable import GUID_VCEK, CertEntry, CertTable
    from veritee.tee.snp.gather import SnpSources, gather_collateral

    der = bytearray(sim_milan.vcek_der())
    # Distinct positions, each changed by a non-zero amount: the damage never cancels out.
    positions = data.draw(st.lists(st.integers(0, len(der) - 1), min_size=1, max_size=4,
                                   unique=True))
    for pos in positions:
        der[pos] = (der[pos] + data.draw(st.integers(1, 255))) % 256
    report = sim_milan.report()
    table = CertTable((CertEntry(GUID_VCEK, bytes(der)),))
    roots = TrustRoots.amd(()).with_root(sim_milan.ark)

    def gather_and_verify() -> None:
        col = gather_collateral(report, SnpSources(cert_table=table))
        col = replace(col, intermediates=(sim_milan.ask, sim_milan.ark))
        verify_report(report, col, roots, NOW)

    with pytest.raises((EvidenceFormatError, VerificationError, CollateralUnavailableError)):
        gather_and_verify()
