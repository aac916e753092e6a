"""DCAP supplemental claims, named and shaped as Trustee emits them (PROTOCOL.md section 4)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

from veritee.tee.base import ClaimValue
from veritee.tee.dcap.pck import SgxType
from veritee.tee.dcap.verify import VerifiedDcapQuote

# Trustee's spelling of Intel's sgx_type values (intel_dcap claims).
_SGX_TYPE = {
    SgxType.STANDARD: "Standard",
    SgxType.SCALABLE: "Scalable",
    SgxType.SCALABLE_WITH_INTEGRITY: "Scalable with Integrity",
}


@lru_cache(maxsize=1024)
def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class DcapClaims:
    """Intel's supplemental values of one verified quote, plus veritee additions."""

    tcb_status: str
    advisory_ids: tuple[str, ...]
    collateral_expired: bool
    earliest_expiration_date: dt.datetime
    earliest_issue_date: dt.datetime
    latest_issue_date: dt.datetime
    tcb_date: dt.datetime
    tcb_eval_num: int
    pck_crl_num: int
    root_ca_crl_num: int
    platform_provider_id: bytes
    root_key_id: bytes
    sgx_type: SgxType
    is_dynamic_platform: bool | None
    is_cached_keys: bool | None
    is_smt_enabled: bool | None
    platform_instance_id: bytes | None
    # veritee additions (not in Trustee's set)
    fmspc: bytes
    pce_id: bytes
    pcesvn: int
    qe_tcb_status: str
    platform_tcb_status: str
    tdx_module_tcb_status: str | None
    simulated: bool

    @classmethod
    def from_verified(cls, v: VerifiedDcapQuote) -> DcapClaims:
        s, pck = v.supplemental, v.pck
        return cls(
            tcb_status=s.tcb_status,
            advisory_ids=s.advisory_ids,
            collateral_expired=s.collateral_expired,
            earliest_expiration_date=s.earliest_expiration_date,
            earliest_issue_date=s.earliest_issue_date,
            latest_issue_date=s.latest_issue_date,
            tcb_date=s.tcb_date,
            tcb_eval_num=s.tcb_eval_num,
            pck_crl_num=s.pck_crl_num,
            root_ca_crl_num=s.root_ca_crl_num,
            platform_provider_id=pck.ppid,
            root_key_id=s.root_key_id,
            sgx_type=pck.sgx_type,
            is_dynamic_platform=pck.dynamic_platform,
            is_cached_keys=pck.cached_keys,
            is_smt_enabled=pck.smt_enabled,
            platform_instance_id=pck.platform_instance_id,
            fmspc=pck.fmspc,
            pce_id=pck.pce_id,
            pcesvn=pck.pcesvn,
            qe_tcb_status=s.qe_tcb_status,
            platform_tcb_status=s.platform_tcb_status,
            tdx_module_tcb_status=s.tdx_module_tcb_status,
            simulated=v.simulated,
        )

    def to_json(self) -> dict[str, ClaimValue]:
        out: dict[str, ClaimValue] = {
            "advisory_ids": list(self.advisory_ids),
            "collateral_expiration_status": "1" if self.collateral_expired else "0",
            "earliest_expiration_date": rfc3339(self.earliest_expiration_date),
            "earliest_issue_date": rfc3339(self.earliest_issue_date),
            "latest_issue_date": rfc3339(self.latest_issue_date),
            "pck_crl_num": self.pck_crl_num,
            "platform_provider_id": self.platform_provider_id.hex(),
            "root_ca_crl_num": self.root_ca_crl_num,
            "root_key_id": self.root_key_id.hex(),
            "sgx_type": _SGX_TYPE[self.sgx_type],
            "tcb_date": rfc3339(self.tcb_date),
            "tcb_eval_num": self.tcb_eval_num,
            "tcb_status": self.tcb_status,
        }
        if self.sgx_type is not SgxType.STANDARD:
            # Trustee emits the platform flags only for Scalable platforms.
            out["is_dynamic_platform"] = bool(self.is_dynamic_platform)
            out["is_cached_keys"] = bool(self.is_cached_keys)
            out["is_smt_enabled"] = bool(self.is_smt_enabled)
        out.update(
            {
                "fmspc": self.fmspc.hex(),
                "pce_id": self.pce_id.hex(),
                "pcesvn": self.pcesvn,
                "qe_tcb_status": self.qe_tcb_status,
                "platform_tcb_status": self.platform_tcb_status,
                "simulated": self.simulated,
            }
        )
        if self.tdx_module_tcb_status is not None:
            out["tdx_module_tcb_status"] = self.tdx_module_tcb_status
        return out


def platform_instance_claim(instance_id: bytes | None) -> dict[str, ClaimValue]:
    """``platform_instance_id`` as Trustee prints it (byte-reversed hex), when the PCK has one."""
    if instance_id is None:
        return {}
    return {"platform_instance_id": instance_id[::-1].hex()}
