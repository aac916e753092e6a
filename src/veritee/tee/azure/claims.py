"""Azure CVM claims, named as Trustee names them (PROTOCOL.md section 4).

``az-snp-vtpm``: the SNP claims, ``az-tdx-vtpm``: the TDX claims, each plus

* ``tpm``: ``pcr00`` .. ``pcr23`` (the quoted SHA-256 PCRs, lowercase hex) and
  ``init_data`` (PCR 8, where the guest measures its init-data);
* ``report_data``: the vTPM quote's extraData (the runtime data the guest bound) and
  ``init_data``: PCR 8 — as Trustee's Azure verifiers overwrite these two top-level
  claims. The hardware report's own values stay available: SNP ``REPORT_DATA`` and
  ``HOST_DATA`` as ``hardware_report_data`` and ``host_data``; the TDX ones under
  ``quote.body``.

veritee additions: ``tpm.ak_public_sha256`` (SHA-256 of the AK's DER
SubjectPublicKeyInfo) and ``hcl`` (``user_data`` and ``vm_configuration`` from the
bound runtime claims).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from veritee.tee.azure.hcl import RuntimeClaims, VmConfigValue
from veritee.tee.azure.verify import VerifiedAzureSnp, VerifiedAzureTdx
from veritee.tee.base import ClaimValue
from veritee.tee.snp.claims import SnpClaims
from veritee.tee.tdx.claims import TdxClaims
from veritee.tee.tpm.structures import PCR_COUNT, TpmAlg
from veritee.tee.tpm.verify import VerifiedQuote

INIT_DATA_PCR = 8


@dataclass(frozen=True)
class VtpmClaims:
    pcrs: tuple[tuple[int, bytes], ...]  # quoted SHA-256 PCRs
    nonce: bytes  # the quote's extraData
    ak_public: bytes  # DER SubjectPublicKeyInfo

    @classmethod
    def from_verified(cls, v: VerifiedQuote) -> VtpmClaims:
        bank = v.pcrs.bank(TpmAlg.SHA256)
        return cls(
            pcrs=tuple(sorted((p, val) for p, val in bank.items() if p < PCR_COUNT)),
            nonce=v.attest.extra_data,
            ak_public=v.ak.spki_der,
        )

    @property
    def init_data(self) -> bytes | None:
        return dict(self.pcrs).get(INIT_DATA_PCR)

    def to_json(self) -> dict[str, ClaimValue]:
        out: dict[str, ClaimValue] = {f"pcr{p:02d}": val.hex() for p, val in self.pcrs}
        if self.init_data is not None:
            out["init_data"] = self.init_data.hex()
        out["ak_public_sha256"] = hashlib.sha256(self.ak_public).hexdigest()
        return out


@dataclass(frozen=True)
class HclClaims:
    user_data: bytes | None
    vm_configuration: tuple[tuple[str, VmConfigValue], ...]

    @classmethod
    def of(cls, runtime: RuntimeClaims) -> HclClaims:
        return cls(runtime.user_data, runtime.vm_configuration)

    def to_json(self) -> dict[str, ClaimValue]:
        return {
            "user_data": self.user_data.hex() if self.user_data is not None else None,
            "vm_configuration": dict(self.vm_configuration),
        }


def _azure_overrides(out: dict[str, ClaimValue], tpm: VtpmClaims, hcl: HclClaims) -> None:
    out["report_data"] = tpm.nonce.hex()
    if tpm.init_data is not None:
        out["init_data"] = tpm.init_data.hex()
    else:
        out.pop("init_data", None)
    out["tpm"] = tpm.to_json()
    out["hcl"] = hcl.to_json()


@dataclass(frozen=True)
class AzureSnpClaims:
    snp: SnpClaims
    tpm: VtpmClaims
    hcl: HclClaims

    @property
    def tee(self) -> str:
        return "az-snp-vtpm"

    @classmethod
    def from_verified(cls, v: VerifiedAzureSnp) -> AzureSnpClaims:
        tpm = VtpmClaims.from_verified(v.vtpm)
        return cls(SnpClaims.from_verified(v.snp), tpm, HclClaims.of(v.runtime))

    def to_json(self) -> dict[str, ClaimValue]:
        out = self.snp.to_json()
        out["hardware_report_data"] = out.pop("report_data")
        out["host_data"] = out.pop("init_data")
        _azure_overrides(out, self.tpm, self.hcl)
        return out


@dataclass(frozen=True)
class AzureTdxClaims:
    tdx: TdxClaims
    tpm: VtpmClaims
    hcl: HclClaims

    @property
    def tee(self) -> str:
        return "az-tdx-vtpm"

    @classmethod
    def from_verified(cls, v: VerifiedAzureTdx) -> AzureTdxClaims:
        tpm = VtpmClaims.from_verified(v.vtpm)
        return cls(TdxClaims.from_verified(v.tdx), tpm, HclClaims.of(v.runtime))

    def to_json(self) -> dict[str, ClaimValue]:
        out = self.tdx.to_json()
        _azure_overrides(out, self.tpm, self.hcl)
        return out
