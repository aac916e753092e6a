"""The KEK as a non-extractable AES-256 key inside an HSM, used through PKCS#11.

Data keys are wrapped by AES-256-GCM *inside* the token (``CKM_AES_GCM``) with
a fresh random 12-byte IV and the caller's AAD, so the KEK never exists in this
process's memory. The blob has the same shape as :class:`FileKeyring`'s
(version byte || IV || ciphertext and 16-byte tag, the version byte
authenticated with the AAD). GCM was chosen over ``CKM_AES_KEY_WRAP_PAD``
because it authenticates the AAD in the same operation: key wrap has no AAD
and would need a second binding (a MAC) of the resource path.

``kek_id`` is derived from the token serial number, the key label and the
key's ``CKA_ID`` - never from key material - so it names the key without
revealing anything about it, and a key re-created under the same label (new
random ``CKA_ID``) gets a different id instead of silently failing to open
old secrets.

The user PIN comes from an environment variable named in the configuration
(:func:`read_pin`). It is kept in memory only to log in again after the HSM
dropped the session, and it never appears in a message, a log or a repr.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams
from pkcs11.types import DecryptMixin, EncryptMixin, Session, Token

from veritee.errors import ConfigError, KeyringUnavailableError, VerificationError

__all__ = ["Pkcs11Keyring", "load_module", "read_pin"]

KEY_BITS: Final = 256
IV_BYTES: Final = 12
TAG_BITS: Final = 128
_WRAP_VERSION: Final = 1
_KEK_ID_LABEL: Final = b"veritee/pkcs11-kek-id/v1\x00"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Errors after which the session (not the key or the data) is gone: the HSM
# restarted, the token was pulled and re-inserted, the login was dropped. One
# reconnect is tried before the operation is reported as unavailable.
_SESSION_LOST: Final = (
    p11e.SessionHandleInvalid,
    p11e.SessionClosed,
    p11e.DeviceRemoved,
    p11e.DeviceError,
    p11e.TokenNotPresent,
    p11e.TokenNotRecognised,
    p11e.UserNotLoggedIn,
    p11e.KeyHandleInvalid,
    p11e.ObjectHandleInvalid,
)

# PKCS#11 logins belong to the application, not to a session: a second session
# on a token this process already logged in to cannot log in again
# (CKR_USER_ALREADY_LOGGED_IN). The PIN each token was logged in with is kept
# here (as a keyed hash, so no PIN lingers in a global) so that a second keyring
# on the same token with a *different* PIN is still refused rather than riding
# on the first one's login.
_logins: dict[tuple[str, bytes], bytes] = {}
_logins_lock = threading.Lock()
_PIN_HASH_KEY: Final = os.urandom(32)

# python-pkcs11 initializes every module with C_Initialize(NULL_PTR), which
# promises the module that the application never calls it from two threads at
# once; SoftHSM2 then runs without its own locks, and concurrent decryptions on
# two sessions were seen to fail. So every call into one module, from every
# keyring on it, goes through that module's lock.
_module_locks: dict[str, threading.RLock] = {}
_modules_lock = threading.Lock()

T = TypeVar("T")


class _GcmKey(Protocol):
    def encrypt(
        self, data: str | bytes | Iterator[bytes], buffer_size: int = ..., **kwargs: Any
    ) -> bytes | Iterator[bytes]: ...

    def decrypt(
        self, data: bytes | Iterator[bytes], buffer_size: int = ..., **kwargs: Any
    ) -> bytes | Iterator[bytes]: ...

    def __getitem__(self, key: Attribute) -> Any: ...


def read_pin(env_name: str, *, token_label: str, section: str = "keyring") -> str:
    """The user PIN from the environment variable ``env_name`` (named in config.toml).

    ``section`` is the config.toml table that named it, for the messages.
    """
    if not _ENV_NAME.fullmatch(env_name):
        raise ConfigError(
            f"{section}.pin_env must name an environment variable, got {env_name[:40]!r}",
            hint='e.g. pin_env = "VERITEE_HSM_PIN"; the PIN itself never goes in config.toml',
        )
    pin = os.environ.get(env_name, "")
    if not pin:
        raise ConfigError(
            f"the user PIN of HSM token {token_label!r} is not set: environment variable "
            f"{env_name} is empty or missing",
            hint=f"export {env_name}=<user PIN> in the service's environment "
            "(e.g. from a systemd credential or a Kubernetes secret)",
        )
    return pin


def load_module(module: Path, *, section: str = "keyring") -> tuple[Any, threading.RLock]:
    """The loaded module and the lock that serializes every call into it.

    Anything else in the process that uses the same module through python-pkcs11
    (an HSM-held token-signing key, say) must take this lock around its calls too.
    """
    if not module.is_file():
        raise ConfigError(
            f"PKCS#11 module {module} does not exist",
            hint=f"set {section}.module to the vendor's PKCS#11 library, e.g. "
            "/usr/lib/softhsm/libsofthsm2.so for SoftHSM2",
        )
    # One name per file, so two spellings of a path share one lock and one load.
    name = str(module.resolve())
    with _modules_lock:
        lock = _module_locks.setdefault(name, threading.RLock())
        try:
            with lock:
                return pkcs11.lib(name), lock
        except p11e.PKCS11Error as exc:
            raise ConfigError(f"cannot load PKCS#11 module {module}: {exc}") from None


def _find_token(lib: Any, module: Path, token_label: str, section: str = "keyring") -> Token:
    try:
        token: Token = lib.get_token(token_label=token_label)
    except p11e.NoSuchToken:
        raise ConfigError(
            f"no token labelled {token_label!r} in PKCS#11 module {module}",
            hint=f"check {section}.token_label; list tokens with `softhsm2-util --show-slots` "
            f"or `pkcs11-tool --module {module} --list-token-slots`",
        ) from None
    except p11e.MultipleTokensReturned:
        raise ConfigError(
            f"several tokens are labelled {token_label!r} in PKCS#11 module {module}",
            hint="give each token a unique label",
        ) from None
    except p11e.PKCS11Error as exc:
        raise ConfigError(
            f"PKCS#11 module {module} failed to list its tokens ({type(exc).__name__})"
        ) from None
    return token


def _login(
    token: Token, pin: str, *, rw: bool, module: Path, section: str = "keyring"
) -> Session:
    """Open a session on ``token`` logged in as the user; ConfigError says what to fix.

    python-pkcs11 leaves the session it opened for a refused login open; that is
    one idle handle per failed start, released when the module is finalized.
    """
    label = token.label
    key = (str(module.resolve()), bytes(token.serial))
    try:
        session = token.open(rw=rw, user_pin=pin)
        with _logins_lock:
            _logins[key] = _pin_digest(pin)
    except p11e.UserAlreadyLoggedIn:
        # Another session of this process holds the login (see _logins). Sessions
        # share it, so open one without logging in - but only with the same PIN.
        # (A login made by other code in this process cannot be checked; it is
        # trusted as the process's own, and not recorded.)
        with _logins_lock:
            known = _logins.get(key)
        if known is not None and not hmac.compare_digest(known, _pin_digest(pin)):
            raise ConfigError(
                f"HSM token {label!r} is already logged in by this process with another PIN",
                hint="use the same PIN variable for every key on one token",
            ) from None
        try:
            session = token.open(rw=rw)
        except p11e.PKCS11Error as exc:
            raise ConfigError(
                f"cannot open a session on HSM token {label!r} ({type(exc).__name__})"
            ) from None
    except p11e.PinIncorrect:
        raise ConfigError(
            f"HSM token {label!r} refused the user PIN (wrong PIN)",
            hint=f"set the PIN environment variable named by {section}.pin_env to the "
            "token's user PIN; repeated wrong PINs may lock the token",
        ) from None
    except p11e.PinLocked:
        raise ConfigError(
            f"the user PIN of HSM token {label!r} is locked after too many wrong PINs",
            hint="the security officer must unlock it (e.g. softhsm2-util or the HSM's tools)",
        ) from None
    except (p11e.PinInvalid, p11e.PinLenRange):
        raise ConfigError(
            f"HSM token {label!r} rejected the PIN's format (length or characters)",
            hint=f"check the PIN environment variable named by {section}.pin_env",
        ) from None
    except (p11e.PinExpired, p11e.UserPinNotInitialized):
        raise ConfigError(
            f"HSM token {label!r} has no usable user PIN (expired or not initialised)",
            hint="initialise or reset the user PIN with the HSM's tools",
        ) from None
    except p11e.PKCS11Error as exc:
        raise ConfigError(
            f"cannot open a session on HSM token {label!r} ({type(exc).__name__})"
        ) from None
    return session


def _pin_digest(pin: str) -> bytes:
    return hmac.digest(_PIN_HASH_KEY, pin.encode(), "sha256")


def _close_quietly(session: Session | None) -> None:
    if session is None:
        return
    # A session that fails to close is already gone with the device: nothing to release.
    with contextlib.suppress(p11e.PKCS11Error):
        session.close()


def _kek_id(serial: bytes, key_label: str, key_id: bytes) -> str:
    parts = (serial, key_label.encode(), key_id)
    material = _KEK_ID_LABEL + b"".join(len(p).to_bytes(4, "big") + p for p in parts)
    return "p11-" + hashlib.sha256(material).hexdigest()[:16]


class Pkcs11Keyring:
    """A KEK held in a PKCS#11 token; thread-safe (calls into the module are serialized)."""

    __slots__ = (
        "_closed",
        "_kek_id",
        "_key",
        "_lib",
        "_lock",
        "_pin",
        "_session",
        "key_label",
        "module",
        "token_label",
        "token_serial",
    )

    def __init__(self, module: Path, token_label: str, key_label: str, pin: str) -> None:
        """Log in to the token and find the key; any problem is a ConfigError (never the PIN)."""
        if not key_label:
            raise ConfigError("keyring.key_label must not be empty")
        self.module = module
        self.token_label = token_label
        self.key_label = key_label
        self._pin = pin
        self._closed = False
        self._lib, self._lock = load_module(module)
        self._session: Session | None = None
        with self._lock:
            session, key, serial, key_id = self._connect()
        self._session, self._key = session, key
        self.token_serial = serial.decode("ascii", "replace").strip()
        self._kek_id = _kek_id(serial, key_label, key_id)
        try:
            self._self_test()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, module: Path, token_label: str, key_label: str, pin: str) -> Pkcs11Keyring:
        return cls(module, token_label, key_label, pin)

    @classmethod
    def create(cls, module: Path, token_label: str, key_label: str, pin: str) -> Pkcs11Keyring:
        """Generate the KEK in the token: AES-256, sensitive, non-extractable, encrypt/decrypt only.

        Refuses if a key with ``key_label`` already exists (never replaces a KEK).
        """
        lib, lock = load_module(module)
        with lock:
            cls._generate(lib, module, token_label, key_label, pin)
        return cls(module, token_label, key_label, pin)

    @staticmethod
    def _generate(lib: Any, module: Path, token_label: str, key_label: str, pin: str) -> None:
        token = _find_token(lib, module, token_label)
        session = _login(token, pin, rw=True, module=module)
        try:
            try:
                session.get_key(object_class=ObjectClass.SECRET_KEY, label=key_label)
            except p11e.NoSuchKey:
                pass
            except p11e.MultipleObjectsReturned:
                raise ConfigError(
                    f"keys labelled {key_label!r} already exist on {token_label!r}"
                ) from None
            else:
                raise ConfigError(
                    f"a key labelled {key_label!r} already exists on HSM token {token_label!r}; "
                    "refusing to create another",
                    hint="use it as it is, or pick a new key label",
                )
            try:
                session.generate_key(
                    KeyType.AES,
                    KEY_BITS,
                    # A random CKA_ID makes a re-created key distinguishable (see _kek_id).
                    id=os.urandom(16),
                    label=key_label,
                    store=True,
                    capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                    template={
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.WRAP: False,
                        Attribute.UNWRAP: False,
                        Attribute.SIGN: False,
                        Attribute.VERIFY: False,
                        Attribute.DERIVE: False,
                    },
                )
            except p11e.PKCS11Error as exc:
                raise ConfigError(
                    f"HSM token {token_label!r} could not generate an AES-256 key "
                    f"({type(exc).__name__})"
                ) from None
        finally:
            _close_quietly(session)

    def __repr__(self) -> str:
        return (
            f"Pkcs11Keyring(token={self.token_label!r}, key={self.key_label!r}, "
            f"kek_id={self._kek_id!r})"
        )

    def __enter__(self) -> Pkcs11Keyring:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def kek_id(self) -> str:
        return self._kek_id

    # -- the Keyring protocol --------------------------------------------------------------------
    def wrap(self, dek: bytes, aad: bytes) -> bytes:
        """version byte || 12-byte IV || AES-256-GCM(dek) with its 16-byte tag, made in the HSM."""
        if not dek:
            raise ValueError("cannot wrap an empty data key")
        version = bytes([_WRAP_VERSION])
        iv = os.urandom(IV_BYTES)
        params = GCMParams(iv, version + aad, TAG_BITS)

        def op(key: _GcmKey) -> bytes:
            return _as_bytes(key.encrypt(dek, mechanism=Mechanism.AES_GCM, mechanism_param=params))

        try:
            return version + iv + self._call(op)
        except p11e.PKCS11Error as exc:
            raise KeyringUnavailableError(
                f"HSM token {self.token_label!r} failed to wrap a data key under KEK "
                f"{self._kek_id} ({type(exc).__name__})"
            ) from None

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 1 + IV_BYTES + TAG_BITS // 8 + 1:
            raise VerificationError(f"wrapped data key is truncated ({len(blob)} bytes)")
        if blob[0] != _WRAP_VERSION:
            raise VerificationError(f"wrapped data key has unknown format version {blob[0]}")
        version, iv, body = blob[:1], blob[1 : 1 + IV_BYTES], blob[1 + IV_BYTES :]
        params = GCMParams(iv, version + aad, TAG_BITS)

        def op(key: _GcmKey) -> bytes:
            return _as_bytes(key.decrypt(body, mechanism=Mechanism.AES_GCM, mechanism_param=params))

        try:
            return self._call(op)
        except _SESSION_LOST as exc:
            raise KeyringUnavailableError(
                f"HSM token {self.token_label!r} is unavailable ({type(exc).__name__})",
                hint="check the HSM and its connection; requests succeed again once it is back",
            ) from None
        except p11e.PKCS11Error as exc:
            # Tokens report a wrong GCM tag differently (SoftHSM2: CKR_GENERAL_ERROR,
            # others CKR_ENCRYPTED_DATA_INVALID): any refusal to decrypt is a failure
            # to authenticate the blob.
            raise VerificationError(
                f"wrapped data key does not open under KEK {self._kek_id} ({type(exc).__name__})",
                hint="wrong KEK, the secret belongs to another path, or the stored bytes "
                "were altered",
            ) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            session, self._session = self._session, None
            _close_quietly(session)

    # -- internals ------------------------------------------------------------------------------
    def _connect(self) -> tuple[Session, _GcmKey, bytes, bytes]:
        token = _find_token(self._lib, self.module, self.token_label)
        session = _login(token, self._pin, rw=False, module=self.module)
        try:
            key = self._find_key(session)
            return session, key, bytes(token.serial), bytes(key[Attribute.ID] or b"")
        except BaseException:
            _close_quietly(session)
            raise

    def _find_key(self, session: Session) -> _GcmKey:
        where = f"key {self.key_label!r} on HSM token {self.token_label!r}"
        try:
            key = session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=self.key_label
            )
        except p11e.NoSuchKey:
            raise ConfigError(
                f"no AES key labelled {self.key_label!r} on HSM token {self.token_label!r}",
                hint="check keyring.key_label, or create the key with `veritee keyring create`",
            ) from None
        except p11e.MultipleObjectsReturned:
            raise ConfigError(
                f"several AES keys are labelled {self.key_label!r} on HSM token "
                f"{self.token_label!r}",
                hint="give the KEK a unique label",
            ) from None
        if not isinstance(key, EncryptMixin) or not isinstance(key, DecryptMixin):
            raise ConfigError(f"{where} cannot encrypt and decrypt")
        try:
            attrs = key.get_attributes(
                [Attribute.VALUE_LEN, Attribute.SENSITIVE, Attribute.EXTRACTABLE]
            )
        except p11e.PKCS11Error as exc:
            raise ConfigError(
                f"cannot read the attributes of {where} ({type(exc).__name__})"
            ) from None
        if attrs.get(Attribute.VALUE_LEN) != KEY_BITS // 8:
            raise ConfigError(f"{where} is not a 256-bit AES key")
        # A KEK that can be read out of the token gives none of an HSM's protection.
        if attrs.get(Attribute.SENSITIVE) is not True or attrs.get(Attribute.EXTRACTABLE):
            raise ConfigError(
                f"{where} is extractable or not sensitive: its value could leave the HSM",
                hint="create a new KEK with `veritee keyring create` (sensitive, "
                "non-extractable) and rotate to it",
            )
        return key

    def _self_test(self) -> None:
        """Fail at startup, not at the first secret, if the token cannot do AES-GCM."""
        probe = b"\0" * 32
        try:
            ok = self.unwrap(self.wrap(probe, b"veritee-self-test"), b"veritee-self-test") == probe
        except (KeyringUnavailableError, VerificationError) as exc:
            raise ConfigError(
                f"HSM token {self.token_label!r} cannot AES-GCM encrypt with key "
                f"{self.key_label!r}: {exc.message}",
                hint="the token must support CKM_AES_GCM with a caller-supplied 12-byte IV",
            ) from None
        if not ok:
            raise ConfigError(f"HSM token {self.token_label!r} returned a wrong AES-GCM result")

    def _call(self, op: Callable[[_GcmKey], T]) -> T:
        with self._lock:  # the module's lock (see _module_locks)
            if self._closed or self._session is None:
                raise KeyringUnavailableError(f"PKCS#11 keyring {self._kek_id} is closed")
            try:
                return op(self._key)
            except _SESSION_LOST:
                self._reconnect()
                return op(self._key)

    def _reconnect(self) -> None:
        _close_quietly(self._session)
        self._session = None
        try:
            session, key, serial, key_id = self._connect()
        except ConfigError as exc:
            raise KeyringUnavailableError(
                f"lost the session to HSM token {self.token_label!r} and could not open "
                f"another: {exc.message}"
            ) from None
        if _kek_id(serial, self.key_label, key_id) != self._kek_id:
            _close_quietly(session)
            # Never wrap under a different key than the one named in stored rows.
            raise KeyringUnavailableError(
                f"the key labelled {self.key_label!r} on {self.token_label!r} was replaced "
                f"while the service ran (KEK {self._kek_id} is gone)"
            )
        self._session, self._key = session, key


def _as_bytes(value: bytes | Iterator[bytes]) -> bytes:
    if isinstance(value, bytes):
        return value
    return b"".join(value)
