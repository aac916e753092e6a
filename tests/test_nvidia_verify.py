"""NVIDIA verification: real H100 and NVSwitch reports, Trustee's claims, precise rejections."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.device_corpus import (
    GPU_IDS,
    GPU_SAMPLES,
    NVIDIA_AT,
    NVIDIA_NOT_BEFORE,
    SWITCH,
    GpuSample,
)
from veritee.errors import (
    ChainError,
    ConfigError,
    EvidenceFormatError,
    ExpiredError,
    MismatchError,
    SignatureError,
    VerificationError,
)
from veritee.pki.certs import common_name, fingerprint, load_certificates
from veritee.tee.nvidia.claims import NvidiaClaims
from veritee.tee.nvidia.evidence import decode_device_evidence
from veritee.tee.nvidia.report import NvidiaReport, OpaqueField, OpaqueType
from veritee.tee.nvidia.sim import SimulatedNvidiaDevice
from veritee.tee.nvidia.verify import (
    NVIDIA_DEVICE_ROOT_FINGERPRINT,
    DeviceClass,
    NvidiaRoots,
    certificate_fwid,
    verify_report,
)

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _parts(sample: GpuSample) -> tuple[NvidiaReport, list[object]]:
    (device,) = decode_device_evidence(sample.report_text)
    return NvidiaReport.from_bytes(device.report), load_certificates(sample.chain_pem)  # type: ignore[return-value]


def _verify(sample: GpuSample, data: bytes | None = None, **kw: object) -> object:
    report, chain = _parts(sample)
    if data is not None:
        report = NvidiaReport.from_bytes(data)
    return verify_report(report, chain, NvidiaRoots.device(), NVIDIA_AT, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def gpu() -> SimulatedNvidiaDevice:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimulatedNvidiaDevice.hopper()


# -- real hardware --------------------------------------------------------------------------


@pytest.mark.parametrize("sample", GPU_SAMPLES, ids=GPU_IDS)
def test_corpus_report_verifies_and_matches_manifest(sample: GpuSample) -> None:
    report, chain = _parts(sample)
    verified = verify_report(
        report,
        chain,
        NvidiaRoots.device(),
        NVIDIA_AT,
        expected_nonce=sample.nonce,  # type: ignore[arg-type]
    )
    obs = sample.observed
    assert verified.device is DeviceClass.HOPPER and not verified.simulated
    assert fingerprint(verified.chain.root) == NVIDIA_DEVICE_ROOT_FINGERPRINT
    assert fingerprint(verified.chain.root).startswith(str(obs["root_fp"]))
    assert len(verified.chain.certs) == obs["ncerts"]
    assert [common_name(c.subject) for c in verified.chain.certs] == [
        s.split("CN=")[1].split(",")[0]
        for s in obs["subjects"]  # type: ignore[union-attr]
    ]
    assert verified.certificate_fwid == report.opaque(OpaqueType.FWID)
    claims = NvidiaClaims.from_verified(verified).to_json()
    assert claims["report_data"] == obs["req_nonce"]
    assert claims["arch"] == "Hopper"
    assert len(claims["measurements"]) == obs["nblocks"]  # type: ignore[arg-type]


@pytest.mark.skipif(not any(s.claims_file for s in GPU_SAMPLES), reason="corpus absent")
def test_claims_equal_trustees_expected_claims() -> None:
    sample = next(s for s in GPU_SAMPLES if s.claims_file is not None)
    assert sample.claims_file is not None
    expected = json.loads(sample.claims_file.read_text())
    report, chain = _parts(sample)
    verified = verify_report(report, chain, NvidiaRoots.device(), NVIDIA_AT)  # type: ignore[arg-type]
    claims = NvidiaClaims.from_verified(verified, uuid=expected["uuid"]).to_json()
    assert {k: claims[k] for k in expected} == expected
    assert set(claims) - set(expected) == {"report_data", "driver_rim", "vbios_rim", "simulated"}
    config = claims["config"]
    assert isinstance(config, dict)
    assert (config["driver_version"], config["vbios_version"]) == ("550.90.07", "96.00.9f.00.01")


@pytest.mark.skipif(SWITCH is None, reason="corpus absent")
def test_nvswitch_devices_verify() -> None:
    assert SWITCH is not None
    path, expected = SWITCH
    devices = decode_device_evidence(path.read_bytes())
    serials = set()
    for device, exp in zip(devices, expected["devices"], strict=True):  # type: ignore[call-overload]
        assert device.cert_chain is not None and device.nonce is not None
        chain = load_certificates(device.cert_chain)
        report = NvidiaReport.from_bytes(device.report)
        verified = verify_report(
            report,
            chain,
            NvidiaRoots.device(),
            NVIDIA_AT,
            expected_nonce=device.nonce,
            stated_arch=device.arch,
        )
        assert verified.device is DeviceClass.LS10
        assert len(verified.chain.certs) == exp["ncerts"]
        assert [common_name(c.subject) for c in verified.chain.certs] == [
            s.split("CN=")[1].split(",")[0] for s in exp["subjects"]
        ]
        claims = NvidiaClaims.from_verified(verified).to_json()
        config = claims["config"]
        assert isinstance(config, dict)
        assert claims["arch"] == exp["arch"] == "LS10"
        assert config["vbios_version"] == "96.10.73.00.01"
        assert isinstance(config["switch_gpu_pdis"], list) and len(config["switch_gpu_pdis"]) == 16
        assert len(claims["measurements"]) == exp["nblocks"]  # type: ignore[arg-type]
        serials.add(chain[0].serial_number)
        with pytest.raises(MismatchError, match="arch"):
            verify_report(report, chain, NvidiaRoots.device(), NVIDIA_AT, stated_arch="Hopper")
    assert len(serials) == 4  # four different switches


@pytest.mark.parametrize("sample", GPU_SAMPLES, ids=GPU_IDS)
def test_corpus_single_bit_flips_are_signature_errors(sample: GpuSample) -> None:
    report, _ = _parts(sample)
    raw = report.to_bytes()
    rng = random.Random(sample.name)
    signed = len(report.signed_bytes())
    sig = range(signed, signed + 96)
    # Measurement values, both nonces, the opaque data values: all signed, none format-checked.
    values = [b.value for b in report.response.blocks if any(b.value)] + [
        report.request.nonce,
        report.response.nonce,
        report.opaque(OpaqueType.FWID) or b"",
    ]
    for value in values[:: max(1, len(values) // 12)]:
        pos = raw.index(value) + rng.randrange(len(value))
        data = raw[:pos] + bytes([raw[pos] ^ (1 << rng.randrange(8))]) + raw[pos + 1 :]
        with pytest.raises(SignatureError):
            _verify(sample, data)
    for pos in rng.sample(sig, 10):
        data = raw[:pos] + bytes([raw[pos] ^ 0x04]) + raw[pos + 1 :]
        with pytest.raises(SignatureError):
            _verify(sample, data)
    # Any bit of the signed region: never accepted.
    for bit in rng.sample(range(signed * 8), 150):
        b = bytearray(raw)
        b[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((VerificationError, EvidenceFormatError)):
            _verify(sample, bytes(b))


@pytest.mark.parametrize("sample", GPU_SAMPLES, ids=GPU_IDS)
def test_corpus_wrong_nonce_and_validity(sample: GpuSample) -> None:
    wrong = bytes([sample.nonce[0] ^ 0x80]) + sample.nonce[1:]
    with pytest.raises(MismatchError, match="nonce"):
        _verify(sample, expected_nonce=wrong)
    with pytest.raises(ConfigError):
        _verify(sample, expected_nonce=sample.nonce[:16])
    report, chain = _parts(sample)
    with pytest.raises(ExpiredError):  # before NVIDIA issued the provisioner ICA
        verify_report(
            report,
            chain,
            NvidiaRoots.device(),
            NVIDIA_NOT_BEFORE - dt.timedelta(days=1),  # type: ignore[arg-type]
        )
    verify_report(report, chain, NvidiaRoots.device(), NVIDIA_NOT_BEFORE)  # type: ignore[arg-type]


@pytest.mark.skipif(len(GPU_SAMPLES) < 2, reason="corpus absent")
def test_another_gpus_chain_does_not_verify_the_report() -> None:
    a, b = GPU_SAMPLES
    report, _ = _parts(a)
    _, other_chain = _parts(b)
    with pytest.raises(SignatureError):
        verify_report(report, other_chain, NvidiaRoots.device(), NVIDIA_AT)  # type: ignore[arg-type]


@pytest.mark.parametrize("sample", GPU_SAMPLES, ids=GPU_IDS)
def test_corpus_chain_must_reach_the_pinned_root(
    sample: GpuSample, gpu: SimulatedNvidiaDevice
) -> None:
    report, chain = _parts(sample)
    with pytest.raises(ChainError):  # the root left out: nothing pinned to anchor on
        verify_report(report, chain[:-1], NvidiaRoots.device(), NVIDIA_AT)  # type: ignore[arg-type]
    with pytest.raises(ChainError):  # the simulator's root instead of NVIDIA's
        verify_report(
            report,
            [*chain[:-1], gpu.root],  # type: ignore[list-item]
            NvidiaRoots().with_root(gpu.root),
            NVIDIA_AT,
        )
    with pytest.raises(ChainError):  # an intermediate missing
        verify_report(report, [chain[0], *chain[2:]], NvidiaRoots.device(), NVIDIA_AT)  # type: ignore[list-item]


# -- simulated devices ----------------------------------------------------------------------


def test_simulated_gpu_needs_its_root_explicitly(gpu: SimulatedNvidiaDevice) -> None:
    nonce = os.urandom(32)
    report = NvidiaReport.from_bytes(gpu.report(nonce, padding=1).to_bytes())
    with pytest.raises(ChainError, match="no trusted NVIDIA root"):
        verify_report(report, gpu.chain, NvidiaRoots.device(), NOW)
    verified = verify_report(
        report, gpu.chain, NvidiaRoots.device().with_root(gpu.root), NOW, expected_nonce=nonce
    )
    assert verified.simulated and verified.device is DeviceClass.HOPPER
    assert certificate_fwid(gpu.chain[0]) == gpu.fwid
    claims = NvidiaClaims.from_verified(verified).to_json()
    assert claims["simulated"] is True
    assert claims["measurements"] == {str(i): v.hex() for i, v in sorted(gpu.measurements.items())}


def test_simulated_rejections(gpu: SimulatedNvidiaDevice) -> None:
    roots = NvidiaRoots.device().with_root(gpu.root)
    nonce = os.urandom(32)
    other_key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(SignatureError):
        verify_report(gpu.report(nonce, signing_key=other_key), gpu.chain, roots, NOW)
    # The device signs a report stating another FWID than its certificate's.
    forged = tuple(
        OpaqueField(f.type, os.urandom(48)) if f.type == OpaqueType.FWID else f for f in gpu.opaque
    )
    with pytest.raises(MismatchError, match="FWID"):
        verify_report(gpu.report(nonce, opaque=forged), gpu.chain, roots, NOW)
    no_fwid = tuple(f for f in gpu.opaque if f.type != OpaqueType.FWID)
    with pytest.raises(MismatchError, match="FWID"):
        verify_report(gpu.report(nonce, opaque=no_fwid), gpu.chain, roots, NOW)
    with pytest.raises(MismatchError, match="nonce"):
        verify_report(gpu.report(nonce), gpu.chain, roots, NOW, expected_nonce=bytes(32))


def test_simulated_leaf_expiry(gpu: SimulatedNvidiaDevice) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = SimulatedNvidiaDevice.hopper(not_after=NOW)
    roots = NvidiaRoots.device().with_root(short.root)
    report = short.report(bytes(32))
    verify_report(report, short.chain, roots, NOW)
    with pytest.raises(ExpiredError):
        verify_report(report, short.chain, roots, NOW + dt.timedelta(hours=1))
    # Memoized chains do not skip validity: the same call still fails.
    with pytest.raises(ExpiredError):
        verify_report(report, short.chain, roots, NOW + dt.timedelta(hours=1))


def test_simulated_nvswitch(gpu: SimulatedNvidiaDevice) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        switch = SimulatedNvidiaDevice.nvswitch()
    roots = NvidiaRoots.device().with_root(switch.root)
    verified = verify_report(switch.report(bytes(32)), switch.chain, roots, NOW, stated_arch="LS10")
    assert verified.device is DeviceClass.LS10
    # A GPU chain for a switch's report: the device key differs.
    with pytest.raises(SignatureError):
        verify_report(switch.report(bytes(32)), gpu.chain, roots.with_root(gpu.root), NOW)
