"""The KEK sealed to a TPM (swtpm + tpm2-tools here), and rotations into and out of it.

Everything that needs a TPM skips cleanly without swtpm / tpm2-tools; the rotation to
an HSM KEK also needs SoftHSM2 (skipped without it). The configuration tests need
neither.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, sim_platform
from tests.keys_fixtures import serve_kbs
from tests.test_keyring_pkcs11 import (
    PIN_ENV,
    SoftHsm,
    _assert_rotated,
    _close,
    _open_all,
    _paths,
    _rotate_under_reads,
    _rows,
    _secret,
    hsm,
)
from tests.tpm_swtpm import HAVE_SWTPM, Swtpm, swtpm_fixture
from veritee.appraisal.ear import verify_ear
from veritee.attester.client import KbsClient
from veritee.attester.providers import SimulatedSnpProvider
from veritee.broker.keyring import FileKeyring, Keyring, MultiKeyring, SealedSecret, seal, unseal
from veritee.broker.rotation import kek_inventory, rotate_kek
from veritee.cli.main import main
from veritee.errors import ConfigError, KeyringUnavailableError, VerificationError
from veritee.server.bootstrap import init_data_dir, open_service
from veritee.server.config import FileKeyringConfig, KeyringConfig, ServiceConfig, TpmKeyringConfig
from veritee.tee.snp.sim import SimulatedSnpPlatform
from veritee.tee.tpm.structures import TpmtPublic

__all__ = ["hsm", "sim_platform", "swtpm_fixture"]

needs_swtpm = pytest.mark.skipif(not HAVE_SWTPM, reason="swtpm / tpm2-tools not installed")


def _ring(swtpm: Swtpm, sealed_dir: Path, *, create: bool = False, pcrs: str | None = None) -> Any:
    from veritee.broker.keyring_tpm import TpmSealedKeyring

    factory = TpmSealedKeyring.create if create else TpmSealedKeyring.open
    return factory(swtpm.tcti, sealed_dir, pcrs=pcrs)


def _kek_behind_the_back(swtpm: Swtpm, sealed_dir: Path) -> bytes:
    """Unseal the stored blobs with tpm2-tools alone (a KEK sealed without PCR policy)."""
    work = swtpm.workdir
    swtpm.run("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", work / "p.ctx")
    swtpm.run("tpm2_load", "-C", work / "p.ctx", "-u", sealed_dir / "kek.pub",
              "-r", sealed_dir / "kek.priv", "-c", work / "k.ctx")
    kek = swtpm.run("tpm2_unseal", "-c", work / "k.ctx").stdout
    assert len(kek) == 32
    return kek


def _tpm_section(swtpm: Swtpm, sealed_dir: str = "tpm-kek", pcrs: str | None = None) -> str:
    text = f'\n[keyring]\ntype = "tpm"\ntcti = "{swtpm.tcti}"\nsealed_dir = "{sealed_dir}"\n'
    return text + (f'pcrs = "{pcrs}"\n' if pcrs else "")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fresh_swtpm(tmp_path: Path) -> Iterator[Swtpm]:
    """A TPM of its own, for tests that change PCRs."""
    if not HAVE_SWTPM:
        pytest.skip("swtpm / tpm2-tools not installed (scripts/setup.d/tpm.apt)")
    tpm = Swtpm(tmp_path / "own-tpm")
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()


# -- the keyring itself ----------------------------------------------------------------------


@needs_swtpm
def test_round_trip_same_blob_format_and_nothing_secret_on_disk(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    sealed_dir = tmp_path / "sealed"
    with _ring(swtpm, sealed_dir, create=True) as ring:
        assert isinstance(ring, Keyring)
        assert ring.kek_id.startswith("tpm-") and len(ring.kek_id) == 20
        for size in (0, 1, 31, 4096):
            plaintext = os.urandom(size)
            sealed = seal(ring, plaintext, b"default/key/a")
            assert sealed.kek_id == ring.kek_id
            assert unseal(ring, sealed, b"default/key/a") == plaintext
        dek = os.urandom(32)
        blob1, blob2 = ring.wrap(dek, b"aad"), ring.wrap(dek, b"aad")
        assert blob1 != blob2 and len(blob1) == 1 + 12 + 32 + 16 and blob1[0] == 1
        first_id = ring.kek_id

    # Only the TPM blobs and their description are stored, owner-only.
    assert sorted(p.name for p in sealed_dir.iterdir()) == ["kek.json", "kek.priv", "kek.pub"]
    assert sealed_dir.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in sealed_dir.iterdir())

    # What the TPM holds is the KEK, in FileKeyring's very blob format ...
    kek = _kek_behind_the_back(swtpm, sealed_dir)
    (tmp_path / "kek.key").write_bytes(kek)
    (tmp_path / "kek.key").chmod(0o600)
    as_file = FileKeyring(tmp_path / "kek.key")
    assert as_file.unwrap(blob1, b"aad") == dek
    # ... and it is nowhere on disk, nor in the id or the repr.
    for path in sealed_dir.iterdir():
        data = path.read_bytes()
        assert kek not in data and kek.hex().encode() not in data.lower()
    assert first_id != as_file.kek_id  # not derived from the key
    name = TpmtPublic.from_tpm2b((sealed_dir / "kek.pub").read_bytes()).name()
    label = b"veritee/tpm-kek-id/v1\x00"
    assert first_id == "tpm-" + hashlib.sha256(label + name).hexdigest()[:16]

    # Unsealed again at the next start: the same KEK, the same id.
    with _ring(swtpm, sealed_dir) as again:
        assert again.kek_id == first_id
        assert again.unwrap(blob1, b"aad") == dek
        assert kek.hex() not in repr(again)
    with pytest.raises(ConfigError, match="already holds a TPM-sealed KEK"):
        _ring(swtpm, sealed_dir, create=True)
    closed = _ring(swtpm, sealed_dir)
    closed.close()
    with pytest.raises(KeyringUnavailableError):
        closed.wrap(dek, b"aad")


@needs_swtpm
def test_tampered_blobs_and_aad_are_refused(swtpm: Swtpm, tmp_path: Path) -> None:
    ring = _ring(swtpm, tmp_path / "a", create=True)
    other = _ring(swtpm, tmp_path / "b", create=True)
    assert ring.kek_id != other.kek_id
    sealed = seal(ring, b"secret value", b"default/key/a")
    with pytest.raises(VerificationError):
        unseal(ring, sealed, b"default/key/b")
    blob = sealed.wrapped_dek
    for index in (0, 1, 12, 13, len(blob) - 1):  # version, nonce, nonce end, body, tag
        bad = bytearray(blob)
        bad[index] ^= 0x01
        altered = SealedSecret(sealed.kek_id, bytes(bad), sealed.nonce, sealed.ciphertext)
        with pytest.raises(VerificationError):
            unseal(ring, altered, b"default/key/a")
    with pytest.raises(VerificationError, match="truncated"):
        ring.unwrap(blob[:20], b"x")
    with pytest.raises(VerificationError, match="does not open"):
        other.unwrap(ring.wrap(os.urandom(32), b"aad"), b"aad")
    with pytest.raises(VerificationError, match="sealed under KEK"):
        unseal(other, sealed, b"default/key/a")
    assert unseal(ring, sealed, b"default/key/a") == b"secret value"

    # The sealed blobs themselves: altered parts do not load, missing ones are named.
    for name, index in (("kek.priv", 40), ("kek.pub", -1)):
        copy = tmp_path / f"bad-{name}"
        copy.mkdir()
        for part in ("kek.pub", "kek.priv", "kek.json"):
            (copy / part).write_bytes((tmp_path / "a" / part).read_bytes())
        data = bytearray((copy / name).read_bytes())
        data[index] ^= 0x01
        (copy / name).write_bytes(bytes(data))
        with pytest.raises(ConfigError, match="does not load into the TPM"):
            _ring(swtpm, copy)
    (tmp_path / "b" / "kek.priv").unlink()
    with pytest.raises(ConfigError, match=r"missing \(kek\.priv\)") as missing:
        _ring(swtpm, tmp_path / "b")
    assert "veritee keyring create --tpm" in str(missing.value)


def test_pcr_policy_refuses_unseal_after_the_pcr_is_extended(
    fresh_swtpm: Swtpm, tmp_path: Path
) -> None:
    tpm = fresh_swtpm
    sealed_dir = tmp_path / "sealed"
    ring = _ring(tpm, sealed_dir, create=True, pcrs="sha256:7,0")
    assert str(ring.pcrs) == "sha256:0,7"
    dek = os.urandom(32)
    blob = ring.wrap(dek, b"aad")
    # In the measured state it was sealed in, it opens (also with the selection spelled
    # differently in the config); a config naming other PCRs is refused.
    assert _ring(tpm, sealed_dir, pcrs="sha256:0,7").unwrap(blob, b"aad") == dek
    with pytest.raises(ConfigError, match="sealed to sha256:0,7"):
        _ring(tpm, sealed_dir, pcrs="sha256:7")
    # The policy cannot be bypassed with the object's (empty) auth value.
    work = tpm.workdir
    tpm.run("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", work / "p.ctx")
    tpm.run("tpm2_load", "-C", work / "p.ctx", "-u", sealed_dir / "kek.pub",
            "-r", sealed_dir / "kek.priv", "-c", work / "k.ctx")
    bypass = tpm.run("tpm2_unseal", "-c", work / "k.ctx", check=False)
    assert bypass.returncode != 0 and len(bypass.stdout) == 0

    tpm.run("tpm2_pcrextend", "7:sha256=" + "ab" * 32)
    with pytest.raises(ConfigError) as refused:
        _ring(tpm, sealed_dir)
    message = str(refused.value)
    assert "PCR policy no longer matches" in message
    assert "PCR sha256:7 changed" in message
    assert "sha256:0" not in message  # PCR 0 did not change, so it is not blamed
    assert refused.value.__cause__ is None

    # The same at service start.
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(_tpm_section(tpm, str(sealed_dir)))
    with pytest.raises(ConfigError, match="PCR sha256:7 changed"):
        open_service(ServiceConfig.load(data_dir))


@needs_swtpm
def test_unreachable_tpm_is_a_clear_startup_error(swtpm: Swtpm, tmp_path: Path) -> None:
    from veritee.broker.keyring_tpm import TpmSealedKeyring

    _ring(swtpm, tmp_path / "sealed", create=True).close()
    port = _closed_port()
    with pytest.raises(ConfigError, match="cannot reach the TPM") as caught:
        TpmSealedKeyring.open(f"swtpm:host=127.0.0.1,port={port}", tmp_path / "sealed")
    assert f"port={port}" in str(caught.value) and "keyring.tcti" in str(caught.value)
    with pytest.raises(ConfigError, match="cannot reach the TPM"):
        TpmSealedKeyring.create(f"swtpm:host=127.0.0.1,port={port}", tmp_path / "other")
    assert not (tmp_path / "other").exists()


# -- configuration -------------------------------------------------------------------------


def _load_with(tmp_path: Path, section: str) -> ServiceConfig:
    data_dir = tmp_path / "cfg"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "config.toml").write_text(section)
    return ServiceConfig.load(data_dir)


def test_tpm_keyring_config_sections(tmp_path: Path) -> None:
    cfg = _load_with(tmp_path, '[keyring]\ntype = "tpm"\n')
    assert cfg.keyring == KeyringConfig(
        TpmKeyringConfig("device:/dev/tpmrm0", tmp_path / "cfg" / "tpm-kek", "")
    )
    cfg = _load_with(
        tmp_path,
        '[keyring]\ntype = "tpm"\ntcti = "swtpm:host=127.0.0.1,port=2321"\n'
        'sealed_dir = "/var/lib/kek"\npcrs = "sha256:7"\nprevious = "kek.key"\n',
    )
    assert cfg.keyring == KeyringConfig(
        TpmKeyringConfig("swtpm:host=127.0.0.1,port=2321", Path("/var/lib/kek"), "sha256:7"),
        FileKeyringConfig(tmp_path / "cfg" / "kek.key"),
    )
    cfg = _load_with(
        tmp_path,
        '[keyring]\ntype = "file"\npath = "new.key"\n[keyring.previous]\ntype = "tpm"\n',
    )
    assert cfg.keyring is not None
    assert cfg.keyring.previous == TpmKeyringConfig(
        "device:/dev/tpmrm0", tmp_path / "cfg" / "tpm-kek", ""
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('type = "tpm"\npath = "kek.key"\n', 'path .*only apply to type = "file"'),
        ('type = "tpm"\nmodule = "/m.so"\n', 'module .*only apply to type = "pkcs11"'),
        ('type = "file"\npcrs = "sha256:7"\n', 'pcrs .*only apply to type = "tpm"'),
        ('type = "tpm"\ntcti = "device:\\u0001"\n', "TCTI specification"),
        ('type = "tpm"\ntcti = 3\n', "tcti must be a string"),
        ('type = "tpm"\nsealed = "x"\n', "unknown key"),
        ('type = "tpm2"\n', '"file", "pkcs11" or "tpm"'),
    ],
)
def test_bad_tpm_keyring_sections_are_refused(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load_with(tmp_path, "[keyring]\n" + section)


@needs_swtpm
def test_bad_pcr_selections_are_refused_before_the_tpm_is_asked(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    for bad in ("sha256", "md5:7", "sha256:24", "sha256:x", "sha256:7+sha256:0", ""):
        with pytest.raises(ConfigError, match="PCR selection"):
            _ring(swtpm, tmp_path / "never", create=True, pcrs=bad or " ")
    assert not (tmp_path / "never").exists()


# -- in the service --------------------------------------------------------------------------


@needs_swtpm
def test_cli_create_and_database_holds_only_ciphertext(
    swtpm: Swtpm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from veritee.broker.keyring_tpm import TpmSealedKeyring

    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    args = ["keyring", "create", "--tpm", "--tcti", swtpm.tcti, "--data-dir", str(data_dir)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert 'type = "tpm"' in printed and 'sealed_dir = "tpm-kek"' in printed
    assert main(args) == 1  # never replaces a sealed KEK
    section = printed[printed.index("[keyring]") :]
    with (data_dir / "config.toml").open("a") as handle:
        handle.write("\n" + section)
    kek = _kek_behind_the_back(swtpm, data_dir / "tpm-kek")

    service = open_service(ServiceConfig.load(data_dir))
    marker = b"TOP-SECRET-" + secrets.token_hex(8).encode()
    try:
        assert isinstance(service.broker.keyring, TpmSealedKeyring)
        for i in range(5):
            service.broker.put_resource(["default", "disk", f"k{i}"], marker + b"%d" % i, admin="a")
        kek_id = service.broker.keyring.kek_id
        assert _open_all(service.db, service.broker.keyring) == {
            f"default/disk/k{i}": marker + b"%d" % i for i in range(5)
        }
    finally:
        _close(service)
    con = sqlite3.connect(data_dir / "veritee.db")
    try:
        rows = con.execute("SELECT kek_id, wrapped_dek, ciphertext FROM resources").fetchall()
        assert len(rows) == 5
        for row_kek, wrapped, ciphertext in rows:
            assert row_kek == kek_id
            assert len(wrapped) == 1 + 12 + 32 + 16
            assert marker not in ciphertext and len(ciphertext) == len(marker) + 1 + 16
    finally:
        con.close()
    for path in data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert marker not in data, f"plaintext in {path.name}"
            assert kek not in data, f"the KEK in {path.name}"
    assert main(["keyring", "status", "--data-dir", str(data_dir)]) == 0


@needs_swtpm
def test_kbs_with_a_tpm_sealed_kek_serves_a_secret_end_to_end(
    swtpm: Swtpm, tmp_path: Path, sim_platform: SimulatedSnpPlatform
) -> None:
    from veritee.broker.keyring_tpm import TpmSealedKeyring

    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    TpmSealedKeyring.create(swtpm.tcti, data_dir / "tpm-kek").close()
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(_tpm_section(swtpm))
    with serve_kbs(data_dir, sim_platform) as kbs:
        assert isinstance(kbs.service.broker.keyring, TpmSealedKeyring)
        assert httpx.get(f"{kbs.url}/readyz").json()["keyring"] == "ok"
        with KbsClient(kbs.url) as client:
            att = client.attest(SimulatedSnpProvider(sim_platform, measurement=GOOD_MEASUREMENT))
            assert client.get_resource("default/disk/key") == SECRET
            assert client.get_resource("default/disk/key", use_bearer=True) == SECRET
        verify_ear(att.token, kbs.service.broker.signer.jwks()["keys"],
                   now=kbs.service.broker.clock())
        assert kek_inventory(kbs.service.db) == {kbs.service.broker.keyring.kek_id: 1}
    raw = b"".join(p.read_bytes() for p in data_dir.glob("veritee.db*"))
    assert SECRET not in raw


# -- rotation ----------------------------------------------------------------------------------


def _seeded(tmp_path: Path, n: int) -> tuple[Path, dict[str, bytes]]:
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    first = open_service(ServiceConfig.load(data_dir))
    expected = {}
    for parts in _paths(n):
        first.broker.put_resource(parts, _secret(parts), admin="test")
        expected["/".join(parts)] = _secret(parts)
    _close(first)
    return data_dir, expected


@needs_swtpm
def test_rotation_file_to_tpm_online_and_by_the_cli(swtpm: Swtpm, tmp_path: Path) -> None:
    data_dir, expected = _seeded(tmp_path, 40)
    file_kek = FileKeyring(data_dir / "kek.key")
    before = _rows_db(data_dir)
    new = _ring(swtpm, data_dir / "tpm-kek", create=True)
    # Every replica holds the TPM KEK as primary and the file KEK as previous ...
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(_tpm_section(swtpm) + 'previous = "kek.key"\n')
    service = open_service(ServiceConfig.load(data_dir))
    try:
        assert isinstance(service.broker.keyring, MultiKeyring)
        assert service.broker.keyring.kek_ids == (new.kek_id, file_kek.kek_id)
        # ... and rotate_kek moves every data key while a reader keeps opening them all.
        count, reader = _rotate_under_reads(service, file_kek, new, expected)
        assert reader.failures == [] and reader.mixed_sweeps >= 3
        assert count == 40
        _assert_rotated(service.db, before, new, expected)
        assert rotate_kek(service.db, file_kek, new) == 0
    finally:
        _close(service, new)

    # Offline, by the command line: file KEK -> a new TPM KEK sealed to PCR 7 on the spot.
    other, expected2 = _seeded(tmp_path / "second", 12)
    args = ["keyring", "rotate", "--data-dir", str(other), "--to-tpm", "--tcti", swtpm.tcti,
            "--pcrs", "sha256:7", "--create"]
    assert main(args) == 1  # the running service would not hold the new KEK
    assert main([*args[:-1], "--offline"]) == 0
    config = ServiceConfig.load(other)
    assert config.keyring == KeyringConfig(
        TpmKeyringConfig(swtpm.tcti, other / "tpm-kek", "sha256:7")
    )
    service = open_service(config)
    try:
        assert _open_all(service.db, service.broker.keyring) == expected2
        assert kek_inventory(service.db) == {service.broker.keyring.kek_id: 12}
    finally:
        _close(service)


def _rows_db(data_dir: Path) -> dict[str, tuple[str, bytes, bytes, bytes, int]]:
    from veritee.store.db import Database

    db = Database.sqlite(data_dir / "veritee.db")
    try:
        return _rows(db)
    finally:
        db.dispose()


@needs_swtpm
def test_rotation_tpm_to_pkcs11(
    swtpm: Swtpm, hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    old = _ring(swtpm, data_dir / "tpm-kek", create=True)
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(_tpm_section(swtpm))
    first = open_service(ServiceConfig.load(data_dir))
    expected = {}
    for parts in _paths(30):
        first.broker.put_resource(parts, _secret(parts), admin="test")
        expected["/".join(parts)] = _secret(parts)
    _close(first)
    before = _rows_db(data_dir)
    assert {v[0] for v in before.values()} == {old.kek_id}

    new = hsm.keyring("veritee-a", "kek-from-tpm", create=True)
    monkeypatch.setenv(PIN_ENV, hsm.pins["veritee-a"])
    cfg = (data_dir / "config.toml").read_text()
    cfg = cfg[: cfg.index("\n[keyring]")]
    cfg += hsm.config_section("veritee-a", "kek-from-tpm")
    cfg += f'[keyring.previous]\ntype = "tpm"\ntcti = "{swtpm.tcti}"\nsealed_dir = "tpm-kek"\n'
    (data_dir / "config.toml").write_text(cfg)
    service = open_service(ServiceConfig.load(data_dir))
    try:
        assert isinstance(service.broker.keyring, MultiKeyring)
        assert service.broker.keyring.kek_ids == (new.kek_id, old.kek_id)
        count, reader = _rotate_under_reads(service, old, new, expected)
        assert reader.failures == [] and reader.mixed_sweeps >= 3
        assert count == 30
        _assert_rotated(service.db, before, new, expected)  # the HSM KEK alone opens all
        assert rotate_kek(service.db, old, new) == 0
    finally:
        _close(service, old, new)
