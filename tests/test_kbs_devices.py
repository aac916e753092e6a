"""Composite evidence: a simulated SNP CVM plus two simulated GPUs (submods cpu0, gpu0, gpu1)."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator

import pytest

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, Kbs, sim_platform, start_kbs
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedNvidiaProvider, SimulatedSnpProvider
from veritee.tee.nvidia.sim import SimulatedNvidiaDevice
from veritee.tee.snp.sim import SimulatedSnpPlatform

__all__ = ["sim_platform"]


@pytest.fixture(scope="module")
def gpu_kbs(
    tmp_path_factory: pytest.TempPathFactory, sim_platform: SimulatedSnpPlatform
) -> Iterator[Kbs]:
    for kbs in start_kbs(tmp_path_factory.mktemp("gpus"), sim_platform):
        rvs = {"nvidia_driver_version": ["550.90.07"], "nvidia_vbios_version": ["96.00.9f.00.01"]}
        r = kbs.admin_post(
            "/kbs/v0/reference-value",
            json={
                "version": "0.1.0",
                "type": "sample",
                "payload": base64.b64encode(json.dumps(rvs).encode()).decode(),
            },
        )
        assert r.status_code == 200, r.text
        yield kbs


@pytest.fixture(scope="module")
def gpus() -> tuple[SimulatedNvidiaDevice, SimulatedNvidiaDevice, SimulatedNvidiaDevice]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            SimulatedNvidiaDevice.hopper(),
            SimulatedNvidiaDevice.hopper(),
            SimulatedNvidiaDevice.hopper(driver_version="535.54.03"),
        )


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_cvm_and_two_gpus_all_affirming_get_the_secret(
    gpu_kbs: Kbs, gpus: tuple[SimulatedNvidiaDevice, ...]
) -> None:
    cpu = SimulatedSnpProvider(gpu_kbs.platform, measurement=GOOD_MEASUREMENT)
    devs = [SimulatedNvidiaProvider(gpus[0], "GPU-0"), SimulatedNvidiaProvider(gpus[1], "GPU-1")]
    with KbsClient(gpu_kbs.url) as client:
        att = client.attest(cpu, devices=devs)
        assert client.get_resource("default/disk/key") == SECRET
    submods = _claims(att.token)["submods"]
    assert isinstance(submods, dict)
    assert set(submods) == {"cpu0", "gpu0", "gpu1"}
    assert all(s["ear.status"] == "affirming" for s in submods.values())
    assert submods["gpu1"]["ear.veraison.annotated-evidence"]["nvidia"]["uuid"] == "GPU-1"


def test_one_gpu_with_unknown_driver_blocks_the_release(
    gpu_kbs: Kbs, gpus: tuple[SimulatedNvidiaDevice, ...]
) -> None:
    cpu = SimulatedSnpProvider(gpu_kbs.platform, measurement=GOOD_MEASUREMENT)
    devs = [SimulatedNvidiaProvider(gpus[0], "GPU-0"), SimulatedNvidiaProvider(gpus[2], "GPU-X")]
    client = KbsClient(gpu_kbs.url)
    att = client.attest(cpu, devices=devs)
    assert _claims(att.token)["submods"]["gpu1"]["ear.status"] == "warning"  # type: ignore[index]
    with pytest.raises(KbsRefused) as info:
        client.get_resource("default/disk/key")
    assert "gpu1" in info.value.detail and "nvidia_driver_version" in info.value.detail


def test_gpu_report_for_another_nonce_is_refused(
    gpu_kbs: Kbs, gpus: tuple[SimulatedNvidiaDevice, ...]
) -> None:
    class Stale(SimulatedNvidiaProvider):
        def device_evidence(self, device_digest: bytes) -> dict[str, object]:
            return super().device_evidence(bytes(48))  # bound to something else

    cpu = SimulatedSnpProvider(gpu_kbs.platform, measurement=GOOD_MEASUREMENT)
    with pytest.raises(KbsRefused) as info:
        KbsClient(gpu_kbs.url).attest(cpu, devices=[Stale(gpus[0], "GPU-0")])
    assert info.value.variant == "AttestationError" and "nonce" in info.value.detail


def test_additional_evidence_is_covered_by_the_cpu_report(
    gpu_kbs: Kbs, gpus: tuple[SimulatedNvidiaDevice, ...]
) -> None:
    """Swapping the device evidence after the CPU report was made breaks the binding."""
    import httpx

    from veritee.broker.binding import device_digest, expected_report_data, primary_digest

    client = KbsClient(gpu_kbs.url)
    nonce, alg = client.auth("snp")
    dev = SimulatedNvidiaProvider(gpus[0], "GPU-0").device_evidence(
        device_digest(nonce, client.tee_jwk, alg)
    )
    honest = json.dumps({"nvidia": {"device_evidence_list": [dev]}})
    cpu_ev = SimulatedSnpProvider(gpu_kbs.platform, measurement=GOOD_MEASUREMENT).evidence(
        expected_report_data(primary_digest(nonce, client.tee_jwk, honest, alg), 64)
    )
    swapped = json.dumps({"nvidia": {"device_evidence_list": [dev, dev]}})
    r = httpx.post(
        f"{gpu_kbs.url}/kbs/v0/attest",
        headers={"Cookie": f"kbs-session-id={client.session_id}"},
        json={
            "runtime-data": {"nonce": nonce, "tee-pubkey": client.tee_jwk.canonical_jwk()},
            "tee-evidence": {"primary_evidence": cpu_ev, "additional_evidence": swapped},
        },
    )
    assert r.status_code == 401 and "REPORT_DATA" in r.json()["detail"]
