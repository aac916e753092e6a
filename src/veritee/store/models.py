"""Database schema. Times are integer UNIX seconds (portable across SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# First-party mode is one implicit tenant; a hosted deployment adds others.
DEFAULT_TENANT = "default"


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    """One KBS session: the challenge issued by /auth and, after /attest, the token."""

    __tablename__ = "kbs_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_TENANT, index=True)
    tee: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(128))
    hash_alg: Mapped[str] = mapped_column(String(16))
    selected_hash: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
    nonce_used: Mapped[bool] = mapped_column(Boolean, default=False)
    token: Mapped[str | None] = mapped_column(Text, nullable=True)


class ResourceRow(Base):
    """A secret, sealed under a data key that is wrapped by the KEK (never plaintext)."""

    __tablename__ = "resources"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True, server_default=DEFAULT_TENANT)
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(64))
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class PolicyRow(Base):
    __tablename__ = "policies"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True, server_default=DEFAULT_TENANT)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # attestation | resource
    policy_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    sha384: Mapped[str] = mapped_column(String(96))
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ReferenceValueRow(Base):
    __tablename__ = "reference_values"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True, server_default=DEFAULT_TENANT)
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    value_json: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    # Where the value came from (JSON) and the service's seal over name, value,
    # expiry and provenance (migration 0002); rows without them are refused.
    provenance_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)


class AuditRow(Base):
    """Append-only, hash-chained: hash = SHA-256(prev_hash || JCS(record fields))."""

    __tablename__ = "audit_log"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True, server_default=DEFAULT_TENANT)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    tee: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(512))
    evidence_digest: Mapped[str] = mapped_column(String(128))
    policy_hash: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(32))
    detail_json: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ConfigGenerationRow(Base):
    """One row whose number triggers bump on any change to policies or reference values.

    Replicas cache what appraisal reads and reload it when the number moves
    (migration 0004 installs the triggers).
    """

    __tablename__ = "config_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger)
