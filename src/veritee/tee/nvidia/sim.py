"""Simulated NVIDIA devices (H100 GPU, LS10 NVSwitch) and a simulated RIM signer.

THIS IS A SIMULATOR. Its roots are generated locally and are never trusted unless
a caller passes them explicitly (``--trust-root`` / ``NvidiaRoots.with_root``).
The formats are NVIDIA's: a five-certificate ECDSA P-384 chain (identity CA ->
family identity -> provisioner ICA -> BROM -> FMC leaf with the FWID
extension), an SPDM 1.1 GET_MEASUREMENTS request || MEASUREMENTS response signed
with the leaf key, NVIDIA's opaque data fields, and RIMs as SWID tags with an
enveloped XML signature (Exclusive C14N, ECDSA P-384) chained to a RIM root.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from xml.sax.saxutils import quoteattr

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee.tee.nvidia.report import (
    ALL_MEASUREMENTS,
    NONCE_SIZE,
    SPDM_VERSION_1_1,
    MeasurementBlock,
    MeasurementsRequest,
    MeasurementsResponse,
    NvidiaReport,
    OpaqueField,
    OpaqueType,
)
from veritee.tee.nvidia.rim import (
    ENVELOPED_SIGNATURE,
    EXC_C14N,
    NS_DSIG,
    NS_SHA384,
    NS_SWID,
    exclusive_c14n,
    parse_xml,
    read_signature,
)

SIMULATOR_ORG = "veritee NVIDIA simulator"
SIMULATOR_BANNER = "veritee NVIDIA SIMULATOR - not a real GPU or NVSwitch, roots are self-generated"
FWID_OID = x509.ObjectIdentifier("2.23.133.5.4.1")
_FOREVER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
_ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
_DIGEST_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIMULATOR_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + body


def fwid_extension(fwid: bytes, alias_key: ec.EllipticCurvePublicKey) -> bytes:
    """NVIDIA's FWID extension value: SEQUENCE { INTEGER 1, SPKI, SEQUENCE { sha384, FWID } }."""
    spki = alias_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sha384 = _tlv(0x06, bytes.fromhex("608648016503040202"))
    body = _tlv(0x02, b"\x01") + spki + _tlv(0x30, sha384 + _tlv(0x04, fwid))
    return _tlv(0x30, body)


def _issue(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    start: dt.datetime,
    end: dt.datetime,
    *,
    ca: bool,
    fwid: bytes | None = None,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if fwid is not None:
        b = b.add_extension(
            x509.UnrecognizedExtension(FWID_OID, fwid_extension(fwid, key.public_key())),
            critical=False,
        )
    return b.sign(signer, hashes.SHA384())


def _chain(
    family: str, product: str, start: dt.datetime, end: dt.datetime, fwid: bytes
) -> tuple[ec.EllipticCurvePrivateKey, tuple[x509.Certificate, ...], ec.EllipticCurvePrivateKey]:
    """(root key, chain leaf-first, leaf key)."""
    keys = [_key() for _ in range(5)]
    names = [
        _name("veritee simulated NVIDIA Device Identity CA"),
        _name(f"veritee simulated NVIDIA {family} Identity"),
        _name(f"veritee simulated NVIDIA {family} Provisioner ICA 1"),
        _name(f"{product} BROM"),
        _name(f"{product} FMC LF"),
    ]
    certs = [_issue(names[0], names[0], keys[0], keys[0], start, _FOREVER, ca=True)]
    # Real device certificates never expire (9999-12-31); ``end`` bounds the leaf for tests.
    for i in range(1, 5):
        leaf = i == 4
        certs.append(
            _issue(
                names[i],
                names[i - 1],
                keys[i],
                keys[i - 1],
                start,
                end if leaf else _FOREVER,
                ca=not leaf,
                fwid=fwid if leaf else None,
            )
        )
    return keys[0], tuple(reversed(certs)), keys[4]


def _digest(label: str, i: int) -> bytes:
    return hashlib.sha384(f"{label}/{i}".encode()).digest()


@dataclass(frozen=True)
class SimulatedNvidiaDevice:
    """One simulated device: its identity chain (leaf first) and its measurement state."""

    arch: str  # "Hopper" or "LS10"
    root_key: ec.EllipticCurvePrivateKey
    leaf_key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]
    fwid: bytes
    measurements: Mapping[int, bytes]
    opaque: tuple[OpaqueField, ...]

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    @classmethod
    def hopper(
        cls,
        *,
        driver_version: str = "550.90.07",
        vbios: bytes = bytes.fromhex("009f009601000000"),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime = _FOREVER,
    ) -> SimulatedNvidiaDevice:
        warnings.warn(SIMULATOR_BANNER, stacklevel=2)
        fwid = os.urandom(48)
        start = not_before or dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        root_key, chain, leaf_key = _chain("GH100", "GH100 A01 GSP", start, not_after, fwid)
        blocks = {i: _digest("gh100", i) if i % 3 else bytes(48) for i in range(1, 65)}
        opaque = (
            OpaqueField(OpaqueType.VBIOS_VERSION, vbios),
            OpaqueField(OpaqueType.BOARD_ID, bytes.fromhex("b1030000")),
            OpaqueField(OpaqueType.CHIP_SKU, b"882\0\0\0\0\0\0"),
            OpaqueField(OpaqueType.CHIP_SKU_MOD, b"0\0\0\0\0"),
            OpaqueField(OpaqueType.PROJECT, b"1010\0"),
            OpaqueField(OpaqueType.PROJECT_SKU, b"0200\0"),
            OpaqueField(OpaqueType.PROJECT_SKU_MOD, b"\0\0"),
            OpaqueField(OpaqueType.DRIVER_VERSION, driver_version.encode() + b"\0"),
            OpaqueField(OpaqueType.GPU_INFO, bytes.fromhex("8001000000000000")),
            OpaqueField(OpaqueType.MSRSCNT, b"".join((1).to_bytes(4, "little") for _ in range(64))),
            OpaqueField(OpaqueType.CPRINFO, bytes.fromhex("00c00100")),
            OpaqueField(OpaqueType.NVDEC0_STATUS, b"\x55"),
            OpaqueField(OpaqueType.FWID, fwid),
            OpaqueField(OpaqueType.PROTECTED_PCIE_STATUS, b"\x55"),
        )
        return cls("Hopper", root_key, leaf_key, chain, fwid, blocks, opaque)

    @classmethod
    def nvswitch(cls, *, not_before: dt.datetime | None = None) -> SimulatedNvidiaDevice:
        warnings.warn(SIMULATOR_BANNER, stacklevel=2)
        fwid = os.urandom(48)
        start = not_before or dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        root_key, chain, leaf_key = _chain("LS_10", "LS_10 A01 FSP", start, _FOREVER, fwid)
        blocks = {i: _digest("ls10", i) for i in range(1, 32)}
        opaque = (
            OpaqueField(OpaqueType.VBIOS_VERSION, b"96.10.73.00.01"),
            OpaqueField(OpaqueType.SWITCH_PDI, os.urandom(8)),
            OpaqueField(OpaqueType.MSRSCNT, b"".join((1).to_bytes(4, "little") for _ in range(27))),
            OpaqueField(OpaqueType.SWITCH_GPU_PDIS, os.urandom(128)),
            OpaqueField(OpaqueType.FLOORSWEPT_PORTS, b"\xec\x00"),
            OpaqueField(OpaqueType.POSITION_ID, b"\x00\x00"),
            OpaqueField(OpaqueType.LOCK_SWITCH_STATUS, b"\x01\x00"),
        )
        return cls("LS10", root_key, leaf_key, chain, fwid, blocks, opaque)

    def with_measurements(self, changes: Mapping[int, bytes]) -> SimulatedNvidiaDevice:
        """The same device running other firmware (some blocks changed)."""
        return replace(self, measurements={**self.measurements, **changes})

    def report(
        self,
        nonce: bytes,
        *,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        opaque: Sequence[OpaqueField] | None = None,
        padding: int = 0,
    ) -> NvidiaReport:
        """A signed report for the requester ``nonce`` (``signing_key``: sign as another device)."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"the SPDM nonce is {NONCE_SIZE} bytes")
        request = MeasurementsRequest(SPDM_VERSION_1_1, 0x01, ALL_MEASUREMENTS, nonce, 0)
        unsigned = MeasurementsResponse(
            version=SPDM_VERSION_1_1,
            param1=0,
            param2=0,
            blocks=tuple(
                MeasurementBlock(i, 0x01, v) for i, v in sorted(self.measurements.items())
            ),
            nonce=os.urandom(NONCE_SIZE),
            opaque=tuple(opaque) if opaque is not None else self.opaque,
            signature=bytes(96),
        )
        draft = NvidiaReport(request, unsigned)
        key = signing_key or self.leaf_key
        r, s = decode_dss_signature(key.sign(draft.signed_bytes(), ec.ECDSA(hashes.SHA384())))
        response = replace(unsigned, signature=r.to_bytes(48, "big") + s.to_bytes(48, "big"))
        return NvidiaReport(request, response, bytes(padding))

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)


@dataclass(frozen=True)
class SimulatedRimSigner:
    """NVIDIA's RIM service, simulated: a RIM root, a signing leaf, signed SWID tags."""

    root_key: ec.EllipticCurvePrivateKey
    leaf_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    leaf: x509.Certificate

    @classmethod
    def generate(cls, *, not_before: dt.datetime | None = None) -> SimulatedRimSigner:
        warnings.warn(SIMULATOR_BANNER, stacklevel=2)
        start = not_before or dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        end = start + dt.timedelta(days=365 * 10)
        root_key, leaf_key = _key(), _key()
        root_name = _name("veritee simulated NVIDIA RIM signing Root CA")
        root = _issue(root_name, root_name, root_key, root_key, start, end, ca=True)
        leaf = _issue(
            _name("veritee simulated NVIDIA RIM signing"),
            root_name,
            leaf_key,
            root_key,
            start,
            end,
            ca=False,
        )
        return cls(root_key, leaf_key, root, leaf)

    def sign(
        self,
        *,
        tag_id: str,
        version: str,
        golden: Mapping[int, Sequence[bytes]],
        inactive: Sequence[int] = (),
        product: str = "GH100",
    ) -> bytes:
        """A signed RIM whose golden values are ``golden`` (SPDM block index -> alternatives)."""
        resources = []
        for block, values in sorted(golden.items()):
            hashes_attr = " ".join(
                f"SHA384:Hash{i}={quoteattr(v.hex())}" for i, v in enumerate(values)
            )
            active = "False" if block in inactive else "True"
            resources.append(
                f'    <Resource type="Measurement" index="{block - 1}" active="{active}" '
                f'alternatives="{len(values)}" {hashes_attr} name="block {block}" '
                f'size="{len(values[0])}"/>\n'
            )
        certs = "".join(
            f"<ds:X509Certificate>{base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()}"
            "</ds:X509Certificate>"
            for c in (self.leaf, self.root)
        )

        def render(digest: str, signature: str) -> bytes:
            return (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<SoftwareIdentity xmlns="{NS_SWID}" xmlns:SHA384="{NS_SHA384}" '
                f'xmlns:ds="{NS_DSIG}" corpus="false" name={quoteattr(product)} patch="false" '
                f'supplemental="false" tagId={quoteattr(tag_id)} tagVersion="0" '
                f"version={quoteattr(version)}>\n"
                f"  <Meta colloquialVersion={quoteattr(version)} product={quoteattr(product)} "
                f'revision="1"/>\n'
                f'  <Entity name="{SIMULATOR_ORG}" regid="veritee.invalid" '
                f'role="softwareCreator tagCreator"/>\n'
                f"  <Payload>\n{''.join(resources)}  </Payload>\n"
                "  <ds:Signature>\n"
                "    <ds:SignedInfo>\n"
                f'      <ds:CanonicalizationMethod Algorithm="{EXC_C14N}"/>\n'
                f'      <ds:SignatureMethod Algorithm="{_ECDSA_SHA384}"/>\n'
                '      <ds:Reference URI="">\n'
                "        <ds:Transforms>\n"
                f'          <ds:Transform Algorithm="{ENVELOPED_SIGNATURE}"/>\n'
                f'          <ds:Transform Algorithm="{EXC_C14N}"/>\n'
                "        </ds:Transforms>\n"
                f'        <ds:DigestMethod Algorithm="{_DIGEST_SHA384}"/>\n'
                f"        <ds:DigestValue>{digest}</ds:DigestValue>\n"
                "      </ds:Reference>\n"
                "    </ds:SignedInfo>\n"
                f"    <ds:SignatureValue>{signature}</ds:SignatureValue>\n"
                f"    <ds:KeyInfo><ds:X509Data>{certs}</ds:X509Data></ds:KeyInfo>\n"
                "  </ds:Signature>\n"
                "</SoftwareIdentity>\n"
            ).encode()

        draft = parse_xml(render("", ""))
        sig = next(e for e in draft.elements() if e.is_(NS_DSIG, "Signature"))
        digest = base64.b64encode(hashlib.sha384(exclusive_c14n(draft, omit=sig)).digest()).decode()
        signed_info = read_signature(parse_xml(render(digest, ""))).canonical_signed_info
        r, s = decode_dss_signature(self.leaf_key.sign(signed_info, ec.ECDSA(hashes.SHA384())))
        value = base64.b64encode(r.to_bytes(48, "big") + s.to_bytes(48, "big")).decode()
        return render(digest, value)

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)
