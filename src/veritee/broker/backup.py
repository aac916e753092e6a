"""Encrypted backup and restore of the whole service state.

The file holds every database row (resources stay sealed as stored) plus the
token-signing key, compressed and encrypted with AES-256-GCM under a fresh
data key that the KEK wraps. Restoring needs the same KEK (the key file or
the HSM), so a stolen backup reveals nothing, and the audit chain comes back
byte for byte (its hashes still verify).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary, Table, func, insert, select

from veritee.broker.keyring import Keyring
from veritee.errors import ConfigError, VerificationError
from veritee.store.db import Database
from veritee.store.models import Base, ConfigGenerationRow

MAGIC = b"VERITEE-BACKUP\x00\x01"
_AAD = b"veritee-backup/v1"
MAX_BACKUP_BYTES = 1 << 30


@dataclass(frozen=True)
class BackupSummary:
    tables: dict[str, int]
    kek_id: str
    created_at: str



def _backed_up_tables() -> list[Table]:
    """Every table but the config generation, which is derived (triggers keep it)."""
    return [t for t in Base.metadata.sorted_tables if t.name != ConfigGenerationRow.__tablename__]

def _encode(value: object) -> object:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode()}
    return value


def _decode(value: object) -> object:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(str(value["b64"]))
    return value


def create_backup(db: Database, keyring: Keyring, signer_pem: bytes, out: Path,
                  now: dt.datetime) -> BackupSummary:
    tables: dict[str, list[dict[str, object]]] = {}
    with db.read() as s:
        for table in _backed_up_tables():
            order = list(table.primary_key.columns)
            rows = s.execute(select(table).order_by(*order)).mappings()
            tables[table.name] = [{k: _encode(v) for k, v in row.items()} for row in rows]
    doc = {
        "version": 1,
        "created_at": now.isoformat(),
        "tables": tables,
        "token_signer_pem": signer_pem.decode(),
    }
    plaintext = zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)
    dek = AESGCM.generate_key(256)
    nonce = os.urandom(12)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext, _AAD)
    wrapped = keyring.wrap(dek, _AAD)
    header = json.dumps({"kek_id": keyring.kek_id, "created_at": now.isoformat(),
                         "counts": {k: len(v) for k, v in tables.items()}}).encode()
    blob = (MAGIC + len(header).to_bytes(4, "big") + header + len(wrapped).to_bytes(4, "big")
            + wrapped + nonce + ciphertext)
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.replace(tmp, out)
    return BackupSummary({k: len(v) for k, v in tables.items()}, keyring.kek_id, now.isoformat())


def _read(path: Path, keyring: Keyring) -> tuple[dict[str, object], str]:
    data = path.read_bytes()
    if len(data) > MAX_BACKUP_BYTES or not data.startswith(MAGIC):
        raise ConfigError(f"{path} is not a veritee backup")
    try:
        pos = len(MAGIC)
        hlen = int.from_bytes(data[pos : pos + 4], "big")
        header = json.loads(data[pos + 4 : pos + 4 + hlen])
        pos += 4 + hlen
        wlen = int.from_bytes(data[pos : pos + 4], "big")
        wrapped = data[pos + 4 : pos + 4 + wlen]
        pos += 4 + wlen
        nonce, ciphertext = data[pos : pos + 12], data[pos + 12 :]
    except (ValueError, IndexError):
        raise ConfigError(f"{path} is a damaged backup") from None
    if header.get("kek_id") != keyring.kek_id:
        raise ConfigError(
            f"{path} was made under KEK {header.get('kek_id')!r}, this deployment has "
            f"{keyring.kek_id!r}",
            hint="restore with the key-encryption key of the deployment that made the backup",
        )
    try:
        dek = keyring.unwrap(wrapped, _AAD)
        plaintext = AESGCM(dek).decrypt(nonce, ciphertext, _AAD)
    except (InvalidTag, VerificationError):
        raise VerificationError(f"{path} does not decrypt: damaged or not ours") from None
    doc = json.loads(zlib.decompress(plaintext, bufsize=1 << 20))
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ConfigError(f"{path}: unsupported backup version")
    return doc, str(header.get("created_at", ""))


def restore_backup(db: Database, keyring: Keyring, path: Path, *, force: bool = False
                   ) -> tuple[BackupSummary, bytes]:
    """Load every row into an empty database; returns the summary and the signer key PEM."""
    doc, created = _read(path, keyring)
    tables = doc["tables"]
    assert isinstance(tables, dict)
    with db.write() as s:
        for table in _backed_up_tables():
            existing = s.execute(select(func.count()).select_from(table)).scalar_one()
            if existing and not force:
                raise ConfigError(
                    f"table {table.name} is not empty: restore needs a fresh deployment",
                    hint="initialise a new data directory with the same KEK, then restore",
                )
        for table in reversed(_backed_up_tables()):
            if force:
                s.execute(table.delete())
        for table in _backed_up_tables():
            rows = tables.get(table.name, [])
            binary = {c.name for c in table.columns if isinstance(c.type, LargeBinary)}
            decoded = [{k: (_decode(v) if k in binary else v) for k, v in row.items()}
                       for row in rows]
            if decoded:
                s.execute(insert(table), decoded)
    signer = str(doc.get("token_signer_pem", "")).encode()
    counts = {k: len(v) for k, v in tables.items()}
    return BackupSummary(counts, keyring.kek_id, created), signer
