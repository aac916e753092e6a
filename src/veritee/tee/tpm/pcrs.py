"""PCR values, per bank, and the files they travel in.

Byte/text formats only (no crypto, no policy):

* the ``tpm2_quote -o FILE -F serialized`` form: tpm2-tools writes its in-memory
  ``TPML_PCR_SELECTION`` followed by a ``UINT32`` count and that many ``TPML_DIGEST``
  structures, in host (little-endian) byte order with C padding;
* the ``-F values`` form: the selected values concatenated in selection order (needs the
  quote's selection to be read);
* JSON: ``{"sha256": {"0": "<hex>", ...}, ...}`` (optionally under a ``"pcrs"`` key), or
  a list of 24 SHA-256 hex values (the KBS ``tpm`` evidence form).
"""

from __future__ import annotations

import json
import operator
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError
from veritee.tee.tpm.structures import (
    HASH_SIZES,
    PCR_COUNT,
    PcrSelection,
    PcrSelectionList,
    TpmAlg,
    hash_alg,
    hash_name,
)

# tpm2-tools' in-memory layout (TSS2 headers): TPMS_PCR_SELECTION is hash u16, sizeofSelect
# u8, pcrSelect[4], one byte of padding; TPML_PCR_SELECTION holds 16 of them; TPML_DIGEST is
# a u32 count and 8 TPM2B_DIGESTs of u16 size + 64 bytes.
_SEL_SLOTS = 16
_SEL_BYTES = 8
_SELECT_MAX = 4
_DIGEST_SLOTS = 8
_TPM2B_DIGEST_BYTES = 2 + 64
_TPML_DIGEST_BYTES = 4 + _DIGEST_SLOTS * _TPM2B_DIGEST_BYTES
_SERIALIZED_HEADER = 4 + _SEL_SLOTS * _SEL_BYTES
_SELECTIONS = struct.Struct("<I" + "HB4sx" * _SEL_SLOTS)
_DIGEST_LIST = struct.Struct("<I" + "H64s" * _DIGEST_SLOTS)


@dataclass(frozen=True)
class PcrBanks:
    """PCR values by bank: ``banks[(alg, pcr)] = value``, kept in a stable order."""

    values: tuple[tuple[int, int, bytes], ...]

    @classmethod
    def from_mapping(cls, banks: Mapping[int, Mapping[int, bytes]]) -> PcrBanks:
        items = []
        for alg in sorted(banks):
            size = HASH_SIZES.get(alg)
            for pcr in sorted(banks[alg]):
                value = banks[alg][pcr]
                if size is not None and len(value) != size:
                    raise EvidenceFormatError(
                        f"PCR {pcr} in bank {hash_name(alg)} must be {size} bytes, "
                        f"got {len(value)}"
                    )
                if not 0 <= pcr < 256:
                    raise EvidenceFormatError(f"PCR index {pcr} out of range")
                items.append((alg, pcr, value))
        return cls(tuple(items))

    @property
    def _table(self) -> dict[int, dict[int, bytes]]:
        cached: dict[int, dict[int, bytes]] | None = self.__dict__.get("_table_cache")
        if cached is None:
            cached = {}
            for alg, pcr, value in self.values:
                cached.setdefault(alg, {})[pcr] = value
            object.__setattr__(self, "_table_cache", cached)
        return cached

    def as_dict(self) -> dict[int, dict[int, bytes]]:
        """A fresh ``{alg: {pcr: value}}`` copy."""
        return {alg: dict(bank) for alg, bank in self._table.items()}

    def bank(self, alg: int) -> dict[int, bytes]:
        return dict(self._table.get(alg, {}))

    def get(self, alg: int, pcr: int) -> bytes | None:
        return self._table.get(alg, {}).get(pcr)

    @property
    def algs(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(a for a, _, _ in self.values))

    def to_json(self) -> dict[str, dict[str, str]]:
        return {
            hash_name(alg): {str(pcr): v.hex() for pcr, v in sorted(bank.items())}
            for alg, bank in self.as_dict().items()
        }

    # -- JSON -------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, value: object) -> PcrBanks:
        if isinstance(value, Mapping) and "pcrs" in value:
            value = value["pcrs"]
        if isinstance(value, list):
            return cls.from_sha256_list(value)
        if not isinstance(value, Mapping):
            raise EvidenceFormatError("PCR JSON must map bank names to {pcr: hex} objects")
        banks: dict[int, dict[int, bytes]] = {}
        for bank_name, bank in value.items():
            try:
                alg = hash_alg(str(bank_name))
            except ValueError:
                raise EvidenceFormatError(f"PCR JSON: unknown bank {bank_name!r}") from None
            if not isinstance(bank, Mapping):
                raise EvidenceFormatError(f"PCR JSON: bank {bank_name!r} must be an object")
            out: dict[int, bytes] = {}
            for key, hexval in bank.items():
                try:
                    pcr = int(str(key), 0)
                    raw = bytes.fromhex(str(hexval).removeprefix("0x"))
                except ValueError:
                    raise EvidenceFormatError(
                        f"PCR JSON: {bank_name}[{key!r}] is not an index with a hex value"
                    ) from None
                out[pcr] = raw
            banks[alg] = out
        return cls.from_mapping(banks)

    @classmethod
    def from_sha256_list(cls, values: Iterable[object]) -> PcrBanks:
        """A list of SHA-256 PCR values indexed by position (KBS ``tpm_quote.pcrs``)."""
        out: dict[int, bytes] = {}
        for i, hexval in enumerate(values):
            if not isinstance(hexval, str):
                raise EvidenceFormatError(f"PCR list entry {i} is not a hex string")
            try:
                out[i] = bytes.fromhex(hexval)
            except ValueError:
                raise EvidenceFormatError(f"PCR list entry {i} is not hex") from None
        if len(out) > PCR_COUNT:
            raise EvidenceFormatError(f"PCR list has {len(out)} entries, at most {PCR_COUNT}")
        return cls.from_mapping({TpmAlg.SHA256: out})

    # -- tpm2-tools files -------------------------------------------------------------------
    @classmethod
    def from_tpm2_tools(cls, data: bytes) -> tuple[PcrSelectionList, PcrBanks]:
        """Parse ``tpm2_quote -F serialized`` output: (the selection it records, the values)."""
        layout = _LAYOUTS.get(data[:_SERIALIZED_HEADER])
        if layout is not None:
            fast = layout.read(data)
            if fast is not None:
                return fast
        sel, banks = cls._from_tpm2_tools(data)
        if layout is None and len(_LAYOUTS) < 256:
            made = _Layout.of(sel)
            if made is not None:
                _LAYOUTS[data[:_SERIALIZED_HEADER]] = made
        return sel, banks

    @classmethod
    def _from_tpm2_tools(cls, data: bytes) -> tuple[PcrSelectionList, PcrBanks]:
        """The field-by-field reader of the serialized form (every error named)."""
        rd = Reader(data, what="tpm2-tools PCR file")
        head = rd.unpack(_SELECTIONS, "TPML_PCR_SELECTION")
        count = head[0]
        if count > _SEL_SLOTS:
            raise EvidenceFormatError(f"tpm2-tools PCR file: {count} selections is too many")
        selections = []
        for i in range(count):
            alg, size, select = head[1 + 3 * i : 4 + 3 * i]
            if size > _SELECT_MAX:
                raise EvidenceFormatError(
                    f"tpm2-tools PCR file: sizeofSelect {size} exceeds {_SELECT_MAX}"
                )
            selections.append(PcrSelection(alg, select[:size]))
        n_lists = rd.u32("pcr value list count")
        if n_lists * _TPML_DIGEST_BYTES != rd.remaining:
            raise EvidenceFormatError(
                f"tpm2-tools PCR file: {n_lists} digest lists do not fill the "
                f"{rd.remaining} remaining bytes"
            )
        digests: list[bytes] = []
        for _ in range(n_lists):
            fields = rd.unpack(_DIGEST_LIST, "TPML_DIGEST")
            n = fields[0]
            if n > _DIGEST_SLOTS:
                raise EvidenceFormatError(f"tpm2-tools PCR file: TPML_DIGEST count {n} > 8")
            for j in range(n):
                size, buf = fields[1 + 2 * j], fields[2 + 2 * j]
                if size > 64:
                    raise EvidenceFormatError(f"tpm2-tools PCR file: digest size {size} > 64")
                digests.append(buf[:size])
        sel = PcrSelectionList(tuple(selections))
        wanted = sel._items
        if len(wanted) != len(digests):
            raise EvidenceFormatError(
                f"tpm2-tools PCR file selects {len(wanted)} PCRs but holds {len(digests)} values"
            )
        if len({s.hash_alg for s in selections}) != len(selections):
            raise EvidenceFormatError("tpm2-tools PCR file selects a bank twice")
        chunks = []
        start = 0
        for s in selections:
            pcrs = s.pcrs
            chunk = digests[start : start + len(pcrs)]
            start += len(pcrs)
            size = HASH_SIZES.get(s.hash_alg)
            if size is not None and any(len(v) != size for v in chunk):
                raise EvidenceFormatError(
                    f"tpm2-tools PCR file: a {hash_name(s.hash_alg)} value is not {size} bytes"
                )
            chunks.append((s.hash_alg, pcrs, chunk))
        chunks.sort(key=lambda c: c[0])
        banks = cls(tuple((a, p, v) for a, ps, vs in chunks for p, v in zip(ps, vs, strict=True)))
        # Remember the file's own order: a quote over the same selection (the usual case)
        # then needs no lookups (see values_for).
        object.__setattr__(banks, "_file_order", (sel, tuple(digests)))
        return sel, banks

    def to_tpm2_tools(self, selection: PcrSelectionList) -> bytes:
        """Write the ``-F serialized`` form for ``selection`` (inverse of from_tpm2_tools)."""
        if len(selection.selections) > _SEL_SLOTS:
            raise ValueError("too many selections for the tpm2-tools layout")
        w = Writer()
        w.u32(len(selection.selections))
        for i in range(_SEL_SLOTS):
            if i < len(selection.selections):
                s = selection.selections[i]
                if len(s.select) > _SELECT_MAX:
                    raise ValueError("selection bitmap longer than 4 bytes")
                w.u16(s.hash_alg).u8(len(s.select)).bytes(s.select.ljust(_SELECT_MAX, b"\0"))
            else:
                w.zeros(2 + 1 + _SELECT_MAX)
            w.zeros(1)
        values = self.values_for(selection)
        chunks = [values[i : i + _DIGEST_SLOTS] for i in range(0, len(values), _DIGEST_SLOTS)]
        w.u32(len(chunks))
        for chunk in chunks:
            w.u32(len(chunk))
            for j in range(_DIGEST_SLOTS):
                v = chunk[j] if j < len(chunk) else b""
                w.u16(len(v)).bytes(v.ljust(64, b"\0"))
        return w.getvalue()

    @classmethod
    def from_values(cls, data: bytes, selection: PcrSelectionList) -> PcrBanks:
        """Parse ``-F values``: the selected values back to back, sized by their bank."""
        rd = Reader(data, what="PCR values file")
        banks: dict[int, dict[int, bytes]] = {}
        for alg, pcr in selection.items():
            size = HASH_SIZES.get(alg)
            if size is None:
                raise EvidenceFormatError(f"PCR values file: unknown bank {alg:#06x}")
            banks.setdefault(alg, {})[pcr] = rd.bytes(size, f"{hash_name(alg)} PCR {pcr}")
        rd.expect_end()
        return cls.from_mapping(banks)

    def values_for(self, selection: PcrSelectionList) -> list[bytes]:
        """The values of ``selection``, in its order; EvidenceFormatError if one is missing."""
        ordered = self.__dict__.get("_file_order")
        if ordered is not None and ordered[0] == selection:
            return list(ordered[1])
        table = self._table
        out = []
        for alg, pcr in selection.items():
            bank = table.get(alg)
            value = bank.get(pcr) if bank is not None else None
            if value is None:
                raise EvidenceFormatError(
                    f"no value for PCR {pcr} of bank {hash_name(alg)}, which the quote selects"
                )
            out.append(value)
        return out


@dataclass(frozen=True)
class _Layout:
    """What a tpm2-tools header (its selection) fixes about the rest of the file: how
    tpm2-tools splits the values into TPML_DIGESTs of 8, and the size of each value. The
    digest lists are then read with one precompiled struct and checked against it."""

    selection: PcrSelectionList
    lists: int
    body: struct.Struct  # the u32 list count and every TPML_DIGEST, pads skipped
    ints: Callable[[tuple[Any, ...]], tuple[int, ...]]  # counts and sizes, as read
    expected_ints: tuple[int, ...]
    values: Callable[[tuple[Any, ...]], tuple[bytes, ...]]
    algs: tuple[int, ...]  # bank of each value, in PcrBanks order
    pcrs: tuple[int, ...]  # PCR of each value, in PcrBanks order
    order: tuple[int, ...] | None  # file position of each, when not the identity

    @classmethod
    def of(cls, sel: PcrSelectionList) -> _Layout | None:
        sizes = []
        for s in sel.selections:
            size = HASH_SIZES.get(s.hash_alg)
            if size is None:
                return None  # values of unknown size: the general reader only
            sizes += [size] * len(s.pcrs)
        if not sizes:
            return None
        fmt = ["<I"]
        ints: list[int] = [0]
        expected = [0]
        vals: list[int] = []
        pos = 1
        for start in range(0, len(sizes), _DIGEST_SLOTS):
            chunk = sizes[start : start + _DIGEST_SLOTS]
            fmt.append("I")
            ints.append(pos)
            expected.append(len(chunk))
            pos += 1
            for size in chunk:
                fmt.append(f"H{size}s{64 - size}x")
                ints.append(pos)
                expected.append(size)
                vals.append(pos + 1)
                pos += 2
            fmt.append(f"{(_DIGEST_SLOTS - len(chunk)) * _TPM2B_DIGEST_BYTES}x")
        lists = len(expected) - 1 - len(sizes)
        expected[0] = lists
        items = sel._items
        by_alg = sorted(range(len(items)), key=lambda i: items[i][0])  # stable, as the reader
        order = None if by_alg == list(range(len(items))) else tuple(by_alg)
        return cls(
            sel, lists, struct.Struct("".join(fmt)), operator.itemgetter(*ints),
            tuple(expected), _getter(vals), tuple(items[i][0] for i in by_alg),
            tuple(items[i][1] for i in by_alg), order,
        )

    def read(self, data: bytes) -> tuple[PcrSelectionList, PcrBanks] | None:
        """The file's selection and values, or None when the body is not laid out as
        tpm2-tools writes it (the general reader then decides)."""
        if len(data) != _SERIALIZED_HEADER + self.body.size:
            return None
        fields = self.body.unpack_from(data, _SERIALIZED_HEADER)
        if self.ints(fields) != self.expected_ints:
            return None
        digests = self.values(fields)
        ordered = digests if self.order is None else tuple(digests[i] for i in self.order)
        banks = PcrBanks(tuple(zip(self.algs, self.pcrs, ordered, strict=True)))
        object.__setattr__(banks, "_file_order", (self.selection, digests))
        return self.selection, banks


def _getter(positions: list[int]) -> Callable[[tuple[Any, ...]], tuple[bytes, ...]]:
    if len(positions) == 1:
        only = positions[0]
        return lambda fields: (fields[only],)
    return operator.itemgetter(*positions)


_LAYOUTS: dict[bytes, _Layout] = {}  # tpm2-tools header bytes -> layout (bounded)


def parse_pcr_file(data: bytes, selection: PcrSelectionList | None = None) -> PcrBanks:
    """Read a PCR file in any supported form (serialized, JSON, or raw values + selection)."""
    stripped = data.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EvidenceFormatError(f"PCR file is not valid JSON ({exc})") from None
        return PcrBanks.from_json(obj)
    if len(data) >= _SERIALIZED_HEADER + 4 and (
        (len(data) - _SERIALIZED_HEADER - 4) % _TPML_DIGEST_BYTES == 0
    ):
        return PcrBanks.from_tpm2_tools(data)[1]
    if selection is not None:
        return PcrBanks.from_values(data, selection)
    raise EvidenceFormatError(
        "PCR file is neither tpm2-tools serialized output nor JSON",
        hint="write it with `tpm2_quote -o FILE -F serialized`, or as JSON",
    )
