"""Intel PCS collateral documents: TCB Info (v2, v3) and Enclave (QE) Identity (v2).

Format only: no crypto, no policy. Intel signs the exact bytes of the inner
``"tcbInfo"`` / ``"enclaveIdentity"`` JSON value as served, so
:func:`split_signed` returns that exact substring next to the signature and the
document is parsed from it; nothing is ever re-serialized for verification
except the documented fallback for pretty-printed copies
(:attr:`SignedDocument.compact_bytes`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Literal

from veritee.errors import EvidenceFormatError

DocKind = Literal["tcbInfo", "enclaveIdentity"]
MAX_DOCUMENT_BYTES = 1 << 20
_WS = re.compile(r"[ \t\n\r]*")
_HEX = re.compile(r"^[0-9a-fA-F]*$")

TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    }
)


@dataclass(frozen=True)
class SignedDocument:
    """The exact signed bytes of one PCS document and Intel's raw (r||s) signature."""

    kind: DocKind
    signed_bytes: bytes
    signature: bytes

    @property
    def compact_bytes(self) -> bytes | None:
        """The compact re-serialization (key order kept) if the copy was pretty-printed."""
        try:
            value = json.loads(self.signed_bytes, object_pairs_hook=_pairs)
        except ValueError:
            return None
        compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return None if compact == self.signed_bytes else compact


class _Ordered(dict[str, object]):
    pass


def _pairs(items: list[tuple[str, object]]) -> _Ordered:
    out = _Ordered()
    for key, value in items:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """Character spans of each top-level member value of a JSON object in ``text``."""
    decoder = json.JSONDecoder()
    pos = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("{", pos):
        raise EvidenceFormatError("collateral JSON: expected an object")
    pos += 1
    spans: dict[str, tuple[int, int]] = {}
    first = True
    while True:
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if text.startswith("}", pos):
            if not first and not spans:
                raise EvidenceFormatError("collateral JSON: malformed object")
            pos += 1
            break
        if not first:
            if not text.startswith(",", pos):
                raise EvidenceFormatError("collateral JSON: expected ',' between members")
            pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        if not text.startswith('"', pos):
            raise EvidenceFormatError("collateral JSON: expected a member name")
        try:
            key, pos = scanstring(text, pos + 1)
        except ValueError as exc:
            raise EvidenceFormatError(f"collateral JSON: bad member name ({exc})") from None
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if not text.startswith(":", pos):
            raise EvidenceFormatError("collateral JSON: expected ':'")
        start = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
        try:
            _, end = decoder.raw_decode(text, start)
        except ValueError as exc:
            raise EvidenceFormatError(f"collateral JSON: bad value for {key!r} ({exc})") from None
        if key in spans:
            raise EvidenceFormatError(f"collateral JSON: duplicate member {key!r}")
        spans[key] = (start, end)
        pos = end
        first = False
    if text[pos:].strip():
        raise EvidenceFormatError("collateral JSON: trailing data after the object")
    return spans


def _text(data: bytes) -> str:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise EvidenceFormatError(f"collateral document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EvidenceFormatError("collateral document is not UTF-8 text") from None


def signature_bytes(value: object, what: str) -> bytes:
    """A 64-byte ECDSA signature given as hex text or as a JSON list of byte values."""
    if isinstance(value, str) and _HEX.match(value) and len(value) % 2 == 0:
        raw = bytes.fromhex(value)
    elif isinstance(value, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in value):
        raw = bytes(value)
    else:
        raise EvidenceFormatError(f"{what}: signature must be hex")
    if len(raw) != 64:
        raise EvidenceFormatError(f"{what}: signature must be 64 bytes (r||s), got {len(raw)}")
    return raw


def split_signed(body: bytes, kind: DocKind) -> SignedDocument:
    """``{"<kind>": {...}, "signature": "<hex>"}`` as Intel PCS serves it."""
    text = _text(body)
    spans = top_level_spans(text)
    if kind not in spans or "signature" not in spans:
        raise EvidenceFormatError(f"collateral JSON has no {kind!r} and 'signature' members")
    start, end = spans[kind]
    if not text.startswith("{", start):
        raise EvidenceFormatError(f"collateral JSON: {kind!r} must be an object")
    s_start, s_end = spans["signature"]
    signature = signature_bytes(json.loads(text[s_start:s_end]), kind)
    return SignedDocument(kind, text[start:end].encode("utf-8"), signature)


# -- parsed documents -----------------------------------------------------------------


def parse_time(value: object, what: str) -> dt.datetime:
    if not isinstance(value, str):
        raise EvidenceFormatError(f"{what} must be a date-time string")
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise EvidenceFormatError(f"{what} is not an ISO-8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise EvidenceFormatError(f"{what} must carry a time zone: {value!r}")
    return parsed.astimezone(dt.UTC)


def _obj(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise EvidenceFormatError(f"{what} must be an object")
    return value


def _list(value: object, what: str) -> Sequence[object]:
    if not isinstance(value, list):
        raise EvidenceFormatError(f"{what} must be a list")
    return value


def _uint(value: object, what: str, limit: int = 0xFFFFFFFF) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise EvidenceFormatError(f"{what} must be an integer 0..{limit}")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise EvidenceFormatError(f"{what} must be a string")
    return value


def _hex(value: object, size: int, what: str) -> bytes:
    text = _str(value, what)
    if not _HEX.match(text) or len(text) != 2 * size:
        raise EvidenceFormatError(f"{what} must be {size} bytes of hex")
    return bytes.fromhex(text)


def _advisories(level: Mapping[str, object], what: str) -> tuple[str, ...]:
    raw = level.get("advisoryIDs", [])
    return tuple(_str(a, f"{what} advisory id") for a in _list(raw, f"{what} advisoryIDs"))


def _status(value: object, what: str) -> str:
    status = _str(value, what)
    if status not in TCB_STATUSES:
        raise EvidenceFormatError(f"{what}: unrecognized TCB status {status!r}")
    return status


def _load(signed: bytes, what: str) -> Mapping[str, object]:
    try:
        value = json.loads(_text(signed), object_pairs_hook=_pairs)
    except ValueError as exc:
        raise EvidenceFormatError(f"{what}: not valid JSON ({exc})") from None
    return _obj(value, what)


@dataclass(frozen=True)
class TcbLevel:
    sgx_components: tuple[int, ...]
    pcesvn: int
    tdx_components: tuple[int, ...] | None
    tcb_date: dt.datetime
    tcb_status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class ModuleTcbLevel:
    """A TCB level keyed by one ISV SVN (TDX module identities, QE identity)."""

    isvsvn: int
    tcb_date: dt.datetime
    tcb_status: str
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class TdxModuleIdentity:
    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    tcb_levels: tuple[ModuleTcbLevel, ...] = ()


@dataclass(frozen=True)
class TcbInfo:
    id: str
    version: int
    issue_date: dt.datetime
    next_update: dt.datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModuleIdentity | None = None
    tdx_module_identities: tuple[TdxModuleIdentity, ...] = ()

    @classmethod
    def from_signed(cls, signed: bytes) -> TcbInfo:
        doc = _load(signed, "TCB info")
        version = _uint(doc.get("version"), "TCB info version")
        if version not in (2, 3):
            raise EvidenceFormatError(f"TCB info version {version} is not supported (2, 3)")
        tcb_id = _str(doc.get("id", "SGX"), "TCB info id") if version >= 3 else "SGX"
        if tcb_id not in ("SGX", "TDX"):
            raise EvidenceFormatError(f"TCB info id {tcb_id!r} is neither SGX nor TDX")
        levels = []
        for n, raw in enumerate(_list(doc.get("tcbLevels"), "tcbLevels")):
            what = f"TCB info tcbLevels[{n}]"
            level = _obj(raw, what)
            tcb = _obj(level.get("tcb"), f"{what}.tcb")
            if version >= 3:
                comps = _list(tcb.get("sgxtcbcomponents"), f"{what}.sgxtcbcomponents")
                sgx = tuple(
                    _uint(_obj(c, f"{what} component").get("svn"), f"{what} svn", 255)
                    for c in comps
                )
                tdx: tuple[int, ...] | None = None
                if tcb_id == "TDX":
                    tcomps = _list(tcb.get("tdxtcbcomponents"), f"{what}.tdxtcbcomponents")
                    tdx = tuple(
                        _uint(_obj(c, f"{what} component").get("svn"), f"{what} svn", 255)
                        for c in tcomps
                    )
                    if len(tdx) != 16:
                        raise EvidenceFormatError(f"{what}: 16 TDX TCB components expected")
            else:
                sgx = tuple(
                    _uint(tcb.get(f"sgxtcbcomp{i:02d}svn"), f"{what} comp {i}", 255)
                    for i in range(1, 17)
                )
                tdx = None
            if len(sgx) != 16:
                raise EvidenceFormatError(f"{what}: 16 SGX TCB components expected")
            levels.append(
                TcbLevel(
                    sgx_components=sgx,
                    pcesvn=_uint(tcb.get("pcesvn"), f"{what}.pcesvn", 0xFFFF),
                    tdx_components=tdx,
                    tcb_date=parse_time(level.get("tcbDate"), f"{what}.tcbDate"),
                    tcb_status=_status(level.get("tcbStatus"), f"{what}.tcbStatus"),
                    advisory_ids=_advisories(level, what),
                )
            )
        module = None
        identities: list[TdxModuleIdentity] = []
        if tcb_id == "TDX":
            raw_module = _obj(doc.get("tdxModule"), "TCB info tdxModule")
            module = _module_identity(raw_module, "tdxModule", with_levels=False)
            for n, raw in enumerate(_list(doc.get("tdxModuleIdentities", []), "identities")):
                identities.append(
                    _module_identity(_obj(raw, "identity"), f"tdxModuleIdentities[{n}]")
                )
        return cls(
            id=tcb_id,
            version=version,
            issue_date=parse_time(doc.get("issueDate"), "TCB info issueDate"),
            next_update=parse_time(doc.get("nextUpdate"), "TCB info nextUpdate"),
            fmspc=_hex(doc.get("fmspc"), 6, "TCB info fmspc"),
            pce_id=_hex(doc.get("pceId"), 2, "TCB info pceId"),
            tcb_type=_uint(doc.get("tcbType", 0), "TCB info tcbType"),
            tcb_evaluation_data_number=_uint(
                doc.get("tcbEvaluationDataNumber"), "TCB info tcbEvaluationDataNumber"
            ),
            tcb_levels=tuple(levels),
            tdx_module=module,
            tdx_module_identities=tuple(identities),
        )


def _module_levels(raw: object, what: str) -> tuple[ModuleTcbLevel, ...]:
    out = []
    for n, item in enumerate(_list(raw, f"{what}.tcbLevels")):
        level = _obj(item, f"{what}.tcbLevels[{n}]")
        tcb = _obj(level.get("tcb"), f"{what}.tcbLevels[{n}].tcb")
        out.append(
            ModuleTcbLevel(
                isvsvn=_uint(tcb.get("isvsvn"), f"{what} isvsvn", 0xFFFF),
                tcb_date=parse_time(level.get("tcbDate"), f"{what} tcbDate"),
                tcb_status=_status(level.get("tcbStatus"), f"{what} tcbStatus"),
                advisory_ids=_advisories(level, what),
            )
        )
    return tuple(out)


def _module_identity(
    raw: Mapping[str, object], what: str, *, with_levels: bool = True
) -> TdxModuleIdentity:
    return TdxModuleIdentity(
        id=_str(raw.get("id", "TDX"), f"{what}.id"),
        mrsigner=_hex(raw.get("mrsigner"), 48, f"{what}.mrsigner"),
        attributes=_hex(raw.get("attributes"), 8, f"{what}.attributes"),
        attributes_mask=_hex(raw.get("attributesMask"), 8, f"{what}.attributesMask"),
        tcb_levels=_module_levels(raw.get("tcbLevels"), what) if with_levels else (),
    )


@dataclass(frozen=True)
class QeIdentity:
    id: str
    version: int
    issue_date: dt.datetime
    next_update: dt.datetime
    tcb_evaluation_data_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    tcb_levels: tuple[ModuleTcbLevel, ...]

    @classmethod
    def from_signed(cls, signed: bytes) -> QeIdentity:
        doc = _load(signed, "QE identity")
        version = _uint(doc.get("version"), "QE identity version")
        if version != 2:
            raise EvidenceFormatError(f"QE identity version {version} is not supported (2)")
        qe_id = _str(doc.get("id"), "QE identity id")
        if qe_id not in ("QE", "TD_QE", "QVE"):
            raise EvidenceFormatError(f"QE identity id {qe_id!r} is not QE, TD_QE or QVE")
        return cls(
            id=qe_id,
            version=version,
            issue_date=parse_time(doc.get("issueDate"), "QE identity issueDate"),
            next_update=parse_time(doc.get("nextUpdate"), "QE identity nextUpdate"),
            tcb_evaluation_data_number=_uint(
                doc.get("tcbEvaluationDataNumber"), "QE identity tcbEvaluationDataNumber"
            ),
            miscselect=int.from_bytes(_hex(doc.get("miscselect"), 4, "miscselect"), "big"),
            miscselect_mask=int.from_bytes(
                _hex(doc.get("miscselectMask"), 4, "miscselectMask"), "big"
            ),
            attributes=_hex(doc.get("attributes"), 16, "QE identity attributes"),
            attributes_mask=_hex(doc.get("attributesMask"), 16, "QE identity attributesMask"),
            mrsigner=_hex(doc.get("mrsigner"), 32, "QE identity mrsigner"),
            isvprodid=_uint(doc.get("isvprodid"), "QE identity isvprodid", 0xFFFF),
            tcb_levels=_module_levels(doc.get("tcbLevels"), "QE identity"),
        )
