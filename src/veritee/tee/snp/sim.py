"""A simulated SEV-SNP platform: its own ARK/ASK/VCEK and byte-exact signed reports.

THIS IS A SIMULATOR. Its root is generated locally and is never trusted unless a
caller passes it explicitly (``--trust-root`` / ``TrustRoots.with_root``). The
certificates carry AMD's real structure: RSA-4096 ARK and ASK signed with
RSASSA-PSS/SHA-384, a P-384 VCEK with the AMD VCEK extensions.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee.pki import oids
from veritee.pki.der import encode_ia5, encode_integer
from veritee.tee.snp.report import (
    SIG_ALGO_ECDSA_P384_SHA384,
    FirmwareVersion,
    GuestPolicy,
    KeyInfo,
    PlatformInfo,
    Product,
    Signature,
    SigningKey,
    SnpReport,
    TcbVersion,
)

SIMULATOR_ORG = "veritee SNP simulator"
SIMULATOR_BANNER = "veritee SNP SIMULATOR - not real hardware, root is self-generated"
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_CPUID = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x01),
}
DEFAULT_POLICY = 0x30000  # SMT allowed, reserved bit 17 set, debug off


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIMULATOR_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ext(oid: x509.ObjectIdentifier, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(oid, value)


@dataclass(frozen=True)
class SimulatedSnpPlatform:
    """One simulated AMD chip at one TCB, with its endorsement chain."""

    product: Product
    chip_id: bytes
    tcb: TcbVersion
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey
    vcek_key: ec.EllipticCurvePrivateKey
    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate

    @classmethod
    def generate(
        cls,
        product: Product = Product.MILAN,
        *,
        tcb: TcbVersion | None = None,
        chip_id: bytes | None = None,
        not_before: dt.datetime | None = None,
        validity: dt.timedelta = dt.timedelta(days=365 * 25),
        rsa_bits: int = 4096,
    ) -> SimulatedSnpPlatform:
        warnings.warn(SIMULATOR_BANNER, stacklevel=2)
        if tcb is None:
            tcb = TcbVersion(
                bootloader=3,
                tee=0,
                snp=22,
                microcode=213,
                fmc=0 if product.has_fmc else None,
            )
        if chip_id is None:
            chip_id = os.urandom(8) + bytes(56) if product is Product.TURIN else os.urandom(64)
        start = not_before or dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        ark_key = rsa.generate_private_key(65537, rsa_bits)
        ask_key = rsa.generate_private_key(65537, rsa_bits)
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        ca = x509.BasicConstraints(ca=True, path_length=None)
        ark = (
            x509.CertificateBuilder()
            .subject_name(_name(f"ARK-{product.value}"))
            .issuer_name(_name(f"ARK-{product.value}"))
            .public_key(ark_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + validity)
            .add_extension(ca, critical=True)
            .sign(ark_key, hashes.SHA384(), rsa_padding=_PSS)
        )
        ask = (
            x509.CertificateBuilder()
            .subject_name(_name(f"SEV-{product.value}"))
            .issuer_name(ark.subject)
            .public_key(ask_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + validity)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ark_key, hashes.SHA384(), rsa_padding=_PSS)
        )
        platform = cls(product, chip_id, tcb, ark_key, ask_key, vcek_key, ark, ask, ark)
        return replace(platform, vcek=platform.issue_vcek(tcb, not_before=start, validity=validity))

    def issue_vcek(
        self,
        tcb: TcbVersion,
        *,
        chip_id: bytes | None = None,
        not_before: dt.datetime | None = None,
        validity: dt.timedelta = dt.timedelta(days=365 * 7),
        product_name: str | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> x509.Certificate:
        """A VCEK for this chip (or ``chip_id``) at ``tcb``, signed by this ASK."""
        chip = self.chip_id if chip_id is None else chip_id
        hwid = chip[:8] if self.product is Product.TURIN else chip
        start = not_before or self.ask.not_valid_before_utc
        b = (
            x509.CertificateBuilder()
            .subject_name(_name("SEV-VCEK"))
            .issuer_name(self.ask.subject)
            .public_key((key or self.vcek_key).public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + validity)
            .add_extension(_ext(oids.AMD_STRUCT_VERSION, encode_integer(0)), critical=False)
            .add_extension(
                _ext(oids.AMD_PRODUCT_NAME, encode_ia5(product_name or self.product.value)),
                critical=False,
            )
            .add_extension(_ext(oids.AMD_BL_SPL, encode_integer(tcb.bootloader)), critical=False)
            .add_extension(_ext(oids.AMD_TEE_SPL, encode_integer(tcb.tee)), critical=False)
            .add_extension(_ext(oids.AMD_SNP_SPL, encode_integer(tcb.snp)), critical=False)
            .add_extension(_ext(oids.AMD_UCODE_SPL, encode_integer(tcb.microcode)), critical=False)
            .add_extension(_ext(oids.AMD_HWID, hwid), critical=False)
        )
        if tcb.fmc is not None:
            b = b.add_extension(_ext(oids.AMD_FMC_SPL, encode_integer(tcb.fmc)), critical=False)
        return b.sign(self.ask_key, hashes.SHA384(), rsa_padding=_PSS)

    # -- reports ----------------------------------------------------------------------
    def report(
        self,
        *,
        report_data: bytes = b"",
        measurement: bytes | None = None,
        policy: int = DEFAULT_POLICY,
        host_data: bytes = bytes(32),
        vmpl: int = 0,
        guest_svn: int = 0,
        version: int = 5,
        tcb: TcbVersion | None = None,
        mask_chip_id: bool = False,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> SnpReport:
        """A signed report. ``signing_key`` lets tests sign with a key of another 'chip'."""
        if len(report_data) > 64:
            raise ValueError("report_data is at most 64 bytes")
        tcb = tcb or self.tcb
        fam, mod, step = _CPUID[self.product]
        v3 = version >= 3
        unsigned = SnpReport(
            version=version,
            guest_svn=guest_svn,
            policy=GuestPolicy(policy),
            family_id=bytes(16),
            image_id=bytes(16),
            vmpl=vmpl,
            signature_algo=SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb=tcb,
            platform_info=PlatformInfo(0x25),
            key_info=KeyInfo(False, mask_chip_id, SigningKey.VCEK),
            report_data=report_data.ljust(64, b"\0"),
            measurement=measurement if measurement is not None else secrets.token_bytes(48),
            host_data=host_data,
            id_key_digest=bytes(48),
            author_key_digest=bytes(48),
            report_id=secrets.token_bytes(32),
            report_id_ma=b"\xff" * 32,
            reported_tcb=tcb,
            cpuid_fam_id=fam if v3 else None,
            cpuid_mod_id=mod if v3 else None,
            cpuid_step=step if v3 else None,
            chip_id=bytes(64) if mask_chip_id else self.chip_id,
            committed_tcb=tcb,
            current_fw=FirmwareVersion(1, 55, 21),
            committed_fw=FirmwareVersion(1, 55, 21),
            launch_tcb=tcb,
            launch_mit_vector=0 if version >= 5 else None,
            current_mit_vector=0 if version >= 5 else None,
            signature=Signature(0, 0),
        )
        key = signing_key or self.vcek_key
        der = key.sign(unsigned.signed_bytes(), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return replace(unsigned, signature=Signature(r, s))

    # -- export -----------------------------------------------------------------------
    def ark_pem(self) -> bytes:
        return self.ark.public_bytes(serialization.Encoding.PEM)

    def cert_chain_pem(self) -> bytes:
        """ASK then ARK, as AMD KDS serves ``cert_chain``."""
        return self.ask.public_bytes(serialization.Encoding.PEM) + self.ark_pem()

    def vcek_der(self) -> bytes:
        return self.vcek.public_bytes(serialization.Encoding.DER)


def save_platform(platform: SimulatedSnpPlatform, directory: Path) -> None:
    """Persist a simulated platform (keys 0600) so separate processes share it."""
    directory.mkdir(parents=True, exist_ok=True)
    enc = serialization.NoEncryption()
    for name, key in (
        ("ark", platform.ark_key),
        ("ask", platform.ask_key),
        ("vcek", platform.vcek_key),
    ):
        path = directory / f"{name}.key"
        path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        )
        path.chmod(0o600)
    for name, cert in (("ark", platform.ark), ("ask", platform.ask), ("vcek", platform.vcek)):
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "platform.txt").write_text(
        f"{platform.product.value}\n{platform.chip_id.hex()}\n{platform.tcb.to_bytes().hex()}\n"
    )


def load_platform(directory: Path) -> SimulatedSnpPlatform:
    product_name, chip_hex, tcb_hex = (directory / "platform.txt").read_text().split()
    product = Product.from_name(product_name)

    def key(name: str) -> object:
        return serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), None)

    def cert(name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())

    ark_key, ask_key, vcek_key = key("ark"), key("ask"), key("vcek")
    if not (
        isinstance(ark_key, rsa.RSAPrivateKey)
        and isinstance(ask_key, rsa.RSAPrivateKey)
        and isinstance(vcek_key, ec.EllipticCurvePrivateKey)
    ):
        raise ValueError(f"{directory} does not hold a simulated SNP platform's keys")
    return SimulatedSnpPlatform(
        product=product,
        chip_id=bytes.fromhex(chip_hex),
        tcb=TcbVersion.from_bytes(bytes.fromhex(tcb_hex), fmc_layout=product.has_fmc),
        ark_key=ark_key,
        ask_key=ask_key,
        vcek_key=vcek_key,
        ark=cert("ark"),
        ask=cert("ask"),
        vcek=cert("vcek"),
    )


def cached_platform(cache: Path, product: Product = Product.MILAN) -> SimulatedSnpPlatform:
    """The simulated platform kept under ``cache`` (generated on first use)."""
    directory = cache / "sim" / f"snp-{product.value.lower()}"
    if (directory / "platform.txt").is_file():
        return load_platform(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        platform = SimulatedSnpPlatform.generate(product)
    save_platform(platform, directory)
    return platform
