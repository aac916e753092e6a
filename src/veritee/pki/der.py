"""Just enough DER to read vendor extension values (INTEGER, IA5String, OCTET STRING)."""

from __future__ import annotations

from veritee.errors import EvidenceFormatError

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_UTF8_STRING = 0x0C
TAG_IA5_STRING = 0x16


def read_tlv(data: bytes) -> tuple[int, bytes]:
    """Decode one complete DER TLV that spans all of ``data``; returns (tag, value)."""
    if len(data) < 2:
        raise EvidenceFormatError("DER value too short")
    tag, first = data[0], data[1]
    pos = 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or len(data) < pos + n:
            raise EvidenceFormatError("DER length malformed")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length != len(data):
        raise EvidenceFormatError("DER value length does not match its encoding")
    return tag, data[pos:]


def decode_integer(data: bytes) -> int:
    tag, value = read_tlv(data)
    if tag != TAG_INTEGER or not value:
        raise EvidenceFormatError("expected a DER INTEGER")
    return int.from_bytes(value, "big", signed=True)


def decode_string(data: bytes) -> str:
    tag, value = read_tlv(data)
    if tag not in (TAG_IA5_STRING, TAG_UTF8_STRING):
        raise EvidenceFormatError("expected a DER IA5String or UTF8String")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EvidenceFormatError("DER string is not valid text") from exc


def encode_integer(value: int) -> bytes:
    length = max(1, (value.bit_length() + 8) // 8)
    body = value.to_bytes(length, "big", signed=True)
    return bytes([TAG_INTEGER, len(body)]) + body


def encode_ia5(text: str) -> bytes:
    body = text.encode("ascii")
    if len(body) > 127:
        raise ValueError("IA5String too long for this minimal encoder")
    return bytes([TAG_IA5_STRING, len(body)]) + body


# -- a small walker for SEQUENCEs of (OID, value) pairs (Intel PCK SGX extensions) ----------

TAG_BOOLEAN = 0x01
TAG_ENUMERATED = 0x0A
TAG_OID = 0x06
TAG_SEQUENCE = 0x30

_MAX_DEPTH_ITEMS = 4096


def read_tlv_at(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """Decode the DER TLV starting at ``pos``; returns (tag, value, position after it)."""
    if pos + 2 > len(data):
        raise EvidenceFormatError("DER value truncated")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise EvidenceFormatError("DER multi-byte tags are not supported")
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise EvidenceFormatError("DER length malformed")
        length = int.from_bytes(data[pos : pos + n], "big")
        if length < 0x80 or data[pos] == 0:
            raise EvidenceFormatError("DER length is not minimally encoded")
        pos += n
    end = pos + length
    if end > len(data):
        raise EvidenceFormatError("DER value runs past its container")
    return tag, data[pos:end], end


def iter_tlvs(content: bytes) -> list[tuple[int, bytes]]:
    """All TLVs that make up ``content`` (the value of a SEQUENCE), in order."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(content):
        if len(out) >= _MAX_DEPTH_ITEMS:
            raise EvidenceFormatError("DER SEQUENCE has too many items")
        tag, value, pos = read_tlv_at(content, pos)
        out.append((tag, value))
    return out


def decode_oid_value(value: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets."""
    if not value or value[-1] & 0x80:
        raise EvidenceFormatError("DER OBJECT IDENTIFIER malformed")
    arcs: list[int] = []
    acc = 0
    for byte in value:
        if acc == 0 and byte == 0x80:
            raise EvidenceFormatError("DER OBJECT IDENTIFIER arc is not minimally encoded")
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(acc)
            acc = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def encode_oid(dotted: str) -> bytes:
    """DER OBJECT IDENTIFIER (full TLV) for a dotted string."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return encode_tlv(TAG_OID, bytes(body))


def encode_tlv(tag: int, value: bytes) -> bytes:
    """One DER TLV with a minimal length."""
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + value


def oid_pairs(content: bytes, *, what: str) -> list[tuple[str, int, bytes]]:
    """Read ``SEQUENCE OF SEQUENCE { OID, value }`` content as (oid, value tag, value)."""
    out: list[tuple[str, int, bytes]] = []
    for tag, item in iter_tlvs(content):
        if tag != TAG_SEQUENCE:
            raise EvidenceFormatError(f"{what}: expected a SEQUENCE {{OID, value}}")
        parts = iter_tlvs(item)
        if len(parts) != 2 or parts[0][0] != TAG_OID:
            raise EvidenceFormatError(f"{what}: expected exactly an OID and a value")
        out.append((decode_oid_value(parts[0][1]), parts[1][0], parts[1][1]))
    return out
