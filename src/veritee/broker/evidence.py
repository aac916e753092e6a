"""Per-TEE evidence verification for the KBS: parse the guest's JSON, gather, verify, claim.

Each verifier returns :class:`VerifiedEvidence` with Trustee-named claims and
checks that the evidence's report data binds this session's runtime data.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.x509 import Certificate
from cryptography.x509.oid import NameOID

from veritee.collateral import Fetcher
from veritee.errors import EvidenceFormatError
from veritee.pki.certs import common_name, load_certificates
from veritee.tee.azure.claims import AzureSnpClaims, AzureTdxClaims
from veritee.tee.azure.evidence import AzureSnpEvidence, AzureTdxEvidence
from veritee.tee.azure.gather import gather_snp_collateral
from veritee.tee.azure.verify import finish_az_tdx, verify_az_snp, verify_az_tdx_signatures
from veritee.tee.base import ClaimValue
from veritee.tee.dcap.evidence import DcapEvidence, decode_evidence
from veritee.tee.dcap.gather import DcapSources
from veritee.tee.dcap.gather import gather_collateral as gather_dcap
from veritee.tee.dcap.quote import Quote
from veritee.tee.dcap.sim import DCAP_SIMULATOR_ORG
from veritee.tee.dcap.verify import IntelRoots
from veritee.tee.nvidia.claims import NvidiaClaims
from veritee.tee.nvidia.evidence import decode_device_evidence
from veritee.tee.nvidia.report import NONCE_SIZE as NVIDIA_NONCE_SIZE
from veritee.tee.nvidia.report import NvidiaReport
from veritee.tee.nvidia.sim import SIMULATOR_ORG as NVIDIA_SIMULATOR_ORG
from veritee.tee.nvidia.verify import NvidiaRoots
from veritee.tee.nvidia.verify import verify_report as verify_nvidia_report
from veritee.tee.sgx.claims import SgxClaims
from veritee.tee.sgx.quote import SgxQuote
from veritee.tee.sgx.verify import finish_sgx, verify_sgx_signatures
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.gather import CertPool, SnpSources, gather_collateral
from veritee.tee.snp.kbs import parse_evidence as parse_snp_evidence
from veritee.tee.snp.sim import SIMULATOR_ORG
from veritee.tee.snp.verify import TrustRoots, verify_report
from veritee.tee.tdx.ccel import CcelLog
from veritee.tee.tdx.claims import TdxClaims
from veritee.tee.tdx.quote import TdxQuote
from veritee.tee.tdx.verify import finish_tdx, verify_tdx_signatures
from veritee.tee.tpm.kbs import TpmEvidence, init_data_pcr
from veritee.tee.tpm.kbs import verify_evidence as verify_tpm_evidence


@dataclass(frozen=True)
class VerifyContext:
    now: dt.datetime
    collateral: CertPool
    fetcher: Fetcher | None = None
    trust_simulator: bool = False
    collateral_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True)
class VerifiedEvidence:
    tee: str
    claims: Mapping[str, ClaimValue]
    report_data: bytes
    init_data: bytes  # the hardware field that carries the init-data digest
    simulated: bool
    evidence_digest: str  # SHA-384 of the hardware evidence bytes (e.g. the SNP report)


EvidenceVerifier = Callable[[object, bytes, VerifyContext], VerifiedEvidence]


@functools.lru_cache(maxsize=256)
def _is_simulator_root(cert: Certificate) -> bool:
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return (
        cert.subject == cert.issuer
        and bool(org)
        and org[0].value == SIMULATOR_ORG
        and common_name(cert.subject).startswith("ARK-")
    )


def verify_snp(evidence: object, digest: bytes, ctx: VerifyContext) -> VerifiedEvidence:
    report, table = parse_snp_evidence(evidence)
    sources = SnpSources(cert_table=table, fetcher=ctx.fetcher, preloaded=ctx.collateral)
    gathered = gather_collateral(report, sources)
    roots = TrustRoots.amd(gathered.intermediates)
    if ctx.trust_simulator:
        for cert in gathered.intermediates:
            if _is_simulator_root(cert):
                roots = roots.with_root(cert)
    verified = verify_report(report, gathered, roots, ctx.now, expected_report_data=digest)
    claims = SnpClaims.from_verified(verified)
    return VerifiedEvidence(
        tee="snp",
        claims=claims.to_json(),
        report_data=report.report_data,
        init_data=report.host_data,
        simulated=verified.simulated,
        evidence_digest=hashlib.sha384(report.to_bytes()).hexdigest(),
    )


def _dcap_evidence(evidence: object) -> DcapEvidence:
    if not isinstance(evidence, Mapping):
        raise EvidenceFormatError("DCAP evidence must be a JSON object with a base64 quote")
    try:
        text = json.dumps(evidence).encode()
    except (TypeError, ValueError):
        raise EvidenceFormatError("DCAP evidence is not JSON data") from None
    return decode_evidence(text)


def _intel_roots(quote: Quote, ctx: VerifyContext) -> IntelRoots:
    cert_data = quote.signature_data.qe.certification_data.data
    candidates = (
        load_certificates(cert_data.rstrip(b"\0"), what="PCK certificate chain")
        if b"CERTIFICATE" in cert_data
        else []
    )
    roots = IntelRoots.intel(candidates)
    if ctx.trust_simulator:
        for cert in candidates:
            org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
            if cert.subject == cert.issuer and org and org[0].value == DCAP_SIMULATOR_ORG:
                roots = roots.with_root(cert)
    return roots


def _dcap_sources(ctx: VerifyContext) -> DcapSources:
    return DcapSources(directories=ctx.collateral_dirs, fetcher=ctx.fetcher)


def verify_tdx(evidence: object, digest: bytes, ctx: VerifyContext) -> VerifiedEvidence:
    ev = _dcap_evidence(evidence)
    parsed = TdxQuote.from_bytes(ev.quote)
    log = CcelLog.from_bytes(ev.event_log) if ev.event_log else None
    roots = _intel_roots(parsed.quote, ctx)
    # Signatures, PCK chain and report data first: tampering is refused before any lookup.
    verified = verify_tdx_signatures(
        parsed, roots, ctx.now, expected_report_data=digest, event_log=log
    )
    gathered = gather_dcap(verified, _dcap_sources(ctx))
    result = finish_tdx(parsed, verified, gathered, roots, ctx.now, event_log=log)
    return VerifiedEvidence(
        tee="tdx",
        claims=TdxClaims.from_verified(result).to_json(),
        report_data=parsed.report.report_data,
        init_data=parsed.report.mr_config_id,
        simulated=result.simulated,
        evidence_digest=hashlib.sha384(ev.quote).hexdigest(),
    )


def verify_sgx(evidence: object, digest: bytes, ctx: VerifyContext) -> VerifiedEvidence:
    ev = _dcap_evidence(evidence)
    parsed = SgxQuote.from_bytes(ev.quote)
    roots = _intel_roots(parsed.quote, ctx)
    verified = verify_sgx_signatures(parsed, roots, ctx.now, expected_report_data=digest)
    gathered = gather_dcap(verified, _dcap_sources(ctx))
    result = finish_sgx(parsed, verified, gathered, roots, ctx.now)
    return VerifiedEvidence(
        tee="sgx",
        claims=SgxClaims.from_verified(result).to_json(),
        report_data=parsed.report.report_data,
        init_data=parsed.report.config_id,
        simulated=result.simulated,
        evidence_digest=hashlib.sha384(ev.quote).hexdigest(),
    )


def verify_tpm(evidence: object, digest: bytes, ctx: VerifyContext) -> VerifiedEvidence:
    """KBS ``tpm`` evidence: the quote's extraData is the digest truncated to 32 bytes.

    There is no vendor root here: whether the AK belongs to a trusted TPM is for
    the attestation policy to judge (reference value ``trusted_aks``).
    """
    if not isinstance(evidence, Mapping):
        raise EvidenceFormatError("tpm evidence must be a JSON object")
    parsed = TpmEvidence.from_json(evidence)
    claims = verify_tpm_evidence(parsed, expected_report_data=digest)
    return VerifiedEvidence(
        tee="tpm",
        claims=claims.to_json(),
        report_data=claims.report_data,
        init_data=claims.init_data or b"",
        simulated=False,
        evidence_digest=hashlib.sha384(parsed.message).hexdigest(),
    )


def _azure_json(evidence: object, tee: str) -> Mapping[str, object]:
    if not isinstance(evidence, Mapping):
        raise EvidenceFormatError(f"{tee} evidence must be a JSON object")
    return evidence


def verify_az_snp_vtpm(evidence: object, digest: bytes, ctx: VerifyContext) -> VerifiedEvidence:
    """KBS ``az-snp-vtpm``: the vTPM quote's extraData is the runtime-data digest itself
    (48 bytes for SHA-384), as the CoCo Azure attester puts it; init-data is in PCR 8."""
    ev = AzureSnpEvidence.from_json(_azure_json(evidence, "az-snp-vtpm"))
    gathered = gather_snp_collateral(ev, fetcher=ctx.fetcher, preloaded=ctx.collateral)
    roots = TrustRoots.amd(gathered.intermediates)
    if ctx.trust_simulator:
        for cert in gathered.intermediates:
            if _is_simulator_root(cert):
                roots = roots.with_root(cert)
    verified = verify_az_snp(ev, gathered, roots, ctx.now, expected_nonce=digest)
    claims = AzureSnpClaims.from_verified(verified)
    return VerifiedEvidence(
        tee="az-snp-vtpm",
        claims=claims.to_json(),
        report_data=claims.tpm.nonce,
        init_data=claims.tpm.init_data or b"",
        simulated=verified.simulated,
        evidence_digest=hashlib.sha384(ev.hcl.to_bytes() + ev.quote.message).hexdigest(),
    )


def verify_az_tdx_vtpm(evidence: object, digest: bytes, ctx: VerifyContext) -> VerifiedEvidence:
    """KBS ``az-tdx-vtpm``: as ``az-snp-vtpm``, with a TD quote made from the HCL's TDREPORT."""
    ev = AzureTdxEvidence.from_json(_azure_json(evidence, "az-tdx-vtpm"))
    roots = _intel_roots(TdxQuote.from_bytes(ev.td_quote).quote, ctx)
    # Signatures, bindings and the vTPM quote first: tampering is refused before any lookup.
    stage = verify_az_tdx_signatures(ev, roots, ctx.now, expected_nonce=digest)
    gathered = gather_dcap(stage.dcap, _dcap_sources(ctx))
    verified = finish_az_tdx(stage, gathered, roots, ctx.now)
    claims = AzureTdxClaims.from_verified(verified)
    return VerifiedEvidence(
        tee="az-tdx-vtpm",
        claims=claims.to_json(),
        report_data=claims.tpm.nonce,
        init_data=claims.tpm.init_data or b"",
        simulated=verified.simulated,
        evidence_digest=hashlib.sha384(ev.hcl.to_bytes() + ev.quote.message).hexdigest(),
    )


VERIFIERS: dict[str, EvidenceVerifier] = {
    "snp": verify_snp,
    "tdx": verify_tdx,
    "sgx": verify_sgx,
    "tpm": verify_tpm,
    "az-snp-vtpm": verify_az_snp_vtpm,
    "az-tdx-vtpm": verify_az_tdx_vtpm,
}


# -- devices (additional evidence): GPUs and switches --------------------------------------

DeviceVerifier = Callable[[object, bytes, VerifyContext], list[VerifiedEvidence]]
MAX_DEVICES = 16


def verify_nvidia(evidence: object, digest: bytes, ctx: VerifyContext) -> list[VerifiedEvidence]:
    """NVIDIA GPUs/NVSwitches; each SPDM nonce must be the device digest (first 32 bytes)."""
    try:
        text = json.dumps(evidence).encode()
    except (TypeError, ValueError):
        raise EvidenceFormatError("nvidia evidence is not JSON data") from None
    devices = decode_device_evidence(text)
    if len(devices) > MAX_DEVICES:
        raise EvidenceFormatError(f"more than {MAX_DEVICES} devices in one evidence")
    nonce = digest[:NVIDIA_NONCE_SIZE].ljust(NVIDIA_NONCE_SIZE, b"\0")
    out = []
    for index, dev in enumerate(devices):
        if dev.cert_chain is None:
            raise EvidenceFormatError(f"nvidia device {index}: no certificate chain")
        chain = load_certificates(dev.cert_chain, what=f"nvidia device {index} chain")
        roots = NvidiaRoots.device()
        if ctx.trust_simulator:
            for cert in chain:
                org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
                if cert.subject == cert.issuer and org and org[0].value == NVIDIA_SIMULATOR_ORG:
                    roots = roots.with_root(cert)
        report = NvidiaReport.from_bytes(dev.report)
        verified = verify_nvidia_report(
            report, chain, roots, ctx.now, expected_nonce=nonce, stated_arch=dev.arch
        )
        out.append(
            VerifiedEvidence(
                tee="nvidia",
                claims=NvidiaClaims.from_verified(verified, uuid=dev.uuid).to_json(),
                report_data=nonce,
                init_data=b"",
                simulated=verified.simulated,
                evidence_digest=hashlib.sha384(dev.report).hexdigest(),
            )
        )
    return out


DEVICE_VERIFIERS: dict[str, DeviceVerifier] = {"nvidia": verify_nvidia}


def expected_init_data_field(tee: str, digest: bytes, field_size: int) -> bytes:
    """What the hardware field must hold for init-data with this digest.

    TEEs with a launch-time field carry the digest itself (zero-padded or
    truncated); a TPM, and an Azure CVM's vTPM, extend it once into PCR 8.
    """
    if tee in ("tpm", "az-snp-vtpm", "az-tdx-vtpm"):
        return init_data_pcr(digest)
    return digest[:field_size].ljust(field_size, b"\0")


# Size of the hardware field that carries the init-data digest, per TEE.
INIT_DATA_FIELD: dict[str, int] = {
    "snp": 32, "tdx": 48, "sgx": 64, "tpm": 32, "az-snp-vtpm": 32, "az-tdx-vtpm": 32,
}


def supported_tees() -> list[str]:
    return sorted(VERIFIERS)
