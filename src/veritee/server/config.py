"""Service configuration: a data directory with ``config.toml`` and key files."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from veritee.errors import ConfigError

CONFIG_FILE = "config.toml"
KEK_FILE = "kek.key"

DEFAULT_CONFIG = """\
# veritee service configuration. Paths are relative to this directory.

[server]
host = "127.0.0.1"
port = 8080
# Plain HTTP is served on loopback only unless this is set (put TLS in front).
allow_http_non_loopback = false
# TLS: certificate chain and key (PEM). With both set, any address may be served.
tls_cert = ""
tls_key = ""
max_body_bytes = 2097152
# Per-client token bucket on /auth and /attest (requests per second, burst).
rate_limit_per_s = 100
rate_limit_burst = 200
# Browser origins allowed by CORS; empty = CORS off.
cors_origins = []
# Threads per worker for guest requests: -1 = automatic (none when everything is local:
# SQLite, key files, no fetching; else 2). Raise it for a database or HSM far away.
guest_threads = -1
# One JSON object per log line (with request ids); false = plain text.
json_logs = true

[kbs]
session_timeout_minutes = 5
token_ttl_minutes = 5
# Trustee answers 401 for every refusal; true gives 403 for policy denials and
# 404 for unknown resources.
strict_status_codes = false
# Production refuses simulated evidence even if trust_simulator is set.
production = false
trust_simulator = false

[collateral]
# Offline collateral directories (certificates, CRLs) loaded at start.
dirs = ["collateral"]
# Fetch missing collateral from the vendors (AMD KDS) through the on-disk cache.
fetch = false

[admin]
public_keys = ["admin.pub"]
# Never in production: accepts admin requests without a token.
insecure_allow_all = false

[database]
# Empty: SQLite file veritee.db in this directory.
url = ""
"""


@dataclass(frozen=True)
class FileKeyringConfig:
    """A 32-byte KEK in a file (mode 0600)."""

    path: Path


@dataclass(frozen=True)
class Pkcs11KeyringConfig:
    """An AES-256 KEK in a PKCS#11 token; the PIN is read from ``pin_env`` at startup."""

    module: Path
    token_label: str
    key_label: str
    pin_env: str


@dataclass(frozen=True)
class TpmKeyringConfig:
    """A KEK sealed to the TPM at ``tcti`` (blobs in ``sealed_dir``), optionally to PCRs."""

    tcti: str
    sealed_dir: Path
    pcrs: str = ""  # empty: whatever the KEK was sealed to (the sealed object decides)


KeyringSpec = FileKeyringConfig | Pkcs11KeyringConfig | TpmKeyringConfig


@dataclass(frozen=True)
class KeyringConfig:
    """The ``[keyring]`` section: the KEK that seals, and during a rotation the one before it."""

    primary: KeyringSpec
    previous: KeyringSpec | None = None


_KEYRING_KEYS = frozenset(
    {"type", "path", "module", "token_label", "key_label", "pin_env", "previous"}
    | {"tcti", "sealed_dir", "pcrs"}
)
# Which keys belong to which keyring type (a key of another type is refused).
_TYPE_KEYS = {
    "file": frozenset({"path"}),
    "pkcs11": frozenset({"module", "token_label", "key_label", "pin_env"}),
    "tpm": frozenset({"tcti", "sealed_dir", "pcrs"}),
}
DEFAULT_TCTI = "device:/dev/tpmrm0"
TPM_SEALED_DIR = "tpm-kek"
_PIN_KEYS = frozenset({"pin", "user_pin", "so_pin", "password"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _keyring_spec(sec: Mapping[str, object], where: str, data_dir: Path) -> KeyringSpec:
    if _PIN_KEYS & sec.keys():
        # Say which key, never its value: the value is the secret.
        raise ConfigError(
            f"{where} holds a PIN ({', '.join(sorted(_PIN_KEYS & sec.keys()))}); "
            "PINs never go in config.toml",
            hint='remove it and set pin_env = "NAME" to an environment variable holding the PIN',
        )
    unknown = sorted(set(sec) - _KEYRING_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}",
            hint="known: " + ", ".join(sorted(_KEYRING_KEYS)),
        )

    kind = sec.get("type", "file")

    def text(key: str, default: str | None) -> str:
        value = sec.get(key, default)
        if value is None:
            raise ConfigError(f"{where}: {key} is required for type = {kind!r}")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
        return value

    if isinstance(kind, str) and kind in _TYPE_KEYS:
        for other, keys in _TYPE_KEYS.items():
            extra = sorted(set(sec) & keys) if other != kind else []
            if extra:
                raise ConfigError(
                    f"{where}: {', '.join(extra)} (settings that only apply to type = "
                    f'"{other}", not "{kind}")'
                )
    if kind == "file":
        return FileKeyringConfig(data_dir / text("path", KEK_FILE))
    if kind == "tpm":
        tcti = text("tcti", DEFAULT_TCTI)
        if not tcti or any(ord(c) < 0x20 for c in tcti):
            raise ConfigError(
                f"{where}: tcti must be a TCTI specification",
                hint='e.g. tcti = "device:/dev/tpmrm0" or "swtpm:host=127.0.0.1,port=2321"',
            )
        return TpmKeyringConfig(
            tcti=tcti,
            sealed_dir=data_dir / text("sealed_dir", TPM_SEALED_DIR),
            pcrs=text("pcrs", ""),
        )
    if kind == "pkcs11":
        pin_env = text("pin_env", "VERITEE_HSM_PIN")
        if not _ENV_NAME.fullmatch(pin_env):
            raise ConfigError(
                f"{where}: pin_env must be the name of an environment variable",
                hint='e.g. pin_env = "VERITEE_HSM_PIN" (the variable holds the PIN)',
            )
        token_label, key_label = text("token_label", None), text("key_label", "veritee-kek")
        if not token_label or not key_label:
            raise ConfigError(f"{where}: token_label and key_label must not be empty")
        return Pkcs11KeyringConfig(
            module=data_dir / text("module", None),
            token_label=token_label,
            key_label=key_label,
            pin_env=pin_env,
        )
    raise ConfigError(f'{where}: type must be "file", "pkcs11" or "tpm", not {kind!r}')


def parse_keyring(sec: Mapping[str, object], data_dir: Path, where: str) -> KeyringConfig:
    """``[keyring]``: the primary KEK, and ``previous`` (a file path or a table) if rotating."""
    primary = _keyring_spec({k: v for k, v in sec.items() if k != "previous"}, where, data_dir)
    previous = sec.get("previous", "")
    if isinstance(previous, str):
        return KeyringConfig(primary, FileKeyringConfig(data_dir / previous) if previous else None)
    if isinstance(previous, dict):
        if "previous" in previous:
            raise ConfigError(f"{where}.previous cannot have a previous KEK of its own")
        return KeyringConfig(primary, _keyring_spec(previous, f"{where}.previous", data_dir))
    raise ConfigError(f"{where}: previous must be a KEK file path or a keyring.previous table")


@dataclass(frozen=True)
class FileTokenSignerConfig:
    """The EAR token-signing key as a PEM file (mode 0600): the default, ``token-signer.pem``."""

    path: Path


@dataclass(frozen=True)
class Pkcs11TokenSignerConfig:
    """An EC P-256 token-signing key in a PKCS#11 token; the PIN is read from ``pin_env``."""

    module: Path
    token_label: str
    key_label: str
    pin_env: str


TokenSignerSpec = FileTokenSignerConfig | Pkcs11TokenSignerConfig
SIGNER_KEY_FILE = "token-signer.pem"
_SIGNER_KEYS = frozenset({"type", "path", "module", "token_label", "key_label", "pin_env"})


def parse_token_signer(sec: Mapping[str, object], data_dir: Path, where: str) -> TokenSignerSpec:
    """``[token_signer]``: ``type = "file"`` (``path``) or ``"pkcs11"`` (module, labels, PIN)."""
    if _PIN_KEYS & sec.keys():
        raise ConfigError(
            f"{where} holds a PIN ({', '.join(sorted(_PIN_KEYS & sec.keys()))}); "
            "PINs never go in config.toml",
            hint='remove it and set pin_env = "NAME" to an environment variable holding the PIN',
        )
    unknown = sorted(set(sec) - _SIGNER_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}",
            hint="known: " + ", ".join(sorted(_SIGNER_KEYS)),
        )
    kind = sec.get("type", "file")

    def text(key: str, default: str | None) -> str:
        value = sec.get(key, default)
        if value is None:
            raise ConfigError(f"{where}: {key} is required for type = {kind!r}")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
        return value

    if kind == "file":
        extra = sorted(set(sec) & _TYPE_KEYS["pkcs11"])
        if extra:
            raise ConfigError(f'{where}: {", ".join(extra)} only apply to type = "pkcs11"')
        return FileTokenSignerConfig(data_dir / text("path", SIGNER_KEY_FILE))
    if kind == "pkcs11":
        if "path" in sec:
            raise ConfigError(f'{where}: path only applies to type = "file"')
        pin_env = text("pin_env", "VERITEE_HSM_PIN")
        if not _ENV_NAME.fullmatch(pin_env):
            raise ConfigError(
                f"{where}: pin_env must be the name of an environment variable",
                hint='e.g. pin_env = "VERITEE_HSM_PIN" (the variable holds the PIN)',
            )
        token_label = text("token_label", None)
        key_label = text("key_label", "veritee-token-signer")
        if not token_label or not key_label:
            raise ConfigError(f"{where}: token_label and key_label must not be empty")
        return Pkcs11TokenSignerConfig(
            module=data_dir / text("module", None),
            token_label=token_label,
            key_label=key_label,
            pin_env=pin_env,
        )
    raise ConfigError(f'{where}: type must be "file" or "pkcs11", not {kind!r}')


def _guest_threads(value: object, path: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= 256:
        raise ConfigError(f"{path}: server.guest_threads must be -1 (automatic) or 0..256")
    return value


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    allow_http_non_loopback: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_body_bytes: int = 2 * 1024 * 1024
    rate_limit_per_s: float = 100.0
    rate_limit_burst: int = 200
    cors_origins: tuple[str, ...] = ()
    guest_threads: int = -1  # -1: automatic (server/guest.py)
    json_logs: bool = True
    session_timeout: dt.timedelta = dt.timedelta(minutes=5)
    token_ttl: dt.timedelta = dt.timedelta(minutes=5)
    strict_status_codes: bool = False
    production: bool = False
    trust_simulator: bool = False
    collateral_dirs: tuple[Path, ...] = ()
    fetch: bool = False
    admin_public_keys: tuple[Path, ...] = ()
    insecure_allow_all: bool = False
    database_url: str = ""
    keyring: KeyringConfig | None = None
    token_signer: TokenSignerSpec | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'veritee.db'}"

    @property
    def kek_path(self) -> Path:
        return self.data_dir / KEK_FILE

    @property
    def keyring_config(self) -> KeyringConfig:
        """``[keyring]``, or without one the file KEK ``kek.key`` (the behaviour before it)."""
        return self.keyring or KeyringConfig(FileKeyringConfig(self.kek_path))

    @property
    def token_key_path(self) -> Path:
        """The token-signing key file (``[token_signer] path``; else ``token-signer.pem``)."""
        if isinstance(self.token_signer, FileTokenSignerConfig):
            return self.token_signer.path
        return self.data_dir / SIGNER_KEY_FILE

    @property
    def token_signer_config(self) -> TokenSignerSpec:
        """``[token_signer]``, or without one the PEM file ``token-signer.pem`` (as before it)."""
        return self.token_signer or FileTokenSignerConfig(self.token_key_path)

    @classmethod
    def load(cls, data_dir: Path) -> ServiceConfig:
        path = data_dir / CONFIG_FILE
        try:
            doc = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"{path} not found", hint=f"create the data directory with: veritee init {data_dir}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None

        def section(name: str) -> dict[str, object]:
            value = doc.get(name, {})
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [{name}] must be a table")
            return value

        def flag(sec: dict[str, object], key: str, default: bool) -> bool:
            value = sec.get(key, default)
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: {key} must be true or false")
            return value

        def number(sec: dict[str, object], key: str, default: float) -> float:
            value = sec.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{path}: {key} must be a positive number")
            return float(value)

        def text(sec: dict[str, object], key: str, default: str) -> str:
            value = sec.get(key, default)
            if not isinstance(value, str):
                raise ConfigError(f"{path}: {key} must be a string")
            return value

        def optional_path(sec: dict[str, object], key: str) -> Path | None:
            value = text(sec, key, "")
            return (data_dir / value) if value else None

        def strings(sec: dict[str, object], key: str) -> tuple[str, ...]:
            value = sec.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: {key} must be a list of strings")
            return tuple(value)

        server, kbs, col, admin, db = (
            section(n) for n in ("server", "kbs", "collateral", "admin", "database")
        )

        def paths(value: object, key: str) -> tuple[Path, ...]:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{path}: {key} must be a list of paths")
            return tuple((data_dir / v) for v in value)

        return cls(
            data_dir=data_dir,
            host=text(server, "host", "127.0.0.1"),
            port=int(number(server, "port", 8080)),
            allow_http_non_loopback=flag(server, "allow_http_non_loopback", False),
            tls_cert=optional_path(server, "tls_cert"),
            tls_key=optional_path(server, "tls_key"),
            max_body_bytes=int(number(server, "max_body_bytes", 2 << 20)),
            rate_limit_per_s=number(server, "rate_limit_per_s", 100),
            rate_limit_burst=int(number(server, "rate_limit_burst", 200)),
            cors_origins=strings(server, "cors_origins"),
            guest_threads=_guest_threads(server.get("guest_threads", -1), path),
            json_logs=flag(server, "json_logs", True),
            session_timeout=dt.timedelta(minutes=number(kbs, "session_timeout_minutes", 5)),
            token_ttl=dt.timedelta(minutes=number(kbs, "token_ttl_minutes", 5)),
            strict_status_codes=flag(kbs, "strict_status_codes", False),
            production=flag(kbs, "production", False),
            trust_simulator=flag(kbs, "trust_simulator", False),
            collateral_dirs=tuple(p for p in paths(col.get("dirs", []), "dirs") if p.is_dir()),
            fetch=flag(col, "fetch", False),
            admin_public_keys=paths(admin.get("public_keys", []), "public_keys"),
            insecure_allow_all=flag(admin, "insecure_allow_all", False),
            database_url=text(db, "url", ""),
            keyring=(
                parse_keyring(section("keyring"), data_dir, f"{path}: keyring")
                if "keyring" in doc
                else None
            ),
            token_signer=(
                parse_token_signer(section("token_signer"), data_dir, f"{path}: token_signer")
                if "token_signer" in doc
                else None
            ),
        )
