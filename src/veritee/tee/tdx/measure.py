"""Expected Intel TDX measurements: MRTD from a TDVF image, RTMR[0..2] from the boot inputs.

**MRTD.** The VMM builds the TD from the sections the TDVF (OVMF built for TDX) lists in
its TDX metadata — found through the OVMF GUIDed table at the end of the image (entry
``e47a6535-984a-4798-865e-4685a7bf8ec2`` holds the metadata's offset from the end), a
``TDVF`` descriptor and 32-byte section entries (Intel TDX Virtual Firmware Design Guide,
section 11)::

    u32 DataOffset  u32 RawDataSize  u64 MemoryAddress  u64 MemoryDataSize
    u32 Type (0 BFV, 1 CFV, 2 TD_HOB, 3 TempMem, 4 PermMem, 5 Payload, 6 PayloadParam)
    u32 Attributes (bit 0 MR.EXTEND, bit 1 PAGE.AUG)

Every page of a section without PAGE.AUG is added with TDH.MEM.PAGE.ADD, and the pages of
an MR.EXTEND section are then measured with TDH.MR.EXTEND in 256-byte chunks. The TDX
module folds both into MRTD, one SHA-384 running over 128-byte blocks (Intel TDX Module
spec, "TDH.MEM.PAGE.ADD" and "TDH.MR.EXTEND")::

    PAGE.ADD:  "MEM.PAGE.ADD" (bytes 0-11), GPA (u64 at byte 16), zeros to 128 bytes
    MR.EXTEND: "MR.EXTEND" (bytes 0-8), GPA of the chunk (u64 at byte 16), zeros to 128
               bytes, then the 256-byte chunk (two more 128-byte blocks)

Linux KVM (and upstream QEMU) adds and extends each page in turn; older TDX QEMU trees
added all pages of a section before extending them. Both orders are offered
(:class:`PageOrder`); the default is the upstream one.

**RTMRs.** TDVF logs in the CC event log what it measures, mapping PCRs to RTMRs (PCR 0, 1,
7 to RTMR0; 2-6 to RTMR1; 8-15 to RTMR2). For a kernel the VMM boots directly
(``-kernel``/``-initrd``/``-append``), with an EFI-stub kernel that measures into RTMRs
(Linux 6.8 and later):

* RTMR1: the kernel as ``EV_EFI_BOOT_SERVICES_APPLICATION`` (its Authenticode SHA-384, as
  LoadImage measures it), "Calling EFI Application from Boot Option", a separator, "Exit
  Boot Services Invocation", "Exit Boot Services Returned with Success";
* RTMR2: the kernel's LoadOptions (the command line as OVMF hands it over: UTF-16LE,
  NUL-terminated, with ``initrd=initrd`` added when there is an initrd) and the initrd
  contents, both ``EV_EVENT_TAG`` events of the EFI stub.

Recent EDK2 also measures a separator into RTMR0 and RTMR2 at ReadyToBoot; the firmware of
the real TDX sample in veritee's corpus (GCE) does not (:class:`Separators`).

RTMR0 also holds the TD HOB and ACPI tables the VMM builds and the boot variables, which
depend on the VMM and its configuration, not on the artifacts: :func:`rtmr0_from_reference`
takes those from a known-good CC event log of the same VM shape and recomputes what veritee
can (the CFV, the Secure Boot variables, separators). Without such a log RTMR0 is not
predicted.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from veritee.binary import Reader
from veritee.errors import EvidenceFormatError
from veritee.tee.tdx.ccel import CcelLog
from veritee.tee.tpm.authenticode import authenticode_digest
from veritee.tee.tpm.eventlog import (
    EFI_GLOBAL_VARIABLE,
    EFI_IMAGE_SECURITY_DATABASE,
    EventType,
    UefiVariableData,
)

PAGE_SIZE = 0x1000
MR_EXTEND_CHUNK = 0x100
MAX_TDVF_BYTES = 64 << 20
MAX_SECTIONS = 64
DIGEST_SIZE = 48
GUID_TABLE_FOOTER = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
GUID_TDX_METADATA_OFFSET = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2")
TDVF_SIGNATURE = b"TDVF"
ATTR_MR_EXTEND = 0x1
ATTR_PAGE_AUG = 0x2
_FOOTER_END = 0x20  # the GUIDed table footer ends 32 bytes before the end of the image
_ENTRY_HEADER = 18  # u16 length + GUID after each entry's data
_PAGE_ADD = b"MEM.PAGE.ADD".ljust(16, b"\0")
_MR_EXTEND = b"MR.EXTEND".ljust(16, b"\0")

CALLING_EFI_APPLICATION = b"Calling EFI Application from Boot Option"
EXIT_BOOT_SERVICES_INVOCATION = b"Exit Boot Services Invocation"
EXIT_BOOT_SERVICES_SUCCESS = b"Exit Boot Services Returned with Success"
SEPARATOR_DATA = b"\0\0\0\0"
# Linux EFI stub tagged events (drivers/firmware/efi/libstub/efistub.h)
LINUX_EVENT_ID_INITRD = 0x8F3B22EC
LINUX_EVENT_ID_LOAD_OPTIONS = 0x8F3B22ED


class SectionType(enum.IntEnum):
    BFV = 0
    CFV = 1
    TD_HOB = 2
    TEMP_MEM = 3
    PERM_MEM = 4
    PAYLOAD = 5
    PAYLOAD_PARAM = 6


class PageOrder(enum.Enum):
    """How the VMM interleaves TDH.MEM.PAGE.ADD and TDH.MR.EXTEND within a section."""

    SINGLE_PASS = "single-pass"  # noqa: S105  (KVM / upstream QEMU: add a page, extend it)
    TWO_PASS = "two-pass"  # noqa: S105  (older TDX QEMU: add all pages, then extend them)

    @classmethod
    def from_name(cls, name: str) -> PageOrder:
        for order in cls:
            if order.value == name.strip().lower():
                return order
        raise ValueError(f"unknown page order {name!r} (single-pass or two-pass)")


@dataclass(frozen=True)
class TdvfSection:
    data_offset: int
    raw_size: int
    gpa: int
    memory_size: int
    type: int
    attributes: int

    @property
    def type_name(self) -> str:
        try:
            return SectionType(self.type).name
        except ValueError:
            return f"type {self.type}"

    @property
    def page_aug(self) -> bool:
        return bool(self.attributes & ATTR_PAGE_AUG)

    @property
    def mr_extend(self) -> bool:
        return bool(self.attributes & ATTR_MR_EXTEND)


@dataclass(frozen=True)
class TdvfImage:
    """A TDVF image and its TDX metadata sections."""

    data: bytes = field(repr=False)
    metadata_offset: int
    version: int
    sections: tuple[TdvfSection, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> TdvfImage:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("TDVF image must be bytes")
        if len(data) > MAX_TDVF_BYTES:
            raise EvidenceFormatError(f"TDVF image is larger than {MAX_TDVF_BYTES} bytes")
        table = _guid_table(data)
        raw = table.get(GUID_TDX_METADATA_OFFSET)
        if raw is None:
            raise EvidenceFormatError(
                "firmware has no TDX metadata (no TDVF descriptor in its GUIDed table)",
                hint="use an OVMF built with TDX support (the 2 MiB OVMF.fd or OVMF.inteltdx.fd)",
            )
        if len(raw) < 4:
            raise EvidenceFormatError("TDX metadata offset entry is shorter than 4 bytes")
        from_end = int.from_bytes(raw[:4], "little")
        offset = len(data) - from_end
        if not 0 <= offset <= len(data) - 16:
            raise EvidenceFormatError(f"TDX metadata offset {from_end:#x} lies outside the image")
        rd = Reader(data, what="TDVF descriptor", offset=offset)
        if rd.bytes(4, "signature") != TDVF_SIGNATURE:
            raise EvidenceFormatError(f"no 'TDVF' descriptor at {offset:#x}")
        length = rd.u32("Length")
        version = rd.u32("Version")
        count = rd.u32("NumberOfSectionEntry")
        if version != 1:
            raise EvidenceFormatError(f"TDVF descriptor version {version} is not supported (1)")
        if not 1 <= count <= MAX_SECTIONS or length < 16 + 32 * count:
            raise EvidenceFormatError(
                f"TDVF descriptor: {count} sections do not fit its length {length}"
            )
        sections = []
        for i in range(count):
            s = TdvfSection(
                rd.u32("DataOffset"), rd.u32("RawDataSize"), rd.u64("MemoryAddress"),
                rd.u64("MemoryDataSize"), rd.u32("Type"), rd.u32("Attributes"),
            )
            _check_section(i, s, len(data))
            sections.append(s)
        if sum(s.type == SectionType.BFV for s in sections) != 1:
            raise EvidenceFormatError("TDVF metadata must list exactly one BFV section")
        if sum(s.type == SectionType.TD_HOB for s in sections) > 1:
            raise EvidenceFormatError("TDVF metadata lists more than one TD_HOB section")
        return cls(data, offset, version, tuple(sections))

    def section(self, kind: SectionType) -> TdvfSection | None:
        for s in self.sections:
            if s.type == kind:
                return s
        return None

    def section_bytes(self, s: TdvfSection) -> bytes:
        """The section's memory contents as loaded: its raw data, zero-filled to its size."""
        raw = self.data[s.data_offset : s.data_offset + s.raw_size]
        return raw + bytes(s.memory_size - len(raw))

    @property
    def sha384(self) -> bytes:
        return hashlib.sha384(self.data).digest()


def _check_section(i: int, s: TdvfSection, size: int) -> None:
    where = f"TDVF section {i} ({s.type_name})"
    if s.gpa % PAGE_SIZE or s.memory_size % PAGE_SIZE:
        raise EvidenceFormatError(f"{where}: memory address or size is not 4 KiB aligned")
    if s.memory_size == 0:
        raise EvidenceFormatError(f"{where}: memory size is zero")
    if s.gpa + s.memory_size > 1 << 52:
        raise EvidenceFormatError(f"{where}: memory range lies beyond the guest address space")
    if s.raw_size > s.memory_size:
        raise EvidenceFormatError(f"{where}: raw data is larger than its memory")
    if s.raw_size and s.data_offset + s.raw_size > size:
        raise EvidenceFormatError(
            f"{where}: raw data [{s.data_offset:#x}, +{s.raw_size:#x}) lies outside the "
            f"{size:#x}-byte image",
            hint="TDX boots one combined image (OVMF.fd), not a split OVMF_CODE/OVMF_VARS pair",
        )
    if s.type in (SectionType.BFV, SectionType.CFV) and s.raw_size == 0:
        raise EvidenceFormatError(f"{where}: firmware volume with no data")
    if s.type in (SectionType.TD_HOB, SectionType.TEMP_MEM, SectionType.PERM_MEM) and s.raw_size:
        raise EvidenceFormatError(f"{where}: this kind of section carries no data")
    if s.page_aug and s.mr_extend:
        raise EvidenceFormatError(f"{where}: PAGE.AUG memory cannot be MR.EXTENDed")
    if s.page_aug and s.type != SectionType.PERM_MEM:
        raise EvidenceFormatError(f"{where}: only PermMem may be added with PAGE.AUG")
    if s.attributes & ~(ATTR_MR_EXTEND | ATTR_PAGE_AUG):
        raise EvidenceFormatError(f"{where}: reserved attribute bits {s.attributes:#x}")


def _guid_table(data: bytes) -> dict[uuid.UUID, bytes]:
    """The OVMF GUIDed table (OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm): entries laid out
    backwards from a footer 32 bytes before the end, each ``data | u16 length | GUID``."""
    end = len(data) - _FOOTER_END
    if end < _ENTRY_HEADER:
        raise EvidenceFormatError("firmware image is too small to hold an OVMF GUIDed table")
    if uuid.UUID(bytes_le=data[end - 16 : end]) != GUID_TABLE_FOOTER:
        raise EvidenceFormatError(
            "firmware has no OVMF GUIDed table footer", hint="is this an OVMF/TDVF image?"
        )
    total = int.from_bytes(data[end - 18 : end - 16], "little")
    start = end - total
    if total < _ENTRY_HEADER or start < 0:
        raise EvidenceFormatError(f"OVMF GUIDed table length {total} is not valid")
    out: dict[uuid.UUID, bytes] = {}
    pos = end - _ENTRY_HEADER
    while pos > start:
        if pos - _ENTRY_HEADER < start:
            raise EvidenceFormatError("OVMF GUIDed table: truncated entry")
        guid = uuid.UUID(bytes_le=data[pos - 16 : pos])
        length = int.from_bytes(data[pos - 18 : pos - 16], "little")
        if length < _ENTRY_HEADER or pos - length < start:
            raise EvidenceFormatError(f"OVMF GUIDed table: entry {guid} has length {length}")
        out.setdefault(guid, data[pos - length : pos - _ENTRY_HEADER])
        pos -= length
    return out


# -- MRTD --------------------------------------------------------------------------------------


def mrtd(image: TdvfImage, order: PageOrder = PageOrder.SINGLE_PASS) -> bytes:
    """MRTD of a TD built from ``image`` (SHA-384 over the PAGE.ADD / MR.EXTEND blocks)."""
    h = hashlib.sha384()
    pad = bytes(128 - 24)
    for s in image.sections:
        content = image.section_bytes(s) if s.mr_extend else b""
        pages = range(s.gpa, s.gpa + s.memory_size, PAGE_SIZE)

        def add(gpa: int) -> None:
            h.update(_PAGE_ADD + gpa.to_bytes(8, "little") + pad)

        def extend(gpa: int, at: int = s.gpa, body: bytes = content) -> None:
            for off in range(0, PAGE_SIZE, MR_EXTEND_CHUNK):
                h.update(_MR_EXTEND + (gpa + off).to_bytes(8, "little") + pad)
                start = gpa - at + off
                h.update(body[start : start + MR_EXTEND_CHUNK])

        if order is PageOrder.TWO_PASS:
            if not s.page_aug:
                for gpa in pages:
                    add(gpa)
            if s.mr_extend:
                for gpa in pages:
                    extend(gpa)
        else:
            for gpa in pages:
                if not s.page_aug:
                    add(gpa)
                if s.mr_extend:
                    extend(gpa)
    return h.digest()


# -- RTMR events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtmrEvent:
    """One predicted CC event: RTMR index (0..3), type, data, SHA-384 digest, and where the
    digest comes from (``computed`` by veritee, or taken from a reference log)."""

    rtmr: int
    type: int
    data: bytes
    digest: bytes
    what: str
    computed: bool = True

    def to_json(self) -> dict[str, object]:
        try:
            type_name = EventType(self.type).name
        except ValueError:
            type_name = f"{self.type:#010x}"
        return {
            "rtmr": self.rtmr,
            "type": type_name,
            "what": self.what,
            "digest": self.digest.hex(),
            "source": "computed" if self.computed else "reference log",
        }


def _event(rtmr: int, event_type: int, data: bytes, what: str, measured: bytes | None = None
           ) -> RtmrEvent:
    body = data if measured is None else measured
    return RtmrEvent(rtmr, event_type, data, hashlib.sha384(body).digest(), what)


def efi_action(rtmr: int, text: bytes) -> RtmrEvent:
    return _event(rtmr, EventType.EV_EFI_ACTION, text, text.decode("ascii", "replace"))


def separator(rtmr: int) -> RtmrEvent:
    return _event(rtmr, EventType.EV_SEPARATOR, SEPARATOR_DATA, "separator")


def variable_event(rtmr: int, event_type: int, name: str, guid: str, data: bytes) -> RtmrEvent:
    """EV_EFI_VARIABLE_DRIVER_CONFIG (digest of the whole UEFI_VARIABLE_DATA)."""
    return _event(rtmr, event_type, UefiVariableData(guid, name, data).to_bytes(), name)


def secure_boot_events(
    secure_boot: bytes = b"", pk: bytes = b"", kek: bytes = b"", db: bytes = b"", dbx: bytes = b""
) -> list[RtmrEvent]:
    """What TDVF measures of the Secure Boot variables into RTMR0 (not set: no data)."""
    config = EventType.EV_EFI_VARIABLE_DRIVER_CONFIG
    return [
        variable_event(0, config, "SecureBoot", EFI_GLOBAL_VARIABLE, secure_boot),
        variable_event(0, config, "PK", EFI_GLOBAL_VARIABLE, pk),
        variable_event(0, config, "KEK", EFI_GLOBAL_VARIABLE, kek),
        variable_event(0, config, "db", EFI_IMAGE_SECURITY_DATABASE, db),
        variable_event(0, config, "dbx", EFI_IMAGE_SECURITY_DATABASE, dbx),
    ]


def fv_name(fv: bytes) -> uuid.UUID | None:
    """The FvName of a firmware volume's extended header (PI spec EFI_FIRMWARE_VOLUME_HEADER:
    ``_FVH`` at byte 40, ExtHeaderOffset u16 at byte 52), or None."""
    if len(fv) < 56 or fv[40:44] != b"_FVH":
        return None
    ext = int.from_bytes(fv[52:54], "little")
    if ext == 0 or ext + 16 > len(fv):
        return None
    return uuid.UUID(bytes_le=fv[ext : ext + 16])


def cfv_event(image: TdvfImage) -> RtmrEvent | None:
    """The configuration firmware volume as TDVF measures it into RTMR0: an
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 named ``Fv(<FvName of the BFV>)`` with the CFV's address
    and size, whose digest is the SHA-384 of the CFV."""
    cfv = image.section(SectionType.CFV)
    if cfv is None:
        return None
    bfv = image.section(SectionType.BFV)
    assert bfv is not None
    name = fv_name(image.section_bytes(bfv))
    text = (f"Fv({str(name).upper()})" if name is not None else "Fv").encode("ascii") + b"\0"
    data = (bytes([len(text)]) + text + cfv.gpa.to_bytes(8, "little")
            + cfv.raw_size.to_bytes(8, "little"))
    content = image.data[cfv.data_offset : cfv.data_offset + cfv.raw_size]
    return _event(0, EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2, data, "CFV", measured=content)


class InitrdOption(enum.Enum):
    """How OVMF tells the kernel about a VMM-provided initrd in its LoadOptions."""

    SUFFIX = "suffix"  # EDK2 up to 2024: "<cmdline> initrd=initrd"
    PREFIX = "prefix"  # EDK2 2025 and later: "initrd=initrd <cmdline>"


class Separators(enum.Enum):
    """Which RTMRs TDVF extends with a separator at ReadyToBoot."""

    RTMR1 = "rtmr1"  # as the GCE TDX firmware in the corpus: RTMR1 only
    ALL = "all"  # recent EDK2 (TdMeasureSeparatorEvents): RTMR0, RTMR1 and RTMR2


def load_options(cmdline: str | None, initrd: bool, option: InitrdOption) -> bytes:
    """The kernel's LoadOptions as OVMF builds them from the fw_cfg command line: UTF-16LE and
    NUL-terminated; empty when there is neither a command line nor an initrd."""
    text = cmdline or ""
    if initrd:
        text = text + " initrd=initrd" if option is InitrdOption.SUFFIX else "initrd=initrd " + text
    if not text:
        return b""
    return (text + "\0").encode("utf-16-le")


def tagged_event(event_id: int, description: str) -> bytes:
    """TCG_PCClientTaggedEvent as the Linux EFI stub logs it."""
    text = description.encode("ascii") + b"\0"
    return event_id.to_bytes(4, "little") + len(text).to_bytes(4, "little") + text


@dataclass(frozen=True)
class DirectBoot:
    """A kernel the VMM boots directly, with its initrd and command line."""

    kernel: bytes = field(repr=False)
    initrd: bytes | None = field(default=None, repr=False)
    cmdline: str | None = None
    initrd_option: InitrdOption = InitrdOption.SUFFIX
    separators: Separators = Separators.RTMR1

    def events(self) -> list[RtmrEvent]:
        """The RTMR1 and RTMR2 events of this boot."""
        kernel = authenticode_digest(self.kernel, "sha384")
        rtmr1 = [
            RtmrEvent(1, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, b"", kernel,
                      "kernel (Authenticode SHA-384)"),
            efi_action(1, CALLING_EFI_APPLICATION),
            separator(1),
            efi_action(1, EXIT_BOOT_SERVICES_INVOCATION),
            efi_action(1, EXIT_BOOT_SERVICES_SUCCESS),
        ]
        rtmr2: list[RtmrEvent] = []
        if self.separators is Separators.ALL:
            rtmr2.append(separator(2))
        options = load_options(self.cmdline, self.initrd is not None, self.initrd_option)
        if options:
            rtmr2.append(_event(
                2, EventType.EV_EVENT_TAG,
                tagged_event(LINUX_EVENT_ID_LOAD_OPTIONS, "LOADED_IMAGE::LoadOptions"),
                "kernel command line (LoadOptions)", measured=options,
            ))
        if self.initrd:
            rtmr2.append(_event(
                2, EventType.EV_EVENT_TAG, tagged_event(LINUX_EVENT_ID_INITRD, "Linux initrd"),
                "initrd", measured=self.initrd,
            ))
        return rtmr1 + rtmr2


def replay(events: Iterable[RtmrEvent]) -> tuple[bytes, bytes, bytes, bytes]:
    """RTMR0..3 after extending ``events`` from zero."""
    rtmrs = [bytes(DIGEST_SIZE)] * 4
    for e in events:
        rtmrs[e.rtmr] = hashlib.sha384(rtmrs[e.rtmr] + e.digest).digest()
    return rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]


@dataclass(frozen=True)
class ReferenceComparison:
    """RTMR0 events rebuilt from a reference log: which veritee computed, which differ."""

    events: tuple[RtmrEvent, ...]
    differs: tuple[str, ...]


_SB_NAMES = ("SecureBoot", "PK", "KEK", "db", "dbx")


def rtmr0_from_reference(
    log: CcelLog,
    image: TdvfImage | None,
    secure_boot_variables: dict[str, bytes] | None = None,
) -> ReferenceComparison:
    """RTMR0 events: the reference log's, with the CFV (from ``image``), the Secure Boot
    variables (given, else as the log records them) and separators recomputed.

    ``differs`` names each recomputed event whose digest is not the reference log's: the
    firmware or its variables differ from the reference VM's.
    """
    out: list[RtmrEvent] = []
    differs: list[str] = []
    cfv = cfv_event(image) if image is not None else None
    for e in log.events:
        if e.mr_index != 1 or e.event_type == EventType.EV_NO_ACTION:
            continue
        logged = e.digest(0x000C)
        if logged is None:
            raise EvidenceFormatError("reference CC event log: RTMR0 event without SHA-384")
        mine: RtmrEvent | None = None
        if e.event_type == EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2 and cfv is not None:
            mine = cfv
        elif e.event_type == EventType.EV_SEPARATOR:
            mine = separator(0)
        elif e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG:
            var = UefiVariableData.from_bytes(e.data)
            if var.name in _SB_NAMES:
                value = var.data
                if secure_boot_variables is not None:
                    value = secure_boot_variables.get(var.name, b"")
                mine = variable_event(0, e.event_type, var.name, var.variable_guid, value)
        if mine is None:
            out.append(RtmrEvent(0, e.event_type, e.data, logged, _describe(e.event_type, e.data),
                                 computed=False))
            continue
        if mine.digest != logged:
            differs.append(mine.what)
        out.append(mine)
    return ReferenceComparison(tuple(out), tuple(differs))


def _describe(event_type: int, data: bytes) -> str:
    if event_type == EventType.EV_EFI_HANDOFF_TABLES2:
        return "TD HOB"
    if event_type == EventType.EV_PLATFORM_CONFIG_FLAGS:
        return data.rstrip(b"\0").decode("ascii", "replace")
    if event_type in (EventType.EV_EFI_VARIABLE_BOOT, EventType.EV_EFI_VARIABLE_AUTHORITY):
        try:
            return UefiVariableData.from_bytes(data, allow_trailing=True).name
        except EvidenceFormatError:
            return "variable"
    try:
        return EventType(event_type).name
    except ValueError:
        return f"{event_type:#010x}"


def reference_values(
    mr_td: bytes | None, rtmrs: Sequence[bytes | None]
) -> dict[str, list[object]]:
    """``{name: [values]}`` for the RVPS ``sample`` extractor (Trustee's TDX names)."""
    out: dict[str, list[object]] = {}
    if mr_td is not None:
        out["mr_td"] = [mr_td.hex()]
    for i, value in enumerate(rtmrs):
        if value is not None:
            out[f"rtmr_{i}"] = [value.hex()]
    return out
