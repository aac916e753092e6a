"""A simulated Nitro hypervisor: its own root -> intermediate -> leaf, real COSE_Sign1 documents.

THIS IS A SIMULATOR. Its root is generated locally and is never trusted unless a
caller passes it explicitly (``--trust-root`` / ``NitroRoots.with_root``). The
structure is AWS's: ECDSA P-384 certificates signed with SHA-384, a leaf that
lives three hours, ``cabundle`` root first, an ES384 COSE_Sign1 over a document
in the Nitro Secure Module's CBOR encoding.
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee.clock import utcnow
from veritee.tee.nitro.document import (
    ALG_ES384,
    DIGEST_SHA384,
    HEADER_ALG,
    PCR_SIZE,
    AttestationDocument,
    NitroDocument,
)

SIMULATOR_ORG = "veritee Nitro simulator"
SIMULATOR_BANNER = "veritee NITRO SIMULATOR - not an AWS hypervisor, root is self-generated"
LEAF_LIFETIME = dt.timedelta(hours=3)
PROTECTED_ES384 = cbor2.dumps({HEADER_ALG: ALG_ES384})


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIMULATOR_ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    start: dt.datetime,
    lifetime: dt.timedelta,
    *,
    ca: bool,
) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(signer, hashes.SHA384())
    )


def default_pcrs(image: bytes = b"veritee simulated enclave image") -> dict[int, bytes]:
    """Sixteen SHA-384 PCRs as a running enclave has them (0..4 and 8 set, the rest zero)."""
    pcrs = {i: bytes(PCR_SIZE) for i in range(16)}
    for i in (0, 1, 2, 3, 4, 8):
        digest = hashes.Hash(hashes.SHA384())
        digest.update(bytes([i]) + image)
        pcrs[i] = digest.finalize()
    return pcrs


@dataclass(frozen=True)
class SimulatedNitroHypervisor:
    """One simulated Nitro host: a root, an intermediate and the current leaf."""

    instance_id: str
    root_key: ec.EllipticCurvePrivateKey
    intermediate_key: ec.EllipticCurvePrivateKey
    leaf_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate

    @classmethod
    def generate(
        cls, *, now: dt.datetime | None = None, instance_id: str | None = None
    ) -> SimulatedNitroHypervisor:
        warnings.warn(SIMULATOR_BANNER, stacklevel=2)
        start = now or utcnow()
        root_key = ec.generate_private_key(ec.SECP384R1())
        inter_key = ec.generate_private_key(ec.SECP384R1())
        leaf_key = ec.generate_private_key(ec.SECP384R1())
        instance = instance_id or f"i-{os.urandom(8).hex()[:17]}"
        root_name = _name("simulated.nitro-enclaves")
        root = _cert(
            root_name,
            root_name,
            root_key,
            root_key,
            start - dt.timedelta(days=1),
            dt.timedelta(days=365 * 30),
            ca=True,
        )
        inter_name = _name(f"{instance}.simulated.nitro-enclaves")
        inter = _cert(
            inter_name,
            root_name,
            inter_key,
            root_key,
            start - dt.timedelta(hours=1),
            dt.timedelta(days=1),
            ca=True,
        )
        hv = cls(instance, root_key, inter_key, leaf_key, root, inter, inter)
        return hv.with_leaf(not_before=start - dt.timedelta(minutes=1), key=leaf_key)

    def with_leaf(
        self,
        *,
        not_before: dt.datetime,
        lifetime: dt.timedelta = LEAF_LIFETIME,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> SimulatedNitroHypervisor:
        """The same host after the hypervisor rotated its short-lived signing leaf."""
        leaf_key = key or ec.generate_private_key(ec.SECP384R1())
        leaf = _cert(
            _name(f"{self.instance_id}-enc{os.urandom(8).hex()}.simulated"),
            self.intermediate.subject,
            leaf_key,
            self.intermediate_key,
            not_before,
            lifetime,
            ca=False,
        )
        return SimulatedNitroHypervisor(
            self.instance_id,
            self.root_key,
            self.intermediate_key,
            leaf_key,
            self.root,
            self.intermediate,
            leaf,
        )

    @property
    def module_id(self) -> str:
        return f"{self.instance_id}-enc{self.leaf.serial_number % (1 << 64):016x}"

    def document(
        self,
        *,
        pcrs: Mapping[int, bytes] | None = None,
        user_data: bytes | None = None,
        nonce: bytes | None = None,
        public_key: bytes | None = None,
        timestamp: dt.datetime | None = None,
        debug: bool = False,
        tagged: bool = False,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> NitroDocument:
        """A signed document. ``signing_key`` lets tests sign with a key the leaf does not hold."""
        values = dict(pcrs) if pcrs is not None else default_pcrs()
        if debug:
            for i in (0, 1, 2):
                values[i] = bytes(PCR_SIZE)
        when = timestamp or self.leaf.not_valid_before_utc + dt.timedelta(minutes=1)
        der = serialization.Encoding.DER
        payload = AttestationDocument(
            module_id=self.module_id,
            digest=DIGEST_SHA384,
            timestamp=int(when.timestamp() * 1000),
            pcrs=values,
            certificate=self.leaf.public_bytes(der),
            cabundle=(self.root.public_bytes(der), self.intermediate.public_bytes(der)),
            public_key=public_key,
            user_data=user_data,
            nonce=nonce,
        ).to_bytes()
        sig_structure = cbor2.dumps(["Signature1", PROTECTED_ES384, b"", payload])
        key = signing_key or self.leaf_key
        r, s = decode_dss_signature(key.sign(sig_structure, ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(48, "big") + s.to_bytes(48, "big")
        return NitroDocument(
            protected=PROTECTED_ES384, payload=payload, signature=signature, tagged=tagged
        )

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)
