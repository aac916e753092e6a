"""The KBS with Intel TDX evidence: a simulated TD with signed simulator collateral."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import warnings
from collections.abc import Iterator

import pytest

from tests.kbs_fixtures import SECRET, Kbs, sim_platform, start_kbs
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedTdxProvider
from veritee.tee.snp.sim import SimulatedSnpPlatform
from veritee.tee.tdx.sim import SimulatedTdxPlatform

__all__ = ["sim_platform"]
GOOD_TD = hashlib.sha384(b"the owner's TD").digest()


@pytest.fixture(scope="module")
def tdx_kbs(
    tmp_path_factory: pytest.TempPathFactory, sim_platform: SimulatedSnpPlatform
) -> Iterator[tuple[Kbs, SimulatedTdxPlatform]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tdx = SimulatedTdxPlatform.generate()
    for kbs in start_kbs(tmp_path_factory.mktemp("tdx"), sim_platform):
        now = dt.datetime.now(dt.UTC)
        tdx.dcap.write_collateral(
            kbs.data_dir / "collateral",
            issue=now - dt.timedelta(days=1),
            next_update=now + dt.timedelta(days=30),
        )
        rvs = {
            "mr_td": [GOOD_TD.hex()],
            "rtmr_1": ["00" * 48],
            "rtmr_2": ["00" * 48],
            "xfam": ["e702060000000000"],
        }
        r = kbs.admin_post(
            "/kbs/v0/reference-value",
            json={
                "version": "0.1.0",
                "type": "sample",
                "payload": base64.b64encode(json.dumps(rvs).encode()).decode(),
            },
        )
        assert r.status_code == 200, r.text
        yield kbs, tdx


def test_tdx_guest_receives_the_secret(tdx_kbs: tuple[Kbs, SimulatedTdxPlatform]) -> None:
    kbs, tdx = tdx_kbs
    with KbsClient(kbs.url) as client:
        att = client.attest(SimulatedTdxProvider(tdx, mr_td=GOOD_TD))
        assert client.get_resource("default/disk/key") == SECRET
    payload = att.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    ev = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert ev["tdx"]["quote"]["body"]["mr_td"] == GOOD_TD.hex()
    assert ev["tdx"]["tcb_status"] == "UpToDate"
    assert ev["tdx"]["simulated"] is True


def test_tdx_guest_with_another_mr_td_is_refused(
    tdx_kbs: tuple[Kbs, SimulatedTdxPlatform],
) -> None:
    kbs, tdx = tdx_kbs
    client = KbsClient(kbs.url)
    client.attest(SimulatedTdxProvider(tdx, mr_td=bytes(48)))
    with pytest.raises(KbsRefused) as info:
        client.get_resource("default/disk/key")
    assert info.value.variant == "PolicyDeny"
    assert "mr_td" in info.value.detail


def test_tdx_quote_bound_to_another_nonce_is_refused(
    tdx_kbs: tuple[Kbs, SimulatedTdxPlatform],
) -> None:
    kbs, tdx = tdx_kbs
    first = KbsClient(kbs.url)
    old = first.attest(SimulatedTdxProvider(tdx, mr_td=GOOD_TD))
    replay = KbsClient(kbs.url)
    with pytest.raises(KbsRefused) as info:
        replay.attest(SimulatedTdxProvider(tdx, mr_td=GOOD_TD), nonce_override=old.nonce)
    assert info.value.variant == "AttestationError"
