"""X.509 chain building against pinned roots, CRLs, vendor OID tables."""

from veritee.pki.certs import fingerprint, load_certificates, load_crls
from veritee.pki.chain import Chain, build_chain, verify_issued_by
from veritee.pki.crl import check_not_revoked

__all__ = [
    "Chain",
    "build_chain",
    "check_not_revoked",
    "fingerprint",
    "load_certificates",
    "load_crls",
    "verify_issued_by",
]
