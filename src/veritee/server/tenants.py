"""Tenants: several owners on one deployment, each with its own admin keys and data.

First-party mode is the implicit tenant ``default`` at ``/kbs/v0``. A hosted
tenant ``acme`` lives at ``/t/acme/kbs/v0`` (a CoCo guest just uses the KBS URL
``https://kbs.example/t/acme``) and has its admin key pair in
``DATA_DIR/tenants/acme/``. Everything a tenant stores, and its audit chain, is
keyed by its name; its tokens carry its issuer and are refused elsewhere.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from veritee.errors import ConfigError
from veritee.server.admin_auth import AdminKeyPair
from veritee.store.models import DEFAULT_TENANT

log = logging.getLogger("veritee.server")
B = TypeVar("B")
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


class TenantRegistry(Generic[B]):
    """The tenants being served, each with its broker view and admin keys.

    ``veritee tenant add`` needs no restart: a request for a name not known yet
    looks at ``DATA_DIR/tenants`` again (at most once a second, so unknown names
    cannot turn into a directory scan per request). A tenant whose directory is
    gone stops being served at that rescan.
    """

    RESCAN_S = 1.0

    def __init__(
        self,
        data_dir: Path,
        default: B,
        default_keys: tuple[Ed25519PublicKey, ...],
        view: Callable[[str], B],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = data_dir
        self._default = (default, default_keys)
        self._view = view
        self._clock = clock
        self._lock = threading.Lock()
        self._served: dict[str, tuple[B, tuple[Ed25519PublicKey, ...]]] = {}
        self._scanned = float("-inf")
        self._scan(strict=True)

    def _scan(self, *, strict: bool) -> None:
        try:
            found = discover(self._dir)
        except ConfigError:
            if strict:
                raise
            log.warning("tenant directory has an invalid entry; keeping the tenants served")
            return
        served = {DEFAULT_TENANT: self._default}
        for name, keys in found.items():
            old = self._served.get(name)
            served[name] = (old[0] if old else self._view(name), keys)
        self._served = served  # swapped whole: readers never see a half-built map

    def known(self, name: str) -> bool:
        if name in self._served:
            return True
        with self._lock:
            if self._clock() - self._scanned >= self.RESCAN_S:
                self._scanned = self._clock()
                self._scan(strict=False)
        return name in self._served

    def broker(self, name: str) -> B:
        return self._served[name][0]

    def admin_keys(self, name: str) -> tuple[Ed25519PublicKey, ...]:
        return self._served[name][1]


class TenantPaths:
    """ASGI middleware: ``/t/<tenant>/kbs/...`` is served as ``/kbs/...`` for that tenant."""

    def __init__(self, app: Any, registry: TenantRegistry[Any]) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/t/"):
            name, _, tail = scope["path"][3:].partition("/")
            if name == DEFAULT_TENANT or not self.registry.known(name) or not tail.startswith(
                "kbs/"
            ):
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
