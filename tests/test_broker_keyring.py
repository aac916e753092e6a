"""Envelope encryption of secrets at rest: binding, tamper evidence, no leaks."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.broker.keyring import FileKeyring, Keyring, SealedSecret, seal, unseal
from veritee.errors import ConfigError, VerificationError

SECRET = b"-----BEGIN KEY-----\nvery secret disk passphrase 0123456789\n-----END KEY-----\n"
AAD = b"default/key/disk"


@pytest.fixture
def keyring(tmp_path: Path) -> FileKeyring:
    return FileKeyring.create(tmp_path / "kek")


@pytest.fixture
def other_keyring(tmp_path: Path) -> FileKeyring:
    return FileKeyring.create(tmp_path / "kek2")


def _kek(keyring: FileKeyring) -> bytes:
    return keyring.path.read_bytes()


# --- FileKeyring ----------------------------------------------------------------


def test_create_writes_0600_and_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "kek"
    old_umask = os.umask(0)  # create() must not depend on a friendly umask
    try:
        ring = FileKeyring.create(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        FileKeyring.create(path)
    assert path.read_bytes() == before
    assert ring.kek_id == hashlib.sha256(before).hexdigest()[:16]
    assert isinstance(ring, Keyring)


def test_kek_id_identifies_without_revealing(keyring: FileKeyring, tmp_path: Path) -> None:
    kek = _kek(keyring)
    assert len(keyring.kek_id) == 16
    assert kek.hex()[:16] not in keyring.kek_id
    assert FileKeyring(keyring.path).kek_id == keyring.kek_id
    assert FileKeyring.create(tmp_path / "another").kek_id != keyring.kek_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o700 | 0o004])
def test_load_refuses_group_or_world_access(keyring: FileKeyring, mode: int) -> None:
    keyring.path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        FileKeyring(keyring.path)


def test_load_accepts_0400_and_rejects_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "ro"
    good.write_bytes(os.urandom(32))
    good.chmod(0o400)
    FileKeyring(good)
    for size in (0, 16, 31, 33, 64):
        bad = tmp_path / f"size{size}"
        bad.write_bytes(os.urandom(size))
        bad.chmod(0o600)
        with pytest.raises(ConfigError, match="exactly 32"):
            FileKeyring(bad)
    with pytest.raises(ConfigError, match="cannot open"):
        FileKeyring(tmp_path / "absent")
    with pytest.raises(ConfigError, match="regular file"):
        FileKeyring(tmp_path)


def test_wrap_unwrap(keyring: FileKeyring) -> None:
    dek = os.urandom(32)
    blob = keyring.wrap(dek, b"ctx")
    assert blob[0] == 1
    assert len(blob) == 1 + 12 + 32 + 16
    assert dek not in blob
    assert keyring.unwrap(blob, b"ctx") == dek
    assert keyring.wrap(dek, b"ctx") != blob  # fresh nonce
    with pytest.raises(VerificationError, match="does not open"):
        keyring.unwrap(blob, b"ctx2")
    with pytest.raises(VerificationError, match="version"):
        keyring.unwrap(b"\x02" + blob[1:], b"ctx")
    with pytest.raises(VerificationError, match="truncated"):
        keyring.unwrap(blob[:20], b"ctx")


def test_wrap_format_is_aes_gcm_under_the_kek(keyring: FileKeyring) -> None:
    # Independent check of the documented layout: version || nonce || GCM(dek), the
    # version byte authenticated in front of the caller's AAD.
    dek = os.urandom(32)
    blob = keyring.wrap(dek, b"ctx")
    assert AESGCM(_kek(keyring)).decrypt(blob[1:13], blob[13:], b"\x01ctx") == dek


def test_repr_hides_key(keyring: FileKeyring) -> None:
    text = repr(keyring)
    assert keyring.kek_id in text
    kek = _kek(keyring)
    assert kek.hex() not in text
    assert repr(kek) not in text


# --- seal / unseal --------------------------------------------------------------


def test_round_trip(keyring: FileKeyring) -> None:
    sealed = seal(keyring, SECRET, AAD)
    assert sealed.kek_id == keyring.kek_id
    assert len(sealed.nonce) == 12
    assert len(sealed.ciphertext) == len(SECRET) + 16
    assert unseal(keyring, sealed, AAD) == SECRET
    # A reloaded keyring (same file) opens it too.
    assert unseal(FileKeyring(keyring.path), sealed, AAD) == SECRET


def test_empty_and_large_secrets(keyring: FileKeyring) -> None:
    for plaintext in (b"", os.urandom(1 << 16)):
        assert unseal(keyring, seal(keyring, plaintext, AAD), AAD) == plaintext


def test_fresh_dek_per_secret(keyring: FileKeyring) -> None:
    first, second = seal(keyring, SECRET, AAD), seal(keyring, SECRET, AAD)
    assert first.wrapped_dek != second.wrapped_dek
    assert first.ciphertext != second.ciphertext
    kek = _kek(keyring)
    dek_1 = AESGCM(kek).decrypt(
        first.wrapped_dek[1:13], first.wrapped_dek[13:], b"\x01veritee/dek/v1\x00" + AAD
    )
    dek_2 = AESGCM(kek).decrypt(
        second.wrapped_dek[1:13], second.wrapped_dek[13:], b"\x01veritee/dek/v1\x00" + AAD
    )
    assert len(dek_1) == 32
    assert dek_1 != dek_2
    assert dek_1 != kek
    # The data layer binds the path on its own too (not only through the wrapped DEK).
    data_aad = b"veritee/data/v1\x00" + AAD
    assert AESGCM(dek_1).decrypt(first.nonce, first.ciphertext, data_aad) == SECRET
    with pytest.raises(InvalidTag):
        AESGCM(dek_1).decrypt(first.nonce, first.ciphertext, b"veritee/data/v1\x00other")


def test_plaintext_not_in_sealed_fields(keyring: FileKeyring) -> None:
    sealed = seal(keyring, SECRET, AAD)
    stored = b"".join([sealed.kek_id.encode(), sealed.wrapped_dek, sealed.nonce, sealed.ciphertext])
    for start in range(0, len(SECRET) - 8, 4):
        assert SECRET[start : start + 8] not in stored
    assert _kek(keyring) not in stored


def test_wrong_aad_fails(keyring: FileKeyring) -> None:
    sealed = seal(keyring, SECRET, AAD)
    for aad in (b"default/key/other", b"", AAD + b"/", AAD.upper()):
        with pytest.raises(VerificationError) as info:
            unseal(keyring, sealed, aad)
        _assert_no_leak(str(info.value), keyring)


def test_wrong_kek_fails(keyring: FileKeyring, other_keyring: FileKeyring) -> None:
    sealed = seal(keyring, SECRET, AAD)
    with pytest.raises(VerificationError, match="sealed under KEK") as info:
        unseal(other_keyring, sealed, AAD)
    _assert_no_leak(str(info.value), keyring)
    # Even with the kek_id forged to match, the wrapped DEK does not open.
    forged = dataclasses.replace(sealed, kek_id=other_keyring.kek_id)
    with pytest.raises(VerificationError, match="does not open") as info:
        unseal(other_keyring, forged, AAD)
    _assert_no_leak(str(info.value), keyring)


def test_dek_swapped_between_rows_fails(keyring: FileKeyring) -> None:
    a = seal(keyring, SECRET, b"repo/a/1")
    b = seal(keyring, b"another secret", b"repo/b/1")
    with pytest.raises(VerificationError):
        unseal(keyring, dataclasses.replace(a, wrapped_dek=b.wrapped_dek), b"repo/a/1")
    with pytest.raises(VerificationError):
        unseal(keyring, dataclasses.replace(a, ciphertext=b.ciphertext), b"repo/a/1")


@pytest.mark.parametrize("field", ["wrapped_dek", "nonce", "ciphertext"])
def test_every_flipped_byte_fails(keyring: FileKeyring, field: str) -> None:
    sealed = seal(keyring, SECRET, AAD)
    original: bytes = getattr(sealed, field)
    for index in range(len(original)):
        for bit in (0x01, 0x80):
            data = bytearray(original)
            data[index] ^= bit
            tampered = _with(sealed, field, bytes(data))
            with pytest.raises(VerificationError) as info:
                unseal(keyring, tampered, AAD)
            _assert_no_leak(str(info.value), keyring)


@pytest.mark.parametrize(
    ("field", "value"),
    [("nonce", b"\x00" * 11), ("ciphertext", b"short"), ("wrapped_dek", b"")],
)
def test_malformed_sealed_secret(keyring: FileKeyring, field: str, value: bytes) -> None:
    sealed = _with(seal(keyring, SECRET, AAD), field, value)
    with pytest.raises(VerificationError):
        unseal(keyring, sealed, AAD)


def test_sealed_repr_is_abbreviated(keyring: FileKeyring) -> None:
    sealed = seal(keyring, SECRET, AAD)
    text = repr(sealed)
    assert sealed.kek_id in text
    for value in (sealed.wrapped_dek, sealed.nonce, sealed.ciphertext):
        assert value.hex() not in text
        assert repr(value) not in text
        assert f"<{len(value)} bytes>" in text
    assert str(sealed) == text


def _with(sealed: SealedSecret, field: str, value: bytes) -> SealedSecret:
    parts = {
        "wrapped_dek": sealed.wrapped_dek,
        "nonce": sealed.nonce,
        "ciphertext": sealed.ciphertext,
    }
    assert field in parts
    parts[field] = value
    return SealedSecret(sealed.kek_id, parts["wrapped_dek"], parts["nonce"], parts["ciphertext"])


def _assert_no_leak(message: str, keyring: FileKeyring) -> None:
    kek = _kek(keyring)
    for needle in (SECRET.decode("latin-1")[:12], kek.hex(), repr(kek), SECRET.hex()[:16]):
        assert needle not in message


# --- property: stored bytes are untrusted input -----------------------------------


@pytest.fixture(scope="module")
def property_ring(tmp_path_factory: pytest.TempPathFactory) -> FileKeyring:
    return FileKeyring.create(tmp_path_factory.mktemp("kek") / "kek")


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=120), aad=st.binary(max_size=40))
def test_unwrap_arbitrary_blob_raises_only_verification_error(
    property_ring: FileKeyring, blob: bytes, aad: bytes
) -> None:
    with pytest.raises(VerificationError):
        property_ring.unwrap(blob, aad)


@settings(max_examples=200, deadline=None)
@given(wrapped=st.binary(max_size=80), nonce=st.binary(max_size=20), ct=st.binary(max_size=80))
def test_unseal_arbitrary_fields_raise_only_verification_error(
    property_ring: FileKeyring, wrapped: bytes, nonce: bytes, ct: bytes
) -> None:
    sealed = SealedSecret(property_ring.kek_id, wrapped, nonce, ct)
    with pytest.raises(VerificationError):
        unseal(property_ring, sealed, AAD)


class _MemoryKeyring:
    """A keyring that wraps with a fixed in-memory key: the property tests' stand-in."""

    def __init__(self) -> None:
        self._aead = AESGCM(os.urandom(32))

    @property
    def kek_id(self) -> str:
        return "memory"

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, dek, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], aad)
        except (InvalidTag, ValueError):
            raise VerificationError("does not open") from None


def test_seal_works_with_any_keyring_implementation() -> None:
    ring = _MemoryKeyring()
    assert isinstance(ring, Keyring)
    sealed = seal(ring, SECRET, AAD)
    assert unseal(ring, sealed, AAD) == SECRET
    with pytest.raises(VerificationError):
        unseal(ring, sealed, b"other")
