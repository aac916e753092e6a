"""Create a data directory (``veritee init``) and assemble a broker from one."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from veritee.appraisal.ear import TokenSigner
from veritee.broker.kbs import BrokerSettings, KeyBroker
from veritee.broker.keyring import FileKeyring, Keyring, MultiKeyring
from veritee.collateral import FetcherChain, HttpFetcher
from veritee.errors import ConfigError
from veritee.server.admin_auth import AdminKeyPair
from veritee.server.config import (
    CONFIG_FILE,
    DEFAULT_CONFIG,
    FileKeyringConfig,
    FileTokenSignerConfig,
    KeyringConfig,
    KeyringSpec,
    Pkcs11KeyringConfig,
    ServiceConfig,
    TokenSignerSpec,
    TpmKeyringConfig,
)
from veritee.store.db import Database


def init_data_dir(
    data_dir: Path, *, force: bool = False, database: str | None = None
) -> ServiceConfig:
    """Config, database, KEK, token key and an admin key pair; refuses to overwrite keys.

    ``database`` (a PostgreSQL URL) points the deployment at a shared database:
    every replica then runs on a copy of this directory (same keys and config).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    config_path = data_dir / CONFIG_FILE
    if config_path.exists() and not force:
        raise ConfigError(f"{data_dir} is already initialised", hint="use another directory")
    text = DEFAULT_CONFIG
    if database:
        if not database.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ConfigError(
                f"unsupported database URL {database!r}",
                hint="use postgresql://USER@HOST:PORT/DB (or omit --database for SQLite)",
            )
        text = text.replace('url = ""', f"url = {json.dumps(database)}")
    config_path.write_text(text)
    (data_dir / "collateral").mkdir(exist_ok=True)
    config = ServiceConfig.load(data_dir)
    if not config.kek_path.exists():
        FileKeyring.create(config.kek_path)
    if not config.token_key_path.exists():
        TokenSigner.generate().save_pem(config.token_key_path)
    admin_key, admin_pub = data_dir / "admin.key", data_dir / "admin.pub"
    if not admin_key.exists():
        AdminKeyPair.generate().save(admin_key, admin_pub)
    db = Database(config.db_url)
    db.migrate()
    db.dispose()
    return config


@dataclass
class Service:
    config: ServiceConfig
    db: Database
    broker: KeyBroker
    admin_keys: tuple[Ed25519PublicKey, ...]


def cache_dir() -> Path:
    env = os.environ.get("VERITEE_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "veritee"


def open_keyring_spec(spec: KeyringSpec) -> Keyring:
    """One KEK from its configuration; a missing key, token or wrong PIN is a ConfigError."""
    if isinstance(spec, FileKeyringConfig):
        return FileKeyring(spec.path)
    if isinstance(spec, TpmKeyringConfig):
        from veritee.broker.keyring_tpm import TpmSealedKeyring

        return TpmSealedKeyring.open(spec.tcti, spec.sealed_dir, pcrs=spec.pcrs or None)
    try:
        # Imported here so deployments with a file KEK need no PKCS#11 library.
        from veritee.broker.keyring_pkcs11 import Pkcs11Keyring, read_pin
    except ImportError:
        raise ConfigError(
            'keyring.type = "pkcs11" needs the python-pkcs11 package',
            hint="pip install python-pkcs11",
        ) from None
    pin = read_pin(spec.pin_env, token_label=spec.token_label)
    return Pkcs11Keyring.open(spec.module, spec.token_label, spec.key_label, pin)


def open_keyring(config: KeyringConfig) -> Keyring:
    """The configured KEK; with a previous one, both (sealing under the primary)."""
    primary = open_keyring_spec(config.primary)
    if config.previous is None:
        return primary
    return MultiKeyring(primary, open_keyring_spec(config.previous))


def describe_keyring_spec(spec: KeyringSpec) -> str:
    """Where a KEK lives, for people (no secret: paths and labels only)."""
    if isinstance(spec, Pkcs11KeyringConfig):
        return f"PKCS#11 key {spec.key_label!r} on token {spec.token_label!r} ({spec.module})"
    if isinstance(spec, TpmKeyringConfig):
        pcrs = f"PCRs {spec.pcrs}" if spec.pcrs else "PCRs as sealed"
        return f"TPM-sealed ({spec.tcti}, {pcrs}) in {spec.sealed_dir}"
    return f"file {spec.path}"


def open_token_signer(spec: TokenSignerSpec) -> TokenSigner:
    """The EAR token-signing key: a PEM file, or a key pair in a PKCS#11 token."""
    if isinstance(spec, FileTokenSignerConfig):
        return TokenSigner.load_pem(spec.path)
    try:
        from veritee.broker.keyring_pkcs11 import read_pin
        from veritee.broker.signer_pkcs11 import Pkcs11TokenSigner
    except ImportError:
        raise ConfigError(
            'token_signer.type = "pkcs11" needs the python-pkcs11 package',
            hint="pip install python-pkcs11",
        ) from None
    pin = read_pin(spec.pin_env, token_label=spec.token_label, section="token_signer")
    return Pkcs11TokenSigner.open(spec.module, spec.token_label, spec.key_label, pin)


def _close_keyring(keyring: Keyring) -> None:
    members = keyring.keyrings if isinstance(keyring, MultiKeyring) else (keyring,)
    for member in members:
        close = getattr(member, "close", None)
        if callable(close):
            close()


def open_service(config: ServiceConfig, *, trust_simulator: bool | None = None) -> Service:
    trust_sim = config.trust_simulator if trust_simulator is None else trust_simulator
    if config.production and trust_sim:
        raise ConfigError("--trust-simulator is refused: this deployment is configured production")
    db = Database(config.db_url)
    db.migrate()
    keyring = open_keyring(config.keyring_config)
    try:
        signer = open_token_signer(config.token_signer_config)
    except BaseException:
        _close_keyring(keyring)  # an HSM session or an unsealed KEK is not left behind
        raise
    fetcher = FetcherChain(HttpFetcher(cache_dir=cache_dir())) if config.fetch else None
    broker = KeyBroker(
        db=db,
        keyring=keyring,
        signer=signer,
        settings=BrokerSettings(
            session_timeout=config.session_timeout,
            token_ttl=config.token_ttl,
            trust_simulator=trust_sim,
            production=config.production,
            collateral_dirs=config.collateral_dirs,
            fetcher=fetcher,
        ),
    )
    admin_keys: list[Ed25519PublicKey] = []
    if not config.insecure_allow_all:
        for path in config.admin_public_keys:
            admin_keys.append(AdminKeyPair.load_public(path))
        if not admin_keys:
            raise ConfigError(
                "no admin public key configured: admin endpoints would be unusable",
                hint="set [admin] public_keys in config.toml",
            )
    return Service(config=config, db=db, broker=broker, admin_keys=tuple(admin_keys))
