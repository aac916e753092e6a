"""Service configuration: a data directory with ``config.toml`` and key files."""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path

from veritee.errors import ConfigError

CONFIG_FILE = "config.toml"

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

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'veritee.db'}"

    @property
    def kek_path(self) -> Path:
        return self.data_dir / "kek.key"

    @property
    def token_key_path(self) -> Path:
        return self.data_dir / "token-signer.pem"

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
        )
