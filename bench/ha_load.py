"""High availability under load: one vs two replicas on PostgreSQL, and one on SQLite.

Each configuration runs the same full guest flows (auth -> attest -> resource,
simulated SNP evidence) for a fixed time with C concurrent guests spread over
the replicas; a guest's requests go to alternating replicas, so sessions and
nonces must be shared through the database. Prints a table, then

    RESULT ha_flows_per_s_two_replicas=<n> flows/s
    RESULT ha_p99_ms_two_replicas=<n> ms
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from kbs_load import (  # noqa: E402
    MEASUREMENT,
    SECRET,
    Http11,
    free_port,
    one_flow,
    raise_rate_limits,
)
from veritee.attester.providers import SimulatedSnpProvider  # noqa: E402
from veritee.broker.teekey import TeePublicKey  # noqa: E402
from veritee.server.admin_auth import AdminKeyPair, mint_admin_token  # noqa: E402
from veritee.server.bootstrap import init_data_dir  # noqa: E402
from veritee.tee.snp.sim import SimulatedSnpPlatform, load_platform, save_platform  # noqa: E402

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
DURATION = float(os.environ.get("BENCH_SECONDS", "12"))


def clients(ports: list[int], platform_dir: str, guests: int, until: float,
            out: mp.Queue) -> None:  # type: ignore[type-arg]
    provider = SimulatedSnpProvider(load_platform(Path(platform_dir)), measurement=MEASUREMENT)
    lat: list[float] = []
    errors: list[str] = []

    async def guest(g: int) -> None:
        i = g
        conns = [Http11("127.0.0.1", p) for p in ports]
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = TeePublicKey.from_public_key(key.public_key())
        while time.time() < until:
            t0 = time.perf_counter()
            try:
                # auth at one replica, attest at the next, resource back at the first
                await one_flow(conns[i % len(conns)], provider, key, jwk, [],
                               attest_at=conns[(i + 1) % len(conns)])
            except Exception as exc:  # counted and reported
                errors.append(f"{type(exc).__name__}: {exc}")
                conns = [Http11("127.0.0.1", p) for p in ports]
            else:
                lat.append(time.perf_counter() - t0)
            i += 1

    async def main() -> None:
        await asyncio.gather(*(guest(g) for g in range(guests)))

    asyncio.run(main())
    out.put((lat, errors))


def serve(data: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "veritee.cli.main", "serve", "--data-dir", str(data), "--port",
         str(port), "--trust-simulator"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")})


def wait_ready(base: str) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"{base} did not become ready")


def provision(base: str, data: Path, platform: SimulatedSnpPlatform) -> None:
    admin = AdminKeyPair.load(data / "admin.key")
    h = {"Authorization": "Bearer " + mint_admin_token(
        admin.private_key, now=dt.datetime.now(dt.UTC), ttl=dt.timedelta(minutes=30))}
    httpx.post(f"{base}/kbs/v0/resource/default/load/secret", content=SECRET,
               headers=h).raise_for_status()
    t = platform.tcb
    rvs = {"snp_launch_measurement": [MEASUREMENT.hex()], "snp_bootloader": [t.bootloader],
           "snp_microcode": [t.microcode], "snp_snp_svn": [t.snp], "snp_tee_svn": [t.tee]}
    httpx.post(f"{base}/kbs/v0/reference-value", headers=h, json={
        "version": "0.1.0", "type": "sample",
        "payload": base64.b64encode(json.dumps(rvs).encode()).decode()}).raise_for_status()
    policy = (REPO / "src/veritee/appraisal/policies/allow_simulated.rego").read_bytes()
    httpx.post(f"{base}/kbs/v0/resource-policy", headers=h, json={
        "policy": base64.urlsafe_b64encode(policy).decode().rstrip("=")}).raise_for_status()


def run(name: str, dirs: list[Path], platform: SimulatedSnpPlatform, platform_dir: Path
        ) -> tuple[str, float, float, int, int]:
    ports = [free_port() for _ in dirs]
    for d in dirs:
        raise_rate_limits(d)
    procs = [serve(d, p) for d, p in zip(dirs, ports, strict=True)]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for b in bases:
            wait_ready(b)
        provision(bases[0], dirs[0], platform)
        q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        warm = mp.Process(target=clients, args=(ports, str(platform_dir), 4, time.time() + 3, q))
        warm.start()
        _, warm_errors = q.get()
        warm.join()
        if warm_errors:
            sys.exit(f"{name}: warm-up failed: {warm_errors[0]}")
        until = time.time() + DURATION
        t0 = time.perf_counter()
        # One load-generator process: the guests are its asyncio tasks (see kbs_load.py).
        worker = mp.Process(target=clients,
                            args=(ports, str(platform_dir), CONCURRENCY, until, q))
        worker.start()
        lat, failures = q.get()
        worker.join()
        errors = len(failures)
        if failures:
            print(f"{name}: first error: {failures[0]}")
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
    return name, len(lat) / elapsed, p99, len(lat), errors


def main() -> None:
    warnings.simplefilter("ignore")
    from tests.pg import Postgres, _bin

    if not _bin("initdb"):
        sys.exit("PostgreSQL server binaries are needed (Debian package postgresql)")
    tmp = Path(tempfile.mkdtemp(prefix="veritee-ha-"))
    platform = SimulatedSnpPlatform.generate(rsa_bits=2048)
    save_platform(platform, tmp / "platform")
    pg_root = Path(tempfile.mkdtemp(prefix="veritee-ha-pg-"))
    pg = Postgres(pg_root)
    pg.start()
    results = []
    try:
        sqlite_dir = tmp / "sqlite"
        init_data_dir(sqlite_dir)
        results.append(run("1 replica, SQLite", [sqlite_dir], platform, tmp / "platform"))
        url1 = pg.createdb("one")
        one = tmp / "pg-one"
        init_data_dir(one, database=url1)
        results.append(run("1 replica, PostgreSQL", [one], platform, tmp / "platform"))
        url2 = pg.createdb("two")
        a, b = tmp / "pg-a", tmp / "pg-b"
        init_data_dir(a, database=url2)
        shutil.copytree(a, b)
        results.append(run("2 replicas, PostgreSQL", [a, b], platform, tmp / "platform"))
    finally:
        pg.stop("immediate")
        shutil.rmtree(pg_root, ignore_errors=True)
    table = Table(title=f"full flows, {CONCURRENCY} concurrent guests, {DURATION:.0f} s each "
                  "(2-core machine, clients included)")
    for col in ("configuration", "flows/s", "p99 ms", "flows", "errors"):
        table.add_column(col)
    for name, fps, p99, n, err in results:
        table.add_row(name, f"{fps:.1f}", f"{p99:.0f}", str(n), str(err))
    Console().print(table)
    _, fps2, p992, _, _ = results[-1]
    print(f"RESULT ha_flows_per_s_two_replicas={fps2:.1f} flows/s")
    print(f"RESULT ha_p99_ms_two_replicas={p992:.0f} ms")


if __name__ == "__main__":
    main()
