"""SNP report and certificate table byte formats: corpus round-trips, truncation, fuzzing."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SNP_IDS, SNP_SAMPLES, SnpSample
from veritee.errors import EvidenceFormatError
from veritee.tee.snp.certtable import GUID_ARK, GUID_ASK, GUID_VCEK, CertEntry, CertTable
from veritee.tee.snp.evidence import decode_report_blob
from veritee.tee.snp.report import REPORT_SIZE, SnpReport, TcbVersion


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_corpus_report_round_trips_and_matches_manifest(sample: SnpSample) -> None:
    report = SnpReport.from_bytes(sample.report)
    assert report.to_bytes() == sample.report
    obs = sample.observed
    assert report.version == obs["version"]
    assert report.guest_svn == obs["guest_svn"]
    assert report.policy.raw == int(str(obs["policy"]), 16)
    assert report.vmpl == obs["vmpl"]
    assert report.signature_algo == obs["sig_algo"]
    assert report.platform_info.raw == int(str(obs["platform_info"]), 16)
    assert report.key_info.to_u32() == int(str(obs["signer_info"]), 16)
    assert report.measurement.hex() == obs["measurement"]
    assert report.report_data.hex() == obs["report_data"]
    assert report.host_data.hex() == obs["host_data"]
    assert report.chip_id.hex() == obs["chip_id"]
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        assert getattr(report, name).hex() == obs[name], name
    if report.version >= 3:
        fms = f"{report.cpuid_fam_id:02x}{report.cpuid_mod_id:02x}{report.cpuid_step:02x}"
        assert fms == obs["cpuid_fms"]
        assert report.product is not None
        assert report.product.value.lower() == obs["product"]
    else:
        assert report.product is None


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_every_truncation_is_a_format_error(sample: SnpSample) -> None:
    for cut in range(REPORT_SIZE):
        with pytest.raises(EvidenceFormatError):
            SnpReport.from_bytes(sample.report[:cut])
        with pytest.raises(EvidenceFormatError):
            decode_report_blob(sample.report[:cut])


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_hex_and_base64_text_forms_decode_to_the_same_report() -> None:
    import base64

    raw = SNP_SAMPLES[0].report
    assert decode_report_blob(raw)[0] == raw
    assert decode_report_blob(raw.hex().encode() + b"\n")[0] == raw
    assert decode_report_blob(base64.b64encode(raw))[0] == raw
    with pytest.raises(EvidenceFormatError):
        decode_report_blob(b"this is text but neither hex nor base64 !!")


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_reserved_bytes_must_be_zero() -> None:
    raw = bytearray(SNP_SAMPLES[0].report)
    for offset in (0x4C, 0x1EB, 0x1EF, 0x250, 0x2A0 + 144, REPORT_SIZE - 1):
        bad = bytearray(raw)
        bad[offset] ^= 0x01
        with pytest.raises(EvidenceFormatError, match="must be zero"):
            SnpReport.from_bytes(bytes(bad))


def test_unknown_version_rejected() -> None:
    data = (1).to_bytes(4, "little") + bytes(REPORT_SIZE - 4)
    with pytest.raises(EvidenceFormatError, match="version 1"):
        SnpReport.from_bytes(data)
    data = (9).to_bytes(4, "little") + bytes(REPORT_SIZE - 4)
    with pytest.raises(EvidenceFormatError, match="version 9"):
        SnpReport.from_bytes(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=2 * REPORT_SIZE))
def test_arbitrary_bytes_only_raise_format_error(data: bytes) -> None:
    try:
        report = SnpReport.from_bytes(data)
    except EvidenceFormatError:
        return
    assert report.to_bytes() == data


@settings(max_examples=300, deadline=None)
@given(
    version=st.sampled_from([2, 3, 4, 5]),
    body=st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE),
)
def test_structured_reports_round_trip(version: int, body: bytes) -> None:
    """Random values in every defined field, zeros where the format reserves."""
    b = bytearray(body)
    b[0:4] = version.to_bytes(4, "little")
    b[0x48:0x4C] = (int.from_bytes(b[0x48:0x4C], "little") & 0x3).to_bytes(4, "little")
    b[0x4C:0x50] = bytes(4)
    b[0x18B if version >= 3 else 0x188 : 0x1A0] = bytes(0x1A0 - (0x18B if version >= 3 else 0x188))
    if version >= 3:
        b[0x188], b[0x189] = 0x19, 0x01  # Milan CPUID: legacy TCB layout
    for tcb_off in (0x38, 0x180, 0x1E0, 0x1F0):
        b[tcb_off + 2 : tcb_off + 6] = bytes(4)
    b[0x1EB] = b[0x1EF] = 0
    start = 0x208 if version >= 5 else 0x1F8
    b[start:0x2A0] = bytes(0x2A0 - start)
    b[0x2A0 + 144 :] = bytes(REPORT_SIZE - 0x2A0 - 144)
    data = bytes(b)
    assert SnpReport.from_bytes(data).to_bytes() == data


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.one_of(st.none(), st.integers(0, 255)),
)
def test_tcb_round_trip_both_layouts(bl: int, tee: int, snp: int, uc: int, fmc: int | None) -> None:
    tcb = TcbVersion(bootloader=bl, tee=tee, snp=snp, microcode=uc, fmc=fmc)
    assert TcbVersion.from_bytes(tcb.to_bytes(), fmc_layout=fmc is not None) == tcb


def test_cert_table_round_trip_and_lookup() -> None:
    table = CertTable(
        (
            CertEntry(GUID_VCEK, b"vcek-der"),
            CertEntry(GUID_ASK, b"ask-der"),
            CertEntry(GUID_ARK, b"ark-der"),
        )
    )
    raw = table.to_bytes()
    parsed = CertTable.from_bytes(raw)
    assert parsed == table
    assert parsed.get(GUID_ASK) == b"ask-der"
    assert parsed.get(uuid.uuid4()) is None
    assert parsed.entries[0].name == "VCEK"
    # The GUID is stored little-endian in its first three fields (EFI_GUID layout).
    assert raw[:4] == bytes.fromhex("8d75da63")


def test_cert_table_rejects_out_of_bounds_and_duplicates() -> None:
    good = CertTable((CertEntry(GUID_VCEK, b"x" * 10),)).to_bytes()
    with pytest.raises(EvidenceFormatError, match="outside"):
        CertTable.from_bytes(good[:-1])
    dup = CertTable((CertEntry(GUID_VCEK, b"a"), CertEntry(GUID_ASK, b"b"))).to_bytes()
    dup = dup[:24] + dup[:16] + dup[40:]
    with pytest.raises(EvidenceFormatError):
        CertTable.from_bytes(dup)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_cert_table_arbitrary_bytes_only_raise_format_error(data: bytes) -> None:
    with contextlib.suppress(EvidenceFormatError):
        CertTable.from_bytes(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_decode_report_blob_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(EvidenceFormatError):
        decode_report_blob(data)
