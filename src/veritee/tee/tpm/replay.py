"""Replay a TCG event log per PCR bank and compare it with quoted PCR values.

Pure: hashing only. The replay follows the TCG PC Client Platform Firmware Profile:

* EV_NO_ACTION records are never extended (the Spec ID header, StartupLocality, vendor
  data);
* PCR 0 starts at ``00..00 || locality`` when a StartupLocality event says TPM2_Startup
  came from locality 3 (or 4 for an H-CRTM start), else at zero;
* every other record extends ``PCR = H(PCR || digest)`` in each bank it carries.

When the log does not reproduce a quoted PCR, :class:`ReplayMismatchError` names the
PCR, the bank and the event the log goes wrong at, as precisely as the data allows.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from veritee.errors import EvidenceFormatError, MismatchError
from veritee.tee.tpm.eventlog import Event, EventLog, EventType, UefiVariableData
from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.structures import HASH_SIZES, TpmAlg, hash_name, hashlib_name

# PCRs a PC Client firmware must log every extension of (PFP 3.3.4).
FIRMWARE_PCRS = tuple(range(8))

_Hasher = Callable[[bytes], "hashlib._Hash"]


def _hasher(alg: int) -> _Hasher:
    name = hashlib_name(alg)
    ctor = getattr(hashlib, name, None)
    if ctor is not None:
        return ctor  # type: ignore[no-any-return]
    return lambda data: hashlib.new(name, data)


def initial_value(alg: int, pcr: int, locality: int | None) -> bytes:
    size = HASH_SIZES[alg]
    if pcr == 0 and locality:
        return bytes(size - 1) + bytes([locality])
    if 17 <= pcr <= 22:
        return b"\xff" * size  # dynamic (DRTM) PCRs reset to all ones
    return bytes(size)


@dataclass(frozen=True)
class Replay:
    """PCR values the log produces, per bank, and which events went into each PCR."""

    log: EventLog
    startup_locality: int | None
    values: Mapping[int, Mapping[int, bytes]]  # alg -> pcr -> value
    extended: Mapping[int, tuple[Event, ...]]  # pcr -> events extended into it

    @property
    def algs(self) -> tuple[int, ...]:
        return tuple(self.values)

    def pcr_banks(self) -> PcrBanks:
        return PcrBanks.from_mapping(self.values)

    def value(self, alg: int, pcr: int) -> bytes:
        bank = self.values.get(alg)
        if bank is None:
            raise KeyError(alg)
        v = bank.get(pcr)
        return v if v is not None else initial_value(alg, pcr, self.startup_locality)


def replay(log: EventLog, algs: Iterable[int] | None = None) -> Replay:
    """Extend every measured event into fresh PCRs, in every bank of the log (or ``algs``)."""
    banks = tuple(algs) if algs is not None else log.algorithms
    for alg in banks:
        if alg not in log.algorithms:
            raise EvidenceFormatError(f"the event log has no {hash_name(alg)} bank")
    locality = log.startup_locality
    hashers = {alg: _hasher(alg) for alg in banks}
    values: dict[int, dict[int, bytes]] = {alg: {} for alg in banks}
    extended: dict[int, list[Event]] = {}
    no_action = EventType.EV_NO_ACTION
    for e in log.events:
        if e.type == no_action:
            continue
        pcr = e.pcr
        extended.setdefault(pcr, []).append(e)
        found = 0
        for alg, d in e.digests:
            bank = values.get(alg)
            if bank is None:
                continue
            cur = bank.get(pcr)
            if cur is None:
                cur = initial_value(alg, pcr, locality)
            bank[pcr] = hashers[alg](cur + d).digest()
            found += 1
        if found != len(banks):
            raise EvidenceFormatError(f"{e.describe()} lacks a digest for one of the log's banks")
    return Replay(
        log,
        locality,
        {alg: dict(bank) for alg, bank in values.items()},
        {pcr: tuple(evs) for pcr, evs in extended.items()},
    )


# -- binding event data to digests ------------------------------------------------------------

# GRUB measures commands and command lines into PCR 8 as "<prefix><text>\0" with the digest
# of <text> alone. Upstream writes "grub_cmd: "; the RHEL/Fedora patches wrote "grub_cmd ".
GRUB_PREFIXES = (
    b"grub_cmd: ", b"kernel_cmdline: ", b"module_cmdline: ",
    b"grub_cmd ", b"kernel_cmdline ", b"module_cmdline ", b"grub_kernel_cmdline ",
)
_DATA_HASHED = {
    EventType.EV_SEPARATOR,
    EventType.EV_ACTION,
    EventType.EV_EFI_ACTION,
    EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
    EventType.EV_EFI_VARIABLE_AUTHORITY,
    EventType.EV_EFI_GPT_EVENT,
    EventType.EV_S_CRTM_VERSION,
}
_VARIABLE_BOOT = {EventType.EV_EFI_VARIABLE_BOOT, EventType.EV_EFI_VARIABLE_BOOT2}


def binding_candidates(e: Event) -> tuple[bytes, ...] | None:
    """The byte strings whose digest an event of this type records, or None when the digest
    is of something not in the log (a firmware volume, a PE image's Authenticode hash)."""
    if e.type == EventType.EV_EFI_VARIABLE_AUTHORITY:
        # shim (and the GCE firmware that embeds it) records one byte more than it hashes
        # for its own authority events (vendor cert "Shim", "db"): accept exactly that.
        return (e.data, e.data[:-1])
    if e.type in _DATA_HASHED:
        return (e.data,)
    if e.type in _VARIABLE_BOOT:
        # The PFP says H(UEFI_VARIABLE_DATA); EDK2 and most firmware hash VariableData only.
        try:
            var = UefiVariableData.from_bytes(e.data)
        except EvidenceFormatError:
            return (e.data,)
        return (e.data, var.data)
    if e.type == EventType.EV_IPL:
        # Only GRUB's command events hash their own text; its file events (PCR 9) and
        # shim's MokList events (PCR 14) record the digest of data that is not in the log.
        text = e.data[:-1] if e.data.endswith(b"\0") else e.data
        for prefix in GRUB_PREFIXES:
            if text.startswith(prefix):
                # upstream hashes the text without its NUL, the RHEL patches with it
                return (text[len(prefix) :], e.data[len(prefix) :])
        return None
    return None


def is_bound(e: Event, alg: int) -> bool | None:
    """Whether ``e``'s data hashes to its ``alg`` digest (None: not checkable for its type)."""
    cands = binding_candidates(e)
    if cands is None:
        return None
    d = e.digest(alg)
    if d is None:
        return False
    h = _hasher(alg)
    return any(hmac.compare_digest(h(c).digest(), d) for c in cands)


# -- comparison with a quote --------------------------------------------------------------------


class ReplayMismatchError(MismatchError):
    """The event log does not reproduce a quoted PCR. ``event`` is where it goes wrong (or
    None when the log has no event for the PCR)."""

    code = "tpm.eventlog_mismatch"

    def __init__(
        self,
        message: str,
        *,
        pcr: int,
        alg: int,
        event: Event | None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.pcr = pcr
        self.alg = alg
        self.event = event


@dataclass(frozen=True)
class ReplayMatch:
    """Which (bank, PCR) pairs of the quote the log reproduced."""

    replay: Replay
    matched: tuple[tuple[int, int], ...]

    @property
    def matched_pcrs(self) -> frozenset[int]:
        return frozenset(p for _, p in self.matched)

    def banks_for(self, pcr: int) -> tuple[int, ...]:
        return tuple(a for a, p in self.matched if p == pcr)


def compare(replay_result: Replay, quoted: PcrBanks) -> ReplayMatch:
    """Check every quoted PCR that the log speaks for: PCRs 0-7 (firmware must log all their
    extensions) and any other PCR with events in the log, in each bank both have.

    Raises :class:`ReplayMismatchError` at the first (lowest) PCR that differs.
    """
    matched: list[tuple[int, int]] = []
    common = [a for a in replay_result.algs if a in quoted.algs]
    if not common:
        raise MismatchError(
            "the quote and the event log share no PCR bank "
            f"(log: {', '.join(hash_name(a) for a in replay_result.algs)}; quote: "
            f"{', '.join(hash_name(a) for a in quoted.algs)})",
            hint="quote a bank the firmware logs (usually sha256)",
        )
    logged = set(replay_result.extended) | set(FIRMWARE_PCRS)
    todo = sorted({(p, a) for a in common for p in quoted.bank(a) if p in logged})
    for pcr, alg in todo:
        want = quoted.get(alg, pcr)
        assert want is not None
        got = replay_result.value(alg, pcr)
        if hmac.compare_digest(got, want):
            matched.append((alg, pcr))
            continue
        raise _diagnose(replay_result, alg, pcr, want, got)
    if not matched:
        raise MismatchError("no quoted PCR is covered by the event log")
    return ReplayMatch(replay_result, tuple(matched))


def _diagnose(r: Replay, alg: int, pcr: int, want: bytes, got: bytes) -> ReplayMismatchError:
    bank = hash_name(alg)
    head = f"event log does not reproduce PCR {pcr} ({bank}): replay gives {got.hex()}, " \
           f"the quote has {want.hex()}"
    events = r.extended.get(pcr, ())
    if not events:
        return ReplayMismatchError(
            f"{head}; the log has no event for PCR {pcr}",
            pcr=pcr, alg=alg, event=None,
            hint="the log is truncated or belongs to another boot",
        )
    h = _hasher(alg)
    if pcr == 0:
        for loc in (0, 3, 4):
            if loc == (r.startup_locality or 0):
                continue
            v = initial_value(alg, 0, loc)
            for e in events:
                d = e.digest(alg)
                v = h(v + (d or b"")).digest()
            if v == want:
                return ReplayMismatchError(
                    f"{head}; it matches a TPM2_Startup from locality {loc}, but the log's "
                    f"StartupLocality is {r.startup_locality or 0}",
                    pcr=pcr, alg=alg, event=events[0],
                    hint="the StartupLocality event is missing or altered",
                )
    v = initial_value(alg, pcr, r.startup_locality)
    for i, e in enumerate(events):
        if v == want:
            return ReplayMismatchError(
                f"{head}; the quote matches the log up to the event before {e.describe()}: "
                f"{len(events) - i} event(s) from there on were never measured into the TPM",
                pcr=pcr, alg=alg, event=e,
                hint="the log has events the TPM did not see (appended or forged)",
            )
        v = h(v + (e.digest(alg) or b"")).digest()
    for e in events:
        if is_bound(e, alg) is False:
            return ReplayMismatchError(
                f"{head}; {e.describe()} has data that does not hash to its {bank} digest",
                pcr=pcr, alg=alg, event=e,
                hint="the event's data or digest was altered",
            )
    last = events[-1]
    return ReplayMismatchError(
        f"{head}; events {events[0].describe()} .. {last.describe()} extend it, and a digest "
        "among them, or a missing event, is where the log departs from what was measured",
        pcr=pcr, alg=alg, event=last,
        hint="the log is from another boot, or an event was removed or altered",
    )


def default_bank(algs: Iterable[int]) -> int:
    """The bank to show when one is needed: SHA-256 if present, else the strongest."""
    algs = tuple(algs)
    if TpmAlg.SHA256 in algs:
        return TpmAlg.SHA256
    return max(algs, key=lambda a: HASH_SIZES.get(a, 0))
