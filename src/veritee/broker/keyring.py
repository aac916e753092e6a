"""Secrets at rest: envelope encryption under a key-encryption key (KEK).

Each secret gets its own random 32-byte data key (DEK). The secret is sealed
with AES-256-GCM under the DEK, and the DEK is wrapped by a :class:`Keyring`
(a file KEK here; an HSM or a TPM-sealed key implements the same protocol).
Both layers take the caller's AAD (the resource path), so a row copied to
another path, a DEK swapped between rows, or any flipped byte fails to open.

A :class:`MultiKeyring` holds several KEKs during a rotation: it wraps under its
primary and unseals each secret with the KEK named by the secret's stored
``kek_id``; :func:`rewrap_dek` moves one secret's data key to another KEK
without touching its ciphertext.

Failures raise :class:`~veritee.errors.VerificationError` with messages that
name what failed, never the plaintext or key bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import ConfigError, VerificationError
from veritee.secretfile import read_owner_only, write_new_file

__all__ = [
    "FileKeyring",
    "Keyring",
    "MultiKeyring",
    "SealedSecret",
    "aead_unwrap",
    "aead_wrap",
    "read_owner_only",
    "rewrap_dek",
    "seal",
    "unseal",
    "write_new_file",
]

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
_WRAP_VERSION: Final = 1
# Domain separation: the same caller AAD is used for the DEK wrap and the data,
# and these labels keep one layer's ciphertext from ever authenticating as the other's.
_DEK_LABEL: Final = b"veritee/dek/v1\x00"
_DATA_LABEL: Final = b"veritee/data/v1\x00"


@runtime_checkable
class Keyring(Protocol):
    """Wraps data keys under a KEK it never reveals."""

    @property
    def kek_id(self) -> str:
        """A stable, non-secret identifier of the KEK (stored next to each secret)."""
        ...

    def wrap(self, dek: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        """The DEK, or :class:`VerificationError` if the blob or AAD is not authentic."""
        ...


class FileKeyring:
    """A 32-byte AES-256 KEK in a file readable only by its owner."""

    __slots__ = ("_aead", "_kek_id", "path")

    def __init__(self, path: Path) -> None:
        data = read_owner_only(path, "KEK file", max_bytes=KEY_BYTES)
        if len(data) != KEY_BYTES:
            raise ConfigError(
                f"KEK file {path} must hold exactly {KEY_BYTES} raw bytes, not {len(data)}",
                hint="create one with `veritee` (FileKeyring.create) or "
                f"`head -c {KEY_BYTES} /dev/urandom > {path}; chmod 600 {path}`",
            )
        self.path = path
        # The id identifies the KEK in stored rows; SHA-256 does not reveal the key.
        self._kek_id = hashlib.sha256(data).hexdigest()[:16]
        self._aead = AESGCM(data)

    @classmethod
    def create(cls, path: Path) -> FileKeyring:
        """Generate a new random KEK at ``path`` (mode 0600); refuses an existing file."""
        write_new_file(path, os.urandom(KEY_BYTES), "KEK file")
        return cls(path)

    def __repr__(self) -> str:
        return f"FileKeyring(path={str(self.path)!r}, kek_id={self._kek_id!r})"

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        """version byte || 12-byte nonce || AES-256-GCM(dek) with its 16-byte tag."""
        return aead_wrap(self._aead, dek, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        return aead_unwrap(self._aead, blob, aad, self._kek_id)


def aead_wrap(aead: AESGCM, dek: bytes, aad: bytes) -> bytes:
    """The wrapped-DEK format of every in-process KEK (file, TPM-sealed).

    version byte || 12-byte nonce || AES-256-GCM(dek) with its 16-byte tag.
    """
    if not dek:
        raise ValueError("cannot wrap an empty data key")
    version = bytes([_WRAP_VERSION])
    nonce = os.urandom(NONCE_BYTES)
    # The version byte is authenticated too, so a future format cannot be
    # confused with this one by editing the first byte.
    return version + nonce + aead.encrypt(nonce, dek, version + aad)


def aead_unwrap(aead: AESGCM, blob: bytes, aad: bytes, kek_id: str) -> bytes:
    """The DEK from :func:`aead_wrap`'s blob, or VerificationError naming ``kek_id``."""
    if len(blob) < 1 + NONCE_BYTES + TAG_BYTES + 1:
        raise VerificationError(f"wrapped data key is truncated ({len(blob)} bytes)")
    if blob[0] != _WRAP_VERSION:
        raise VerificationError(f"wrapped data key has unknown format version {blob[0]}")
    version, nonce, body = blob[:1], blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return aead.decrypt(nonce, body, version + aad)
    except InvalidTag:
        raise VerificationError(
            f"wrapped data key does not open under KEK {kek_id}",
            hint="wrong KEK, the secret belongs to another path, or the stored bytes "
            "were altered",
        ) from None


class MultiKeyring:
    """A primary KEK plus older ones still held for reading, during a KEK rotation.

    ``wrap`` (and ``unwrap`` through the plain :class:`Keyring` protocol) use the
    primary; :func:`unseal` picks the member named by a secret's stored ``kek_id``,
    so secrets under the old KEK and under the new one both open while a
    rotation moves them over.
    """

    __slots__ = ("_by_id", "keyrings")

    def __init__(self, primary: Keyring, *others: Keyring) -> None:
        self.keyrings: tuple[Keyring, ...] = (primary, *others)
        by_id: dict[str, Keyring] = {}
        for member in self.keyrings:
            if isinstance(member, MultiKeyring):
                raise TypeError("MultiKeyring members must be single keyrings")
            if member.kek_id in by_id:
                raise ConfigError(
                    f"KEK {member.kek_id} is configured twice",
                    hint="the previous KEK must be a different key from the primary one",
                )
            by_id[member.kek_id] = member
        self._by_id = by_id

    def __repr__(self) -> str:
        return f"MultiKeyring({', '.join(repr(k) for k in self.keyrings)})"

    @property
    def primary(self) -> Keyring:
        return self.keyrings[0]

    @property
    def kek_id(self) -> str:
        return self.primary.kek_id

    @property
    def kek_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def keyring_for(self, kek_id: str) -> Keyring | None:
        """The member holding ``kek_id``, or None."""
        return self._by_id.get(kek_id)

    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        return self.primary.wrap(dek, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        # A bare blob does not say which KEK made it; callers that know the stored
        # kek_id go through unseal()/rewrap_dek(), which pick the right member.
        return self.primary.unwrap(blob, aad)


def _holder(keyring: Keyring, kek_id: str) -> Keyring:
    """The keyring that holds ``kek_id`` (a MultiKeyring's member), or VerificationError."""
    if isinstance(keyring, MultiKeyring):
        found = keyring.keyring_for(kek_id)
        held = ", ".join(keyring.kek_ids)
    else:
        found = keyring if keyring.kek_id == kek_id else None
        held = keyring.kek_id
    if found is None:
        raise VerificationError(
            f"secret is sealed under KEK {kek_id!r}, but the keyring holds KEK {held}",
            hint="configure the KEK the secret was stored with (as the previous KEK during "
            "a rotation), or re-seal it",
        )
    return found


def _abbrev(data: bytes) -> str:
    return f"<{len(data)} bytes>"


@dataclass(frozen=True)
class SealedSecret:
    """A secret as stored: nothing here reveals the plaintext without the KEK."""

    kek_id: str
    wrapped_dek: bytes
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:
        return (
            f"SealedSecret(kek_id={self.kek_id!r}, wrapped_dek={_abbrev(self.wrapped_dek)}, "
            f"nonce={_abbrev(self.nonce)}, ciphertext={_abbrev(self.ciphertext)})"
        )


def seal(keyring: Keyring, plaintext: bytes, aad: bytes) -> SealedSecret:
    """Encrypt under a fresh DEK, wrap the DEK; ``aad`` (the resource path) binds both."""
    dek = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext, _DATA_LABEL + aad)
    return SealedSecret(
        kek_id=keyring.kek_id,
        wrapped_dek=keyring.wrap(dek, _DEK_LABEL + aad),
        nonce=nonce,
        ciphertext=ciphertext,
    )


def unseal(keyring: Keyring, sealed: SealedSecret, aad: bytes) -> bytes:
    """The plaintext, or :class:`VerificationError` (wrong AAD, wrong KEK, altered bytes)."""
    holder = _holder(keyring, sealed.kek_id)
    if len(sealed.nonce) != NONCE_BYTES or len(sealed.ciphertext) < TAG_BYTES:
        raise VerificationError("sealed secret is malformed (nonce or ciphertext length)")
    dek = holder.unwrap(sealed.wrapped_dek, _DEK_LABEL + aad)
    if len(dek) != KEY_BYTES:
        raise VerificationError("unwrapped data key has the wrong length")
    try:
        return AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, _DATA_LABEL + aad)
    except InvalidTag:
        raise VerificationError(
            "sealed secret does not open: the ciphertext was altered or belongs to another path"
        ) from None


def rewrap_dek(kek_id: str, wrapped_dek: bytes, old: Keyring, new: Keyring, aad: bytes) -> bytes:
    """One secret's data key, wrapped under ``new`` instead of ``kek_id`` (KEK rotation).

    ``aad`` is the same AAD the secret was sealed with. The secret's nonce and
    ciphertext are not needed and stay as they are: the plaintext is never
    decrypted. The new wrapping is unwrapped again before it is returned, so a
    faulty KEK holder is caught while the old wrapping still exists.
    """
    dek = _holder(old, kek_id).unwrap(wrapped_dek, _DEK_LABEL + aad)
    if len(dek) != KEY_BYTES:
        raise VerificationError("unwrapped data key has the wrong length")
    rewrapped = new.wrap(dek, _DEK_LABEL + aad)
    if not hmac.compare_digest(_holder(new, new.kek_id).unwrap(rewrapped, _DEK_LABEL + aad), dek):
        raise VerificationError(
            f"KEK {new.kek_id} does not give back the data key it wrapped",
            hint="the key holder is faulty; do not retire the old KEK",
        )
    return rewrapped
