"""A real KBS (uvicorn on loopback) on a data directory the test configured itself.

``tests.kbs_fixtures.start_kbs`` initialises its own directory; the key tests need to
put a ``[keyring]`` or ``[token_signer]`` section in config.toml before the service
opens its keys, so this serves an existing directory and provisions it the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from tests.kbs_fixtures import Kbs, _free_port, _provision
from veritee.server.admin_auth import AdminKeyPair
from veritee.server.app import build_app
from veritee.server.bootstrap import open_service
from veritee.server.config import ServiceConfig
from veritee.tee.snp.sim import SimulatedSnpPlatform


@contextmanager
def serve_kbs(data_dir: Path, platform: SimulatedSnpPlatform) -> Iterator[Kbs]:
    """open_service on ``data_dir`` (its keys as configured), served and provisioned."""
    service = open_service(ServiceConfig.load(data_dir), trust_simulator=True)
    server = uvicorn.Server(
        uvicorn.Config(build_app(service), host="127.0.0.1", port=_free_port(), log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = server.config.port
        kbs = Kbs(
            f"http://127.0.0.1:{port}",
            data_dir,
            service,
            platform,
            AdminKeyPair.load(data_dir / "admin.key"),
        )
        _provision(kbs)
        yield kbs
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.db.dispose()
        for holder in (service.broker.keyring, service.broker.signer):
            members = getattr(holder, "keyrings", (holder,))
            for member in members:
                close = getattr(member, "close", None)
                if callable(close):
                    close()
