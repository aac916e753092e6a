"""A simulated Intel DCAP platform: its own root, PCK, QE and signed collateral.

THIS IS A SIMULATOR. Its root is generated locally and is never trusted unless a
caller passes it explicitly (``--trust-root`` / ``IntelRoots.with_root``). The
artifacts have Intel's real structure: P-256 root, PCK Platform/Processor CA and
TCB Signing certificates, a PCK certificate with the SGX extensions, a QE report
signed by the PCK key binding the attestation key, quotes v3/v4/v5 signed by the
attestation key, TCB info v3 and QE identity v2 JSON signed over their exact
bytes, and CRLs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee.pki import oids
from veritee.pki.der import (
    TAG_BOOLEAN,
    TAG_ENUMERATED,
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    encode_integer,
    encode_oid,
    encode_tlv,
)
from veritee.tee.dcap.quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_TYPE_PCK_CHAIN,
    INTEL_QE_VENDOR_ID,
    BodyType,
    CertificationData,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    TeeType,
)
from veritee.tee.dcap.report import EnclaveReport

SIMULATOR_BANNER = "veritee DCAP SIMULATOR - not real hardware, root is self-generated"
SIM_QE_MRSIGNER = hashlib.sha256(b"veritee simulated quoting enclave signer").digest()
SIM_FMSPC = bytes.fromhex("50806f000000")
DCAP_SIMULATOR_ORG = "veritee DCAP SIMULATOR"
_ORG = DCAP_SIMULATOR_ORG


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_pub(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )[1:]


def _pair(oid: str, tag: int, value: bytes) -> bytes:
    return encode_tlv(TAG_SEQUENCE, encode_oid(oid) + encode_tlv(tag, value))


def _int_pair(oid: str, value: int) -> bytes:
    return encode_tlv(TAG_SEQUENCE, encode_oid(oid) + encode_integer(value))


def sgx_extension(
    *,
    ppid: bytes,
    components: Sequence[int],
    pcesvn: int,
    pce_id: bytes,
    fmspc: bytes,
    sgx_type: int,
    platform_instance_id: bytes | None,
) -> bytes:
    """The DER value of the SGX extensions, laid out as Intel's PCK certificates have it."""
    tcb = b"".join(_int_pair(oids.sgx_tcb_component(i + 1), c) for i, c in enumerate(components))
    tcb += _int_pair(oids.SGX_TCB_PCESVN, pcesvn)
    tcb += _pair(oids.SGX_TCB_CPUSVN, TAG_OCTET_STRING, bytes(components))
    items = [
        _pair(oids.SGX_PPID, TAG_OCTET_STRING, ppid),
        encode_tlv(TAG_SEQUENCE, encode_oid(oids.SGX_TCB) + encode_tlv(TAG_SEQUENCE, tcb)),
        _pair(oids.SGX_PCEID, TAG_OCTET_STRING, pce_id),
        _pair(oids.SGX_FMSPC, TAG_OCTET_STRING, fmspc),
        _pair(oids.SGX_TYPE, TAG_ENUMERATED, bytes([sgx_type])),
    ]
    if platform_instance_id is not None:
        items.append(_pair(oids.SGX_PLATFORM_INSTANCE_ID, TAG_OCTET_STRING, platform_instance_id))
        config = b"".join(
            _pair(oid, TAG_BOOLEAN, b"\xff" if flag else b"\x00")
            for oid, flag in (
                (oids.SGX_CONFIG_DYNAMIC_PLATFORM, True),
                (oids.SGX_CONFIG_CACHED_KEYS, True),
                (oids.SGX_CONFIG_SMT_ENABLED, False),
            )
        )
        items.append(
            encode_tlv(
                TAG_SEQUENCE,
                encode_oid(oids.SGX_CONFIGURATION) + encode_tlv(TAG_SEQUENCE, config),
            )
        )
    return encode_tlv(TAG_SEQUENCE, b"".join(items))


@dataclass(frozen=True)
class SimTcbLevel:
    """One TCB level of simulated TCB info (``tdx`` components only for TDX)."""

    sgx: tuple[int, ...]
    pcesvn: int
    status: str
    tdx: tuple[int, ...] | None = None
    date: str = "2024-03-13T00:00:00Z"
    advisories: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimulatedDcapPlatform:
    """One simulated platform (PCK at one TCB), its QE and Intel-like signing keys."""

    tee: TeeType
    fmspc: bytes
    components: tuple[int, ...]
    pcesvn: int
    ca: str
    start: dt.datetime
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    pck_ca_key: ec.EllipticCurvePrivateKey
    pck_ca: x509.Certificate
    tcb_key: ec.EllipticCurvePrivateKey
    tcb_cert: x509.Certificate
    pck_key: ec.EllipticCurvePrivateKey
    pck: x509.Certificate
    attestation_key: ec.EllipticCurvePrivateKey
    qe_isvsvn: int = 8
    qe_auth_data: bytes = field(default=bytes(range(32)))

    @classmethod
    def generate(
        cls,
        tee: TeeType,
        *,
        fmspc: bytes = SIM_FMSPC,
        components: Sequence[int] = (5, 5, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0),
        pcesvn: int = 13,
        ca: str = "platform",
        not_before: dt.datetime | None = None,
        qe_isvsvn: int = 8,
    ) -> SimulatedDcapPlatform:
        warnings.warn(SIMULATOR_BANNER, stacklevel=2)
        start = not_before or dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = cls._cert(
            "Intel SGX Root CA", root_key, root_key, None, start, ca=True, years=25
        )
        pck_ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cn = "Intel SGX PCK Platform CA" if ca == "platform" else "Intel SGX PCK Processor CA"
        pck_ca = cls._cert(ca_cn, pck_ca_key, root_key, root, start, ca=True, years=15)
        tcb_key = ec.generate_private_key(ec.SECP256R1())
        tcb_cert = cls._cert("Intel SGX TCB Signing", tcb_key, root_key, root, start, years=7)
        platform = cls(
            tee=tee, fmspc=fmspc, components=tuple(components), pcesvn=pcesvn, ca=ca,
            start=start, root_key=root_key, root=root, pck_ca_key=pck_ca_key, pck_ca=pck_ca,
            tcb_key=tcb_key, tcb_cert=tcb_cert, pck_key=pck_ca_key, pck=pck_ca,
            attestation_key=ec.generate_private_key(ec.SECP256R1()), qe_isvsvn=qe_isvsvn,
        )
        pck_key = ec.generate_private_key(ec.SECP256R1())
        return replace(platform, pck_key=pck_key, pck=platform.issue_pck(pck_key))

    @staticmethod
    def _cert(
        cn: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        issuer: x509.Certificate | None,
        start: dt.datetime,
        *,
        ca: bool = False,
        years: int = 7,
        extension: bytes | None = None,
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(issuer.subject if issuer is not None else _name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=365 * years))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if extension is not None:
            b = b.add_extension(
                x509.UnrecognizedExtension(oids.SGX_EXTENSIONS, extension), critical=False
            )
        return b.sign(signer, hashes.SHA256())

    def issue_pck(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        fmspc: bytes | None = None,
        components: Sequence[int] | None = None,
        pcesvn: int | None = None,
        ppid: bytes | None = None,
        years: int = 7,
    ) -> x509.Certificate:
        """A PCK certificate for ``key`` signed by this platform's PCK CA."""
        comps = tuple(self.components if components is None else components)
        ext = sgx_extension(
            ppid=ppid or os.urandom(16),
            components=comps,
            pcesvn=self.pcesvn if pcesvn is None else pcesvn,
            pce_id=bytes(2),
            fmspc=fmspc or self.fmspc,
            sgx_type=1,
            platform_instance_id=os.urandom(16) if self.ca == "platform" else None,
        )
        return self._cert(
            "Intel SGX PCK Certificate", key, self.pck_ca_key, self.pck_ca, self.start,
            years=years, extension=ext,
        )

    # -- quotes -------------------------------------------------------------------------
    @property
    def qe_prod_id(self) -> int:
        return 2 if self.tee is TeeType.TDX else 1

    def qe_report(self) -> EnclaveReport:
        binding = hashlib.sha256(_raw_pub(self.attestation_key) + self.qe_auth_data).digest()
        return EnclaveReport.build(
            cpu_svn=bytes(self.components),
            attributes_flags=0x11,
            attributes_xfrm=0xE7,
            mr_enclave=hashlib.sha256(b"veritee simulated QE").digest(),
            mr_signer=SIM_QE_MRSIGNER,
            isv_prod_id=self.qe_prod_id,
            isv_svn=self.qe_isvsvn,
            report_data=binding + bytes(32),
        )

    def pem_chain(self) -> bytes:
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (self.pck, self.pck_ca, self.root)
        ) + b"\0"

    def quote(
        self,
        body: bytes,
        *,
        version: int = 4,
        body_type: BodyType | None = None,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        pck_key: ec.EllipticCurvePrivateKey | None = None,
        pem_chain: bytes | None = None,
        user_data: bytes = bytes(20),
    ) -> Quote:
        """A signed quote over ``body``; ``signing_key``/``pck_key`` let tests forge one."""
        qe = self.qe_report()
        reserved = (
            self.qe_isvsvn.to_bytes(2, "little") + self.pcesvn.to_bytes(2, "little")
            if version == 3
            else bytes(4)
        )
        header = QuoteHeader(
            version=version,
            att_key_type=ATT_KEY_TYPE_ECDSA_P256,
            tee_type=int(self.tee),
            reserved=reserved,
            qe_vendor_id=INTEL_QE_VENDOR_ID,
            user_data=user_data,
        )
        qe_data = QeReportCertificationData(
            qe_report=qe,
            qe_report_signature=_raw_sig(pck_key or self.pck_key, qe.to_bytes()),
            qe_auth_data=self.qe_auth_data,
            certification_data=CertificationData(
                CERT_TYPE_PCK_CHAIN, pem_chain if pem_chain is not None else self.pem_chain()
            ),
        )
        unsigned = Quote(
            header=header,
            body_type=body_type if version >= 5 else None,
            body=body,
            signature_data=QuoteSignatureData(
                signature=bytes(64),
                attestation_key=_raw_pub(self.attestation_key),
                qe=qe_data,
                wrapped=version >= 4,
            ),
        )
        signature = _raw_sig(signing_key or self.attestation_key, unsigned.signed_bytes())
        sig_data = replace(unsigned.signature_data, signature=signature)
        signed = replace(unsigned, signature_data=sig_data)
        return Quote.from_bytes(signed.to_bytes())

    # -- collateral ---------------------------------------------------------------------
    def default_levels(self) -> tuple[SimTcbLevel, ...]:
        tdx_now = (3, 0, 5) + (0,) * 13 if self.tee is TeeType.TDX else None
        tdx_old = (2, 0, 2) + (0,) * 13 if self.tee is TeeType.TDX else None
        return (
            SimTcbLevel(self.components, self.pcesvn, "UpToDate", tdx_now),
            SimTcbLevel(
                self.components, 5, "OutOfDate", tdx_old, "2018-01-04T00:00:00Z",
                ("INTEL-SA-00106", "INTEL-SA-00115"),
            ),
        )

    def tcb_info_body(
        self,
        *,
        issue: dt.datetime,
        next_update: dt.datetime,
        levels: Sequence[SimTcbLevel] | None = None,
        fmspc: bytes | None = None,
        tcb_id: str | None = None,
        module_identities: Sequence[dict[str, object]] | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        eval_num: int = 17,
    ) -> bytes:
        """A PCS TCB info response body (``{"tcbInfo":...,"signature":...}``)."""
        is_tdx = (tcb_id or ("TDX" if self.tee is TeeType.TDX else "SGX")) == "TDX"
        info: dict[str, object] = {
            "id": tcb_id or ("TDX" if self.tee is TeeType.TDX else "SGX"),
            "version": 3,
            "issueDate": _iso(issue),
            "nextUpdate": _iso(next_update),
            "fmspc": (fmspc or self.fmspc).hex().upper(),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": eval_num,
        }
        if is_tdx:
            info["tdxModule"] = {
                "mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8,
            }
            info["tdxModuleIdentities"] = list(module_identities or [
                {
                    "id": "TDX_01", "mrsigner": "00" * 48, "attributes": "00" * 8,
                    "attributesMask": "FF" * 8,
                    "tcbLevels": [
                        {"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                         "tcbStatus": "UpToDate"},
                        {"tcb": {"isvsvn": 2}, "tcbDate": "2023-08-09T00:00:00Z",
                         "tcbStatus": "OutOfDate", "advisoryIDs": ["INTEL-SA-01036"]},
                    ],
                }
            ])
        out_levels = []
        for level in levels if levels is not None else self.default_levels():
            tcb: dict[str, object] = {
                "sgxtcbcomponents": [{"svn": s} for s in level.sgx],
                "pcesvn": level.pcesvn,
            }
            if is_tdx:
                tcb["tdxtcbcomponents"] = [{"svn": s} for s in (level.tdx or (0,) * 16)]
            entry: dict[str, object] = {
                "tcb": tcb, "tcbDate": level.date, "tcbStatus": level.status,
            }
            if level.advisories:
                entry["advisoryIDs"] = list(level.advisories)
            out_levels.append(entry)
        info["tcbLevels"] = out_levels
        return self._signed("tcbInfo", info, key)

    def qe_identity_body(
        self,
        *,
        issue: dt.datetime,
        next_update: dt.datetime,
        mrsigner: bytes = SIM_QE_MRSIGNER,
        isvprodid: int | None = None,
        qe_id: str | None = None,
        levels: Sequence[tuple[int, str]] = ((8, "UpToDate"), (6, "OutOfDate")),
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> bytes:
        identity = {
            "id": qe_id or ("TD_QE" if self.tee is TeeType.TDX else "QE"),
            "version": 2,
            "issueDate": _iso(issue),
            "nextUpdate": _iso(next_update),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": mrsigner.hex().upper(),
            "isvprodid": self.qe_prod_id if isvprodid is None else isvprodid,
            "tcbLevels": [
                {"tcb": {"isvsvn": svn}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}
                for svn, status in levels
            ],
        }
        return self._signed("enclaveIdentity", identity, key)

    def _signed(
        self, kind: str, doc: dict[str, object], key: ec.EllipticCurvePrivateKey | None
    ) -> bytes:
        body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        signature = _raw_sig(key or self.tcb_key, body)
        head = b'{"' + kind.encode() + b'":'
        return head + body + b',"signature":"' + signature.hex().encode() + b'"}'

    def crl(
        self,
        *,
        issuer: str = "pck",
        revoked: Sequence[int] = (),
        this_update: dt.datetime,
        next_update: dt.datetime,
    ) -> x509.CertificateRevocationList:
        """A CRL of the PCK CA (``issuer='pck'``) or of the root (``'root'``)."""
        cert, key = (self.pck_ca, self.pck_ca_key) if issuer == "pck" else (
            self.root, self.root_key
        )
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(1), critical=False)
        )
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(this_update)
                .build()
            )
        return b.sign(key, hashes.SHA256())

    def write_collateral(
        self,
        directory: Path,
        *,
        issue: dt.datetime,
        next_update: dt.datetime,
        layout: str = "pcs",
    ) -> Path:
        """Write fresh signed collateral in the PCS-files or the ``collateral.json`` layout."""
        directory.mkdir(parents=True, exist_ok=True)
        tcb = self.tcb_info_body(issue=issue, next_update=next_update)
        qe = self.qe_identity_body(issue=issue, next_update=next_update)
        pck_crl = self.crl(this_update=issue, next_update=next_update).public_bytes(
            serialization.Encoding.DER
        )
        root_crl = self.crl(issuer="root", this_update=issue, next_update=next_update).public_bytes(
            serialization.Encoding.DER
        )
        signing_chain = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (self.tcb_cert, self.root)
        )
        if layout == "pcs":
            (directory / "tcbinfo.json").write_bytes(tcb)
            (directory / "qe_identity.json").write_bytes(qe)
            (directory / "pck_crl.der").write_bytes(pck_crl)
            (directory / "root_ca_crl.der").write_bytes(root_crl)
            (directory / "tcb_info_issuer_chain.pem").write_bytes(signing_chain)
        else:
            tcb_doc, qe_doc = json.loads(tcb), json.loads(qe)
            bundle = {
                "pck_crl_issuer_chain": "",
                "root_ca_crl": root_crl.hex(),
                "pck_crl": pck_crl.hex(),
                "tcb_info_issuer_chain": signing_chain.decode(),
                "tcb_info": json.dumps(tcb_doc["tcbInfo"], separators=(",", ":")),
                "tcb_info_signature": tcb_doc["signature"],
                "qe_identity_issuer_chain": signing_chain.decode(),
                "qe_identity": json.dumps(qe_doc["enclaveIdentity"], separators=(",", ":")),
                "qe_identity_signature": qe_doc["signature"],
            }
            (directory / "collateral.json").write_text(json.dumps(bundle, indent=2))
        (directory / "sim_root.pem").write_bytes(self.root.public_bytes(serialization.Encoding.PEM))
        return directory


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
