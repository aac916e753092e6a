"""The KBS with Azure CVM evidence (az-snp-vtpm): a simulated paravisor, vTPM and AMD chip."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, Kbs, sim_platform, start_kbs
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedAzureProvider
from veritee.broker.binding import HashAlgorithm
from veritee.tee.azure.sim import SimulatedAzureSnpCvm
from veritee.tee.snp.sim import SimulatedSnpPlatform

__all__ = ["sim_platform"]
INIT_DATA = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"aa.toml" = "the owner\'s"\n'


def _cvm(platform: SimulatedSnpPlatform, **kw: object) -> SimulatedAzureSnpCvm:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimulatedAzureSnpCvm.generate(platform, **kw)  # type: ignore[arg-type]


def _token_claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def _assert_only_executables_refused(kbs: Kbs, cvm: SimulatedAzureSnpCvm) -> None:
    """Authentic evidence, appraised: the TCB and configuration pass, ``executables`` (the
    paravisor measurement and PCR 11 together) does not, and no secret is released."""
    client = KbsClient(kbs.url)
    att = client.attest(SimulatedAzureProvider(cvm))
    cpu0 = _token_claims(att.token)["submods"]["cpu0"]  # type: ignore[index]
    assert cpu0["ear.status"] == "warning"
    assert cpu0["ear.trustworthiness-vector"] == {
        "executables": 33, "hardware": 2, "configuration": 3,
    }
    with pytest.raises(KbsRefused) as info:
        client.get_resource("default/disk/key")
    assert info.value.variant == "PolicyDeny" and "executables: 33" in info.value.detail


@pytest.fixture(scope="module")
def azure_kbs(
    tmp_path_factory: pytest.TempPathFactory, sim_platform: SimulatedSnpPlatform
) -> Iterator[tuple[Kbs, SimulatedAzureSnpCvm]]:
    # The owner's CVM: the paravisor measurement and TCB the KBS already trusts (the
    # fixture's snp_* reference values), and PCR 11 learnt from one enrolment quote.
    cvm = _cvm(sim_platform, measurement=GOOD_MEASUREMENT)
    for kbs in start_kbs(tmp_path_factory.mktemp("azure"), sim_platform):
        enrolled = cvm.evidence(bytes(48), version=0, with_chain=True)
        rvs = {"snp_pcr11": [enrolled.quote.pcrs[11].hex()]}
        r = kbs.admin_post("/kbs/v0/reference-value", json={
            "version": "0.1.0", "type": "sample",
            "payload": base64.b64encode(json.dumps(rvs).encode()).decode()})
        assert r.status_code == 200, r.text
        yield kbs, cvm


def test_azure_cvm_receives_the_secret(azure_kbs: tuple[Kbs, SimulatedAzureSnpCvm]) -> None:
    kbs, cvm = azure_kbs
    with KbsClient(kbs.url) as client:
        att = client.attest(SimulatedAzureProvider(cvm))
        assert client.get_resource("default/disk/key") == SECRET
    cpu0 = _token_claims(att.token)["submods"]["cpu0"]  # type: ignore[index]
    assert cpu0["ear.status"] == "affirming"
    assert cpu0["ear.trustworthiness-vector"]["executables"] == 3
    ev = cpu0["ear.veraison.annotated-evidence"]
    az = ev["az-snp-vtpm"]
    assert az["measurement"] == GOOD_MEASUREMENT.hex()
    assert az["tpm"]["pcr11"] == cvm.vtpm.tpm.banks[0x000B][11].hex()
    assert az["simulated"] is True
    # The quote's extraData is the runtime-data digest (SHA-384, 48 bytes), unpadded.
    assert len(bytes.fromhex(az["report_data"])) == 48
    assert ev["report_data"] == az["report_data"]
    assert ev["init_data"] == az["tpm"]["init_data"] == az["tpm"]["pcr08"]


def test_changed_pcr11_is_refused(
    azure_kbs: tuple[Kbs, SimulatedAzureSnpCvm], sim_platform: SimulatedSnpPlatform
) -> None:
    kbs, _ = azure_kbs
    cvm = _cvm(sim_platform, measurement=GOOD_MEASUREMENT)
    cvm.vtpm.extend(11, b"another unified kernel image")
    _assert_only_executables_refused(kbs, cvm)


def test_another_paravisor_measurement_is_refused(
    azure_kbs: tuple[Kbs, SimulatedAzureSnpCvm], sim_platform: SimulatedSnpPlatform
) -> None:
    kbs, _ = azure_kbs
    cvm = _cvm(sim_platform, measurement=b"\x01" * 48)
    _assert_only_executables_refused(kbs, cvm)


def test_quote_for_another_nonce_is_refused(azure_kbs: tuple[Kbs, SimulatedAzureSnpCvm]) -> None:
    kbs, cvm = azure_kbs
    old = KbsClient(kbs.url).attest(SimulatedAzureProvider(cvm))
    with pytest.raises(KbsRefused) as info:
        KbsClient(kbs.url).attest(SimulatedAzureProvider(cvm), nonce_override=old.nonce)
    assert info.value.variant == "AttestationError"


def test_init_data_is_bound_through_pcr8(
    azure_kbs: tuple[Kbs, SimulatedAzureSnpCvm], sim_platform: SimulatedSnpPlatform
) -> None:
    kbs, _ = azure_kbs
    cvm = _cvm(sim_platform, measurement=GOOD_MEASUREMENT)
    booted = SimulatedAzureProvider(
        cvm, init_data_digest=HashAlgorithm.SHA256.digest(INIT_DATA.encode())
    )
    with KbsClient(kbs.url) as client:
        att = client.attest(booted, init_data_toml=INIT_DATA)
    ev = _token_claims(att.token)["submods"]["cpu0"]["ear.veraison.annotated-evidence"]  # type: ignore[index]
    assert ev["init_data_claims"] == {"aa.toml": "the owner's"}
    with pytest.raises(KbsRefused) as info:
        KbsClient(kbs.url).attest(booted, init_data_toml=INIT_DATA.replace("owner", "other"))
    assert info.value.variant == "AttestationError" and "init-data" in info.value.detail


def test_broker_trusts_the_carried_simulator_root_only_when_told(
    sim_platform: SimulatedSnpPlatform,
) -> None:
    import datetime as dt

    from veritee.broker.evidence import (
        INIT_DATA_FIELD,
        VERIFIERS,
        VerifyContext,
        expected_init_data_field,
    )
    from veritee.errors import ChainError
    from veritee.tee.snp.gather import CertPool
    from veritee.tee.tpm.kbs import init_data_pcr

    cvm = _cvm(sim_platform)
    digest = HashAlgorithm.SHA384.digest(b"runtime data")
    evidence = cvm.evidence(digest, version=0, with_chain=True).to_json()
    ctx = VerifyContext(now=dt.datetime.now(dt.UTC), collateral=CertPool((), ()))
    with pytest.raises(ChainError):
        VERIFIERS["az-snp-vtpm"](evidence, digest, ctx)
    trusted = VERIFIERS["az-snp-vtpm"](evidence, digest, replace(ctx, trust_simulator=True))
    assert trusted.simulated and trusted.report_data == digest
    assert trusted.init_data == cvm.vtpm.tpm.banks[0x000B][8]
    init = HashAlgorithm.SHA256.digest(b"init-data")
    for tee in ("az-snp-vtpm", "az-tdx-vtpm"):
        assert INIT_DATA_FIELD[tee] == 32
        assert expected_init_data_field(tee, init, 32) == init_data_pcr(init)


def test_broker_verifies_a_simulated_tdx_cvm_with_its_collateral(tmp_path: Path) -> None:
    import datetime as dt

    from veritee.broker.evidence import VERIFIERS, VerifyContext
    from veritee.errors import ChainError
    from veritee.tee.azure.sim import SimulatedAzureTdxCvm
    from veritee.tee.snp.gather import CertPool

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cvm = SimulatedAzureTdxCvm.generate()
    now = dt.datetime.now(dt.UTC)
    cvm.platform.dcap.write_collateral(
        tmp_path, issue=now - dt.timedelta(days=1), next_update=now + dt.timedelta(days=30)
    )
    digest = HashAlgorithm.SHA384.digest(b"runtime data")
    evidence = cvm.evidence(digest).to_json()
    ctx = VerifyContext(now=now, collateral=CertPool((), ()), collateral_dirs=(tmp_path,))
    with pytest.raises(ChainError):
        VERIFIERS["az-tdx-vtpm"](evidence, digest, ctx)
    verified = VERIFIERS["az-tdx-vtpm"](evidence, digest, replace(ctx, trust_simulator=True))
    assert verified.tee == "az-tdx-vtpm" and verified.simulated
    assert verified.report_data == digest
    assert verified.claims["tcb_status"] == "UpToDate"
    assert verified.claims["tpm"]["pcr11"] == cvm.vtpm.tpm.banks[0x000B][11].hex()  # type: ignore[index]
