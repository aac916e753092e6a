"""Tenants: several owners on one deployment, each with its own admin keys and data.

First-party mode is the implicit tenant ``default`` at ``/kbs/v0``. A hosted
tenant ``acme`` lives at ``/t/acme/kbs/v0`` (a CoCo guest just uses the KBS URL
``https://kbs.example/t/acme``) and has its admin key pair in
``DATA_DIR/tenants/acme/``. Everything a tenant stores, and its audit chain, is
keyed by its name; its tokens carry its issuer and are refused elsewhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from veritee.errors import ConfigError
from veritee.server.admin_auth import AdminKeyPair
from veritee.store.models import DEFAULT_TENANT

TENANT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
TENANTS_DIR = "tenants"


def check_name(name: str) -> str:
    if not TENANT_NAME.match(name) or name == DEFAULT_TENANT:
        raise ConfigError(
            f"invalid tenant name {name!r}",
            hint="use 1-63 lowercase letters, digits and hyphens; 'default' is the first party",
        )
    return name


def discover(data_dir: Path) -> dict[str, tuple[Ed25519PublicKey, ...]]:
    """Tenants configured in ``DATA_DIR/tenants/<name>/admin.pub``."""
    root = data_dir / TENANTS_DIR
    found: dict[str, tuple[Ed25519PublicKey, ...]] = {}
    if not root.is_dir():
        return found
    for entry in sorted(root.iterdir()):
        pub = entry / "admin.pub"
        if entry.is_dir() and pub.is_file():
            found[check_name(entry.name)] = (AdminKeyPair.load_public(pub),)
    return found


def add(data_dir: Path, name: str) -> Path:
    """Create a tenant's admin key pair; refuses to overwrite one."""
    directory = data_dir / TENANTS_DIR / check_name(name)
    if (directory / "admin.pub").exists():
        raise ConfigError(f"tenant {name!r} already exists")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    AdminKeyPair.generate().save(directory / "admin.key", directory / "admin.pub")
    return directory


class TenantPaths:
    """ASGI middleware: ``/t/<tenant>/kbs/...`` is served as ``/kbs/...`` for that tenant."""

    def __init__(self, app: Any, tenants: frozenset[str]) -> None:
        self.app = app
        self.tenants = tenants

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/t/"):
            name, _, tail = scope["path"][3:].partition("/")
            if name not in self.tenants or not tail.startswith("kbs/"):
                await _not_found(send)
                return
            path = "/" + tail
            scope = {
                **scope,
                "path": path,
                "raw_path": path.encode(),
                "state": {**scope.get("state", {}), "veritee_tenant": name},
            }
        await self.app(scope, receive, send)


async def _not_found(send: Any) -> None:
    body = json.dumps(
        {
            "type": "https://github.com/confidential-containers/kbs/errors/InvalidRequestPath",
            "detail": "no such tenant",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def tenant_of(scope_state: Any) -> str:
    value = getattr(scope_state, "veritee_tenant", None)
    return value if isinstance(value, str) else DEFAULT_TENANT
