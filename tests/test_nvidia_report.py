"""The NVIDIA SPDM report format and its containers: round trips, strictness, fuzzing."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.device_corpus import GPU_IDS, GPU_SAMPLES, SWITCH, GpuSample
from veritee.errors import EvidenceFormatError
from veritee.tee.nvidia.evidence import decode_device_evidence
from veritee.tee.nvidia.report import (
    REQUEST_SIZE,
    NvidiaReport,
    OpaqueField,
    OpaqueType,
    format_vbios_version,
)
from veritee.tee.nvidia.sim import SimulatedNvidiaDevice

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    _GPU = SimulatedNvidiaDevice.hopper()
_SIM_REPORT = _GPU.report(bytes(range(32))).to_bytes()


@pytest.mark.parametrize("sample", GPU_SAMPLES, ids=GPU_IDS)
def test_corpus_reports_round_trip_and_match_manifest(sample: GpuSample) -> None:
    (device,) = decode_device_evidence(sample.report_text)
    report = NvidiaReport.from_bytes(device.report)
    assert report.to_bytes() == device.report
    obs = sample.observed
    assert report.request.nonce.hex() == obs["req_nonce"]
    assert report.response.nonce.hex() == obs["resp_nonce"]
    assert len(report.response.blocks) == obs["nblocks"]
    assert len(report.response.opaque_bytes()) == obs["opaque_len"]
    assert len(report.trailing) == obs["tail"]
    assert report.signed_bytes() == device.report[: len(device.report) - 96 - int(obs["tail"])]  # type: ignore[call-overload]
    assert all(len(v) == 48 for v in report.measurements.values())


@pytest.mark.skipif(SWITCH is None, reason="corpus absent")
def test_nvswitch_evidence_list_parses() -> None:
    assert SWITCH is not None
    path, expected = SWITCH
    devices = decode_device_evidence(path.read_bytes())
    assert len(devices) == len(expected["devices"])  # type: ignore[arg-type]
    for device, exp in zip(devices, expected["devices"], strict=True):  # type: ignore[call-overload]
        report = NvidiaReport.from_bytes(device.report)
        assert report.to_bytes() == device.report
        assert device.arch == exp["arch"]
        assert device.nonce is not None and device.nonce.hex() == exp["nonce"]
        assert report.nonce.hex() == exp["req_nonce"]
        assert len(report.response.blocks) == exp["nblocks"]
        assert device.cert_chain is not None and device.cert_chain.count(b"BEGIN CERT") == 5
        assert format_vbios_version(report.opaque(OpaqueType.VBIOS_VERSION) or b"") == (
            "96.10.73.00.01"
        )


def test_containers_hex_base64_trustee_json() -> None:
    raw = _SIM_REPORT
    for text in (raw.hex().encode(), base64.b64encode(raw), raw.hex().upper().encode() + b"\n"):
        assert decode_device_evidence(text)[0].report == raw
    trustee = json.dumps(
        {
            "device_evidence_list": [
                {
                    "arch": "HOPPER",
                    "uuid": "GPU-1",
                    "evidence": raw.hex(),
                    "certificate": base64.b64encode(_GPU.chain_pem()).decode(),
                }
            ]
        }
    ).encode()
    (dev,) = decode_device_evidence(trustee)
    assert (dev.report, dev.cert_chain, dev.uuid, dev.arch) == (
        raw,
        _GPU.chain_pem(),
        "GPU-1",
        "HOPPER",
    )
    for bad in (b"[]", b"{}", b"[1]", b'[{"arch": "x"}]', b"zz!", b"\xff\x00"):
        with pytest.raises(EvidenceFormatError):
            decode_device_evidence(bad)


def test_padding_is_kept_but_must_be_zero() -> None:
    padded = _GPU.report(bytes(32), padding=3).to_bytes()
    assert NvidiaReport.from_bytes(padded).to_bytes() == padded
    with pytest.raises(EvidenceFormatError, match="padding"):
        NvidiaReport.from_bytes(padded[:-1] + b"\x01")


def _mutate(raw: bytes, offset: int, value: bytes) -> bytes:
    return raw[:offset] + value + raw[offset + len(value) :]


def test_the_format_refuses_what_spdm_forbids() -> None:
    raw = _SIM_REPORT
    record_len = int.from_bytes(raw[REQUEST_SIZE + 5 : REQUEST_SIZE + 8], "little")
    first_block = REQUEST_SIZE + 8
    cases = {
        "version": _mutate(raw, 0, b"\x12"),
        "request code": _mutate(raw, 1, b"\xe1"),
        "no signature requested": _mutate(raw, 2, b"\x00"),
        "reserved attribute": _mutate(raw, 2, b"\x03"),
        "count only": _mutate(raw, 3, b"\x00"),
        "slot": _mutate(raw, 36, b"\x09"),
        "response version": _mutate(raw, REQUEST_SIZE, b"\x10"),
        "response code": _mutate(raw, REQUEST_SIZE + 1, b"\x61"),
        "response slot": _mutate(raw, REQUEST_SIZE + 3, b"\x01"),
        "block count": _mutate(raw, REQUEST_SIZE + 4, b"\x3f"),
        "record length": _mutate(raw, REQUEST_SIZE + 5, (record_len + 1).to_bytes(3, "little")),
        "spec not DMTF": _mutate(raw, first_block + 1, b"\x02"),
        "block size": _mutate(raw, first_block + 2, b"\x34\x00"),
        "duplicate index": _mutate(raw, first_block + 4 + 51, b"\x01"),
        "truncated": raw[:-1],
    }
    for name, data in cases.items():
        try:
            NvidiaReport.from_bytes(data)
        except EvidenceFormatError:
            continue
        pytest.fail(f"accepted a report with a bad {name}")
    report = NvidiaReport.from_bytes(raw)
    dup = (*report.response.opaque, OpaqueField(OpaqueType.DRIVER_VERSION, b"1\0"))
    with pytest.raises(EvidenceFormatError, match="twice"):
        NvidiaReport.from_bytes(_GPU.report(bytes(32), opaque=dup).to_bytes())
    odd = (OpaqueField(OpaqueType.MSRSCNT, b"\x01\x00\x00"),)
    with pytest.raises(EvidenceFormatError, match="multiple of 4"):
        NvidiaReport.from_bytes(_GPU.report(bytes(32), opaque=odd).to_bytes())


def _only_format_errors(data: bytes) -> None:
    """Parsing raises nothing but EvidenceFormatError, and what parses round-trips exactly."""
    try:
        report = NvidiaReport.from_bytes(data)
    except EvidenceFormatError:
        pass
    else:
        assert report.to_bytes() == data
    with contextlib.suppress(EvidenceFormatError):
        decode_device_evidence(data)
    with contextlib.suppress(EvidenceFormatError):
        decode_device_evidence(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_format_errors(data: bytes) -> None:
    _only_format_errors(data)
    _only_format_errors(_SIM_REPORT[:45] + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_reports_raise_only_format_errors(data: st.DataObject) -> None:
    raw = _SIM_REPORT
    pos = data.draw(st.integers(0, len(raw) - 1))
    chunk = data.draw(st.binary(min_size=1, max_size=4))
    _only_format_errors(raw[:pos] + chunk + raw[pos + len(chunk) :])
    _only_format_errors(raw[:pos])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.binary(max_size=40)), max_size=8))
def test_any_opaque_fields_raise_only_format_errors(fields: list[tuple[int, bytes]]) -> None:
    opaque = tuple(OpaqueField(k, v) for k, v in fields)
    with contextlib.suppress(EvidenceFormatError):
        raw = _GPU.report(os.urandom(32), opaque=opaque).to_bytes()
        assert NvidiaReport.from_bytes(raw).to_bytes() == raw
