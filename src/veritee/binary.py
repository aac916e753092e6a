"""Bounds-checked little/big-endian byte reader and writer used by every format.

A :class:`Reader` never returns short data: reading past the end raises
:class:`~veritee.errors.EvidenceFormatError` naming the field and the offset, so a
parser built on it cannot crash on truncated or arbitrary input.
"""

from __future__ import annotations

import builtins
import struct
from typing import Any

from veritee.errors import EvidenceFormatError


class Reader:
    """Sequential reader over an immutable byte string."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, *, what: str = "data", offset: int = 0) -> None:
        if not isinstance(data, bytes):
            raise TypeError("Reader needs bytes")
        self._data = data
        self._pos = offset
        self._what = what

    @property
    def offset(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def _take(self, n: int, field: str) -> bytes:
        if n < 0:
            raise EvidenceFormatError(f"{self._what}: negative length for {field}")
        end = self._pos + n
        if end > len(self._data):
            raise EvidenceFormatError(
                f"{self._what}: truncated at offset {self._pos:#x} reading {field} "
                f"({n} bytes wanted, {self.remaining} left)"
            )
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def bytes(self, n: int, field: str = "bytes") -> bytes:
        return self._take(n, field)

    def skip(self, n: int, field: str = "padding") -> None:
        self._take(n, field)

    def zeros(self, n: int, field: str = "reserved") -> None:
        """Consume ``n`` bytes that the format requires to be zero."""
        start = self._pos
        chunk = self._take(n, field)
        if any(chunk):
            raise EvidenceFormatError(f"{self._what}: {field} at offset {start:#x} must be zero")

    def u8(self, field: str = "u8") -> int:
        return self._take(1, field)[0]

    def u16(self, field: str = "u16") -> int:
        return int.from_bytes(self._take(2, field), "little")

    def u32(self, field: str = "u32") -> int:
        return int.from_bytes(self._take(4, field), "little")

    def u64(self, field: str = "u64") -> int:
        return int.from_bytes(self._take(8, field), "little")

    def u16be(self, field: str = "u16") -> int:
        return int.from_bytes(self._take(2, field), "big")

    def u32be(self, field: str = "u32") -> int:
        return int.from_bytes(self._take(4, field), "big")

    def u64be(self, field: str = "u64") -> int:
        return int.from_bytes(self._take(8, field), "big")

    def unpack(self, fmt: struct.Struct, field: str = "fields") -> tuple[Any, ...]:
        """Read several fixed-size fields at once with a precompiled ``struct`` layout
        (bounds-checked like every other read; for hot paths such as PCR files)."""
        return fmt.unpack(self._take(fmt.size, field))

    def rest(self, field: str = "rest") -> builtins.bytes:
        return self._take(self.remaining, field)

    def expect_end(self) -> None:
        if self.remaining:
            raise EvidenceFormatError(
                f"{self._what}: {self.remaining} unexpected trailing bytes at offset {self._pos:#x}"
            )


class Writer:
    """Append-only byte builder; the inverse of :class:`Reader`."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def bytes(self, data: bytes, size: int | None = None) -> Writer:
        if size is not None and len(data) != size:
            raise ValueError(f"field must be {size} bytes, got {len(data)}")
        self._buf += data
        return self

    def zeros(self, n: int) -> Writer:
        self._buf += bytes(n)
        return self

    def _int(self, value: int, size: int, order: str) -> Writer:
        self._buf += value.to_bytes(size, order)  # type: ignore[arg-type]
        return self

    def u8(self, value: int) -> Writer:
        return self._int(value, 1, "little")

    def u16(self, value: int) -> Writer:
        return self._int(value, 2, "little")

    def u32(self, value: int) -> Writer:
        return self._int(value, 4, "little")

    def u64(self, value: int) -> Writer:
        return self._int(value, 8, "little")

    def u16be(self, value: int) -> Writer:
        return self._int(value, 2, "big")

    def u32be(self, value: int) -> Writer:
        return self._int(value, 4, "big")

    def u64be(self, value: int) -> Writer:
        return self._int(value, 8, "big")

    def getvalue(self) -> builtins.bytes:
        return bytes(self._buf)
