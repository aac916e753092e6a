"""`veritee measure tdx`: MRTD from TDVF metadata, RTMR predictions, against real data where
it exists (Debian's OVMF, the GCE TDX sample's CC event log) and independent recomputation."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS
from veritee.cli.main import main
from veritee.errors import EvidenceFormatError
from veritee.tee.tdx.ccel import CcelLog
from veritee.tee.tdx.measure import (
    CALLING_EFI_APPLICATION,
    DirectBoot,
    InitrdOption,
    PageOrder,
    Separators,
    TdvfImage,
    cfv_event,
    efi_action,
    load_options,
    mrtd,
    replay,
    rtmr0_from_reference,
    separator,
    variable_event,
)
from veritee.tee.tdx.quote import TdxQuote
from veritee.tee.tpm.authenticode import authenticode_digest
from veritee.tee.tpm.eventlog import EventType, UefiVariableData

OVMF = Path("/usr/share/ovmf/OVMF.fd")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")
STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
GCP = CORPUS / "tdx" / "gcp-cos113-ccel" if CORPUS is not None else None
needs_ovmf = pytest.mark.skipif(not OVMF.is_file(), reason="Debian ovmf not installed")
needs_gcp = pytest.mark.skipif(GCP is None or not GCP.is_dir(), reason="corpus absent")

FOOTER = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d").bytes_le
TDX_OFFSET_GUID = uuid.UUID("e47a6535-984a-4798-865e-4685a7bf8ec2").bytes_le


# -- an independent TDVF builder and MRTD --------------------------------------------------------


def build_tdvf(sections: list[tuple[int, int, int, int, int, int]], body: bytes) -> bytes:
    """An image: ``body`` (the sections' raw data), then a TDVF descriptor, then the OVMF
    GUIDed table with the TDX metadata offset entry and the footer, 32 bytes before the end.
    ``sections`` are (DataOffset, RawDataSize, MemoryAddress, MemoryDataSize, Type, Attrs)."""
    descriptor = b"TDVF" + struct.pack("<III", 16 + 32 * len(sections), 1, len(sections))
    descriptor += b"".join(struct.pack("<IIQQII", *s) for s in sections)
    tail_len = 22 + 18 + 32  # offset entry, footer entry, the last 32 bytes
    image_len = len(body) + 16 + len(descriptor) + tail_len
    desc_at = len(body) + 16
    entry = struct.pack("<I", image_len - desc_at) + struct.pack("<H", 22) + TDX_OFFSET_GUID
    footer = struct.pack("<H", 22 + 18) + FOOTER
    image = body + bytes(16) + descriptor + entry + footer + bytes(32)
    assert len(image) == image_len
    return image


def reference_mrtd(image: bytes, sections: list[tuple[int, int, int, int, int, int]],
                   two_pass: bool) -> bytes:
    """MRTD written from the TDX module spec, as one byte string hashed once."""
    blocks: list[bytes] = []

    def page_add(gpa: int) -> bytes:
        return b"MEM.PAGE.ADD" + bytes(4) + struct.pack("<Q", gpa) + bytes(104)

    def extend(gpa: int, content: bytes) -> bytes:
        out = b""
        for i in range(16):
            out += b"MR.EXTEND" + bytes(7) + struct.pack("<Q", gpa + 256 * i) + bytes(104)
            out += content[256 * i : 256 * (i + 1)]
        return out

    for off, raw, gpa, size, _typ, attrs in sections:
        data = image[off : off + raw].ljust(size, b"\0")
        pages = [(gpa + p, data[p : p + 4096]) for p in range(0, size, 4096)]
        adds = [page_add(g) for g, _ in pages] if not attrs & 2 else [b""] * len(pages)
        exts = [extend(g, c) for g, c in pages] if attrs & 1 else [b""] * len(pages)
        if two_pass:
            blocks += adds + exts
        else:
            for a, e in zip(adds, exts, strict=True):
                blocks += [a, e]
    stream = b"".join(blocks)
    assert len(stream) % 128 == 0
    return hashlib.sha384(stream).digest()


SHAPES = [
    # BFV (MR.EXTEND), CFV, TD_HOB, TempMem, PermMem (PAGE.AUG): like OVMF's layout, smaller
    [(0x2000, 0x3000, 0xFFFFD000, 0x3000, 0, 1), (0, 0x2000, 0xFFFFB000, 0x2000, 1, 0),
     (0, 0, 0x809000, 0x2000, 2, 0), (0, 0, 0x800000, 0x6000, 3, 0),
     (0, 0, 0x10000000, 0x4000, 4, 2)],
    # an extended section whose memory is larger than its raw data (zero-filled)
    [(0x1000, 0x1800, 0x100000, 0x3000, 0, 1), (0, 0x1000, 0x200000, 0x1000, 5, 1)],
]


@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("order", list(PageOrder))
def test_mrtd_of_synthetic_tdvf_matches_an_independent_computation(
    shape: int, order: PageOrder
) -> None:
    sections = SHAPES[shape]
    body_len = max(off + raw for off, raw, *_ in sections)
    body = bytes((i * 7 + 3) % 251 for i in range(body_len))
    image = build_tdvf(sections, body)
    parsed = TdvfImage.from_bytes(image)
    assert [(s.data_offset, s.raw_size, s.gpa, s.memory_size, s.type, s.attributes)
            for s in parsed.sections] == sections
    got = mrtd(parsed, order)
    assert got == reference_mrtd(image, sections, order is PageOrder.TWO_PASS)
    other = PageOrder.TWO_PASS if order is PageOrder.SINGLE_PASS else PageOrder.SINGLE_PASS
    assert got != mrtd(parsed, other)  # the order matters, so both are offered
    changed = bytearray(image)
    changed[sections[0][0] + 5] ^= 1  # a byte of the extended BFV
    assert mrtd(TdvfImage.from_bytes(bytes(changed)), order) != got


@needs_ovmf
def test_debian_ovmf_tdx_metadata_and_mrtd() -> None:
    image = OVMF.read_bytes()
    parsed = TdvfImage.from_bytes(image)
    kinds = [(s.type_name, s.mr_extend, s.page_aug) for s in parsed.sections]
    assert ("BFV", True, False) in kinds and ("CFV", False, False) in kinds
    assert ("TD_HOB", False, False) in kinds
    bfv = parsed.sections[[k[0] for k in kinds].index("BFV")]
    assert bfv.gpa + bfv.memory_size == 1 << 32  # the BFV ends at 4 GiB like the image
    sections = [(s.data_offset, s.raw_size, s.gpa, s.memory_size, s.type, s.attributes)
                for s in parsed.sections]
    for order in PageOrder:
        assert mrtd(parsed, order) == reference_mrtd(image, sections,
                                                     order is PageOrder.TWO_PASS)


@pytest.mark.skipif(not OVMF_CODE.is_file(), reason="Debian ovmf not installed")
def test_split_ovmf_code_is_refused_with_a_hint() -> None:
    with pytest.raises(EvidenceFormatError) as err:
        TdvfImage.from_bytes(OVMF_CODE.read_bytes())
    assert "outside" in err.value.message and "OVMF.fd" in str(err.value.hint)


def test_firmware_without_tdx_metadata_is_refused() -> None:
    image = b"\0" * 64 + struct.pack("<H", 18) + FOOTER + bytes(32)
    with pytest.raises(EvidenceFormatError, match="no TDX metadata"):
        TdvfImage.from_bytes(image)


# -- RTMRs against the real GCE TDX sample ------------------------------------------------------


@needs_gcp
def test_recomputed_public_events_reproduce_the_real_rtmrs() -> None:
    """Every event whose digest covers public data is rebuilt with veritee's encoders from
    that data (not copied); the rest (TD HOB, CFV, ACPI tables, the PE images shim/grub and
    GRUB's files) are not public and keep their logged digests. The replay must give the
    quote's RTMRs, and each rebuilt digest the logged one."""
    assert GCP is not None
    log = CcelLog.from_bytes((GCP / "ccel_data.bin").read_bytes())
    quote = TdxQuote.from_bytes((GCP / "quote.dat").read_bytes())
    events = []
    rebuilt = 0
    for e in log.events:
        if e.event_type == EventType.EV_NO_ACTION:
            continue
        logged = e.digest(0x000C)
        assert logged is not None
        rtmr = e.mr_index - 1
        mine = None
        if e.event_type == EventType.EV_EFI_ACTION:
            mine = efi_action(rtmr, e.data)
        elif e.event_type == EventType.EV_SEPARATOR:
            mine = separator(rtmr)
        elif e.event_type in (EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
                              EventType.EV_EFI_VARIABLE_AUTHORITY):
            var = UefiVariableData.from_bytes(e.data)
            mine = variable_event(rtmr, e.event_type, var.name, var.variable_guid, var.data)
            assert mine.data == e.data
        if mine is None:
            events.append((rtmr, logged))
            continue
        assert mine.digest == logged, e.type_name
        rebuilt += 1
        events.append((rtmr, mine.digest))
    # 5 Secure Boot variables, shim's 2 authorities (SbatLevel, MokListTrusted), 2 separators,
    # 3 actions
    assert rebuilt == 12
    rtmrs = [bytes(48)] * 4
    for rtmr, d in events:
        rtmrs[rtmr] = hashlib.sha384(rtmrs[rtmr] + d).digest()
    assert tuple(rtmrs) == quote.report.rtmrs
    actions = [e.data for e in log.events if e.event_type == EventType.EV_EFI_ACTION]
    assert actions[0] == CALLING_EFI_APPLICATION


@needs_gcp
def test_rtmr0_from_reference_log_reproduces_the_quote() -> None:
    assert GCP is not None
    log = CcelLog.from_bytes((GCP / "ccel_data.bin").read_bytes())
    quote = TdxQuote.from_bytes((GCP / "quote.dat").read_bytes())
    ref = rtmr0_from_reference(log, None)
    assert ref.differs == ()
    assert sum(e.computed for e in ref.events) == 6  # SecureBoot, PK, KEK, db, dbx, separator
    assert replay(ref.events)[0] == quote.report.rtmr0
    # other Secure Boot variables than the reference VM's: named, and RTMR0 changes
    other = rtmr0_from_reference(log, None, {"SecureBoot": b"\x02"})
    assert set(other.differs) == {"SecureBoot", "PK", "KEK", "db", "dbx"}
    assert replay(other.events)[0] != quote.report.rtmr0


@needs_gcp
@needs_ovmf
def test_cfv_event_data_matches_the_gce_firmware_log() -> None:
    """The CFV event veritee builds from Debian's OVMF metadata has, byte for byte, the data
    the GCE TDX firmware logged (same layout: Fv(<BFV name>), base 0xFFE00000, 128 KiB). Its
    digest is of each firmware's own variable store, so only the data can agree."""
    assert GCP is not None
    log = CcelLog.from_bytes((GCP / "ccel_data.bin").read_bytes())
    blob = [e for e in log.events if e.event_type == EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2]
    image = TdvfImage.from_bytes(OVMF.read_bytes())
    mine = cfv_event(image)
    assert mine is not None and mine.data == blob[0].data
    cfv = image.data[: 0x20000]
    assert mine.digest == hashlib.sha384(cfv).digest()


# -- direct boot ----------------------------------------------------------------------------------


def test_load_options_encoding() -> None:
    assert load_options("console=ttyS0", False, InitrdOption.SUFFIX) == (
        "console=ttyS0\0".encode("utf-16-le")
    )
    assert load_options("a", True, InitrdOption.SUFFIX) == "a initrd=initrd\0".encode("utf-16-le")
    assert load_options("a", True, InitrdOption.PREFIX) == "initrd=initrd a\0".encode("utf-16-le")
    assert load_options(None, False, InitrdOption.SUFFIX) == b""


@pytest.mark.skipif(not STUB.is_file(), reason="systemd-boot-efi not installed")
def test_direct_boot_rtmrs_recomputed_independently() -> None:
    kernel = STUB.read_bytes()
    initrd = b"initrd contents" * 100
    boot = DirectBoot(kernel, initrd, "console=ttyS0 ro", InitrdOption.SUFFIX, Separators.RTMR1)
    got = replay(boot.events())
    h = hashlib.sha384

    def chain(digests: list[bytes]) -> bytes:
        v = bytes(48)
        for d in digests:
            v = h(v + d).digest()
        return v

    rtmr1 = chain([
        authenticode_digest(kernel, "sha384"),
        h(b"Calling EFI Application from Boot Option").digest(),
        h(b"\0\0\0\0").digest(),
        h(b"Exit Boot Services Invocation").digest(),
        h(b"Exit Boot Services Returned with Success").digest(),
    ])
    rtmr2 = chain([h("console=ttyS0 ro initrd=initrd\0".encode("utf-16-le")).digest(),
                   h(initrd).digest()])
    assert got[1] == rtmr1 and got[2] == rtmr2 and got[0] == got[3] == bytes(48)
    with_sep = replay(DirectBoot(kernel, initrd, "console=ttyS0 ro",
                                 separators=Separators.ALL).events())
    assert with_sep[2] == chain([h(b"\0\0\0\0").digest(),
                                 h("console=ttyS0 ro initrd=initrd\0".encode("utf-16-le")).digest(),
                                 h(initrd).digest()])


@pytest.mark.skipif(not (STUB.is_file() and shutil.which("osslsigncode")),
                    reason="osslsigncode / systemd-boot-efi not installed")
def test_kernel_sha384_authenticode_matches_osslsigncode(tmp_path: Path) -> None:
    from tests.test_tpm_predict import osslsigncode_digest, sign_with_osslsigncode

    signed = sign_with_osslsigncode(STUB.read_bytes(), tmp_path, "sha384")
    assert authenticode_digest(signed, "sha384") == osslsigncode_digest(tmp_path / "signed.efi")


# -- robustness -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_as_tdvf_raise_only_format_errors(data: bytes) -> None:
    try:
        image = TdvfImage.from_bytes(data)
    except EvidenceFormatError:
        return
    mrtd(image)


_VALID = build_tdvf(SHAPES[1], bytes(0x2800))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=8))
def test_mutated_tdvf_raises_only_format_errors(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_VALID)
    for at, value in edits:
        data[at] = value
    try:
        image = TdvfImage.from_bytes(bytes(data))
    except EvidenceFormatError:
        return
    assert len(mrtd(image)) == 48


# -- CLI ------------------------------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@needs_ovmf
def test_cli_measure_tdx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = TdvfImage.from_bytes(OVMF.read_bytes())
    code, out, err = run(["measure", "tdx", "--tdvf", str(OVMF), "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["mr_td"] == mrtd(image).hex()
    assert doc["reference_values"] == {"mr_td": [mrtd(image).hex()]}
    assert doc["rtmrs"]["rtmr_1"] is None and any("--kernel" in n for n in doc["notes"])
    code, out, _ = run(["measure", "tdx", "--tdvf", str(OVMF), "--page-order", "two-pass"],
                       capsys)
    assert code == 0 and out.split()[1] == mrtd(image, PageOrder.TWO_PASS).hex()
    if STUB.is_file():
        initrd = tmp_path / "initrd"
        initrd.write_bytes(b"x" * 5000)
        code, out, err = run(["measure", "tdx", "--tdvf", str(OVMF), "--kernel", str(STUB),
                              "--initrd", str(initrd), "--append", "ro", "--json"], capsys)
        assert code == 0, err
        doc = json.loads(out)
        want = replay(DirectBoot(STUB.read_bytes(), b"x" * 5000, "ro").events())
        assert doc["reference_values"]["rtmr_1"] == [want[1].hex()]
        assert doc["reference_values"]["rtmr_2"] == [want[2].hex()]
    if GCP is not None and GCP.is_dir():
        code, out, err = run(["measure", "tdx", "--tdvf", str(OVMF), "--reference-log",
                              str(GCP / "ccel_data.bin"), "--json"], capsys)
        assert code == 0, err
        doc = json.loads(out)
        assert "RTMR0: CFV differs from the reference log's" in doc["notes"]
        assert doc["rtmrs"]["rtmr_0"] is not None


def test_cli_measure_tdx_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.fd"
    junk.write_bytes(b"\x00" * 4096)
    code, _, err = run(["measure", "tdx", "--tdvf", str(junk)], capsys)
    assert code == 2 and "GUIDed table" in err
    code, _, err = run(["measure", "tdx", "--tdvf", str(junk), "--initrd", str(junk)], capsys)
    assert code == 1 and "--kernel" in err
    code, _, err = run(["measure", "tdx", "--tdvf", str(tmp_path / "missing.fd")], capsys)
    assert code == 1
    if OVMF.is_file():
        code, _, err = run(["measure", "tdx", "--tdvf", str(OVMF), "--page-order", "x"], capsys)
        assert code == 1 and "single-pass" in err

