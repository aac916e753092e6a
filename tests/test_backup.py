"""Encrypted backup and restore: whole state back on a fresh deployment, nothing in clear."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, Kbs, kbs, sim_platform
from veritee.attester.client import KbsClient
from veritee.attester.providers import SimulatedSnpProvider
from veritee.cli.main import main

__all__ = ["kbs", "sim_platform"]


def test_backup_restores_on_a_fresh_deployment(kbs: Kbs, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with KbsClient(kbs.url) as c:  # some history to carry over
        c.attest(SimulatedSnpProvider(kbs.platform, measurement=GOOD_MEASUREMENT))
        c.get_resource("default/disk/key")
    backup = tmp_path / "state.vbk"
    assert main(["backup", "create", "--data-dir", str(kbs.data_dir), "--out", str(backup)]) == 0
    raw = backup.read_bytes()
    assert SECRET not in raw and b"disk/key" not in raw  # everything is encrypted
    assert backup.stat().st_mode & 0o077 == 0

    fresh = tmp_path / "fresh"
    assert main(["init", str(fresh)]) == 0
    shutil.copy(kbs.data_dir / "kek.key", fresh / "kek.key")  # same KEK, new everything else
    assert main(["backup", "restore", "--data-dir", str(fresh), str(backup)]) == 0
    out = capsys.readouterr().out
    assert "audit chain intact" in out
    assert main(["audit", "verify", "--data-dir", str(fresh)]) == 0
    assert (fresh / "token-signer.pem").read_bytes() == (kbs.data_dir / "token-signer.pem"
                                                          ).read_bytes()

    # The restored deployment serves the same secret to an attested guest.
    from tests.kbs_fixtures import start_kbs  # noqa: F401 - documents where servers come from
    from veritee.server.bootstrap import open_service
    from veritee.server.config import ServiceConfig

    service = open_service(ServiceConfig.load(fresh), trust_simulator=True)
    from veritee.broker.kbs import ResourcePath
    from veritee.broker.keyring import SealedSecret, unseal
    from veritee.store.models import ResourceRow

    with service.db.read() as s:
        row = s.get(ResourceRow, ("default", "default/disk/key"))
        assert row is not None
        sealed = SealedSecret(row.kek_id, row.wrapped_dek, row.nonce, row.ciphertext)
    assert unseal(service.broker.keyring, sealed,
                  ResourcePath("default", "disk", "key").aad()) == SECRET
    service.db.dispose()

    # Restoring again onto a populated deployment is refused.
    assert main(["backup", "restore", "--data-dir", str(fresh), str(backup)]) == 1


def test_backup_needs_the_same_kek(kbs: Kbs, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    backup = tmp_path / "state.vbk"
    assert main(["backup", "create", "--data-dir", str(kbs.data_dir), "--out", str(backup)]) == 0
    other = tmp_path / "other"
    assert main(["init", str(other)]) == 0
    assert main(["backup", "restore", "--data-dir", str(other), str(backup)]) == 1
    assert "KEK" in capsys.readouterr().err
    damaged = bytearray(backup.read_bytes())
    damaged[-5] ^= 1
    (tmp_path / "bad.vbk").write_bytes(bytes(damaged))
    shutil.copy(kbs.data_dir / "kek.key", other / "kek.key")
    assert main(["backup", "restore", "--data-dir", str(other), str(tmp_path / "bad.vbk")]) == 3
