"""Verify Azure CVM evidence: hardware report, runtime-claims binding, vTPM quote.

Pure: takes the parsed evidence, gathered collateral, trust roots and an explicit
``now``; returns a ``Verified…`` type or raises a
:class:`~veritee.errors.VerificationError` subclass. The chain of trust:

1. the hardware report (SEV-SNP report, or the TD quote made from the HCL's TDREPORT)
   verifies with the existing SNP / DCAP verifiers against the vendor roots;
2. its report data is H(runtime claims) zero-padded (H per the HCL hash type), so the
   runtime claims JSON is as the paravisor wrote it; for SNP the report must come from
   VMPL 0, where the paravisor runs (the guest OS runs at a lower VMPL and could ask
   for reports over runtime claims of its choosing);
3. the vTPM attestation key is the ``HCLAkPub`` JWK of those runtime claims, and the
   vTPM quote must be signed by it (RSASSA-PKCS1-v1_5/SHA-256, as the paravisor's AK);
4. the quote's extraData must equal the expected nonce exactly (the KBS puts its
   runtime-data digest there: 48 bytes for SHA-384), and the PCR values must match
   the quote's PCR digest. Only quoted PCRs become claims.

The quote's signature is checked over the raw message bytes before the message is
parsed, so a bit flip anywhere in the message is a signature error.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.errors import EvidenceFormatError, MismatchError, VerificationError
from veritee.tee.azure.evidence import AzureSnpEvidence, AzureTdxEvidence, VtpmQuote
from veritee.tee.azure.hcl import HclReport, RuntimeClaims
from veritee.tee.dcap.verify import DcapCollateral, IntelRoots, VerifiedQuoteSignature
from veritee.tee.snp.verify import SnpCollateral, TrustRoots, VerifiedSnpReport, verify_report
from veritee.tee.tdx.quote import TdReport, TdxQuote
from veritee.tee.tdx.verify import VerifiedTdxQuote, finish_tdx, verify_tdx_signatures
from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.structures import Attest, TpmAlg, TpmtSignature
from veritee.tee.tpm.verify import (
    AttestationKey,
    VerifiedQuote,
    verify_quote,
    verify_signature,
)

HCL_VMPL = 0  # the paravisor runs at VMPL 0; only its reports bind the vTPM
MIN_AK_BITS = 2048
# The paravisor's AK signs quotes with RSASSA-PKCS1-v1_5 over SHA-256.
VTPM_SIGNATURE_SCHEME = (TpmAlg.RSASSA, TpmAlg.SHA256)


# -- shared steps ------------------------------------------------------------------------------


def check_runtime_binding(hcl: HclReport, report_data: bytes, what: str) -> None:
    """``report_data`` (64 bytes) must be H(runtime claims) zero-padded, H per the HCL."""
    if not hmac.compare_digest(hcl.expected_report_data(), report_data):
        raise MismatchError(
            f"{what} does not bind the HCL runtime claims: its report data is not "
            f"{hcl.hash_type.name}(runtime claims) zero-padded",
            hint="the runtime claims (and the vTPM key they name) were altered, or belong to "
            "another report",
        )


def attestation_key(runtime: RuntimeClaims) -> AttestationKey:
    """The vTPM AK: the ``HCLAkPub`` RSA JWK of the (already bound) runtime claims."""
    jwk = runtime.ak_pub
    try:
        key = rsa.RSAPublicNumbers(
            int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")
        ).public_key()
    except ValueError as exc:
        raise EvidenceFormatError(f"HCLAkPub is not a valid RSA key ({exc})") from None
    if key.key_size < MIN_AK_BITS:
        raise VerificationError(
            f"HCLAkPub is a {key.key_size}-bit RSA key; at least {MIN_AK_BITS} bits are required"
        )
    return AttestationKey(key)


def verify_vtpm_quote(
    quote: VtpmQuote, ak: AttestationKey, *, expected_nonce: bytes | None
) -> VerifiedQuote:
    """The vTPM quote: AK signature, TPM-generated quote, extraData == ``expected_nonce``
    (None: not checked; the result says so), SHA-256 PCR values matching its digest."""
    alg, hash_alg = VTPM_SIGNATURE_SCHEME
    signature = TpmtSignature(alg, hash_alg, signature=quote.signature)
    verify_signature(quote.message, signature, ak)  # before parsing anything it signs
    attest = Attest.from_bytes(quote.message)
    info = attest.quote
    if info is not None and {s.hash_alg for s in info.pcr_select.selections} - {TpmAlg.SHA256}:
        raise EvidenceFormatError(
            "vTPM quote selects a PCR bank other than SHA-256, but the evidence carries "
            "SHA-256 values only"
        )
    pcrs = PcrBanks.from_mapping({TpmAlg.SHA256: dict(enumerate(quote.pcrs))})
    return verify_quote(
        attest, signature, ak, pcrs, expected_nonce=expected_nonce, message=quote.message
    )


# -- az-snp-vtpm -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedAzureSnp:
    evidence: AzureSnpEvidence
    snp: VerifiedSnpReport
    runtime: RuntimeClaims
    ak: AttestationKey
    vtpm: VerifiedQuote

    @property
    def hcl(self) -> HclReport:
        return self.evidence.hcl

    @property
    def simulated(self) -> bool:
        return self.snp.simulated


def verify_az_snp(
    evidence: AzureSnpEvidence,
    collateral: SnpCollateral,
    roots: TrustRoots,
    now: dt.datetime,
    *,
    expected_nonce: bytes | None,
) -> VerifiedAzureSnp:
    """Verify ``az-snp-vtpm`` evidence (collateral: the VCEK and the AMD chain)."""
    report = evidence.hcl.snp_report()
    snp = verify_report(report, collateral, roots, now)
    if snp.report.vmpl != HCL_VMPL:
        raise MismatchError(
            f"the SNP report was requested at VMPL {snp.report.vmpl}, not VMPL {HCL_VMPL} "
            "where the paravisor runs",
            hint="a report from a less privileged VMPL can carry any runtime claims; only the "
            "paravisor's report binds the vTPM",
        )
    check_runtime_binding(evidence.hcl, snp.report.report_data, "the SNP report")
    runtime = evidence.hcl.runtime_claims()
    ak = attestation_key(runtime)
    vtpm = verify_vtpm_quote(evidence.quote, ak, expected_nonce=expected_nonce)
    return VerifiedAzureSnp(evidence, snp, runtime, ak, vtpm)


# -- az-tdx-vtpm -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AzureTdxSignatures:
    """Everything of ``az-tdx-vtpm`` evidence that needs no DCAP collateral, verified."""

    evidence: AzureTdxEvidence
    td_quote: TdxQuote
    dcap: VerifiedQuoteSignature
    runtime: RuntimeClaims
    ak: AttestationKey
    vtpm: VerifiedQuote


@dataclass(frozen=True)
class VerifiedAzureTdx:
    evidence: AzureTdxEvidence
    tdx: VerifiedTdxQuote
    runtime: RuntimeClaims
    ak: AttestationKey
    vtpm: VerifiedQuote

    @property
    def hcl(self) -> HclReport:
        return self.evidence.hcl

    @property
    def simulated(self) -> bool:
        return self.tdx.simulated


_TD_FIELDS = (
    "tee_tcb_svn", "mr_seam", "mr_signer_seam", "seam_attributes", "td_attributes", "xfam",
    "mr_td", "mr_config_id", "mr_owner", "mr_owner_config", "rtmr0", "rtmr1", "rtmr2", "rtmr3",
    "report_data", "tee_tcb_svn2", "mr_servicetd",
)


def _check_same_td(quoted: TdReport, hcl_body: TdReport) -> None:
    differ = [f for f in _TD_FIELDS if getattr(quoted, f) != getattr(hcl_body, f)]
    if differ:
        raise MismatchError(
            "the TD quote was not made from the HCL report's TDREPORT (they differ in "
            f"{', '.join(differ)})",
            hint="the TD quote belongs to another TD or another moment",
        )


def verify_az_tdx_signatures(
    evidence: AzureTdxEvidence,
    roots: IntelRoots,
    now: dt.datetime,
    *,
    expected_nonce: bytes | None,
) -> AzureTdxSignatures:
    """Stage 1: TD quote signatures and PCK chain, runtime binding, TDREPORT = quote body,
    vTPM quote. Tampering is refused here, before any collateral is looked up."""
    td_quote = TdxQuote.from_bytes(evidence.td_quote)
    tdreport = evidence.hcl.td_report()
    dcap = verify_tdx_signatures(td_quote, roots, now)
    check_runtime_binding(evidence.hcl, td_quote.report.report_data, "the TD quote")
    _check_same_td(td_quote.report, tdreport.body(td15=td_quote.report.is_td15))
    runtime = evidence.hcl.runtime_claims()
    ak = attestation_key(runtime)
    vtpm = verify_vtpm_quote(evidence.quote, ak, expected_nonce=expected_nonce)
    return AzureTdxSignatures(evidence, td_quote, dcap, runtime, ak, vtpm)


def finish_az_tdx(
    stage: AzureTdxSignatures,
    collateral: DcapCollateral,
    roots: IntelRoots,
    now: dt.datetime,
) -> VerifiedAzureTdx:
    """Stage 2: DCAP collateral (TCB info, QE identity, CRLs) for the TD quote."""
    tdx = finish_tdx(stage.td_quote, stage.dcap, collateral, roots, now)
    return VerifiedAzureTdx(stage.evidence, tdx, stage.runtime, stage.ak, stage.vtpm)
