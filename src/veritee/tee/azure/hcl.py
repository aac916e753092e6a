"""The Azure CVM "HCL report": what the paravisor (HCL) writes to the vTPM NV index 0x01400001.

Byte format only: no crypto, no policy. Layout (all integers little-endian u32)::

    header (32)       signature "HCLA", version, report_size, request_type, status,
                      reserved[3]
    hardware report   1184 bytes: an SEV-SNP ATTESTATION_REPORT (report_type 2), or an
                      Intel TDX TDREPORT_STRUCT in its first 1024 bytes (report_type 4)
    runtime data      data_size, version, report_type, hash_type, var_data_size,
                      var_data (the "runtime claims" JSON)
    padding           up to the size of the NV index (not covered by anything; kept)

``report_size`` counts header + hardware report + runtime data; ``data_size`` counts
the 20-byte runtime-data header + var_data. The hardware report's report data holds
H_hash_type(var_data), zero-padded to 64 bytes — that is how the runtime claims (and
the vTPM attestation key they name, ``HCLAkPub``) are bound to the hardware.

:meth:`HclReport.from_bytes` checks sizes and enumerations strictly and never reads
out of bounds; ``to_bytes`` reproduces the input exactly. :class:`RuntimeClaims` is
the JSON, parsed strictly (duplicate members refused).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError
from veritee.tee.snp.report import REPORT_SIZE as SNP_REPORT_SIZE
from veritee.tee.snp.report import SnpReport
from veritee.tee.tdx.quote import TdReport

HCL_SIGNATURE = b"HCLA"
HCL_VERSIONS = (1, 2)  # the versions seen in real reports (same layout)
HEADER_SIZE = 32
HW_REPORT_SIZE = SNP_REPORT_SIZE  # the hardware report area: max(SNP report, TDREPORT)
RUNTIME_HEADER_SIZE = 20
TDREPORT_SIZE = 1024
MAX_VAR_DATA = 64 * 1024
MAX_HCL_REPORT = 256 * 1024
AK_KEY_ID = "HCLAkPub"
EK_KEY_ID = "HCLEkPub"


class ReportType(enum.IntEnum):
    """IGVM_ATTEST report types the HCL writes."""

    SNP = 2
    TDX = 4


class HashType(enum.IntEnum):
    """IGVM_HASH_TYPE: how var_data is hashed into the hardware report's report data."""

    SHA256 = 1
    SHA384 = 2
    SHA512 = 3

    @property
    def hashlib_name(self) -> str:
        return {1: "sha256", 2: "sha384", 3: "sha512"}[int(self)]

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.hashlib_name, data).digest()


def _enum(kind: type[enum.IntEnum], value: int, what: str) -> int:
    try:
        return int(kind(value))
    except ValueError:
        known = ", ".join(f"{m.value} ({m.name})" for m in kind)
        raise EvidenceFormatError(f"HCL report: {what} {value} is not one of {known}") from None


@dataclass(frozen=True)
class HclReport:
    version: int
    request_type: int
    status: int
    reserved: bytes  # header reserved[3], 12 bytes, kept verbatim
    hardware_report: bytes  # the 1184-byte area
    runtime_version: int
    report_type: ReportType
    hash_type: HashType
    var_data: bytes
    padding: bytes = b""  # bytes after report_size (the rest of the NV index), kept verbatim

    @property
    def report_size(self) -> int:
        return HEADER_SIZE + HW_REPORT_SIZE + RUNTIME_HEADER_SIZE + len(self.var_data)

    @classmethod
    def from_bytes(cls, data: bytes) -> HclReport:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("HCL report must be bytes")
        if len(data) > MAX_HCL_REPORT:
            raise EvidenceFormatError(f"HCL report larger than {MAX_HCL_REPORT} bytes")
        rd = Reader(data, what="HCL report")
        signature = rd.bytes(4, "signature")
        if signature != HCL_SIGNATURE:
            raise EvidenceFormatError(
                f"HCL report: signature is {signature!r}, not {HCL_SIGNATURE!r}",
                hint="this is not an Azure CVM HCL report (vTPM NV index 0x01400001)",
            )
        version = rd.u32("version")
        if version not in HCL_VERSIONS:
            raise EvidenceFormatError(
                f"HCL report: version {version} is unknown (known: "
                f"{', '.join(map(str, HCL_VERSIONS))})"
            )
        report_size = rd.u32("report_size")
        request_type = rd.u32("request_type")
        status = rd.u32("status")
        reserved = rd.bytes(12, "reserved")
        hardware = rd.bytes(HW_REPORT_SIZE, "hardware report")
        data_size = rd.u32("runtime data_size")
        runtime_version = rd.u32("runtime version")
        report_type = _enum(ReportType, rd.u32("report_type"), "report_type")
        hash_type = _enum(HashType, rd.u32("hash_type"), "hash_type")
        var_size = rd.u32("var_data_size")
        if var_size > MAX_VAR_DATA:
            raise EvidenceFormatError(
                f"HCL report: var_data_size {var_size} exceeds {MAX_VAR_DATA} bytes"
            )
        if data_size != RUNTIME_HEADER_SIZE + var_size:
            raise EvidenceFormatError(
                f"HCL report: runtime data_size {data_size} is not the header "
                f"({RUNTIME_HEADER_SIZE}) plus var_data_size ({var_size})"
            )
        expected_size = HEADER_SIZE + HW_REPORT_SIZE + data_size
        if report_size != expected_size:
            raise EvidenceFormatError(
                f"HCL report: report_size {report_size} does not match its parts "
                f"({expected_size} bytes)"
            )
        var_data = rd.bytes(var_size, "var_data")
        padding = rd.rest("padding")
        return cls(
            version=version,
            request_type=request_type,
            status=status,
            reserved=reserved,
            hardware_report=hardware,
            runtime_version=runtime_version,
            report_type=ReportType(report_type),
            hash_type=HashType(hash_type),
            var_data=var_data,
            padding=padding,
        )

    def to_bytes(self) -> bytes:
        if len(self.hardware_report) != HW_REPORT_SIZE or len(self.reserved) != 12:
            raise ValueError("hardware report must be 1184 bytes and reserved 12 bytes")
        w = Writer()
        w.bytes(HCL_SIGNATURE).u32(self.version).u32(self.report_size)
        w.u32(self.request_type).u32(self.status).bytes(self.reserved)
        w.bytes(self.hardware_report)
        w.u32(RUNTIME_HEADER_SIZE + len(self.var_data)).u32(self.runtime_version)
        w.u32(int(self.report_type)).u32(int(self.hash_type)).u32(len(self.var_data))
        w.bytes(self.var_data).bytes(self.padding)
        return w.getvalue()

    # -- the parts ----------------------------------------------------------------------
    def var_data_digest(self) -> bytes:
        """H_hash_type(var_data): what the hardware report's report data must start with."""
        return self.hash_type.digest(self.var_data)

    def expected_report_data(self) -> bytes:
        """The 64-byte report data binding the runtime claims (digest, zero-padded)."""
        return self.var_data_digest().ljust(64, b"\0")

    def snp_report(self) -> SnpReport:
        if self.report_type is not ReportType.SNP:
            raise EvidenceFormatError(
                f"HCL report holds a {self.report_type.name} report, not an SEV-SNP report",
                hint="verify it as az-tdx-vtpm evidence",
            )
        return SnpReport.from_bytes(self.hardware_report)

    def td_report(self) -> TdReportStruct:
        if self.report_type is not ReportType.TDX:
            raise EvidenceFormatError(
                f"HCL report holds a {self.report_type.name} report, not a TDX TDREPORT",
                hint="verify it as az-snp-vtpm evidence",
            )
        return TdReportStruct.from_bytes(self.hardware_report[:TDREPORT_SIZE])

    def runtime_claims(self) -> RuntimeClaims:
        return RuntimeClaims.from_json(self.var_data)


# -- TDX TDREPORT_STRUCT (Intel TDX module ABI) -------------------------------------------------

TDREPORT_TYPE_TDX = 0x81


@dataclass(frozen=True)
class TdReportStruct:
    """TDREPORT_STRUCT: REPORTMACSTRUCT (256) | TEE_TCB_INFO (239) | reserved (17) | TDINFO (512).

    MAC-protected, not signed: only the TD quote made from it is verifiable remotely.
    Its fields are those of the quote's TD report body; ``body()`` returns them in that
    form so the two can be compared.
    """

    report_type: bytes  # type (0x81 = TDX), subtype, version, reserved
    reserved1: bytes
    cpu_svn: bytes
    tee_tcb_info_hash: bytes
    tee_info_hash: bytes
    report_data: bytes
    reserved2: bytes
    mac: bytes
    tee_tcb_info: bytes  # 239 bytes: valid, tee_tcb_svn, mrseam, mrsignerseam, attributes, ...
    reserved3: bytes
    td_info: bytes  # 512 bytes: attributes, xfam, mrtd, mrconfigid, ..., rtmr[4], servtd_hash
    _raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes) -> TdReportStruct:
        if len(data) != TDREPORT_SIZE:
            raise EvidenceFormatError(f"TDREPORT must be {TDREPORT_SIZE} bytes, got {len(data)}")
        rd = Reader(data, what="TDREPORT")
        value = cls(
            report_type=rd.bytes(4, "report_type"),
            reserved1=rd.bytes(12, "reserved1"),
            cpu_svn=rd.bytes(16, "cpu_svn"),
            tee_tcb_info_hash=rd.bytes(48, "tee_tcb_info_hash"),
            tee_info_hash=rd.bytes(48, "tee_info_hash"),
            report_data=rd.bytes(64, "report_data"),
            reserved2=rd.bytes(32, "reserved2"),
            mac=rd.bytes(32, "mac"),
            tee_tcb_info=rd.bytes(239, "tee_tcb_info"),
            reserved3=rd.bytes(17, "reserved"),
            td_info=rd.bytes(512, "td_info"),
        )
        rd.expect_end()
        if value.report_type[0] != TDREPORT_TYPE_TDX:
            raise EvidenceFormatError(
                f"TDREPORT type is {value.report_type[0]:#04x}, not {TDREPORT_TYPE_TDX:#04x} (TDX)"
            )
        object.__setattr__(value, "_raw", data)
        return value

    def to_bytes(self) -> bytes:
        if self._raw:
            return self._raw
        out = (
            self.report_type + self.reserved1 + self.cpu_svn + self.tee_tcb_info_hash
            + self.tee_info_hash + self.report_data + self.reserved2 + self.mac
            + self.tee_tcb_info + self.reserved3 + self.td_info
        )
        if len(out) != TDREPORT_SIZE:
            raise ValueError("TDREPORT fields do not add up to 1024 bytes")
        return out

    @property
    def version(self) -> int:
        return self.report_type[2]

    def body(self, *, td15: bool = False) -> TdReport:
        """The quote-body view of this report (TD report 1.5 fields when ``td15``)."""
        t, i = self.tee_tcb_info, self.td_info
        return TdReport(
            tee_tcb_svn=t[8:24],
            mr_seam=t[24:72],
            mr_signer_seam=t[72:120],
            seam_attributes=t[120:128],
            td_attributes=i[0:8],
            xfam=i[8:16],
            mr_td=i[16:64],
            mr_config_id=i[64:112],
            mr_owner=i[112:160],
            mr_owner_config=i[160:208],
            rtmr0=i[208:256],
            rtmr1=i[256:304],
            rtmr2=i[304:352],
            rtmr3=i[352:400],
            report_data=self.report_data,
            tee_tcb_svn2=t[128:144] if td15 else None,
            mr_servicetd=i[400:448] if td15 else None,
        )

    @classmethod
    def from_body(cls, body: TdReport, *, cpu_svn: bytes = bytes(16), mac: bytes = bytes(32),
                  version: int = 0) -> TdReportStruct:
        """A TDREPORT carrying ``body``'s fields (for simulators; hashes and MAC are not real)."""
        tcb = (
            b"\xff\x01" + bytes(6) + body.tee_tcb_svn + body.mr_seam + body.mr_signer_seam
            + body.seam_attributes + (body.tee_tcb_svn2 or bytes(16))
        )
        info = (
            body.td_attributes + body.xfam + body.mr_td + body.mr_config_id + body.mr_owner
            + body.mr_owner_config + body.rtmr0 + body.rtmr1 + body.rtmr2 + body.rtmr3
            + (body.mr_servicetd or bytes(48))
        )
        return cls(
            report_type=bytes([TDREPORT_TYPE_TDX, 0, version, 0]),
            reserved1=bytes(12),
            cpu_svn=cpu_svn,
            tee_tcb_info_hash=hashlib.sha384(tcb.ljust(239, b"\0")).digest(),
            tee_info_hash=hashlib.sha384(info.ljust(512, b"\0")).digest(),
            report_data=body.report_data,
            reserved2=bytes(32),
            mac=mac,
            tee_tcb_info=tcb.ljust(239, b"\0"),
            reserved3=bytes(17),
            td_info=info.ljust(512, b"\0"),
        )


# -- the runtime claims JSON ----------------------------------------------------------------------


@dataclass(frozen=True)
class RsaJwk:
    """An RSA public key from the runtime claims (``kty`` RSA; modulus and exponent big-endian)."""

    kid: str
    n: bytes
    e: bytes
    key_ops: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "kid": self.kid,
            "key_ops": list(self.key_ops),
            "kty": "RSA",
            "e": _b64url(self.e),
            "n": _b64url(self.n),
        }


VmConfigValue = str | int | bool


@dataclass(frozen=True)
class RuntimeClaims:
    """The HCL's var_data: the vTPM keys, the VM configuration and optional user data.

    Only RSA keys are kept (the HCL writes RSA AK and EK); members of other key types
    are skipped. ``vm_configuration`` keeps scalar members only.
    """

    keys: tuple[RsaJwk, ...]
    vm_configuration: tuple[tuple[str, VmConfigValue], ...] = ()
    user_data: bytes | None = None

    def key(self, kid: str) -> RsaJwk | None:
        for k in self.keys:
            if k.kid == kid:
                return k
        return None

    @property
    def ak_pub(self) -> RsaJwk:
        key = self.key(AK_KEY_ID)
        if key is None:
            raise EvidenceFormatError(
                f"HCL runtime claims hold no {AK_KEY_ID} key: the vTPM attestation key is missing"
            )
        return key

    @classmethod
    def from_json(cls, data: bytes) -> RuntimeClaims:
        try:
            doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise EvidenceFormatError(f"HCL runtime claims are not JSON ({exc})") from None
        if not isinstance(doc, Mapping):
            raise EvidenceFormatError("HCL runtime claims must be a JSON object")
        raw_keys = doc.get("keys")
        if not isinstance(raw_keys, list):
            raise EvidenceFormatError("HCL runtime claims: 'keys' must be a list of JWKs")
        keys: list[RsaJwk] = []
        for i, k in enumerate(raw_keys):
            if not isinstance(k, Mapping):
                raise EvidenceFormatError(f"HCL runtime claims: keys[{i}] must be an object")
            kid = k.get("kid")
            if not isinstance(kid, str):
                raise EvidenceFormatError(f"HCL runtime claims: keys[{i}].kid must be a string")
            if k.get("kty") != "RSA":
                if kid == AK_KEY_ID:
                    raise EvidenceFormatError(f"HCL runtime claims: {AK_KEY_ID} must be an RSA JWK")
                continue
            ops = k.get("key_ops", [])
            if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
                raise EvidenceFormatError(f"HCL runtime claims: keys[{i}].key_ops must be strings")
            keys.append(
                RsaJwk(
                    kid=kid,
                    n=_b64url_field(k.get("n"), f"keys[{i}].n"),
                    e=_b64url_field(k.get("e"), f"keys[{i}].e"),
                    key_ops=tuple(ops),
                )
            )
        if len({k.kid for k in keys}) != len(keys):
            raise EvidenceFormatError("HCL runtime claims: two keys share one kid")
        config = doc.get("vm-configuration", {})
        if not isinstance(config, Mapping):
            raise EvidenceFormatError("HCL runtime claims: 'vm-configuration' must be an object")
        vm_config = tuple(
            (str(name), value)
            for name, value in config.items()
            if isinstance(value, str | int | bool)
        )
        user_data = None
        if "user-data" in doc:
            ud = doc["user-data"]
            if not isinstance(ud, str):
                raise EvidenceFormatError("HCL runtime claims: 'user-data' must be a hex string")
            try:
                user_data = bytes.fromhex(ud)
            except ValueError:
                raise EvidenceFormatError("HCL runtime claims: 'user-data' is not hex") from None
        return cls(tuple(keys), vm_config, user_data)

    def to_json_bytes(self) -> bytes:
        """Compact JSON as the HCL writes it (used by simulators)."""
        doc: dict[str, object] = {
            "keys": [k.to_json() for k in self.keys],
            "vm-configuration": dict(self.vm_configuration),
        }
        if self.user_data is not None:
            doc["user-data"] = self.user_data.hex().upper()
        return json.dumps(doc, separators=(",", ":")).encode()


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate member {name!r}")
        out[name] = value
    return out


_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64url_decode(text: str) -> bytes:
    """Strict base64url (RFC 4648 section 5), padding optional: ValueError on anything else."""
    if not _B64URL.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise ValueError("not base64url")
    stripped = text.rstrip("=")
    try:
        return base64.b64decode(
            stripped.replace("-", "+").replace("_", "/") + "=" * (-len(stripped) % 4),
            validate=True,
        )
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64url_field(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise EvidenceFormatError(f"HCL runtime claims: {what} must be a base64url string")
    try:
        out = b64url_decode(value)
    except ValueError:
        raise EvidenceFormatError(f"HCL runtime claims: {what} is not base64url") from None
    if not out:
        raise EvidenceFormatError(f"HCL runtime claims: {what} is empty")
    return out
