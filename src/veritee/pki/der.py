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
