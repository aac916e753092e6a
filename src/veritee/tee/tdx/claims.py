"""TDX claims, named and shaped as Trustee names them (PROTOCOL.md section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from veritee.tee.base import ClaimValue
from veritee.tee.dcap.claims import DcapClaims, platform_instance_claim
from veritee.tee.dcap.quote import QuoteHeader
from veritee.tee.tdx.ccel import CcelEvent
from veritee.tee.tdx.quote import (
    TD_ATTR_DEBUG,
    TD_ATTR_KL,
    TD_ATTR_PERFMON,
    TD_ATTR_PKS,
    TD_ATTR_SEPT_VE_DISABLE,
    TdReport,
)
from veritee.tee.tdx.verify import VerifiedTdxQuote

_HASH_NAMES = {0x0004: "SHA-1", 0x000B: "SHA-256", 0x000C: "SHA-384", 0x000D: "SHA-512"}


@dataclass(frozen=True)
class TdxClaims:
    header: QuoteHeader
    body: TdReport
    body_type: int | None
    dcap: DcapClaims
    platform_instance_id: bytes | None
    event_log: tuple[CcelEvent, ...] | None = None

    @property
    def tee(self) -> str:
        return "tdx"

    @classmethod
    def from_verified(cls, v: VerifiedTdxQuote) -> TdxClaims:
        quote = v.quote.quote
        return cls(
            header=quote.header,
            body=v.report,
            body_type=int(quote.body_type) if quote.body_type is not None else None,
            dcap=DcapClaims.from_verified(v.dcap),
            platform_instance_id=v.dcap.pck.platform_instance_id,
            event_log=v.event_log.events if v.event_log is not None else None,
        )

    def quote_json(self) -> dict[str, ClaimValue]:
        h, b = self.header, self.body
        body: dict[str, ClaimValue] = {
            "tcb_svn": b.tee_tcb_svn.hex(),
            "mr_seam": b.mr_seam.hex(),
            "mrsigner_seam": b.mr_signer_seam.hex(),
            "seam_attributes": b.seam_attributes.hex(),
            "td_attributes": b.td_attributes.hex(),
            "xfam": b.xfam.hex(),
            "mr_td": b.mr_td.hex(),
            "mr_config_id": b.mr_config_id.hex(),
            "mr_owner": b.mr_owner.hex(),
            "mr_owner_config": b.mr_owner_config.hex(),
            "rtmr_0": b.rtmr0.hex(),
            "rtmr_1": b.rtmr1.hex(),
            "rtmr_2": b.rtmr2.hex(),
            "rtmr_3": b.rtmr3.hex(),
            "report_data": b.report_data.hex(),
        }
        if b.tee_tcb_svn2 is not None and b.mr_servicetd is not None:
            body["tee_tcb_svn2"] = b.tee_tcb_svn2.hex()
            body["mr_servicetd"] = b.mr_servicetd.hex()
        out: dict[str, ClaimValue] = {
            "header": {
                "version": h.version.to_bytes(2, "little").hex(),
                "att_key_type": h.att_key_type.to_bytes(2, "little").hex(),
                "tee_type": h.tee_type.to_bytes(4, "little").hex(),
                "reserved": h.reserved.hex(),
                "vendor_id": h.qe_vendor_id.hex(),
                "user_data": h.user_data.hex(),
            },
            "body": body,
        }
        if self.body_type is not None:
            out["type"] = self.body_type.to_bytes(2, "little").hex()
            out["size"] = len(b.to_bytes()).to_bytes(4, "little").hex()
        return out

    def to_json(self) -> dict[str, ClaimValue]:
        attrs = self.body.td_attributes_value
        out: dict[str, ClaimValue] = {
            "quote": self.quote_json(),
            "report_data": self.body.report_data.hex(),
            "init_data": self.body.mr_config_id.hex(),
            "td_attributes": {
                "debug": bool(attrs & TD_ATTR_DEBUG),
                "key_locker": bool(attrs & TD_ATTR_KL),
                "perfmon": bool(attrs & TD_ATTR_PERFMON),
                "protection_keys": bool(attrs & TD_ATTR_PKS),
                "septve_disable": bool(attrs & TD_ATTR_SEPT_VE_DISABLE),
            },
        }
        out.update(platform_instance_claim(self.platform_instance_id))
        if self.event_log is not None:
            out["uefi_event_logs"] = [
                {
                    "index": e.mr_index,
                    "event_type": e.type_name,
                    "digests": [
                        {"alg": _HASH_NAMES.get(alg, f"{alg:#06x}"), "digest": d.hex()}
                        for alg, d in e.digests
                    ],
                    "event": e.data.hex(),
                }
                for e in self.event_log
            ]
        out.update(self.dcap.to_json())
        return out
