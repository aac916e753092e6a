"""Per-TEE evidence verification for the KBS: parse the guest's JSON, gather, verify, claim.

Each verifier returns :class:`VerifiedEvidence` with Trustee-named claims and
checks that the evidence's report data binds this session's runtime data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.x509 import Certificate
from cryptography.x509.oid import NameOID

from veritee.collateral import Fetcher
from veritee.errors import RequestError
from veritee.jcs import canonicalize
from veritee.pki.certs import common_name
from veritee.tee.base import ClaimValue
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.snp.gather import CertPool, SnpSources, gather_collateral
from veritee.tee.snp.kbs import parse_evidence as parse_snp_evidence
from veritee.tee.snp.sim import SIMULATOR_ORG
from veritee.tee.snp.verify import TrustRoots, verify_report


@dataclass(frozen=True)
class VerifyContext:
    now: dt.datetime
    collateral: CertPool
    fetcher: Fetcher | None = None
    trust_simulator: bool = False


@dataclass(frozen=True)
class VerifiedEvidence:
    tee: str
    claims: Mapping[str, ClaimValue]
    report_data: bytes
    init_data: bytes  # the hardware field that carries the init-data digest
    simulated: bool
    evidence_digest: str  # SHA-384 of the hardware evidence bytes (e.g. the SNP report)


EvidenceVerifier = Callable[[object, bytes, VerifyContext], VerifiedEvidence]


def evidence_digest(evidence: object) -> str:
    """SHA-384 of the canonical JSON of the evidence: what the audit log records."""
    try:
        return hashlib.sha384(canonicalize(evidence)).hexdigest()
    except (TypeError, ValueError):
        raise RequestError("evidence is not valid JSON data") from None


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


VERIFIERS: dict[str, EvidenceVerifier] = {"snp": verify_snp}

# Size of the hardware field that carries the init-data digest, per TEE.
INIT_DATA_FIELD: dict[str, int] = {"snp": 32, "tdx": 48, "sgx": 64, "tpm": 32}


def supported_tees() -> list[str]:
    return sorted(VERIFIERS)
