"""SGX claims, named and shaped as Trustee names them (PROTOCOL.md section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from veritee.tee.base import ClaimValue
from veritee.tee.dcap.claims import DcapClaims, platform_instance_claim
from veritee.tee.dcap.quote import QuoteHeader
from veritee.tee.dcap.report import EnclaveReport
from veritee.tee.sgx.verify import VerifiedSgxQuote


@dataclass(frozen=True)
class SgxClaims:
    header: QuoteHeader
    body: EnclaveReport
    dcap: DcapClaims
    platform_instance_id: bytes | None

    @property
    def tee(self) -> str:
        return "sgx"

    @classmethod
    def from_verified(cls, v: VerifiedSgxQuote) -> SgxClaims:
        return cls(
            header=v.quote.quote.header,
            body=v.report,
            dcap=DcapClaims.from_verified(v.dcap),
            platform_instance_id=v.dcap.pck.platform_instance_id,
        )

    def to_json(self) -> dict[str, ClaimValue]:
        out = quote_claims(self.header, self.body, self.platform_instance_id)
        out.update(self.dcap.to_json())
        return out


def quote_claims(
    h: QuoteHeader, b: EnclaveReport, platform_instance_id: bytes | None
) -> dict[str, ClaimValue]:
    """The quote's own claims (header, body, report_data, init_data) as Trustee names them."""
    out: dict[str, ClaimValue] = {
        "header": {
            "version": h.version.to_bytes(2, "little").hex(),
            "att_key_type": h.att_key_type.to_bytes(2, "little").hex(),
            "att_key_data_0": h.tee_type.to_bytes(4, "little").hex(),
            "qe_svn": h.reserved[:2].hex(),
            "pce_svn": h.reserved[2:4].hex(),
            "vendor_id": h.qe_vendor_id.hex(),
            "user_data": h.user_data.hex(),
        },
        "body": {
            "cpu_svn": b.cpu_svn.hex(),
            "misc_select": b.misc_select.to_bytes(4, "little").hex(),
            "reserved1": b.reserved1.hex(),
            "isv_ext_prod_id": b.isv_ext_prod_id.hex(),
            "attributes.flags": b.attributes_flags.to_bytes(8, "little").hex(),
            "attributes.xfrm": b.attributes_xfrm.to_bytes(8, "little").hex(),
            "mr_enclave": b.mr_enclave.hex(),
            "reserved2": b.reserved2.hex(),
            "mr_signer": b.mr_signer.hex(),
            "reserved3": b.reserved3.hex(),
            "config_id": b.config_id.hex(),
            "isv_prod_id": b.isv_prod_id.to_bytes(2, "little").hex(),
            "isv_svn": b.isv_svn.to_bytes(2, "little").hex(),
            "config_svn": b.config_svn.to_bytes(2, "little").hex(),
            "reserved4": b.reserved4.hex(),
            "isv_family_id": b.isv_family_id.hex(),
            "report_data": b.report_data.hex(),
        },
        "report_data": b.report_data.hex(),
        "init_data": b.config_id.hex(),
    }
    out.update(platform_instance_claim(platform_instance_id))
    return out
