"""``veritee demo``: the whole loop on loopback with a temporary data directory.

A KBS stores a secret under a policy that expects one launch measurement; a
simulated SNP guest with that measurement attests and receives the secret; a
guest with another measurement and one replaying an old nonce are refused with
the reason. Exits 0 only if all of that happened.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.panel import Panel
from rich.table import Table

from veritee.appraisal.builtin import load as load_policy
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedSnpProvider
from veritee.broker.audit import iter_rows, verify_chain
from veritee.cli import output
from veritee.cli.service import audit_table
from veritee.clock import utcnow
from veritee.errors import VeriteeError
from veritee.server.admin_auth import AdminKeyPair, mint_admin_token
from veritee.server.app import create_app
from veritee.server.bootstrap import init_data_dir
from veritee.server.config import ServiceConfig
from veritee.store.db import Database
from veritee.tee.snp.sim import SIMULATOR_BANNER, SimulatedSnpPlatform


class DemoFailed(VeriteeError):
    code = "demo.failed"
    exit_code = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def run_demo() -> None:
    output.err.print(f"[bold yellow]{SIMULATOR_BANNER}[/]")
    with tempfile.TemporaryDirectory(prefix="veritee-demo-") as tmp:
        data_dir = Path(tmp) / "kbs"
        with output.out.status("initialising a data directory and starting the KBS..."):
            init_data_dir(data_dir)
            config = ServiceConfig.load(data_dir)
            app = create_app(config, trust_simulator=True)
            port = _free_port()
            server = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            deadline = time.monotonic() + 20
            while not server.started:
                if time.monotonic() > deadline:
                    raise DemoFailed("the KBS did not start")
                time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        try:
            _scenario(base, data_dir)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
        db = Database(config.db_url)
        rows = list(iter_rows(db))
        output.out.print(audit_table(rows))
        report = verify_chain(db)
        db.dispose()
        if not report.ok:
            raise DemoFailed(f"audit chain broken at {report.first_broken}: {report.reason}")
        output.out.print(f"[green]audit chain verified[/]: {report.records} records")
    output.out.print(
        "[bold green]demo complete: the right guest got the secret, "
        "the wrong ones were refused with the reason[/]"
    )


def _scenario(base: str, data_dir: Path) -> None:
    admin = AdminKeyPair.load(data_dir / "admin.key")
    token = mint_admin_token(admin.private_key, now=utcnow(), ttl=dt.timedelta(minutes=5))
    headers = {"Authorization": f"Bearer {token}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        platform = SimulatedSnpPlatform.generate(rsa_bits=2048)
    good = bytes.fromhex("5a" * 48)
    tcb = platform.tcb

    def admin_call(method: str, path: str, **kw: Any) -> None:
        r = httpx.request(method, f"{base}{path}", headers=headers, timeout=30, **kw)
        if r.status_code != 200:
            raise DemoFailed(f"admin {path} failed: {r.status_code} {r.text}")

    secret = b"demo-disk-key-0123456789abcdef"
    admin_call("POST", "/kbs/v0/resource/default/disk/key", content=secret)
    rvs = {
        "snp_launch_measurement": [good.hex()],
        "snp_bootloader": [tcb.bootloader],
        "snp_microcode": [tcb.microcode],
        "snp_snp_svn": [tcb.snp],
        "snp_tee_svn": [tcb.tee],
    }
    admin_call(
        "POST",
        "/kbs/v0/reference-value",
        json={
            "version": "0.1.0",
            "type": "sample",
            "payload": base64.b64encode(json.dumps(rvs).encode()).decode(),
        },
    )
    policy = load_policy("allow_simulated")
    admin_call(
        "POST",
        "/kbs/v0/resource-policy",
        json={"policy": base64.urlsafe_b64encode(policy.encode()).decode().rstrip("=")},
    )
    output.out.print(
        Panel.fit(
            f"secret stored at default/disk/key; expected measurement {good.hex()[:16]}...; "
            "resource policy: affirming (simulators allowed for this demo)",
            title="KBS ready",
        )
    )

    results = Table(title="what happened")
    results.add_column("guest")
    results.add_column("outcome")
    results.add_column("why", overflow="fold")

    # 1. The right guest.
    client = KbsClient(base)
    att = client.attest(SimulatedSnpProvider(platform, measurement=good))
    got = client.get_resource("default/disk/key")
    if got != secret:
        raise DemoFailed("the released secret differs from the stored one")
    claims = _jwt_claims(att.token)
    cpu0 = claims["submods"]["cpu0"]
    snp_claims = cpu0["ear.veraison.annotated-evidence"]["snp"]
    table = Table(title="token claims of the good guest (cpu0)")
    table.add_column("claim", style="cyan")
    table.add_column("value", overflow="fold")
    table.add_row("ear.status", cpu0["ear.status"])
    table.add_row("trust vector", json.dumps(cpu0["ear.trustworthiness-vector"]))
    for key in ("measurement", "reported_tcb_microcode", "policy_debug_allowed", "simulated"):
        table.add_row(f"snp.{key}", json.dumps(snp_claims[key]))
    table.add_row("token", att.token[:48] + "...")
    output.out.print(table)
    results.add_row(
        "measurement 5a5a…",
        "[green]secret released[/]",
        f"{len(got)} bytes decrypted from the JWE with the guest's key",
    )

    # 2. Another measurement.
    bad = KbsClient(base)
    try:
        bad.attest(SimulatedSnpProvider(platform, measurement=bytes(48)))
        bad.get_resource("default/disk/key")
    except KbsRefused as exc:
        results.add_row("measurement 0000…", "[red]refused[/]", exc.detail)
    else:
        raise DemoFailed("a guest with the wrong measurement received the secret")

    # 3. A replayed nonce (the good guest's old challenge, in a new session).
    replay = KbsClient(base)
    try:
        replay.attest(
            SimulatedSnpProvider(platform, measurement=good),
            nonce_override=att.nonce,
        )
    except KbsRefused as exc:
        results.add_row("replays an old nonce", "[red]refused[/]", exc.detail)
    else:
        raise DemoFailed("a replayed nonce was accepted")
    output.out.print(results)
