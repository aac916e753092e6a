"""The SEV-SNP ATTESTATION_REPORT structure (AMD SEV-SNP ABI, table "ATTESTATION_REPORT").

Byte format only: no crypto, no policy. ``SnpReport.from_bytes`` accepts every
report version seen in real hardware (2, 3, 4, 5), rejects what the format
forbids (wrong size, unknown version, reserved bytes set) and
``to_bytes`` reproduces the input exactly.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from veritee.binary import Writer
from veritee.errors import EvidenceFormatError

REPORT_SIZE = 0x4A0  # 1184
SIGNED_SIZE = 0x2A0  # the signature covers bytes [0, 0x2A0)
SUPPORTED_VERSIONS = (2, 3, 4, 5)
SIG_ALGO_ECDSA_P384_SHA384 = 1
_SIG_COMPONENT = 72  # R and S are 72-byte little-endian fields
_LAYOUT = struct.Struct("<IIQ16s16sII8sQII64s48s32s48s48s32s32s8s24s64s8s4s4s8s168s512s")
assert _LAYOUT.size == REPORT_SIZE


def _zero(chunk: bytes, offset: int) -> None:
    if any(chunk):
        raise EvidenceFormatError(
            f"SNP report: reserved {offset:#X} at offset {offset:#x} must be zero"
        )


class Product(enum.Enum):
    """AMD EPYC generations with distinct ARKs (KDS product names)."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @property
    def has_fmc(self) -> bool:
        """Turin adds an FMC SPL to the TCB version and changes its byte layout."""
        return self is Product.TURIN

    @classmethod
    def from_name(cls, name: str) -> Product:
        key = name.strip().split("-")[0].lower()
        for p in cls:
            if p.value.lower() == key:
                return p
        raise ValueError(f"unknown AMD product {name!r}")


def product_from_cpuid(family: int, model: int) -> Product | None:
    """Product from the CPUID family/model a v3+ report carries (None if unknown)."""
    if family == 0x19:
        if model <= 0x0F:
            return Product.MILAN
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return Product.GENOA  # Genoa, Bergamo, Siena share the Genoa ARK
    if family == 0x1A and model <= 0x11:
        return Product.TURIN
    return None


class SigningKey(enum.IntEnum):
    VCEK = 0
    VLEK = 1
    NONE = 7


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION: security patch levels of the firmware components.

    Milan/Genoa layout: [bootloader, tee, 0, 0, 0, 0, snp, microcode].
    Turin layout:       [fmc, bootloader, tee, snp, 0, 0, 0, microcode].
    """

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def from_bytes(cls, raw: bytes, *, fmc_layout: bool, field: str = "tcb") -> TcbVersion:
        if len(raw) != 8:
            raise EvidenceFormatError(f"{field}: TCB_VERSION must be 8 bytes")
        if fmc_layout:
            if any(raw[4:7]):
                raise EvidenceFormatError(f"{field}: reserved TCB bytes 4..6 must be zero")
            return cls(bootloader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7], fmc=raw[0])
        if any(raw[2:6]):
            raise EvidenceFormatError(f"{field}: reserved TCB bytes 2..5 must be zero")
        return cls(bootloader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])

    def to_bytes(self) -> bytes:
        if self.fmc is not None:
            return bytes([self.fmc, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode])
        return bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])

    def hex(self) -> str:
        return self.to_bytes().hex()

    def spls(self) -> dict[str, int]:
        out = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out


@dataclass(frozen=True)
class GuestPolicy:
    """The guest policy chosen at launch (64 bits)."""

    raw: int

    @property
    def abi_minor(self) -> int:
        return self.raw & 0xFF

    @property
    def abi_major(self) -> int:
        return (self.raw >> 8) & 0xFF

    @property
    def smt_allowed(self) -> bool:
        return bool(self.raw >> 16 & 1)

    @property
    def migrate_ma_allowed(self) -> bool:
        return bool(self.raw >> 18 & 1)

    @property
    def debug_allowed(self) -> bool:
        return bool(self.raw >> 19 & 1)

    @property
    def single_socket_required(self) -> bool:
        return bool(self.raw >> 20 & 1)

    @property
    def cxl_allowed(self) -> bool:
        return bool(self.raw >> 21 & 1)

    @property
    def mem_aes_256_xts(self) -> bool:
        return bool(self.raw >> 22 & 1)

    @property
    def rapl_disabled(self) -> bool:
        return bool(self.raw >> 23 & 1)

    @property
    def ciphertext_hiding(self) -> bool:
        return bool(self.raw >> 24 & 1)

    @property
    def page_swap_disabled(self) -> bool:
        return bool(self.raw >> 25 & 1)


@dataclass(frozen=True)
class PlatformInfo:
    raw: int

    @property
    def smt_enabled(self) -> bool:
        return bool(self.raw & 1)

    @property
    def tsme_enabled(self) -> bool:
        return bool(self.raw >> 1 & 1)

    @property
    def ecc_enabled(self) -> bool:
        return bool(self.raw >> 2 & 1)

    @property
    def rapl_disabled(self) -> bool:
        return bool(self.raw >> 3 & 1)

    @property
    def ciphertext_hiding_enabled(self) -> bool:
        return bool(self.raw >> 4 & 1)

    @property
    def alias_check_complete(self) -> bool:
        return bool(self.raw >> 5 & 1)


@dataclass(frozen=True)
class KeyInfo:
    """Bits at 0x48: which key signed the report and whether the chip id is masked."""

    author_key_en: bool
    mask_chip_key: bool
    signing_key: SigningKey

    @classmethod
    def from_u32(cls, value: int) -> KeyInfo:
        if value >> 5:
            raise EvidenceFormatError(f"SNP report: reserved key-info bits set ({value:#x})")
        sk = (value >> 2) & 0x7
        try:
            signing_key = SigningKey(sk)
        except ValueError:
            raise EvidenceFormatError(f"SNP report: unknown SIGNING_KEY value {sk}") from None
        return cls(bool(value & 1), bool(value >> 1 & 1), signing_key)

    def to_u32(self) -> int:
        return int(self.author_key_en) | int(self.mask_chip_key) << 1 | self.signing_key << 2


@dataclass(frozen=True)
class Signature:
    """ECDSA P-384 signature; R and S are stored little-endian in 72-byte fields."""

    r: int
    s: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> Signature:
        if len(raw) != 512:
            raise EvidenceFormatError("SNP signature: the signature block is 512 bytes")
        if any(raw[2 * _SIG_COMPONENT :]):
            raise EvidenceFormatError(
                f"SNP signature: signature reserved at offset {2 * _SIG_COMPONENT:#x} "
                "must be zero"
            )
        return cls(
            int.from_bytes(raw[:_SIG_COMPONENT], "little"),
            int.from_bytes(raw[_SIG_COMPONENT : 2 * _SIG_COMPONENT], "little"),
        )

    def to_bytes(self) -> bytes:
        return (
            self.r.to_bytes(_SIG_COMPONENT, "little")
            + self.s.to_bytes(_SIG_COMPONENT, "little")
            + bytes(512 - 2 * _SIG_COMPONENT)
        )


@dataclass(frozen=True)
class FirmwareVersion:
    major: int
    minor: int
    build: int


@dataclass(frozen=True)
class SnpReport:
    """One parsed ATTESTATION_REPORT. Field names follow the ABI specification."""

    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    key_info: KeyInfo
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_fw: FirmwareVersion
    committed_fw: FirmwareVersion
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature: Signature
    _raw: bytes = field(init=False, default=b"", compare=False, repr=False)

    # -- derived ------------------------------------------------------------------------
    @property
    def product(self) -> Product | None:
        """The product stated by the report itself (v3+ CPUID), else None."""
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    @property
    def chip_id_masked(self) -> bool:
        return self.key_info.mask_chip_key or not any(self.chip_id)

    # -- bytes ----------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes, *, product: Product | None = None) -> SnpReport:
        """Parse exactly 1184 bytes.

        ``product`` selects the TCB layout when the report does not say (v2 reports
        carry no CPUID); when the report does say, both must agree.
        """
        if not isinstance(data, bytes):
            raise EvidenceFormatError("SNP report must be bytes")
        if len(data) != REPORT_SIZE:
            raise EvidenceFormatError(
                f"SNP report must be {REPORT_SIZE} bytes, got {len(data)}",
                hint="pass the raw report, or its hex/base64 text",
            )
        # The size is checked above, so one fixed-layout unpack is bounds-safe.
        (
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            key_info,
            reserved_4c,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid_block,
            chip_id,
            committed_tcb,
            cur,
            com,
            launch_tcb,
            tail,
            sig,
        ) = _LAYOUT.unpack(data)
        if version not in SUPPORTED_VERSIONS:
            raise EvidenceFormatError(
                f"SNP report version {version} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        fam = mod = step = None
        if version >= 3:
            fam, mod, step = cpuid_block[0], cpuid_block[1], cpuid_block[2]
            stated = product_from_cpuid(fam, mod)
            if product is not None and stated is not None and stated is not product:
                raise EvidenceFormatError(
                    f"SNP report CPUID says {stated.value}, expected {product.value}"
                )
            product = product or stated
            _zero(cpuid_block[3:], 0x18B)
        else:
            _zero(cpuid_block, 0x188)
        if reserved_4c:
            raise EvidenceFormatError("SNP report: reserved 0x4C at offset 0x4c must be zero")
        if cur[3]:
            raise EvidenceFormatError("SNP report: reserved 0x1EB at offset 0x1eb must be zero")
        if com[3]:
            raise EvidenceFormatError("SNP report: reserved 0x1EF at offset 0x1ef must be zero")
        launch_mit = current_mit = None
        if version >= 5:
            launch_mit = int.from_bytes(tail[0:8], "little")
            current_mit = int.from_bytes(tail[8:16], "little")
            _zero(tail[16:], 0x208)
        else:
            _zero(tail, 0x1F8)
        fmc = product is not None and product.has_fmc
        report = cls(
            version=version,
            guest_svn=guest_svn,
            policy=GuestPolicy(policy),
            family_id=family_id,
            image_id=image_id,
            vmpl=vmpl,
            signature_algo=signature_algo,
            current_tcb=TcbVersion.from_bytes(current_tcb, fmc_layout=fmc, field="CURRENT_TCB"),
            platform_info=PlatformInfo(platform_info),
            key_info=KeyInfo.from_u32(key_info),
            report_data=report_data,
            measurement=measurement,
            host_data=host_data,
            id_key_digest=id_key_digest,
            author_key_digest=author_key_digest,
            report_id=report_id,
            report_id_ma=report_id_ma,
            reported_tcb=TcbVersion.from_bytes(reported_tcb, fmc_layout=fmc, field="REPORTED_TCB"),
            cpuid_fam_id=fam,
            cpuid_mod_id=mod,
            cpuid_step=step,
            chip_id=chip_id,
            committed_tcb=TcbVersion.from_bytes(
                committed_tcb, fmc_layout=fmc, field="COMMITTED_TCB"
            ),
            current_fw=FirmwareVersion(major=cur[2], minor=cur[1], build=cur[0]),
            committed_fw=FirmwareVersion(major=com[2], minor=com[1], build=com[0]),
            launch_tcb=TcbVersion.from_bytes(launch_tcb, fmc_layout=fmc, field="LAUNCH_TCB"),
            launch_mit_vector=launch_mit,
            current_mit_vector=current_mit,
            signature=Signature.from_bytes(sig),
        )
        # Keep the exact input: it equals to_bytes() (round-trip is exact), so the
        # signed region need not be re-serialized. Not an init field, so
        # dataclasses.replace() never carries stale bytes into a changed report.
        object.__setattr__(report, "_raw", data)
        return report

    def signed_bytes(self) -> bytes:
        """The bytes covered by the signature (offsets 0x000..0x29F)."""
        raw = self._raw or self.to_bytes()
        return raw[:SIGNED_SIZE]

    def to_bytes(self) -> bytes:
        w = Writer()
        w.u32(self.version).u32(self.guest_svn).u64(self.policy.raw)
        w.bytes(self.family_id, 16).bytes(self.image_id, 16)
        w.u32(self.vmpl).u32(self.signature_algo)
        w.bytes(self.current_tcb.to_bytes()).u64(self.platform_info.raw)
        w.u32(self.key_info.to_u32()).zeros(4)
        w.bytes(self.report_data, 64).bytes(self.measurement, 48).bytes(self.host_data, 32)
        w.bytes(self.id_key_digest, 48).bytes(self.author_key_digest, 48)
        w.bytes(self.report_id, 32).bytes(self.report_id_ma, 32)
        w.bytes(self.reported_tcb.to_bytes())
        if self.version >= 3:
            w.u8(self.cpuid_fam_id or 0).u8(self.cpuid_mod_id or 0).u8(self.cpuid_step or 0)
            w.zeros(21)
        else:
            w.zeros(24)
        w.bytes(self.chip_id, 64).bytes(self.committed_tcb.to_bytes())
        cf, mf = self.current_fw, self.committed_fw
        w.u8(cf.build).u8(cf.minor).u8(cf.major).zeros(1)
        w.u8(mf.build).u8(mf.minor).u8(mf.major).zeros(1)
        w.bytes(self.launch_tcb.to_bytes())
        if self.version >= 5:
            w.u64(self.launch_mit_vector or 0).u64(self.current_mit_vector or 0)
            w.zeros(SIGNED_SIZE - 0x208)
        else:
            w.zeros(SIGNED_SIZE - 0x1F8)
        w.bytes(self.signature.to_bytes())
        return w.getvalue()
