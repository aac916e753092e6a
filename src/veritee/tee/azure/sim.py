"""Simulated Azure confidential VMs: a paravisor's HCL report and vTPM quotes, byte-exact.

THIS IS A SIMULATOR. The SNP report is signed by a simulated AMD chip
(:mod:`veritee.tee.snp.sim`), the TD quote by a simulated Intel platform
(:mod:`veritee.tee.tdx.sim`), the vTPM quotes by a locally generated AK
(:mod:`veritee.tee.tpm.sim`). Nothing chains to AMD, Intel or Microsoft: a verifier
accepts this evidence only when told to trust the simulator's root (``--trust-root``,
``TrustRoots.with_root``, a service started with ``trust_simulator``).

The evidence has the real structure: an ``HCLA`` report whose hardware report's
report data is SHA-256 of the runtime claims JSON naming ``HCLAkPub``, and the
az-cvm-vtpm quote (raw RSASSA signature, TPMS_ATTEST, 24 SHA-256 PCRs).
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.tee.azure.evidence import AzureSnpEvidence, AzureTdxEvidence, VtpmQuote
from veritee.tee.azure.hcl import (
    AK_KEY_ID,
    EK_KEY_ID,
    HW_REPORT_SIZE,
    HashType,
    HclReport,
    ReportType,
    RsaJwk,
    RuntimeClaims,
    TdReportStruct,
)
from veritee.tee.snp.report import Product
from veritee.tee.snp.sim import DEFAULT_POLICY, SimulatedSnpPlatform
from veritee.tee.tdx.sim import SimulatedTdxPlatform
from veritee.tee.tpm.sim import SimulatedTpm
from veritee.tee.tpm.structures import (
    PCR_COUNT,
    PcrSelection,
    PcrSelectionList,
    TpmAlg,
    hashlib_name,
)

SIMULATOR_BANNER = (
    "veritee AZURE CVM SIMULATOR - not an Azure paravisor: hardware roots and vTPM AK are "
    "self-generated"
)
NV_INDEX_SIZE = 2600  # the HCL report is read from a 2600-byte NV index
INIT_DATA_PCR = 8
ALL_SHA256_PCRS = PcrSelectionList((PcrSelection.of(TpmAlg.SHA256, list(range(PCR_COUNT))),))


def _jwk(kid: str, key: rsa.RSAPublicKey, ops: tuple[str, ...]) -> RsaJwk:
    nums = key.public_numbers()
    return RsaJwk(
        kid=kid,
        n=nums.n.to_bytes((key.key_size + 7) // 8, "big"),
        e=nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big"),
        key_ops=ops,
    )


@dataclass
class SimulatedVtpm:
    """The paravisor's vTPM: an AK (RSASSA/SHA-256) and an EK, PCRs, the VM configuration."""

    tpm: SimulatedTpm
    ek: rsa.RSAPublicKey
    vm_unique_id: str = field(default_factory=lambda: str(uuid.uuid4()).upper())

    @classmethod
    def generate(cls) -> SimulatedVtpm:
        tpm = SimulatedTpm.generate(TpmAlg.RSASSA, TpmAlg.SHA256)
        # A measured boot, so the PCRs are not trivially zero.
        for pcr, what in ((0, b"firmware"), (4, b"bootloader"), (7, b"secure boot db"),
                          (11, b"unified kernel image")):
            tpm.extend(pcr, b"veritee simulated Azure CVM: " + what)
        ek = rsa.generate_private_key(65537, 2048).public_key()
        return cls(tpm, ek)

    def runtime_claims(self, user_data: bytes = bytes(64)) -> RuntimeClaims:
        ak = self.tpm.key.public_key()
        assert isinstance(ak, rsa.RSAPublicKey)
        return RuntimeClaims(
            keys=(_jwk(AK_KEY_ID, ak, ("sign",)), _jwk(EK_KEY_ID, self.ek, ("encrypt",))),
            vm_configuration=(
                ("console-enabled", True),
                ("secure-boot", True),
                ("tpm-enabled", True),
                ("vmUniqueId", self.vm_unique_id),
            ),
            user_data=user_data,
        )

    def extend(self, pcr: int, data: bytes) -> None:
        """Measure ``data`` into ``pcr`` (PCR = H(PCR || H(data)) in every bank)."""
        self.tpm.extend(pcr, data)

    def measure_init_data(self, digest: bytes) -> None:
        """What the guest does at boot: extend the init-data digest itself into PCR 8."""
        for alg, values in self.tpm.banks.items():
            values[INIT_DATA_PCR] = hashlib.new(
                hashlib_name(alg), values[INIT_DATA_PCR] + digest[:32].ljust(32, b"\0")
            ).digest()

    def quote(self, nonce: bytes, selection: PcrSelectionList = ALL_SHA256_PCRS) -> VtpmQuote:
        message, signature = self.tpm.quote(selection, nonce)
        return VtpmQuote(signature.signature, message, tuple(self.tpm.banks[TpmAlg.SHA256]))


def _hcl(report_type: ReportType, hardware: bytes, var_data: bytes) -> HclReport:
    hcl = HclReport(
        version=2,
        request_type=2,
        status=0,
        reserved=bytes(12),
        hardware_report=hardware.ljust(HW_REPORT_SIZE, b"\0"),
        runtime_version=1,
        report_type=report_type,
        hash_type=HashType.SHA256,
        var_data=var_data,
    )
    pad = max(0, NV_INDEX_SIZE - hcl.report_size)
    return replace(hcl, padding=bytes(pad))


@dataclass
class SimulatedAzureSnpCvm:
    """An Azure SEV-SNP CVM: simulated AMD chip + paravisor (launch ``measurement``) + vTPM."""

    platform: SimulatedSnpPlatform
    vtpm: SimulatedVtpm
    measurement: bytes
    policy: int = DEFAULT_POLICY

    @classmethod
    def generate(
        cls,
        platform: SimulatedSnpPlatform | None = None,
        *,
        measurement: bytes | None = None,
        product: Product = Product.MILAN,
    ) -> SimulatedAzureSnpCvm:
        warnings.warn(SIMULATOR_BANNER, stacklevel=2)
        if platform is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                platform = SimulatedSnpPlatform.generate(product, rsa_bits=2048)
        paravisor = measurement if measurement is not None else hashlib.sha384(
            b"veritee simulated paravisor"
        ).digest()
        return cls(platform, SimulatedVtpm.generate(), paravisor)

    def hcl_report(self, user_data: bytes = bytes(64), *, vmpl: int = 0) -> HclReport:
        var_data = self.vtpm.runtime_claims(user_data).to_json_bytes()
        report = self.platform.report(
            report_data=hashlib.sha256(var_data).digest(),
            measurement=self.measurement,
            policy=self.policy,
            vmpl=vmpl,
        )
        return _hcl(ReportType.SNP, report.to_bytes(), var_data)

    def evidence(
        self,
        nonce: bytes,
        *,
        version: int = 1,
        with_chain: bool = False,
        vmpl: int = 0,
        user_data: bytes = bytes(64),
    ) -> AzureSnpEvidence:
        """Evidence binding ``nonce`` (the quote's extraData). ``with_chain`` (v0 only) puts
        the ASK and the simulator's ARK after the VCEK in the ``vcek`` PEM."""
        p = self.platform
        if version == 0:
            vcek = p.vcek.public_bytes(serialization.Encoding.PEM)
            if with_chain:
                vcek += p.cert_chain_pem()
        elif with_chain:
            raise ValueError("only v0 evidence (PEM) can carry the chain after the VCEK")
        else:
            vcek = p.vcek_der()
        return AzureSnpEvidence(
            version=version, quote=self.vtpm.quote(nonce),
            hcl=self.hcl_report(user_data, vmpl=vmpl),
            vcek=vcek,
        )


@dataclass
class SimulatedAzureTdxCvm:
    """An Azure TDX CVM: simulated Intel platform (TDREPORT -> TD quote) + paravisor + vTPM."""

    platform: SimulatedTdxPlatform
    vtpm: SimulatedVtpm
    mr_td: bytes

    @classmethod
    def generate(
        cls, platform: SimulatedTdxPlatform | None = None, *, mr_td: bytes | None = None
    ) -> SimulatedAzureTdxCvm:
        warnings.warn(SIMULATOR_BANNER, stacklevel=2)
        if platform is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                platform = SimulatedTdxPlatform.generate()
        paravisor = mr_td if mr_td is not None else hashlib.sha384(
            b"veritee simulated TDX paravisor"
        ).digest()
        return cls(platform, SimulatedVtpm.generate(), paravisor)

    def evidence(
        self, nonce: bytes, *, version: int = 1, user_data: bytes = bytes(64)
    ) -> AzureTdxEvidence:
        var_data = self.vtpm.runtime_claims(user_data).to_json_bytes()
        body = self.platform.report(
            report_data=hashlib.sha256(var_data).digest(), mr_td=self.mr_td
        )
        tdreport = TdReportStruct.from_body(body)
        return AzureTdxEvidence(
            version=version,
            quote=self.vtpm.quote(nonce),
            hcl=_hcl(ReportType.TDX, tdreport.to_bytes(), var_data),
            td_quote=self.platform.quote(body).to_bytes(),
        )
