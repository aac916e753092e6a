"""Verify an IMA measurement list: template hashes, and the aggregate against a quoted PCR.

Pure: hashing only. Each entry's template hash must be the SHA-1 of its template data
(``ima`` template: of the digest and the name zero-padded to 256 bytes); violation
entries carry an all-zero hash and extend all ones. The aggregate of a bank is
``PCR = H(PCR || H_bank(template data))`` over the entries of that PCR (for SHA-1 the
logged template hash itself).

Verification is incremental: an :class:`ImaState` (how many entries have been
verified and the PCR value they produce) lets the next round continue from there
without re-reading the list, as keylime does. The quoted value may match a prefix of the
list: entries measured after the quote are returned as not yet covered.

:func:`verify_ima_ascii`, :func:`verify_ima_binary` and :func:`verify_ima_list` read and
verify a list in one pass: exactly ``verify_ima(parse_ascii(...))`` (and the binary and
either-form equivalents), the same result and the same errors, in less time.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import operator
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import cast

from veritee.errors import EvidenceFormatError, MismatchError
from veritee.tee.tpm.ima import (
    _U32,
    DEFAULT_MAX_ENTRIES,
    IMA_NAME_LEN_MAX,
    ImaEntry,
    _entry_from_template,
    _ng_header,
    parse_ascii,
    parse_ascii_line,
    parse_binary,
)
from veritee.tee.tpm.structures import HASH_SIZES, TpmAlg, hash_name, hashlib_name

IMA_PCR = 10


class ImaMismatchError(MismatchError):
    """The list is not what the TPM measured; ``entry`` is the entry named as the cause
    (None when no single entry can be named), ``first``/``last`` bound where it is."""

    code = "tpm.ima_mismatch"

    def __init__(
        self,
        message: str,
        *,
        entry: ImaEntry | None,
        first: int | None = None,
        last: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.entry = entry
        self.first = first
        self.last = last


@dataclass(frozen=True)
class ImaState:
    """Where a verification left off: ``position`` entries verified, producing ``value``
    in PCR ``pcr`` of bank ``alg``."""

    alg: int
    position: int
    value: bytes
    pcr: int = IMA_PCR

    @classmethod
    def initial(cls, alg: int = TpmAlg.SHA1, pcr: int = IMA_PCR) -> ImaState:
        size = HASH_SIZES.get(alg)
        if size is None:
            raise ValueError(f"unknown bank {alg:#06x}")
        return cls(alg, 0, bytes(size), pcr)


@dataclass(frozen=True)
class VerifiedIma:
    """Entries [start, state.position) reproduce ``state.value``; ``pending`` entries
    came after the quote and are not covered yet."""

    start: int
    state: ImaState
    entries: tuple[ImaEntry, ...]
    pending: tuple[ImaEntry, ...]
    quoted: bool  # True when state.value equals a quoted PCR value


def template_hash(entry: ImaEntry) -> bytes:
    """SHA-1 template hash the kernel logs for ``entry``."""
    return hashlib.sha1(_hashed_template(entry)).digest()  # noqa: S324 - SHA-1 by the IMA format


def _hashed_template(entry: ImaEntry) -> bytes:
    if entry.template_name == "ima":
        name = entry.path.encode("utf-8", "surrogateescape")[:IMA_NAME_LEN_MAX]
        return entry.file_digest + name.ljust(IMA_NAME_LEN_MAX + 1, b"\0")
    return entry.template_data


def verify_ima(
    entries: Sequence[ImaEntry],
    *,
    state: ImaState | None = None,
    alg: int = TpmAlg.SHA1,
    expected: bytes | None = None,
    checkpoints: Mapping[int, bytes] | None = None,
) -> VerifiedIma:
    """Check template hashes and replay the aggregate from ``state`` (default: boot).

    ``entries`` may be the whole list or only its tail, numbered from ``state.position``
    (as :func:`veritee.tee.tpm.ima.parse_ascii` numbers them); entries already covered by
    ``state`` are skipped. With ``expected`` (the quoted PCR value) the aggregate must
    equal it after some entry; later entries are returned as ``pending``.
    ``checkpoints`` maps a position (number of entries) to the PCR value known to hold
    there (earlier verified rounds); the first disagreement localizes a removed,
    reordered or rewritten entry.
    """
    st = state if state is not None else ImaState.initial(alg)
    bank = st.alg
    size = HASH_SIZES[bank]
    ones = b"\xff" * size
    zero_hash = bytes(20)
    hbank = getattr(hashlib, hashlib_name(bank))
    sha1 = hashlib.sha1
    todo = [e for e in entries if e.number >= st.position]
    if todo and todo[0].number != st.position:
        raise EvidenceFormatError(
            f"IMA list resumes at entry #{todo[0].number}, but verification stopped at "
            f"#{st.position}",
            hint="send the list from the last verified position on",
        )
    value = st.value
    if expected is not None and value == expected:
        return VerifiedIma(st.position, st, (), tuple(todo), True)
    checkpoints = checkpoints or {}
    last_good = st.position
    matched_at: int | None = None
    base = st.position
    target_pcr = st.pcr
    is_sha1 = bank == TpmAlg.SHA1
    for i, e in enumerate(todo):
        if e.number != base + i:
            raise EvidenceFormatError(f"IMA entries are not consecutive at #{e.number}")
        data = e.template_data if e.template_name != "ima" else _hashed_template(e)
        logged = e.template_hash
        violation = logged == zero_hash
        if not violation and sha1(data).digest() != logged:
            raise ImaMismatchError(
                f"{e.describe()}: template hash {logged.hex()} does not match its data "
                f"({e.digest_alg}:{e.file_digest.hex()}, {e.template_name})",
                entry=e, first=e.number, last=e.number,
                hint="the entry was altered after the kernel measured it",
            )
        if e.pcr != target_pcr:
            continue
        if violation:
            ext = ones
        elif is_sha1:
            ext = logged
        else:
            ext = hbank(data).digest()
        value = hbank(value + ext).digest()
        pos = e.number + 1
        want = checkpoints.get(pos) if checkpoints else None
        if want is not None:
            if not hmac.compare_digest(value, want):
                raise _localized(todo, last_good, pos, bank, st.pcr)
            last_good = pos
        if expected is not None and value == expected:
            matched_at = i + 1
            break
    if expected is not None and matched_at is None:
        span = f"entries #{last_good}..#{todo[-1].number}" if todo else "no entries"
        raise ImaMismatchError(
            f"IMA list does not reproduce the quoted PCR {st.pcr} ({hash_name(bank)}) "
            f"{expected.hex()}: no prefix of {span} does; an entry there was removed, "
            "reordered, or rewritten together with its template hash",
            entry=None, first=last_good, last=todo[-1].number if todo else None,
            hint="compare with the previous verified state (checkpoints) to locate it",
        )
    covered = todo if matched_at is None else todo[:matched_at]
    pending = () if matched_at is None else tuple(todo[matched_at:])
    new_state = ImaState(bank, st.position + len(covered), value, st.pcr)
    return VerifiedIma(st.position, new_state, tuple(covered), pending, expected is not None)


def _localized(
    todo: Sequence[ImaEntry], good: int, bad: int, bank: int, pcr: int
) -> ImaMismatchError:
    span = [e for e in todo if good <= e.number < bad]
    if len(span) == 1:
        e = span[0]
        return ImaMismatchError(
            f"{e.describe()} is not the entry measured at position #{e.number}: the list "
            f"agrees with the verified PCR {pcr} ({hash_name(bank)}) value up to entry "
            f"#{good - 1} and not after it (entry removed, reordered or rewritten)",
            entry=e, first=e.number, last=e.number,
        )
    first, last = span[0], span[-1]
    return ImaMismatchError(
        f"IMA list departs from the verified PCR {pcr} ({hash_name(bank)}) between "
        f"{first.describe()} and {last.describe()} (an entry there was removed, reordered "
        "or rewritten)",
        entry=first, first=first.number, last=last.number,
    )


def boot_aggregate(pcrs: Mapping[int, bytes], alg: int, *, through: int = 7) -> bytes:
    """The digest IMA's first entry records: H(PCR0 || ... || PCR``through``) of one bank
    (kernels since 5.8 include PCRs 8 and 9 for TPM 2.0: ``through=9``)."""
    h = hashlib.new(hashlib_name(alg))
    for i in range(through + 1):
        v = pcrs.get(i)
        if v is None:
            raise EvidenceFormatError(f"boot_aggregate needs PCR {i}")
        h.update(v)
    return h.digest()


def check_boot_aggregate(entry: ImaEntry, pcrs: Mapping[int, bytes], alg: int) -> None:
    """The list's boot_aggregate entry must match the quoted PCRs 0-7 (or 0-9)."""
    if entry.path != "boot_aggregate":
        raise ImaMismatchError(
            f"{entry.describe()}: the first IMA entry must be boot_aggregate", entry=entry
        )
    if hash_name(alg) != entry.digest_alg:
        raise EvidenceFormatError(
            f"boot_aggregate is {entry.digest_alg}, the quoted bank is {hash_name(alg)}"
        )
    for through in (7, 9):
        try:
            if hmac.compare_digest(boot_aggregate(pcrs, alg, through=through), entry.file_digest):
                return
        except EvidenceFormatError:
            continue
    raise ImaMismatchError(
        f"{entry.describe()}: boot_aggregate {entry.file_digest.hex()} does not match the "
        "quoted PCRs 0-7 / 0-9",
        entry=entry, first=entry.number, last=entry.number,
        hint="the IMA list is from another boot",
    )



# -- fused parse + verify ------------------------------------------------------------------
#
# verify_ima(parse_ascii(text)) builds every entry through the general parser, then walks
# the entries again to hash them. The functions below read the list and verify it in
# fewer, cheaper steps and return the same VerifiedIma. They decide nothing on their own
# but success: a line or record they do not recognise goes to the reference parser
# (parse_ascii_line, _entry_from_template, or parse_binary for a malformed binary list),
# and any verification failure is handed to verify_ima over the very same entries, so
# every error (type, message, named entry) is the reference's by construction.

_ZERO20 = bytes(20)
_TUPLE_NEW = tuple.__new__
_U32_PACK = _U32.pack
_BIN_HEAD = struct.Struct("<I20sI")  # pcr, template hash, template name length
_MAKE_ENTRY = cast(
    "Callable[[tuple[object, ...]], ImaEntry]", functools.partial(tuple.__new__, ImaEntry)
)
# Every PCR field parse_ascii accepts (1 to 3 ASCII digits) and its value.
_PCR_NUMBERS: dict[bytes, int] = {
    str(i).zfill(w).encode(): i for w in (1, 2, 3) for i in range(10**w)
}
# ima-ng digest algorithm -> (name, hex digest length, d-ng field header). The usual ones
# are known; others are learnt from entries the reference parser reads (bounded).
_NG_INFO: dict[bytes, tuple[str, int, bytes]] = {
    name.encode(): (name, 2 * size, _ng_header(name.encode(), size))
    for name, size in (("sha1", 20), ("sha256", 32), ("sha384", 48), ("sha512", 64))
}
_HASHERS: dict[int, Callable[[bytes], hashlib._Hash]] = {
    TpmAlg.SHA1: hashlib.sha1,
    TpmAlg.SHA256: hashlib.sha256,
    TpmAlg.SHA384: hashlib.sha384,
    TpmAlg.SHA512: hashlib.sha512,
}
_SHA1_DIGEST: Callable[[hashlib._Hash], bytes] = type(
    hashlib.sha1()  # noqa: S324 - SHA-1 by the IMA format
).digest
_LEN_NUL = [_U32.pack(i + 1) for i in range(4096)]  # u32 length of a name and its NUL


def _remember_ng(e: ImaEntry, alg_b: bytes) -> None:
    if e.template_name == "ima-ng" and alg_b not in _NG_INFO and len(_NG_INFO) < 64:
        size = len(e.file_digest)
        _NG_INFO[alg_b] = (e.digest_alg, 2 * size, _ng_header(alg_b, size))


def verify_ima_ascii(
    text: str | bytes,
    *,
    start: int = 0,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    state: ImaState | None = None,
    alg: int = TpmAlg.SHA1,
    expected: bytes | None = None,
    checkpoints: Mapping[int, bytes] | None = None,
) -> VerifiedIma:
    """``verify_ima(parse_ascii(text, start=start, max_entries=max_entries), state=state,
    alg=alg, expected=expected, checkpoints=checkpoints)``, faster: the same entries, the
    same result and the same errors."""

    def reference(entries: Sequence[ImaEntry] | None = None) -> VerifiedIma:
        if entries is None:
            entries = parse_ascii(text, start=start, max_entries=max_entries)
        return verify_ima(
            entries, state=state, alg=alg, expected=expected, checkpoints=checkpoints
        )

    setup = _setup(state, alg, expected, start)
    if setup is None:
        return reference()
    st, hbank = setup
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    if not checkpoints and b"\r" not in data:
        done = _canonical_ascii(data, start, max_entries, st, hbank, expected, reference)
        if done is not None:
            return done
    entries = _parse_ascii(data, start, max_entries)
    verified = _verify_entries(entries, st.position - start, st, hbank, expected, checkpoints)
    return verified if verified is not None else reference(entries)


def verify_ima_binary(
    data: bytes,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    state: ImaState | None = None,
    alg: int = TpmAlg.SHA1,
    expected: bytes | None = None,
    checkpoints: Mapping[int, bytes] | None = None,
) -> VerifiedIma:
    """``verify_ima(parse_binary(data, max_entries=max_entries), ...)``, faster: the same
    entries, the same result and the same errors."""

    def reference(entries: Sequence[ImaEntry] | None = None) -> VerifiedIma:
        if entries is None:
            entries = parse_binary(data, max_entries=max_entries)
        return verify_ima(
            entries, state=state, alg=alg, expected=expected, checkpoints=checkpoints
        )

    setup = _setup(state, alg, expected, 0)
    if setup is None or not isinstance(data, bytes):
        return reference()
    st, hbank = setup
    entries = _parse_binary(data, max_entries)
    if entries is None:
        return reference()
    verified = _verify_entries(entries, st.position, st, hbank, expected, checkpoints)
    return verified if verified is not None else reference(entries)


def verify_ima_list(
    data: bytes,
    *,
    state: ImaState | None = None,
    alg: int = TpmAlg.SHA1,
    expected: bytes | None = None,
    checkpoints: Mapping[int, bytes] | None = None,
) -> VerifiedIma:
    """``verify_ima(parse_list(data), ...)``: either form, told apart as parse_list does."""
    if data[:1].isdigit() and (b" " in data[:4]):
        return verify_ima_ascii(
            data, state=state, alg=alg, expected=expected, checkpoints=checkpoints
        )
    return verify_ima_binary(
        data, state=state, alg=alg, expected=expected, checkpoints=checkpoints
    )


def _setup(
    state: ImaState | None, alg: int, expected: bytes | None, start: int
) -> tuple[ImaState, Callable[[bytes], hashlib._Hash]] | None:
    """The starting state and bank hash, or None where verify_ima is to decide alone (an
    unknown bank, a gap before the first entry, or a quote that covers nothing new)."""
    try:
        st = state if state is not None else ImaState.initial(alg)
        hbank = _HASHERS.get(st.alg) or getattr(hashlib, hashlib_name(st.alg))
    except (ValueError, EvidenceFormatError):
        return None
    if start > st.position or (expected is not None and st.value == expected):
        return None
    return st, hbank


def _canonical_ascii(
    data: bytes,
    start: int,
    max_entries: int,
    st: ImaState,
    hbank: Callable[[bytes], hashlib._Hash],
    expected: bytes | None,
    reference: Callable[[Sequence[ImaEntry]], VerifiedIma],
) -> VerifiedIma | None:
    """A list as the kernel writes it (every line an ima-ng entry of the verified PCR,
    with the same PCR field and digest algorithm as the first line, no violations), read
    column by column with C-level operations. None for any other list: the line-by-line
    reader takes it.

    Such a line is ``P TTT...T ima-ng ALG:HHH...H PATH`` with every part but PATH of a
    fixed size, so its fields are at fixed offsets: each line is checked to have P,
    " ima-ng ALG:" and the space before PATH there, and hex where parse_ascii unhexes.
    Its fields are then exactly parse_ascii's ``line.split(b" ", 4)`` (PATH may hold
    spaces) and pass every check of parse_ascii's ima-ng path."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    n = len(lines)
    if n == 0 or n > max_entries:
        return None
    parts = lines[0].split(b" ", 4)
    if len(parts) != 5 or _PCR_NUMBERS.get(parts[0]) != st.pcr:
        return None
    alg_b, sep, _ = parts[3].partition(b":")
    info = _NG_INFO.get(alg_b)
    if not sep or info is None:
        return None
    alg, hex_len, head = info
    lead = parts[0] + b" "  # P and the first space
    at_mid = len(lead) + 40
    mid = b" ima-ng " + alg_b + b":"
    at_hex = at_mid + len(mid)
    at_path = at_hex + hex_len + 1
    if not (
        all(map(bytes.startswith, lines, repeat(lead, n)))
        and all(map(bytes.startswith, lines, repeat(mid, n), repeat(at_mid, n)))
    ):
        return None
    try:
        if list(map(operator.itemgetter(at_path - 1), lines)).count(0x20) != n:
            return None
    except IndexError:  # a line too short
        return None
    path_f = list(map(operator.itemgetter(slice(at_path, None)), lines))
    if not all(path_f):
        return None
    try:  # hex (binascii.Error otherwise); a line is long enough to hold both in full
        thashes = list(map(binascii.unhexlify, map(
            operator.itemgetter(slice(len(lead), at_mid)), lines)))
        digests = list(map(binascii.unhexlify, map(
            operator.itemgetter(slice(at_hex, at_path - 1)), lines)))
    except ValueError:
        return None
    if _ZERO20 in thashes:
        return None  # violations: the line-by-line reader handles them
    first = st.position - start
    sizes = list(map(len, path_f))
    if max(sizes) >= len(_LEN_NUL):
        return None
    datas = list(map(b"".join, zip(
        repeat(head, n), digests, map(_LEN_NUL.__getitem__, sizes), path_f, repeat(b"\0", n),
        strict=True,
    )))
    value, used = _aggregate(st, hbank, thashes[first:], datas[first:], expected)
    matched = first + used if used >= 0 else -1
    stop = matched if matched >= 0 else n
    good = list(map(_SHA1_DIGEST, map(hashlib.sha1, datas[first:stop]))) == thashes[first:stop]
    try:
        paths = list(map(bytes.decode, path_f))
    except UnicodeDecodeError:
        paths = list(map(bytes.decode, path_f, repeat("utf-8", n), repeat("surrogateescape", n)))
    entries = list(map(_MAKE_ENTRY, zip(
        range(start, start + n), repeat(st.pcr, n), thashes, repeat("ima-ng", n), datas,
        repeat(alg, n), digests, paths, repeat(None, n), repeat(None, n), strict=True,
    )))
    if not good or (expected is not None and matched < 0):
        return reference(entries)
    return _result(entries, first, matched, st, value, expected)


def _aggregate(
    st: ImaState,
    hbank: Callable[[bytes], hashlib._Hash],
    thashes: list[bytes],
    datas: list[bytes],
    expected: bytes | None,
) -> tuple[bytes, int]:
    """``st.value`` extended by each entry in turn (none a violation, all in the PCR), up
    to the first value equal to ``expected``: the value, and how many entries that took
    (-1 when no value was equal)."""
    value = st.value
    sha1 = hashlib.sha1
    if st.alg == TpmAlg.SHA1:
        if expected is None:
            for th in thashes:
                value = sha1(value + th).digest()
            return value, -1
        left = iter(thashes)
        for th in left:
            value = sha1(value + th).digest()
            if value == expected:
                return value, len(thashes) - len(list(left))
        return value, -1
    rest = iter(datas)
    for d in rest:
        value = hbank(value + hbank(d).digest()).digest()
        if value == expected:
            return value, len(datas) - len(list(rest))
    return value, -1


def _parse_ascii(data: bytes, start: int, max_entries: int) -> list[ImaEntry]:
    """parse_ascii (same entries, same errors) with its common ima-ng lines read with
    cached per-algorithm constants."""
    out: list[ImaEntry] = []
    append = out.append
    unhex = binascii.unhexlify
    pack = _U32_PACK
    new = _TUPLE_NEW
    pcr_numbers = _PCR_NUMBERS
    ng_info = _NG_INFO
    number = start
    limit = start + max_entries
    for line in data.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        parts = line.split(b" ", 4)
        if (
            len(parts) == 5
            and parts[2] == b"ima-ng"
            and parts[4]
            and len(parts[1]) == 40
            and (pcr := pcr_numbers.get(parts[0])) is not None
        ):
            alg_b, sep, hexd = parts[3].partition(b":")
            info = ng_info.get(alg_b)
            if sep and info is not None and len(hexd) == info[1]:
                try:
                    thash = unhex(parts[1])
                    digest = unhex(hexd)
                except ValueError:  # binascii.Error: the reference parser says why
                    pass
                else:
                    if number >= limit:
                        raise EvidenceFormatError(
                            f"IMA list has more than {max_entries} entries"
                        )
                    path_b = parts[4]
                    append(new(ImaEntry, (
                        number, pcr, thash, "ima-ng",
                        info[2] + digest + pack(len(path_b) + 1) + path_b + b"\0",
                        info[0], digest, path_b.decode("utf-8", "surrogateescape"), None, None,
                    )))
                    number += 1
                    continue
        if not line or line.isspace():
            continue
        if number >= limit:
            raise EvidenceFormatError(f"IMA list has more than {max_entries} entries")
        e = parse_ascii_line(line, number)
        _remember_ng(e, parts[3].partition(b":")[0] if len(parts) > 3 else b"")
        append(e)
        number += 1
    return out


def _parse_binary(data: bytes, max_entries: int) -> list[ImaEntry] | None:
    """parse_binary's entries, or None when the list is malformed anywhere (parse_binary
    then names the error)."""
    out: list[ImaEntry] = []
    append = out.append
    head = _BIN_HEAD.unpack_from
    u32 = _U32.unpack_from
    new = _TUPLE_NEW
    ng_info = _NG_INFO
    size = len(data)
    off = 0
    number = 0
    while off < size:
        if number >= max_entries or off + 28 > size:
            return None
        pcr, thash, n = head(data, off)
        off += 28
        if n == 6 and data[off : off + 6] == b"ima-ng":
            name = "ima-ng"
        else:
            if n > 255 or off + n > size:
                return None
            try:
                name = data[off : off + n].decode("ascii")
            except UnicodeDecodeError:
                return None
        off += n
        if off + 4 > size:
            return None
        (n,) = u32(data, off)
        off += 4
        if off + n > size:
            return None
        tdata = data[off : off + n]
        off += n
        if name == "ima-ng" and n >= 8:
            (l1,) = u32(tdata, 0)
            if 8 + l1 <= n and u32(tdata, 4 + l1)[0] == n - 8 - l1:
                dng = tdata[4 : 4 + l1]
                sep = dng.find(b":\0")
                info = ng_info.get(dng[:sep]) if sep > 0 else None
                if info is not None:
                    append(new(ImaEntry, (
                        number, pcr, thash, name, tdata, info[0], dng[sep + 2 :],
                        tdata[8 + l1 :].rstrip(b"\0").decode("utf-8", "surrogateescape"),
                        None, None,
                    )))
                    number += 1
                    continue
        try:
            append(_entry_from_template(number, pcr, thash, name, tdata))
        except EvidenceFormatError:
            return None
        number += 1
    return out


def _verify_entries(
    entries: list[ImaEntry],
    first: int,
    st: ImaState,
    hbank: Callable[[bytes], hashlib._Hash],
    expected: bytes | None,
    checkpoints: Mapping[int, bytes] | None,
) -> VerifiedIma | None:
    """verify_ima's loop over ``entries[first:]`` (numbered from ``st.position``), or
    None at the first thing that does not verify (verify_ima then names it)."""
    sha1 = hashlib.sha1
    is_sha1 = st.alg == TpmAlg.SHA1
    ones = b"\xff" * HASH_SIZES[st.alg]
    target = st.pcr
    checks = checkpoints or None
    value = st.value
    matched = -1
    i = first
    for e in entries[first:]:
        i += 1
        thash = e.template_hash
        if thash == _ZERO20:
            ext = ones  # a violation: no template hash to check
        else:
            data = e.template_data if e.template_name != "ima" else _hashed_template(e)
            if sha1(data).digest() != thash:
                return None
            ext = thash if is_sha1 else hbank(data).digest()
        if e.pcr != target:
            continue
        value = hbank(value + ext).digest()
        if checks is not None:
            want = checks.get(e.number + 1)
            if want is not None and not hmac.compare_digest(value, want):
                return None
        if value == expected:
            matched = i
            break
    if expected is not None and matched < 0:
        return None
    return _result(entries, first, matched, st, value, expected)


def _result(
    entries: list[ImaEntry],
    first: int,
    matched: int,
    st: ImaState,
    value: bytes,
    expected: bytes | None,
) -> VerifiedIma:
    covered = tuple(entries[first:] if matched < 0 else entries[first:matched])
    pending = () if matched < 0 else tuple(entries[matched:])
    new_state = ImaState(st.alg, st.position + len(covered), value, st.pcr)
    return VerifiedIma(st.position, new_state, covered, pending, expected is not None)
