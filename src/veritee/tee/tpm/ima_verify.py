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
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from veritee.errors import EvidenceFormatError, MismatchError
from veritee.tee.tpm.ima import IMA_NAME_LEN_MAX, ImaEntry
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
