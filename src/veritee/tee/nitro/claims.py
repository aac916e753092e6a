"""AWS Nitro Enclaves claims (``tee`` = ``nitro``).

Trustee has no Nitro verifier, so the names follow the attestation document's
own fields: ``pcr0``..``pcr8`` (always present, null when the document lacks
one) plus any further PCR the document carries, ``module_id``, ``digest``,
``timestamp`` (ms since the epoch), ``user_data``/``nonce``/``public_key`` (hex
or null) and ``debug`` (PCR0 all zero: the enclave runs in debug mode, where
AWS still signs the document but its memory is readable by the parent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from veritee.tee.base import ClaimValue
from veritee.tee.nitro.verify import VerifiedNitroDocument

ALWAYS_PRESENT_PCRS = range(9)


@dataclass(frozen=True)
class NitroClaims:
    module_id: str
    digest: str
    timestamp: int
    pcrs: Mapping[int, bytes]
    user_data: bytes | None
    nonce: bytes | None
    public_key: bytes | None
    debug: bool
    # veritee additions
    certificate_not_after: str
    simulated: bool

    @property
    def tee(self) -> str:
        return "nitro"

    @classmethod
    def from_verified(cls, v: VerifiedNitroDocument) -> NitroClaims:
        doc = v.attestation
        pcr0 = doc.pcr(0)
        return cls(
            module_id=doc.module_id,
            digest=doc.digest,
            timestamp=doc.timestamp,
            pcrs=dict(sorted(doc.pcrs.items())),
            user_data=doc.user_data,
            nonce=doc.nonce,
            public_key=doc.public_key,
            debug=pcr0 is not None and not any(pcr0),
            certificate_not_after=v.chain.leaf.not_valid_after_utc.isoformat(),
            simulated=v.simulated,
        )

    def to_json(self) -> dict[str, ClaimValue]:
        out: dict[str, ClaimValue] = {}
        for index in sorted({*ALWAYS_PRESENT_PCRS, *self.pcrs}):
            value = self.pcrs.get(index)
            out[f"pcr{index}"] = value.hex() if value is not None else None
        out["module_id"] = self.module_id
        out["digest"] = self.digest
        out["timestamp"] = self.timestamp
        for name, raw in (
            ("user_data", self.user_data),
            ("nonce", self.nonce),
            ("public_key", self.public_key),
        ):
            out[name] = raw.hex() if raw is not None else None
        out["debug"] = self.debug
        out["certificate_not_after"] = self.certificate_not_after
        out["simulated"] = self.simulated
        return out
