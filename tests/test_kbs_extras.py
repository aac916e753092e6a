"""Strict status codes, init-data binding, guest evidence providers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, Kbs, sim_platform, start_kbs
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import (
    ConfigfsTsmProvider,
    SevGuestDeviceProvider,
    SimulatedSnpProvider,
)
from veritee.errors import ConfigError
from veritee.tee.snp.certtable import GUID_VCEK, CertEntry, CertTable
from veritee.tee.snp.kbs import parse_evidence
from veritee.tee.snp.sim import SimulatedSnpPlatform

__all__ = ["sim_platform"]

INIT_DATA = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"aa.toml" = "x = 1"\n'


@pytest.fixture(scope="module")
def strict_kbs(
    tmp_path_factory: pytest.TempPathFactory, sim_platform: SimulatedSnpPlatform
) -> Iterator[Kbs]:
    yield from start_kbs(tmp_path_factory.mktemp("strict"), sim_platform, strict=True)


def test_strict_mode_uses_403_and_404(strict_kbs: Kbs) -> None:
    good = KbsClient(strict_kbs.url)
    good.attest(SimulatedSnpProvider(strict_kbs.platform, measurement=GOOD_MEASUREMENT))
    with pytest.raises(KbsRefused) as info:
        good.get_resource("default/disk/none")
    assert info.value.status == 404
    bad = KbsClient(strict_kbs.url)
    bad.attest(SimulatedSnpProvider(strict_kbs.platform, measurement=bytes(48)))
    with pytest.raises(KbsRefused) as info:
        bad.get_resource("default/disk/key")
    assert info.value.status == 403 and info.value.variant == "PolicyDeny"


def test_init_data_is_bound_to_host_data(strict_kbs: Kbs) -> None:
    client = KbsClient(strict_kbs.url)
    att = client.attest(
        SimulatedSnpProvider(strict_kbs.platform, measurement=GOOD_MEASUREMENT),
        init_data_toml=INIT_DATA,
    )
    assert client.get_resource("default/disk/key") == SECRET
    import base64
    import json

    payload = att.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    ev = claims["submods"]["cpu0"]["ear.veraison.annotated-evidence"]
    assert ev["init_data_claims"] == {"aa.toml": "x = 1"}

    class Lying(SimulatedSnpProvider):
        def evidence(self, report_data: bytes, *, host_data: bytes | None = None) -> object:
            return super().evidence(report_data, host_data=b"\x01" * 32)

    liar = KbsClient(strict_kbs.url)
    with pytest.raises(KbsRefused) as info:
        liar.attest(
            Lying(strict_kbs.platform, measurement=GOOD_MEASUREMENT), init_data_toml=INIT_DATA
        )
    assert "init-data" in info.value.detail


def test_configfs_tsm_provider_reads_report_and_certs(
    tmp_path: Path, sim_platform: SimulatedSnpPlatform
) -> None:
    """configfs-tsm cannot be mounted here: a directory with its files stands in for it."""
    entry = tmp_path / "tsm" / "report" / "veritee-test"
    entry.mkdir(parents=True)
    report = sim_platform.report(report_data=b"\x07" * 64)
    (entry / "provider").write_text("sev_guest\n")
    (entry / "outblob").write_bytes(report.to_bytes())
    table = CertTable((CertEntry(GUID_VCEK, sim_platform.vcek_der()),))
    (entry / "auxblob").write_bytes(table.to_bytes())
    provider = ConfigfsTsmProvider(tmp_path / "tsm" / "report", entry="veritee-test")
    got, certs = parse_evidence(provider.evidence(b"\x07" * 64))
    assert got == report
    assert (entry / "inblob").read_bytes() == b"\x07" * 64
    assert certs is not None and certs.get(GUID_VCEK) == sim_platform.vcek_der()
    (entry / "provider").write_text("tdx_guest\n")
    with pytest.raises(ConfigError, match="tdx_guest"):
        provider.evidence(b"\x07" * 64)


def test_real_providers_fail_clearly_without_hardware(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an SEV-SNP guest"):
        SevGuestDeviceProvider(tmp_path / "sev-guest").evidence(b"")
    with pytest.raises(ConfigError, match="configfs-tsm"):
        ConfigfsTsmProvider(tmp_path / "nope").evidence(b"")
