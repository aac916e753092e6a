"""The KEK in an HSM (PKCS#11, SoftHSM2 here) and KEK rotation without an unreadable moment.

SoftHSM2 tests skip cleanly when softhsm2 or python-pkcs11 is missing; the
config, MultiKeyring and file-to-file rotation tests need neither.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from veritee.broker.audit import iter_rows, verify_chain
from veritee.broker.kbs import ResourcePath
from veritee.broker.keyring import (
    FileKeyring,
    Keyring,
    MultiKeyring,
    SealedSecret,
    seal,
    unseal,
)
from veritee.broker.rotation import RotationStalled, kek_inventory, rotate_kek
from veritee.cli.main import main
from veritee.errors import ConfigError, KeyringUnavailableError, VerificationError
from veritee.server.bootstrap import Service, init_data_dir, open_service
from veritee.server.config import (
    FileKeyringConfig,
    KeyringConfig,
    Pkcs11KeyringConfig,
    ServiceConfig,
)
from veritee.store.db import Database
from veritee.store.models import ResourceRow

MODULE_CANDIDATES = (
    Path("/usr/lib/softhsm/libsofthsm2.so"),
    Path("/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"),
    Path("/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"),
)
TOKENS = ("veritee-a", "veritee-b", "veritee-pin")
PIN_ENV = "VERITEE_TEST_HSM_PIN"


# -- SoftHSM2 --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoftHsm:
    module: Path
    pins: dict[str, str]  # token label -> user PIN
    conf: Path

    def keyring(self, token: str, key: str, *, create: bool = False) -> Any:
        from veritee.broker.keyring_pkcs11 import Pkcs11Keyring

        factory = Pkcs11Keyring.create if create else Pkcs11Keyring.open
        return factory(self.module, token, key, self.pins[token])

    def config_section(self, token: str, key: str) -> str:
        return (
            "\n[keyring]\n"
            'type = "pkcs11"\n'
            f'module = "{self.module}"\n'
            f'token_label = "{token}"\n'
            f'key_label = "{key}"\n'
            f'pin_env = "{PIN_ENV}"\n'
        )


def _softhsm_module() -> Path | None:
    if shutil.which("softhsm2-util") is None:
        return None
    return next((p for p in MODULE_CANDIDATES if p.is_file()), None)


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """A private SoftHSM2 (own SOFTHSM2_CONF and token directory) with three fresh tokens."""
    pkcs11 = pytest.importorskip("pkcs11", reason="python-pkcs11 is not installed")
    module = _softhsm_module()
    if module is None:
        pytest.skip("softhsm2 is not installed (apt-get install softhsm2)")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pins = {label: "pin-" + secrets.token_hex(6) for label in TOKENS}
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    for label, pin in pins.items():
        command = ["softhsm2-util", "--init-token", "--free", "--label", label]
        command += ["--pin", pin, "--so-pin", "so-" + secrets.token_hex(6)]
        subprocess.run(
            command,
            env=env,
            check=True,
            capture_output=True,
        )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTHSM2_CONF", str(conf))
        # SoftHSM2 reads its config and the token list at C_Initialize: start it
        # afresh so it sees this directory even if the library was loaded before.
        pkcs11.lib(str(module.resolve())).reinitialize()
        yield SoftHsm(module, pins, conf)


def _close(*things: object) -> None:
    for thing in things:
        if isinstance(thing, Service):
            thing.db.dispose()
            thing = thing.broker.keyring
        members = thing.keyrings if isinstance(thing, MultiKeyring) else (thing,)
        for member in members:
            close = getattr(member, "close", None)
            if callable(close):
                close()


def _raw_session(hsm: SoftHsm, token_label: str) -> Any:
    """A python-pkcs11 session of our own, to look at the token behind veritee's back."""
    import pkcs11
    from pkcs11 import exceptions as p11e

    token = pkcs11.lib(str(hsm.module.resolve())).get_token(token_label=token_label)
    try:
        return token.open(user_pin=hsm.pins[token_label])
    except p11e.UserAlreadyLoggedIn:
        return token.open()


# -- the keyring itself ----------------------------------------------------------------------


def test_wrap_unwrap_round_trip(hsm: SoftHsm) -> None:
    with hsm.keyring("veritee-a", "kek-roundtrip", create=True) as ring:
        assert isinstance(ring, Keyring)
        assert ring.kek_id.startswith("p11-") and len(ring.kek_id) == 20
        for size in (0, 1, 31, 4096):
            plaintext = os.urandom(size)
            sealed = seal(ring, plaintext, b"default/key/a")
            assert sealed.kek_id == ring.kek_id
            assert unseal(ring, sealed, b"default/key/a") == plaintext
        dek = os.urandom(32)
        blob1, blob2 = ring.wrap(dek, b"aad"), ring.wrap(dek, b"aad")
        assert blob1 != blob2  # a fresh IV every time
        assert len(blob1) == 1 + 12 + 32 + 16 and blob1[0] == 1
        assert ring.unwrap(blob1, b"aad") == ring.unwrap(blob2, b"aad") == dek
        first_id = ring.kek_id
        assert "pin" not in repr(ring).lower()
        assert hsm.pins["veritee-a"] not in repr(ring)
    # The id names the key stably across restarts ...
    with hsm.keyring("veritee-a", "kek-roundtrip") as again:
        assert again.kek_id == first_id
        assert again.unwrap(blob1, b"aad") == dek
    # ... and a key with the same label on another token is another KEK.
    with hsm.keyring("veritee-b", "kek-roundtrip", create=True) as other:
        assert other.kek_id != first_id
        with pytest.raises(VerificationError, match="does not open"):
            other.unwrap(blob1, b"aad")


def test_kek_is_sensitive_and_not_extractable(hsm: SoftHsm) -> None:
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11 import exceptions as p11e

    hsm.keyring("veritee-a", "kek-locked", create=True).close()
    session = _raw_session(hsm, "veritee-a")
    try:
        key = session.get_key(object_class=ObjectClass.SECRET_KEY, label="kek-locked")
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.VALUE_LEN] == 32
        with pytest.raises(p11e.AttributeSensitive):
            _ = key[Attribute.VALUE]
        # Nor can it be exported wrapped under a key the caller controls.
        wrapper = session.generate_key(KeyType.AES, 256, label="exporter", store=False)
        with pytest.raises((p11e.KeyUnextractable, p11e.KeyNotWrappable)):
            wrapper.wrap_key(key)
    finally:
        session.close()


def test_aad_mismatch_and_tampering_fail_with_verification_error(hsm: SoftHsm) -> None:
    with (
        hsm.keyring("veritee-a", "kek-tamper", create=True) as ring,
        hsm.keyring("veritee-b", "kek-tamper-other", create=True) as other,
    ):
        sealed = seal(ring, b"secret value", b"default/key/a")
        with pytest.raises(VerificationError):
            unseal(ring, sealed, b"default/key/b")
        blob = sealed.wrapped_dek
        for index in (0, 1, 12, 13, len(blob) - 1):  # version, IV, IV end, body, tag
            bad = bytearray(blob)
            bad[index] ^= 0x01
            altered = SealedSecret(sealed.kek_id, bytes(bad), sealed.nonce, sealed.ciphertext)
            with pytest.raises(VerificationError):
                unseal(ring, altered, b"default/key/a")
        with pytest.raises(VerificationError, match="truncated"):
            ring.unwrap(blob[:20], b"x")
        # A blob from one HSM key never opens under another, even with the right AAD.
        with pytest.raises(VerificationError, match="does not open"):
            other.unwrap(ring.wrap(os.urandom(32), b"aad"), b"aad")
        with pytest.raises(VerificationError, match="sealed under KEK"):
            unseal(other, sealed, b"default/key/a")
        # Nothing was damaged: the original still opens.
        assert unseal(ring, sealed, b"default/key/a") == b"secret value"


def test_closed_keyring_is_unavailable_not_a_crash(hsm: SoftHsm) -> None:
    ring = hsm.keyring("veritee-a", "kek-closed", create=True)
    blob = ring.wrap(os.urandom(32), b"a")
    ring.close()
    with pytest.raises(KeyringUnavailableError):
        ring.wrap(os.urandom(32), b"a")
    with pytest.raises(KeyringUnavailableError):
        ring.unwrap(blob, b"a")


def test_keyring_logs_in_again_when_the_hsm_drops_its_session(hsm: SoftHsm) -> None:
    with hsm.keyring("veritee-b", "kek-reconnect", create=True) as ring:
        dek = os.urandom(32)
        blob = ring.wrap(dek, b"aad")
        # What an HSM restart does to a client: its session handle is gone (and, being
        # the token's last session, the login with it).
        lost = ring._session
        lost.close()
        assert ring.unwrap(blob, b"aad") == dek
        assert ring._session is not lost  # it did reconnect, rather than never noticing
        assert ring.unwrap(ring.wrap(dek, b"aad"), b"aad") == dek


def test_create_refuses_to_replace_a_key(hsm: SoftHsm) -> None:
    hsm.keyring("veritee-a", "kek-once", create=True).close()
    with pytest.raises(ConfigError, match="already exists"):
        hsm.keyring("veritee-a", "kek-once", create=True)


# -- startup failures say what to fix, never the PIN -----------------------------------------


def _assert_no_pin(exc: BaseException, *pins: str) -> None:
    texts = [str(exc), repr(exc), str(getattr(exc, "hint", "")), str(exc.args)]
    for pin in pins:
        assert all(pin not in t for t in texts), "a PIN leaked into an error"
    # No chained PKCS#11 exception rides along into tracebacks (raised "from None").
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def _pkcs11_data_dir(tmp_path: Path, hsm: SoftHsm, token: str, key: str) -> Path:
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(hsm.config_section(token, key))
    return data_dir


def test_wrong_pin_fails_at_startup_with_a_clear_error(
    hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from veritee.broker.keyring_pkcs11 import Pkcs11Keyring

    hsm.keyring("veritee-pin", "kek", create=True).close()
    wrong = "wrong-" + secrets.token_hex(4)
    with pytest.raises(ConfigError) as direct:
        Pkcs11Keyring.open(hsm.module, "veritee-pin", "kek", wrong)
    assert "refused the user PIN" in str(direct.value)
    assert "veritee-pin" in str(direct.value)
    _assert_no_pin(direct.value, wrong, hsm.pins["veritee-pin"])

    # While this process is logged in to the token, a second key with another PIN is
    # still refused (a PKCS#11 login is shared by all sessions of the process).
    with hsm.keyring("veritee-pin", "kek"), pytest.raises(ConfigError, match="another PIN") as e:
        Pkcs11Keyring.open(hsm.module, "veritee-pin", "kek", wrong)
    _assert_no_pin(e.value, wrong, hsm.pins["veritee-pin"])

    # The same through the service's startup, with the PIN taken from the environment.
    data_dir = _pkcs11_data_dir(tmp_path, hsm, "veritee-pin", "kek")
    monkeypatch.setenv(PIN_ENV, wrong)
    with pytest.raises(ConfigError) as started:
        open_service(ServiceConfig.load(data_dir))
    assert "refused the user PIN" in str(started.value)
    assert "pin_env" in str(started.value)  # says what to fix
    _assert_no_pin(started.value, wrong, hsm.pins["veritee-pin"])
    assert wrong not in caplog.text
    assert main(["keyring", "status", "--data-dir", str(data_dir)]) == 1

    # With the right PIN the same directory starts.
    monkeypatch.setenv(PIN_ENV, hsm.pins["veritee-pin"])
    service = open_service(ServiceConfig.load(data_dir))
    _close(service)


def test_missing_token_key_module_or_pin_variable_fail_at_startup(
    hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from veritee.broker.keyring_pkcs11 import Pkcs11Keyring

    pin = hsm.pins["veritee-a"]
    with pytest.raises(ConfigError, match="no token labelled 'nope'") as e1:
        Pkcs11Keyring.open(hsm.module, "nope", "kek", pin)
    with pytest.raises(ConfigError, match="no AES key labelled 'absent'") as e2:
        Pkcs11Keyring.open(hsm.module, "veritee-a", "absent", pin)
    assert "veritee keyring create" in str(e2.value)
    with pytest.raises(ConfigError, match="does not exist") as e3:
        Pkcs11Keyring.open(tmp_path / "libnothing.so", "veritee-a", "kek", pin)
    for exc in (e1, e2, e3):
        _assert_no_pin(exc.value, pin)

    data_dir = _pkcs11_data_dir(tmp_path, hsm, "veritee-a", "kek-roundtrip")
    monkeypatch.delenv(PIN_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"environment variable {PIN_ENV} is empty or missing"):
        open_service(ServiceConfig.load(data_dir))


# -- configuration -------------------------------------------------------------------------


def test_config_without_keyring_section_keeps_the_file_kek(tmp_path: Path) -> None:
    data_dir = tmp_path / "d"
    init_data_dir(data_dir)
    config = ServiceConfig.load(data_dir)
    assert config.keyring is None
    assert config.keyring_config == KeyringConfig(FileKeyringConfig(data_dir / "kek.key"))
    service = open_service(config)
    try:
        assert isinstance(service.broker.keyring, FileKeyring)
        assert service.broker.keyring.kek_id == FileKeyring(data_dir / "kek.key").kek_id
    finally:
        _close(service)


def _load_with(tmp_path: Path, section: str) -> ServiceConfig:
    data_dir = tmp_path / "cfg"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "config.toml").write_text(section)
    return ServiceConfig.load(data_dir)


def test_keyring_config_sections(tmp_path: Path) -> None:
    cfg = _load_with(
        tmp_path,
        '[keyring]\ntype = "pkcs11"\nmodule = "/usr/lib/x.so"\ntoken_label = "t"\n'
        'key_label = "k"\npin_env = "HSM_PIN"\nprevious = "old.key"\n',
    )
    assert cfg.keyring == KeyringConfig(
        Pkcs11KeyringConfig(Path("/usr/lib/x.so"), "t", "k", "HSM_PIN"),
        FileKeyringConfig(tmp_path / "cfg" / "old.key"),
    )
    cfg = _load_with(
        tmp_path,
        '[keyring]\ntype = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\nkey_label = "new"\n'
        '[keyring.previous]\ntype = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\n'
        'key_label = "old"\n',
    )
    assert cfg.keyring is not None
    assert cfg.keyring.previous == Pkcs11KeyringConfig(Path("/m.so"), "t", "old", "VERITEE_HSM_PIN")
    cfg = _load_with(tmp_path, '[keyring]\ntype = "file"\npath = "other.key"\n')
    assert cfg.keyring == KeyringConfig(FileKeyringConfig(tmp_path / "cfg" / "other.key"))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('type = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\npin = "123456"\n', "holds a PIN"),
        ('type = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\nso_pin = "987654"\n', "PIN"),
        ('type = "pkcs11"\nmodule = "/m.so"\ntoken_label = "t"\npin_env = "1 x"\n', "pin_env"),
        ('type = "pkcs11"\ntoken_label = "t"\n', "module is required"),
        ('type = "pkcs11"\nmodule = "/m.so"\n', "token_label is required"),
        ('type = "tpm2"\n', "must be"),
        ('type = "file"\nprevios = "old.key"\n', "unknown key"),
        ('type = "file"\ntoken_label = "t"\n', "only apply"),
        ("previous = 3\n", "previous must be"),
    ],
)
def test_bad_keyring_sections_are_refused(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _load_with(tmp_path, "[keyring]\n" + section)
    assert "123456" not in str(caught.value) and "987654" not in str(caught.value)


# -- MultiKeyring ----------------------------------------------------------------------------


def test_multikeyring_seals_under_primary_and_opens_by_kek_id(tmp_path: Path) -> None:
    old, new = FileKeyring.create(tmp_path / "old"), FileKeyring.create(tmp_path / "new")
    stranger = FileKeyring.create(tmp_path / "stranger")
    under_old = seal(old, b"old secret", b"p")
    multi = MultiKeyring(new, old)
    under_new = seal(multi, b"new secret", b"p")
    assert under_new.kek_id == new.kek_id == multi.kek_id
    assert unseal(multi, under_old, b"p") == b"old secret"
    assert unseal(multi, under_new, b"p") == b"new secret"
    with pytest.raises(VerificationError, match="sealed under KEK"):
        unseal(old, under_new, b"p")
    with pytest.raises(VerificationError, match=stranger.kek_id):
        unseal(multi, seal(stranger, b"x", b"p"), b"p")
    with pytest.raises(ConfigError, match="configured twice"):
        MultiKeyring(old, FileKeyring(tmp_path / "old"))


# -- rotation ----------------------------------------------------------------------------------


def _paths(n: int) -> list[list[str]]:
    return [["default", f"type{i % 3}", f"tag-{i:04d}"] for i in range(n)]


def _secret(parts: list[str]) -> bytes:
    return ("PLAINTEXT-MARKER " + "/".join(parts) + " 0123456789abcdef").encode()


def _rows(db: Database) -> dict[str, tuple[str, bytes, bytes, bytes, int]]:
    with db.read() as s:
        return {
            r.path: (r.kek_id, r.wrapped_dek, r.nonce, r.ciphertext, r.updated_at)
            for r in s.execute(select(ResourceRow)).scalars()
        }


def _open_all(db: Database, keyring: Keyring) -> dict[str, bytes]:
    out = {}
    with db.read() as s:
        rows = list(s.execute(select(ResourceRow)).scalars())
    for row in rows:
        sealed = SealedSecret(row.kek_id, row.wrapped_dek, row.nonce, row.ciphertext)
        out[row.path] = unseal(keyring, sealed, ResourcePath.parse(row.path.split("/")).aad())
    return out


class _Reader(threading.Thread):
    """Keeps unsealing every secret, as a replica answering requests would."""

    def __init__(self, db: Database, keyring: Keyring, expected: dict[str, bytes]) -> None:
        super().__init__(daemon=True)
        self.db, self.keyring, self.expected = db, keyring, expected
        self.stop = threading.Event()
        self.swept = threading.Event()
        self.failures: list[str] = []
        self.sweeps = 0
        self.mixed_sweeps = 0  # sweeps that saw secrets under both KEKs at once

    def run(self) -> None:
        while not self.stop.is_set():
            ids: set[str] = set()
            try:
                with self.db.read() as s:
                    ids = set(s.execute(select(ResourceRow.kek_id)).scalars())
                opened = _open_all(self.db, self.keyring)
                wrong = [p for p, v in self.expected.items() if opened.get(p) != v]
                if wrong:
                    self.failures.append(f"wrong plaintext for {wrong[:3]}")
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.sweeps += 1
            self.mixed_sweeps += len(ids) > 1
            self.swept.set()

    def wait_sweep(self) -> None:
        """Block until the reader has completed a whole sweep from now on."""
        self.swept.clear()
        assert self.swept.wait(30), "reader stalled"


def _rotate_under_reads(
    service: Service, old: Keyring, new: Keyring, expected: dict[str, bytes], **kw: Any
) -> tuple[int, _Reader]:
    reader = _Reader(service.db, service.broker.keyring, expected)
    reader.start()
    try:
        reader.wait_sweep()
        # After every committed batch, let the reader sweep the whole table, so the
        # half-rotated states are certainly read, not only possibly.
        count = rotate_kek(
            service.db, old, new, batch_size=7, progress=lambda _n: reader.wait_sweep(), **kw
        )
        reader.wait_sweep()
    finally:
        reader.stop.set()
        reader.join(30)
    return count, reader


def _assert_rotated(
    db: Database,
    before: dict[str, tuple[str, bytes, bytes, bytes, int]],
    new: Keyring,
    expected: dict[str, bytes],
) -> None:
    after = _rows(db)
    assert after.keys() == before.keys()
    for path, (kek_id, wrapped, nonce, ciphertext, updated_at) in after.items():
        assert kek_id == new.kek_id
        assert wrapped != before[path][1]
        # Only the data key's wrapping changed.
        assert (nonce, ciphertext, updated_at) == before[path][2:]
    assert _open_all(db, new) == expected  # the new KEK alone opens everything


def test_rotation_file_to_pkcs11_under_concurrent_reads(
    hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    first = open_service(ServiceConfig.load(data_dir))
    expected = {}
    for parts in _paths(90):
        first.broker.put_resource(parts, _secret(parts), admin="test")
        expected["/".join(parts)] = _secret(parts)
    _close(first)
    before = _rows(first.db)
    file_kek = FileKeyring(data_dir / "kek.key")
    assert {v[0] for v in before.values()} == {file_kek.kek_id}

    # Step 1 of a rotation: every replica holds the new HSM KEK, the file KEK as previous.
    hsm.keyring("veritee-a", "kek-from-file", create=True).close()
    with (data_dir / "config.toml").open("a") as handle:
        handle.write(hsm.config_section("veritee-a", "kek-from-file") + 'previous = "kek.key"\n')
    monkeypatch.setenv(PIN_ENV, hsm.pins["veritee-a"])
    service = open_service(ServiceConfig.load(data_dir))
    new = hsm.keyring("veritee-a", "kek-from-file")
    try:
        assert isinstance(service.broker.keyring, MultiKeyring)
        assert service.broker.keyring.kek_ids == (new.kek_id, file_kek.kek_id)
        count, reader = _rotate_under_reads(service, file_kek, new, expected)
        assert reader.failures == []
        assert reader.mixed_sweeps >= 5, "the reader never saw a half-rotated table"
        assert count == 90
        _assert_rotated(service.db, before, new, expected)
        # Re-running finds nothing left to do.
        assert rotate_kek(service.db, file_kek, new) == 0
        records = [r for r in iter_rows(service.db) if r.action == "admin.rotate_kek"]
        assert [r.decision for r in records] == ["allow", "allow"]
        assert json.loads(records[0].detail_json) == {
            "from": [file_kek.kek_id],
            "to": new.kek_id,
            "rewrapped": 90,
        }
        assert verify_chain(service.db).ok
    finally:
        _close(service, new)


def test_rotation_pkcs11_to_pkcs11_with_concurrent_reads_and_writes(
    hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PIN_ENV, hsm.pins["veritee-a"])
    old = hsm.keyring("veritee-a", "kek-p2p-old", create=True)
    new = hsm.keyring("veritee-b", "kek-p2p-new", create=True)
    data_dir = _pkcs11_data_dir(tmp_path, hsm, "veritee-a", "kek-p2p-old")
    first = open_service(ServiceConfig.load(data_dir))
    expected = {}
    for parts in _paths(80):
        first.broker.put_resource(parts, _secret(parts), admin="test")
        expected["/".join(parts)] = _secret(parts)
    _close(first)

    # The new KEK (another token, other PIN variable) is primary, the old one previous.
    monkeypatch.setenv("VERITEE_TEST_HSM_PIN_B", hsm.pins["veritee-b"])
    cfg = (data_dir / "config.toml").read_text()
    cfg = cfg.replace('token_label = "veritee-a"', 'token_label = "veritee-b"', 1)
    cfg = cfg.replace('key_label = "kek-p2p-old"', 'key_label = "kek-p2p-new"', 1)
    cfg = cfg.replace(f'pin_env = "{PIN_ENV}"', 'pin_env = "VERITEE_TEST_HSM_PIN_B"', 1)
    cfg += (
        '[keyring.previous]\ntype = "pkcs11"\n'
        f'module = "{hsm.module}"\ntoken_label = "veritee-a"\nkey_label = "kek-p2p-old"\n'
        f'pin_env = "{PIN_ENV}"\n'
    )
    (data_dir / "config.toml").write_text(cfg)
    service = open_service(ServiceConfig.load(data_dir))
    try:
        assert isinstance(service.broker.keyring, MultiKeyring)
        assert service.broker.keyring.kek_ids == (new.kek_id, old.kek_id)
        # An admin keeps replacing secrets while the rotation runs: those land under the
        # primary (new) KEK, and the rotation must neither count nor clobber them.
        replaced = _paths(80)[::8]
        stop, wrote = threading.Event(), threading.Event()
        rounds: list[int] = []
        write_errors: list[str] = []

        def writer() -> None:
            while not stop.is_set():
                round_ = len(rounds) + 1
                try:
                    for parts in replaced:
                        value = _secret(parts) + f" v{round_}".encode()
                        service.broker.put_resource(parts, value, admin="test")
                except Exception as exc:
                    write_errors.append(repr(exc))
                    return
                rounds.append(round_)
                wrote.set()
                stop.wait(0.01)

        def between_batches(_n: int) -> None:
            # Every batch is followed by a whole reader sweep and a whole round of writes.
            reader.wait_sweep()
            wrote.clear()
            assert wrote.wait(30), "writer stalled"

        writing = threading.Thread(target=writer, daemon=True)
        reader = _Reader(service.db, service.broker.keyring, {})
        reader.start()
        writing.start()
        try:
            assert wrote.wait(30)  # the replaced secrets are under the new KEK already
            reader.wait_sweep()
            count = rotate_kek(service.db, old, new, batch_size=7, progress=between_batches)
            reader.wait_sweep()
        finally:
            stop.set()
            writing.join(30)
            reader.stop.set()
            reader.join(30)
        assert reader.failures == [] and write_errors == []
        assert reader.mixed_sweeps >= 5
        assert len(rounds) >= 10
        assert count == 80 - len(replaced)
        assert kek_inventory(service.db) == {new.kek_id: 80}
        opened = _open_all(service.db, new)
        for parts in _paths(80):
            path = "/".join(parts)
            want = _secret(parts) + (f" v{rounds[-1]}".encode() if parts in replaced else b"")
            assert opened[path] == want
        assert verify_chain(service.db).ok
    finally:
        _close(service, old, new)


class _FailingKeyring:
    """Wraps like ``inner`` until the n-th wrap, which fails as a dying HSM would."""

    def __init__(self, inner: Keyring, fail_at: int) -> None:
        self.inner, self.fail_at, self.wraps = inner, fail_at, 0

    @property
    def kek_id(self) -> str:
        return self.inner.kek_id

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        self.wraps += 1
        if self.wraps == self.fail_at:
            raise KeyringUnavailableError("injected HSM failure")
        return self.inner.wrap(dek, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return self.inner.unwrap(blob, aad)


def test_interrupted_rotation_is_finished_by_running_it_again(
    hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    first = open_service(ServiceConfig.load(data_dir))
    expected = {}
    for parts in _paths(45):
        first.broker.put_resource(parts, _secret(parts), admin="test")
        expected["/".join(parts)] = _secret(parts)
    _close(first)
    before = _rows(first.db)
    file_kek = FileKeyring(data_dir / "kek.key")
    new = hsm.keyring("veritee-b", "kek-interrupted", create=True)
    db = Database.sqlite(data_dir / "veritee.db")
    both = MultiKeyring(new, file_kek)
    try:
        with pytest.raises(KeyringUnavailableError, match="injected"):
            rotate_kek(db, file_kek, _FailingKeyring(new, fail_at=24), batch_size=10)
        # Two whole batches were committed; the third died before its transaction.
        assert kek_inventory(db) == {new.kek_id: 20, file_kek.kek_id: 25}
        assert _open_all(db, both) == expected
        failed = [r for r in iter_rows(db) if r.action == "admin.rotate_kek"]
        assert len(failed) == 1 and failed[0].decision == "error"
        assert json.loads(failed[0].detail_json)["rewrapped"] == 20
        assert json.loads(failed[0].detail_json)["error"] == "keyring.unavailable"

        assert rotate_kek(db, file_kek, new, batch_size=10) == 25
        _assert_rotated(db, before, new, expected)
        assert rotate_kek(db, file_kek, new, batch_size=10) == 0
        assert verify_chain(db).ok
    finally:
        db.dispose()
        _close(new)


def test_rotation_refuses_secrets_under_a_kek_it_does_not_hold(tmp_path: Path) -> None:
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    service = open_service(ServiceConfig.load(data_dir))
    service.broker.put_resource(["default", "k", "one"], b"one", admin="test")
    stray = FileKeyring.create(tmp_path / "stray")
    service.broker.keyring = stray
    service.broker.put_resource(["default", "k", "two"], b"two", admin="test")
    file_kek, new = FileKeyring(data_dir / "kek.key"), FileKeyring.create(tmp_path / "new")
    before = _rows(service.db)
    try:
        with pytest.raises(ConfigError, match=f"1 under {stray.kek_id}"):
            rotate_kek(service.db, file_kek, new)
        assert _rows(service.db) == before  # nothing was changed
        with pytest.raises(ConfigError, match="nothing to rotate"):
            rotate_kek(service.db, file_kek, file_kek)
        # Holding both old KEKs, everything moves.
        assert rotate_kek(service.db, MultiKeyring(file_kek, stray), new) == 2
        assert _open_all(service.db, new) == {"default/k/one": b"one", "default/k/two": b"two"}
    finally:
        _close(service)


def test_rotation_stops_when_a_replica_keeps_sealing_under_the_old_kek(tmp_path: Path) -> None:
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    stale = open_service(ServiceConfig.load(data_dir))  # a replica never told of the new KEK
    for parts in _paths(6):
        stale.broker.put_resource(parts, _secret(parts), admin="test")
    file_kek, new = FileKeyring(data_dir / "kek.key"), FileKeyring.create(tmp_path / "new")
    written = []

    def stale_write(_n: int) -> None:
        parts = ["default", "late", f"t{len(written):03d}"]
        stale.broker.put_resource(parts, b"late", admin="stale")
        written.append(parts)

    try:
        with pytest.raises(RotationStalled, match="still under an old KEK"):
            rotate_kek(stale.db, file_kek, new, batch_size=4, progress=stale_write)
        # Each pass is bounded by what was pending when it began, so rows that keep
        # arriving ahead of the cursor end the rotation instead of prolonging it.
        assert len(written) <= 8
        # Everything that was re-wrapped is readable; the stale rows are under the old KEK.
        assert kek_inventory(stale.db)[file_kek.kek_id] >= 1
        assert len(_open_all(stale.db, MultiKeyring(new, file_kek))) == 6 + len(written)
        last = [r for r in iter_rows(stale.db) if r.action == "admin.rotate_kek"][-1]
        assert last.decision == "error"
        assert json.loads(last.detail_json)["error"] == "keyring.rotation_stalled"
    finally:
        _close(stale)


# -- the stored rows, and the command line ---------------------------------------------------


def test_database_holds_only_ciphertext_with_the_hsm_kek(
    hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from veritee.broker.keyring_pkcs11 import Pkcs11Keyring

    hsm.keyring("veritee-a", "kek-at-rest", create=True).close()
    data_dir = _pkcs11_data_dir(tmp_path, hsm, "veritee-a", "kek-at-rest")
    monkeypatch.setenv(PIN_ENV, hsm.pins["veritee-a"])
    service = open_service(ServiceConfig.load(data_dir))
    marker = b"TOP-SECRET-" + secrets.token_hex(8).encode()
    try:
        assert isinstance(service.broker.keyring, Pkcs11Keyring)
        for i in range(5):
            service.broker.put_resource(["default", "disk", f"k{i}"], marker + b"%d" % i, admin="a")
        kek_id = service.broker.keyring.kek_id
        opened = _open_all(service.db, service.broker.keyring)
        assert opened == {f"default/disk/k{i}": marker + b"%d" % i for i in range(5)}
    finally:
        _close(service)
    con = sqlite3.connect(data_dir / "veritee.db")
    try:
        rows = con.execute(
            "SELECT kek_id, wrapped_dek, nonce, ciphertext FROM resources"
        ).fetchall()
        assert len(rows) == 5
        for row_kek, wrapped, nonce, ciphertext in rows:
            assert row_kek == kek_id
            assert len(wrapped) == 1 + 12 + 32 + 16 and len(nonce) == 12
            assert marker not in ciphertext and len(ciphertext) == len(marker) + 1 + 16
        for table, *_ in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in con.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    as_bytes = value if isinstance(value, bytes) else str(value).encode()
                    assert marker not in as_bytes, f"plaintext in table {table}"
    finally:
        con.close()
    for path in data_dir.glob("veritee.db*"):  # the file itself, its WAL and shm
        assert marker not in path.read_bytes(), f"plaintext in {path.name}"


def test_cli_rotates_offline_to_a_new_hsm_key_and_rewrites_config(
    hsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "kbs"
    init_data_dir(data_dir)
    first = open_service(ServiceConfig.load(data_dir))
    for parts in _paths(12):
        first.broker.put_resource(parts, _secret(parts), admin="test")
    _close(first)
    monkeypatch.setenv(PIN_ENV, hsm.pins["veritee-b"])
    args = ["keyring", "rotate", "--data-dir", str(data_dir), "--to-pkcs11"]
    args += ["--module", str(hsm.module), "--token-label", "veritee-b"]
    args += ["--key-label", "kek-cli", "--pin-env", PIN_ENV, "--create"]
    # The running service would not hold the new KEK: refused unless it is stopped.
    assert main(args) == 1
    assert main([*args[:-1], "--offline"]) == 0  # the key now exists: no --create
    config = ServiceConfig.load(data_dir)
    assert config.keyring is not None
    assert config.keyring.primary == Pkcs11KeyringConfig(
        hsm.module, "veritee-b", "kek-cli", PIN_ENV
    )
    assert config.keyring.previous is None
    assert hsm.pins["veritee-b"] not in (data_dir / "config.toml").read_text()
    service = open_service(config)
    try:
        expected = {"/".join(p): _secret(p) for p in _paths(12)}
        assert _open_all(service.db, service.broker.keyring) == expected
        assert kek_inventory(service.db) == {service.broker.keyring.kek_id: 12}
    finally:
        _close(service)
    assert main(["keyring", "status", "--data-dir", str(data_dir)]) == 0
    # A second rotation to the same key has nothing to do and says so.
    assert main(args[:-1]) == 1
