"""The EAR token-signing key as a non-extractable EC P-256 key inside an HSM (PKCS#11).

The key pair is generated in the token (``CKM_EC_KEY_PAIR_GEN`` on the named
curve P-256), its private half sensitive and non-extractable, able to sign and
nothing else. Tokens are signed with ``CKM_ECDSA`` over the SHA-256 digest of
the JWS signing input, computed here: not every token implements
``CKM_ECDSA_SHA256``, and the digest is not secret. PKCS#11 returns ECDSA
signatures as r || s, 32 bytes each, which is exactly what JWS ES256 wants.
Each signature is checked against the public key before it is used, so a
faulty token or a mismatched key pair is an error, not a bad token.

The signer is a :class:`~veritee.appraisal.ear.TokenSigner` (the broker holds
one) whose private key never enters this process: ``kid``, the JWKS and the
verification of issued tokens use the public key read from the token.

Every call into the module takes the module's lock from
:func:`~veritee.broker.keyring_pkcs11.load_module`, shared with an HSM-held KEK
on the same module, and a token already logged in by the KEK's keyring is
reused (same PIN only). The PIN is read from the environment variable named
in ``[token_signer] pin_env`` and never appears in a message, a log or a repr.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.types import Session, SignMixin

from veritee.appraisal.ear import TokenSigner
from veritee.broker.keyring_pkcs11 import (
    _SESSION_LOST,
    _close_quietly,
    _find_token,
    _login,
    load_module,
)
from veritee.errors import ConfigError, KeyringUnavailableError

__all__ = ["Pkcs11TokenSigner"]

SECTION: Final = "token_signer"
# DER of the named curve prime256v1 / secp256r1 (OID 1.2.840.10045.3.1.7), CKA_EC_PARAMS.
P256_PARAMS: Final = bytes.fromhex("06082a8648ce3d030107")
_POINT_BYTES: Final = 65  # 0x04 || x || y
_COORD_BYTES: Final = 32

T = TypeVar("T")


def _decode_point(value: object, where: str) -> ec.EllipticCurvePublicKey:
    """CKA_EC_POINT (DER OCTET STRING around the uncompressed point, or the bare point)."""
    if not isinstance(value, bytes):
        raise ConfigError(f"{where} has no EC point")
    point = value
    if len(value) == _POINT_BYTES + 2 and value[0] == 0x04 and value[1] == _POINT_BYTES:
        point = value[2:]
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise ConfigError(f"{where} does not hold a P-256 point") from None


class Pkcs11TokenSigner(TokenSigner):
    """ES256 token signing with a key pair held in a PKCS#11 token; thread-safe."""

    __slots__ = (
        "_closed",
        "_key_id",
        "_lib",
        "_lock",
        "_pin",
        "_private",
        "_public",
        "_session",
        "key_label",
        "module",
        "token_label",
    )

    def __init__(self, module: Path, token_label: str, key_label: str, pin: str) -> None:
        """Log in and find the key pair; any problem is a ConfigError (never with the PIN)."""
        if not key_label:
            raise ConfigError(f"{SECTION}.key_label must not be empty")
        self.module = module
        self.token_label = token_label
        self.key_label = key_label
        self._pin = pin
        self._closed = False
        self._session: Session | None = None
        self._lib, self._lock = load_module(module, section=SECTION)
        with self._lock:
            session, private, public, key_id = self._connect()
        self._session, self._private, self._public, self._key_id = (
            session,
            private,
            public,
            key_id,
        )
        try:
            self._set_public(public)
            self._self_test()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, module: Path, token_label: str, key_label: str, pin: str) -> Pkcs11TokenSigner:
        return cls(module, token_label, key_label, pin)

    @classmethod
    def create(
        cls, module: Path, token_label: str, key_label: str, pin: str
    ) -> Pkcs11TokenSigner:
        """Generate an EC P-256 key pair in the token: sign-only, sensitive, non-extractable.

        Refuses if a key labelled ``key_label`` exists (never replaces a signing key).
        """
        lib, lock = load_module(module, section=SECTION)
        with lock:
            token = _find_token(lib, module, token_label, SECTION)
            session = _login(token, pin, rw=True, module=module, section=SECTION)
            try:
                _generate(session, token_label, key_label)
            finally:
                _close_quietly(session)
        return cls(module, token_label, key_label, pin)

    def __repr__(self) -> str:
        return (
            f"Pkcs11TokenSigner(token={self.token_label!r}, key={self.key_label!r}, "
            f"kid={self.kid!r})"
        )

    def __enter__(self) -> Pkcs11TokenSigner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- TokenSigner -----------------------------------------------------------------------------
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def save_pem(self, path: Path) -> None:
        raise ConfigError(
            f"the token-signing key {self.key_label!r} is held in HSM token "
            f"{self.token_label!r} and cannot be written to {path}"
        )

    def _sign_raw(self, signing_input: bytes) -> bytes:
        digest = hashlib.sha256(signing_input).digest()

        def op(key: SignMixin) -> bytes:
            return bytes(key.sign(digest, mechanism=Mechanism.ECDSA))

        try:
            raw = self._call(op)
        except p11e.PKCS11Error as exc:
            raise KeyringUnavailableError(
                f"HSM token {self.token_label!r} failed to sign with key {self.key_label!r} "
                f"({type(exc).__name__})",
                hint="check the HSM and its connection; tokens are issued again once it is back",
            ) from None
        if len(raw) != 2 * _COORD_BYTES or not self._verifies(digest, raw):
            raise KeyringUnavailableError(
                f"HSM token {self.token_label!r} returned a signature that does not verify "
                f"with the public key of {self.key_label!r}",
                hint="the token is faulty or the key pair was replaced; no token was issued",
            )
        return raw

    def close(self) -> None:
        with self._lock:
            self._closed = True
            session, self._session = self._session, None
            _close_quietly(session)

    # -- internals -----------------------------------------------------------------------------
    def _verifies(self, digest: bytes, raw: bytes) -> bool:
        der = encode_dss_signature(
            int.from_bytes(raw[:_COORD_BYTES], "big"), int.from_bytes(raw[_COORD_BYTES:], "big")
        )
        try:
            self._public.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:
            return False
        return True

    def _self_test(self) -> None:
        """Fail at startup, not at the first attestation, if the token cannot sign."""
        try:
            self._sign_raw(b"veritee-self-test")
        except KeyringUnavailableError as exc:
            raise ConfigError(
                f"HSM token {self.token_label!r} cannot ECDSA-sign with key "
                f"{self.key_label!r}: {exc.message}",
                hint="the token must support CKM_ECDSA on P-256 and the public and private "
                "keys labelled so must be one pair",
            ) from None

    def _connect(self) -> tuple[Session, SignMixin, ec.EllipticCurvePublicKey, bytes]:
        token = _find_token(self._lib, self.module, self.token_label, SECTION)
        session = _login(token, self._pin, rw=False, module=self.module, section=SECTION)
        try:
            private, public, key_id = self._find_pair(session)
            return session, private, public, key_id
        except BaseException:
            _close_quietly(session)
            raise

    def _find_pair(self, session: Session) -> tuple[SignMixin, ec.EllipticCurvePublicKey, bytes]:
        where = f"key {self.key_label!r} on HSM token {self.token_label!r}"
        hint = f"check {SECTION}.key_label, or create the key with `veritee keyring create-signer`"
        try:
            private = session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=self.key_label
            )
        except p11e.NoSuchKey:
            raise ConfigError(f"no EC private key labelled {self.key_label!r} on HSM token "
                              f"{self.token_label!r}", hint=hint) from None
        except p11e.MultipleObjectsReturned:
            raise ConfigError(
                f"several EC private keys are labelled {self.key_label!r} on HSM token "
                f"{self.token_label!r}",
                hint="give the token-signing key a unique label",
            ) from None
        if not isinstance(private, SignMixin):
            raise ConfigError(f"{where} cannot sign")
        try:
            attrs = private.get_attributes(
                [Attribute.ID, Attribute.EC_PARAMS, Attribute.SENSITIVE, Attribute.EXTRACTABLE]
            )
            key_id = bytes(attrs.get(Attribute.ID) or b"")
            public = session.get_key(
                object_class=ObjectClass.PUBLIC_KEY,
                key_type=KeyType.EC,
                label=self.key_label,
                id=key_id or None,
            )
            point = public[Attribute.EC_POINT]
            public_params = public[Attribute.EC_PARAMS]
        except p11e.NoSuchKey:
            raise ConfigError(
                f"no EC public key labelled {self.key_label!r} (with the private key's id) "
                f"on HSM token {self.token_label!r}",
                hint=hint,
            ) from None
        except p11e.MultipleObjectsReturned:
            raise ConfigError(f"several EC public keys match {where}") from None
        except p11e.PKCS11Error as exc:
            raise ConfigError(f"cannot read {where} ({type(exc).__name__})") from None
        if bytes(attrs.get(Attribute.EC_PARAMS) or b"") != P256_PARAMS or (
            bytes(public_params or b"") != P256_PARAMS
        ):
            raise ConfigError(f"{where} is not on curve P-256 (ES256 needs P-256)")
        # A signing key that can be read out of the token gives none of an HSM's protection.
        if attrs.get(Attribute.SENSITIVE) is not True or attrs.get(Attribute.EXTRACTABLE):
            raise ConfigError(
                f"{where} is extractable or not sensitive: its value could leave the HSM",
                hint="create a new one with `veritee keyring create-signer` (sensitive, "
                "non-extractable)",
            )
        return private, _decode_point(point, where), key_id

    def _call(self, op: Callable[[SignMixin], T]) -> T:
        with self._lock:  # the module's lock, shared with every other user of the module
            if self._closed or self._session is None:
                raise KeyringUnavailableError(
                    f"the HSM token signer {self.key_label!r} is closed"
                )
            try:
                return op(self._private)
            except _SESSION_LOST:
                self._reconnect()
                return op(self._private)

    def _reconnect(self) -> None:
        _close_quietly(self._session)
        self._session = None
        try:
            session, private, public, key_id = self._connect()
        except ConfigError as exc:
            raise KeyringUnavailableError(
                f"lost the session to HSM token {self.token_label!r} and could not open "
                f"another: {exc.message}"
            ) from None
        if key_id != self._key_id or public.public_numbers() != self._public.public_numbers():
            _close_quietly(session)
            # Tokens must keep verifying under the published kid.
            raise KeyringUnavailableError(
                f"the key labelled {self.key_label!r} on {self.token_label!r} was replaced "
                f"while the service ran (kid {self.kid} is gone)"
            )
        self._session, self._private = session, private


def _generate(session: Session, token_label: str, key_label: str) -> None:
    for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
        found = True
        try:
            session.get_key(object_class=object_class, label=key_label)
        except p11e.NoSuchKey:
            found = False
        except p11e.MultipleObjectsReturned:
            pass
        if found:
            raise ConfigError(
                f"a key labelled {key_label!r} already exists on HSM token {token_label!r}; "
                "refusing to create another",
                hint="use it as it is, or pick a new key label",
            )
    params: Any = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: P256_PARAMS}, local=True
    )
    try:
        params.generate_keypair(
            # A random CKA_ID ties the two halves together and tells a re-created pair apart.
            id=os.urandom(16),
            label=key_label,
            store=True,
            mechanism=Mechanism.EC_KEY_PAIR_GEN,
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: False,
                Attribute.VERIFY: True,
                Attribute.ENCRYPT: False,
                Attribute.WRAP: False,
                Attribute.DERIVE: False,
            },
            private_template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.SIGN: True,
                Attribute.DECRYPT: False,
                Attribute.UNWRAP: False,
                Attribute.DERIVE: False,
            },
        )
    except p11e.PKCS11Error as exc:
        raise ConfigError(
            f"HSM token {token_label!r} could not generate an EC P-256 key pair "
            f"({type(exc).__name__})"
        ) from None

