"""Gather the collateral of ``az-snp-vtpm`` evidence (the I/O happens here, before verifying).

The VCEK travels in the evidence; the AMD chain (ASK, ARK) comes from the caller's
collateral (a directory, a service's preloaded pool, AMD KDS when fetching is allowed)
or from after the VCEK in a v0 PEM. A carried ARK anchors nothing by itself: roots
are pinned by fingerprint, or chosen explicitly (a simulator's, a lab's).
TDX collateral is DCAP collateral: :func:`veritee.tee.dcap.gather.gather_collateral`.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import Certificate

from veritee.collateral import Fetcher
from veritee.pki.certs import load_certificates
from veritee.tee.azure.evidence import AzureSnpEvidence
from veritee.tee.snp.certtable import GUID_VCEK, GUID_VLEK, CertEntry, CertTable
from veritee.tee.snp.gather import CertPool, SnpSources, gather_collateral
from veritee.tee.snp.report import SigningKey
from veritee.tee.snp.verify import SnpCollateral


def carried_certificates(evidence: AzureSnpEvidence) -> tuple[Certificate, tuple[Certificate, ...]]:
    """The VCEK the evidence carries, and the certificates after it (a v0 PEM may hold the
    ASK and ARK too, as Trustee's own test ``vcek.pem`` does)."""
    certs = load_certificates(evidence.vcek, what="the evidence's vcek")
    return certs[0], tuple(certs[1:])


def gather_snp_collateral(
    evidence: AzureSnpEvidence,
    *,
    vek_file: Path | None = None,
    directories: tuple[Path, ...] = (),
    fetcher: Fetcher | None = None,
    kds_base: str | None = None,
    preloaded: CertPool | None = None,
) -> SnpCollateral:
    """VCEK (``vek_file`` overrides the carried one) and AMD chain for the HCL's SNP report."""
    report = evidence.hcl.snp_report()
    vek, rest = carried_certificates(evidence)
    guid = GUID_VLEK if report.key_info.signing_key is SigningKey.VLEK else GUID_VCEK
    table = CertTable((CertEntry(guid, vek.public_bytes(Encoding.DER)),))
    pool = CertPool(
        (preloaded.certs if preloaded is not None else ()) + rest,
        preloaded.crls if preloaded is not None else (),
    )
    return gather_collateral(
        report,
        SnpSources(
            vek_file=vek_file,
            directories=directories,
            cert_table=table,
            fetcher=fetcher,
            kds_base=kds_base,
            preloaded=pool,
        ),
    )
