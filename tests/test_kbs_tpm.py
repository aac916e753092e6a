"""The KBS with TPM evidence from a real software TPM (swtpm + tpm2-tools)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from tests.kbs_fixtures import SECRET, Kbs, sim_platform, start_kbs
from tests.tpm_swtpm import Swtpm, swtpm_fixture
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import TpmProvider
from veritee.attester.tpm import TpmAttester
from veritee.tee.snp.sim import SimulatedSnpPlatform

__all__ = ["sim_platform", "swtpm_fixture"]


@pytest.fixture(scope="module")
def tpm_kbs(tmp_path_factory: pytest.TempPathFactory, sim_platform: SimulatedSnpPlatform,
            swtpm: Swtpm) -> Iterator[tuple[Kbs, TpmAttester]]:
    attester = TpmAttester(tmp_path_factory.mktemp("attester"), tcti=swtpm.tcti)
    attester.provision()
    for kbs in start_kbs(tmp_path_factory.mktemp("tpm"), sim_platform):
        # Learn the AK and the PCRs from one quote, as an owner enrolling a machine would.
        enrolled = attester.evidence(b"\0" * 48).to_json()
        pcrs = enrolled["tpm_quote"]["pcrs"]  # type: ignore[index]
        rvs = {"trusted_aks": [base64.b64encode(
            base64.b64decode(str(enrolled["ak_public"]))).decode()],
            "tpm_pcr11": [pcrs[11]], "tpm_pcr07": [pcrs[7]]}
        r = kbs.admin_post("/kbs/v0/reference-value", json={
            "version": "0.1.0", "type": "sample",
            "payload": base64.b64encode(json.dumps(rvs).encode()).decode()})
        assert r.status_code == 200, r.text
        yield kbs, attester


def test_tpm_host_receives_the_secret(tpm_kbs: tuple[Kbs, TpmAttester]) -> None:
    kbs, attester = tpm_kbs
    with KbsClient(kbs.url) as client:
        att = client.attest(TpmProvider(attester))
        assert client.get_resource("default/disk/key") == SECRET
    payload = att.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    cpu0 = claims["submods"]["cpu0"]
    assert cpu0["ear.status"] == "affirming"
    assert "pcr11" in cpu0["ear.veraison.annotated-evidence"]["tpm"]


def test_changed_pcr11_is_refused(tpm_kbs: tuple[Kbs, TpmAttester]) -> None:
    kbs, attester = tpm_kbs
    client = KbsClient(kbs.url)
    attester.extend(11, [("sha256", b"\x42" * 32)])  # the measured boot changed
    client.attest(TpmProvider(attester))
    with pytest.raises(KbsRefused) as info:
        client.get_resource("default/disk/key")
    assert info.value.variant == "PolicyDeny" and "tpm_pcr11" in info.value.detail


def test_tpm_quote_for_another_nonce_is_refused(tpm_kbs: tuple[Kbs, TpmAttester]) -> None:
    kbs, attester = tpm_kbs
    old = KbsClient(kbs.url).attest(TpmProvider(attester))
    with pytest.raises(KbsRefused) as info:
        KbsClient(kbs.url).attest(TpmProvider(attester), nonce_override=old.nonce)
    assert info.value.variant == "AttestationError"
