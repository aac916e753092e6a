"""SEV-SNP claims, named as Trustee names them (PROTOCOL.md section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from veritee.tee.base import ClaimValue
from veritee.tee.snp.verify import VerifiedSnpReport


@dataclass(frozen=True)
class SnpClaims:
    """Claims of one verified SNP report. Only reported TCB values are claims (as Trustee)."""

    measurement: bytes
    report_data: bytes
    init_data: bytes  # HOST_DATA
    chip_id: bytes
    policy_abi_major: int
    policy_abi_minor: int
    policy_smt_allowed: bool
    policy_migrate_ma: bool
    policy_debug_allowed: bool
    policy_single_socket: bool
    reported_tcb_bootloader: int
    reported_tcb_tee: int
    reported_tcb_snp: int
    reported_tcb_microcode: int
    reported_tcb_fmc: int | None
    platform_tsme_enabled: bool
    platform_smt_enabled: bool
    # veritee additions (not in Trustee's set; useful to policy and audit)
    version: int
    guest_svn: int
    vmpl: int
    family_id: bytes
    image_id: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    product: str
    signing_key: str
    simulated: bool

    @property
    def tee(self) -> str:
        return "snp"

    @classmethod
    def from_verified(cls, v: VerifiedSnpReport) -> SnpClaims:
        r = v.report
        return cls(
            measurement=r.measurement,
            report_data=r.report_data,
            init_data=r.host_data,
            chip_id=r.chip_id,
            policy_abi_major=r.policy.abi_major,
            policy_abi_minor=r.policy.abi_minor,
            policy_smt_allowed=r.policy.smt_allowed,
            policy_migrate_ma=r.policy.migrate_ma_allowed,
            policy_debug_allowed=r.policy.debug_allowed,
            policy_single_socket=r.policy.single_socket_required,
            reported_tcb_bootloader=r.reported_tcb.bootloader,
            reported_tcb_tee=r.reported_tcb.tee,
            reported_tcb_snp=r.reported_tcb.snp,
            reported_tcb_microcode=r.reported_tcb.microcode,
            reported_tcb_fmc=r.reported_tcb.fmc,
            platform_tsme_enabled=r.platform_info.tsme_enabled,
            platform_smt_enabled=r.platform_info.smt_enabled,
            version=r.version,
            guest_svn=r.guest_svn,
            vmpl=r.vmpl,
            family_id=r.family_id,
            image_id=r.image_id,
            id_key_digest=r.id_key_digest,
            author_key_digest=r.author_key_digest,
            product=v.product.value,
            signing_key=v.signing_key.name,
            simulated=v.simulated,
        )

    def to_json(self) -> dict[str, ClaimValue]:
        out: dict[str, ClaimValue] = {}
        for name, value in self.__dict__.items():
            if name == "reported_tcb_fmc" and value is None:
                continue
            out[name] = value.hex() if isinstance(value, bytes) else value
        return out
