"""A simulated TPM: PCR banks and an AK held in Python, producing byte-exact TPM2_Quote
structures (TPMS_ATTEST, TPMT_SIGNATURE) signed by a locally generated key.

For tests, benchmarks and trying veritee without a TPM. The AK is a test key: nothing
chains it to a TPM vendor, and verifiers only accept it when told to trust it. (The
tests also drive a real software TPM, swtpm, through tpm2-tools.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.structures import (
    HASH_SIZES,
    PCR_COUNT,
    TPM_GENERATED_VALUE,
    Attest,
    AttestType,
    ClockInfo,
    PcrSelectionList,
    QuoteInfo,
    RsaParms,
    Scheme,
    TpmAlg,
    TpmtPublic,
    TpmtSignature,
    hashlib_name,
)
from veritee.tee.tpm.verify import AttestationKey, hash_algorithm, pcr_digest, tpmt_public_of

SIMULATOR_BANNER = "SIMULATED TPM: quotes signed by a local test key, not by a TPM"


@dataclass
class SimulatedTpm:
    """PCRs in SHA-1/256/384 banks, an AK, a clock. ``scheme`` is RSASSA, RSAPSS or ECDSA."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    scheme: int
    sign_hash: int
    public: TpmtPublic
    banks: dict[int, list[bytes]] = field(default_factory=dict)
    clock: int = 1000
    reset_count: int = 1
    restart_count: int = 0
    firmware_version: int = 0x2019102300163636

    @classmethod
    def generate(cls, scheme: int = TpmAlg.RSASSA, sign_hash: int = TpmAlg.SHA256,
                 curve: ec.EllipticCurve | None = None) -> SimulatedTpm:
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if scheme == TpmAlg.ECDSA:
            key = ec.generate_private_key(curve or ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = tpmt_public_of(key.public_key(), scheme_hash=sign_hash)
        if scheme == TpmAlg.RSAPSS:
            params = public.parameters
            assert isinstance(params, RsaParms)
            public = replace(public, parameters=replace(params, scheme=Scheme(scheme, sign_hash)))
        banks: dict[int, list[bytes]] = {alg: [bytes(HASH_SIZES[alg])] * PCR_COUNT
                 for alg in (TpmAlg.SHA1, TpmAlg.SHA256, TpmAlg.SHA384)}
        for alg in banks:
            for pcr in range(17, 23):
                banks[alg][pcr] = b"\xff" * HASH_SIZES[alg]
        return cls(key, scheme, sign_hash, public, banks)

    @property
    def ak(self) -> AttestationKey:
        return AttestationKey(self.key.public_key(), self.public)

    def extend(self, pcr: int, data: bytes) -> None:
        """Measure ``data`` into ``pcr`` in every bank (PCR = H(PCR || H(data)))."""
        for alg, values in self.banks.items():
            name = hashlib_name(alg)
            values[pcr] = hashlib.new(name, values[pcr] + hashlib.new(name, data).digest()).digest()

    def pcr_banks(self) -> PcrBanks:
        return PcrBanks.from_mapping({a: dict(enumerate(v)) for a, v in self.banks.items()})

    def quote(self, selection: PcrSelectionList, nonce: bytes) -> tuple[bytes, TpmtSignature]:
        """TPM2_Quote: the signed TPMS_ATTEST bytes and their TPMT_SIGNATURE."""
        self.clock += 17
        placeholder = QuoteInfo(selection, b"")
        digest = pcr_digest(self.pcr_banks(), placeholder, self.sign_hash)
        attest = Attest(
            TPM_GENERATED_VALUE, AttestType.QUOTE, self.public.name(), nonce,
            ClockInfo(self.clock, self.reset_count, self.restart_count, 1),
            self.firmware_version, QuoteInfo(selection, digest),
        )
        message = attest.to_bytes()
        return message, self.sign(message)

    def sign(self, message: bytes) -> TpmtSignature:
        h = hash_algorithm(self.sign_hash)
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(h)))
            size = (self.key.curve.key_size + 7) // 8
            return TpmtSignature(TpmAlg.ECDSA, self.sign_hash,
                                 r=r.to_bytes(size, "big"), s=s.to_bytes(size, "big"))
        pad: padding.AsymmetricPadding
        if self.scheme == TpmAlg.RSAPSS:
            pad = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        else:
            pad = padding.PKCS1v15()
        return TpmtSignature(self.scheme, self.sign_hash, signature=self.key.sign(message, pad, h))

    def reboot(self) -> None:
        self.reset_count += 1
        self.restart_count = 0
        for alg, values in self.banks.items():
            for pcr in range(PCR_COUNT):
                values[pcr] = (b"\xff" if 17 <= pcr <= 22 else b"\0") * HASH_SIZES[alg]
