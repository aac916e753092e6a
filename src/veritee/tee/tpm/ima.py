"""The Linux IMA runtime measurement list (``/sys/kernel/security/ima/*_runtime_measurements``).

Byte/text format only (no hashing, no policy). Both forms are read:

* ascii: ``PCR template-hash template-name field...`` per line;
* binary: per entry ``u32 pcr | template hash (20 bytes) | u32 name length | name |
  u32 template data length | template data`` in little-endian order (the kernel's
  canonical format; a big-endian host without ``ima_canonical_fmt`` is not supported).

Templates: ``ima`` (SHA-1 digest + fixed-size name), ``ima-ng`` (``algo:\\0digest`` +
path), ``ima-sig`` (+ signature), ``ima-buf`` (+ buffer) and ``ima-modsig``. The
``template_data`` of an entry is always the kernel's binary template data (each field
with its u32 length), the bytes the template hash covers (except for ``ima``).
"""

from __future__ import annotations

import binascii
import struct
from typing import NamedTuple

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError

DEFAULT_MAX_ENTRIES = 1 << 20
IMA_NAME_LEN_MAX = 255  # the "ima" template hashes names zero-padded to 256 bytes
TEMPLATE_FIELDS: dict[str, tuple[str, ...]] = {
    "ima": ("d", "n"),
    "ima-ng": ("d-ng", "n-ng"),
    "ima-sig": ("d-ng", "n-ng", "sig"),
    "ima-buf": ("d-ng", "n-ng", "buf"),
    "ima-modsig": ("d-ng", "n-ng", "sig", "d-modsig", "modsig"),
}
_U32 = struct.Struct("<I")


class ImaEntry(NamedTuple):
    """One measurement (immutable). ``number`` counts entries from 0; ``digest_alg`` is
    ``sha1`` for the legacy ``ima`` template; ``path`` is the file name (or buffer name for
    ima-buf). A named tuple rather than a dataclass: lists have 10^5 entries and building
    them is most of the cost of reading one."""

    number: int
    pcr: int
    template_hash: bytes
    template_name: str
    template_data: bytes
    digest_alg: str
    file_digest: bytes
    path: str
    signature: bytes | None = None
    buffer: bytes | None = None

    @property
    def is_violation(self) -> bool:
        """A ToMToU / open-writers violation: logged with an all-zero template hash and
        extended into the PCR as all ones."""
        return not any(self.template_hash)

    def describe(self) -> str:
        return f"IMA entry #{self.number} ({self.path!r})"

    def ascii_line(self) -> str:
        """The entry as the kernel prints it in ascii_runtime_measurements."""
        parts = [str(self.pcr), self.template_hash.hex(), self.template_name]
        if self.template_name == "ima":
            parts += [self.file_digest.hex(), self.path]
        else:
            parts += [f"{self.digest_alg}:{self.file_digest.hex()}", self.path]
            if self.template_name in ("ima-sig", "ima-modsig"):
                if self.signature:
                    parts.append(self.signature.hex())
            elif self.template_name == "ima-buf" and self.buffer is not None:
                parts.append(self.buffer.hex())
        return " ".join(parts)


def _field(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def _d_ng(alg: str, digest: bytes) -> bytes:
    return _field(alg.encode("ascii") + b":\0" + digest)


def _template_data(
    name: str, alg: str, digest: bytes, path: str, sig: bytes | None, buf: bytes | None
) -> bytes:
    path_b = path.encode("utf-8", "surrogateescape")
    if name == "ima":
        return digest + _field(path_b)
    out = _d_ng(alg, digest) + _field(path_b + b"\0")
    if name in ("ima-sig", "ima-modsig"):
        out += _field(sig or b"")
    if name == "ima-modsig":
        out += _field(b"") + _field(b"")
    if name == "ima-buf":
        out += _field(buf or b"")
    return out


def _parse_d_ng(raw: bytes, where: str) -> tuple[str, bytes]:
    sep = raw.find(b":\0")
    if sep <= 0:
        raise EvidenceFormatError(f"{where}: d-ng field has no 'algo:' prefix")
    try:
        alg = raw[:sep].decode("ascii")
    except UnicodeDecodeError:
        raise EvidenceFormatError(f"{where}: digest algorithm name is not ASCII") from None
    return alg, raw[sep + 2 :]


def _split_fields(data: bytes, where: str) -> list[bytes]:
    rd = Reader(data, what=where)
    out = []
    while rd.remaining:
        n = rd.u32("field length")
        out.append(rd.bytes(n, "field"))
    return out


def _entry_from_template(
    number: int, pcr: int, thash: bytes, name: str, data: bytes
) -> ImaEntry:
    where = f"IMA entry #{number}"
    if name == "ima":
        if len(data) < 24:
            raise EvidenceFormatError(f"{where}: 'ima' template data too short")
        digest = data[:20]
        (n,) = _U32.unpack_from(data, 20)
        if 24 + n != len(data):
            raise EvidenceFormatError(f"{where}: 'ima' template name length is inconsistent")
        path = data[24:].decode("utf-8", "surrogateescape")
        return ImaEntry(number, pcr, thash, name, data, "sha1", digest, path)
    fields = _split_fields(data, where)
    expected = TEMPLATE_FIELDS.get(name)
    if expected is None or len(fields) != len(expected):
        raise EvidenceFormatError(
            f"{where}: template {name!r} with {len(fields)} fields is not supported"
        )
    alg, digest = _parse_d_ng(fields[0], where)
    path = fields[1].rstrip(b"\0").decode("utf-8", "surrogateescape")
    sig = fields[2] if name in ("ima-sig", "ima-modsig") else None
    buf = fields[2] if name == "ima-buf" else None
    return ImaEntry(number, pcr, thash, name, data, alg, digest, path, sig, buf)


def parse_binary(data: bytes, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> tuple[ImaEntry, ...]:
    """Entries of ``binary_runtime_measurements``."""
    if not isinstance(data, bytes):
        raise EvidenceFormatError("IMA list must be bytes")
    rd = Reader(data, what="IMA binary list")
    out: list[ImaEntry] = []
    while rd.remaining:
        if len(out) >= max_entries:
            raise EvidenceFormatError(f"IMA list has more than {max_entries} entries")
        pcr = rd.u32("pcr")
        thash = rd.bytes(20, "template hash")
        n = rd.u32("template name length")
        if n > 255:
            raise EvidenceFormatError(f"IMA entry #{len(out)}: template name too long")
        try:
            name = rd.bytes(n, "template name").decode("ascii")
        except UnicodeDecodeError:
            raise EvidenceFormatError(f"IMA entry #{len(out)}: template name not ASCII") from None
        size = rd.u32("template data length")
        out.append(_entry_from_template(len(out), pcr, thash, name, rd.bytes(size, "template")))
    return tuple(out)


def to_binary(entries: tuple[ImaEntry, ...] | list[ImaEntry]) -> bytes:
    w = Writer()
    for e in entries:
        name = e.template_name.encode("ascii")
        w.u32(e.pcr).bytes(e.template_hash, 20).u32(len(name)).bytes(name)
        w.u32(len(e.template_data)).bytes(e.template_data)
    return w.getvalue()


def _unhex(text: bytes | str, where: str) -> bytes:
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise EvidenceFormatError(f"{where}: {text[:20]!r} is not hex") from None


_NG_HEADERS: dict[tuple[bytes, int], bytes] = {}


def _ng_header(alg: bytes, size: int) -> bytes:
    """u32 field length + ``algo:\0`` of a d-ng field (cached: a list uses one or two)."""
    key = (alg, size)
    head = _NG_HEADERS.get(key)
    if head is None:
        head = _U32.pack(len(alg) + 2 + size) + alg + b":\0"
        if len(_NG_HEADERS) < 64:
            _NG_HEADERS[key] = head
    return head


def parse_ascii_line(line: bytes | str, number: int) -> ImaEntry:
    """One line of ``ascii_runtime_measurements``."""
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")
    parts = line.split(b" ", 4)
    if len(parts) < 5:
        raise _bad_line(number, "expected 'PCR hash template digest path'")
    pcr_s, thash_s, name_b, digest_s, path_b = parts
    if not pcr_s.isdigit() or len(pcr_s) > 3:
        raise _bad_line(number, f"PCR {pcr_s[:8]!r} is not a number")
    thash = _unhex(thash_s, f"IMA entry #{number}")
    if len(thash) != 20:
        raise _bad_line(number, "template hash must be 20 bytes")
    sig: bytes | None = None
    buf: bytes | None = None
    if name_b == b"ima-ng":  # the common case, kept short
        alg_b, sep, hexd = digest_s.partition(b":")
        if not sep or not alg_b:
            raise _bad_line(number, f"digest {digest_s[:20]!r} has no 'algo:' prefix")
        digest = _unhex(hexd, f"IMA entry #{number}")
        if not path_b:
            raise _bad_line(number, "empty path")
        data = _ng_header(alg_b, len(digest)) + digest + _U32.pack(len(path_b) + 1) + path_b + b"\0"
        try:
            alg = alg_b.decode("ascii")
        except UnicodeDecodeError:
            raise _bad_line(number, "digest algorithm is not ASCII") from None
        return ImaEntry(number, int(pcr_s), thash, "ima-ng", data, alg, digest,
                        path_b.decode("utf-8", "surrogateescape"))
    try:
        name = name_b.decode("ascii")
    except UnicodeDecodeError:
        raise _bad_line(number, "template name is not ASCII") from None
    if name == "ima":
        alg, digest = "sha1", _unhex(digest_s, f"IMA entry #{number}")
        if len(digest) != 20:
            raise _bad_line(number, "'ima' template digest must be SHA-1")
    elif name in TEMPLATE_FIELDS:
        alg_b, sep, hexd = digest_s.partition(b":")
        if not sep or not alg_b:
            raise _bad_line(number, f"digest {digest_s[:20]!r} has no 'algo:' prefix")
        try:
            alg = alg_b.decode("ascii")
        except UnicodeDecodeError:
            raise _bad_line(number, "digest algorithm is not ASCII") from None
        digest = _unhex(hexd, f"IMA entry #{number}")
        if name in ("ima-sig", "ima-modsig", "ima-buf"):
            head, _, tail = path_b.rpartition(b" ")
            if head and _is_hex(tail):
                path_b = head
                if name == "ima-buf":
                    buf = _unhex(tail, f"IMA entry #{number}")
                else:
                    sig = _unhex(tail, f"IMA entry #{number}")
            elif name == "ima-buf":
                raise _bad_line(number, "ima-buf entry without a buffer")
    else:
        raise _bad_line(number, f"template {name[:32]!r} is not supported")
    if not path_b:
        raise _bad_line(number, "empty path")
    path = path_b.decode("utf-8", "surrogateescape")
    data = _template_data(name, alg, digest, path, sig, buf)
    return ImaEntry(number, int(pcr_s), thash, name, data, alg, digest, path, sig, buf)


def _bad_line(number: int, why: str) -> EvidenceFormatError:
    return EvidenceFormatError(f"IMA entry #{number}: {why}")


def _is_hex(text: bytes) -> bool:
    if not text or len(text) % 2:
        return False
    try:
        binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return False
    return True


def parse_ascii(
    text: str | bytes, *, start: int = 0, max_entries: int = DEFAULT_MAX_ENTRIES
) -> tuple[ImaEntry, ...]:
    """Entries of ``ascii_runtime_measurements`` (blank lines ignored), numbered from
    ``start`` (the position of the first line in the whole list, for incremental use)."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    out: list[ImaEntry] = []
    append = out.append
    unhex = binascii.unhexlify
    pack = _U32.pack
    headers = _NG_HEADERS
    number = start
    limit = start + max_entries
    for line in text.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.isspace():
            continue
        if number >= limit:
            raise EvidenceFormatError(f"IMA list has more than {max_entries} entries")
        parts = line.split(b" ", 4)
        # Fast path for the ima-ng lines that make up almost every list; anything unusual
        # (other templates, malformed fields) goes through parse_ascii_line.
        if len(parts) == 5 and parts[2] == b"ima-ng" and parts[4] and parts[0].isdigit():
            alg_b, sep, hexd = parts[3].partition(b":")
            if sep and alg_b and len(parts[0]) <= 3 and len(parts[1]) == 40:
                try:
                    thash = unhex(parts[1])
                    digest = unhex(hexd)
                    alg = alg_b.decode("ascii")
                except (binascii.Error, ValueError):
                    append(parse_ascii_line(line, number))
                    number += 1
                    continue
                path_b = parts[4]
                head = headers.get((alg_b, len(digest))) or _ng_header(alg_b, len(digest))
                append(ImaEntry(
                    number, int(parts[0]), thash, "ima-ng",
                    head + digest + pack(len(path_b) + 1) + path_b + b"\0",
                    alg, digest, path_b.decode("utf-8", "surrogateescape"),
                ))
                number += 1
                continue
        append(parse_ascii_line(line, number))
        number += 1
    return tuple(out)


def parse_list(data: bytes) -> tuple[ImaEntry, ...]:
    """Either form, told apart by the first bytes (ascii starts with the PCR digits)."""
    if data[:1].isdigit() and (b" " in data[:4]):
        return parse_ascii(data)
    return parse_binary(data)
