"""``veritee sim ...``: simulated platforms for trying veritee without hardware."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer

from veritee.cli import output
from veritee.errors import ConfigError
from veritee.tee.snp.report import Product
from veritee.tee.snp.sim import DEFAULT_POLICY, SIMULATOR_BANNER, SimulatedSnpPlatform

app = typer.Typer(help="Simulated TEEs (test roots; never trusted unless you say so).")
snp_app = typer.Typer(help="Simulated AMD SEV-SNP platform.", no_args_is_help=True)
app.add_typer(snp_app, name="snp")


def _hex(value: str | None, size: int, what: str) -> bytes | None:
    if value is None:
        return None
    try:
        data = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"{what} must be hex") from None
    if len(data) > size:
        raise ConfigError(f"{what} is at most {size} bytes")
    return data


@snp_app.command("report")
def sim_snp_report(
    out: Annotated[Path, typer.Option(help="Directory to write report.bin, vcek.der, ...")],
    product: Annotated[str, typer.Option(help="Milan, Genoa or Turin.")] = "Milan",
    report_data: Annotated[str | None, typer.Option(help="REPORT_DATA (hex).")] = None,
    measurement: Annotated[str | None, typer.Option(help="MEASUREMENT (hex, 48 bytes).")] = None,
    debug: Annotated[bool, typer.Option(help="Set the debug-allowed policy bit.")] = False,
) -> None:
    """Write a signed simulated report with its VCEK and simulator ARK/ASK."""
    try:
        prod = Product.from_name(product)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    rd = _hex(report_data, 64, "--report-data") or b""
    meas = _hex(measurement, 48, "--measurement")
    if meas is not None and len(meas) != 48:
        raise ConfigError("--measurement must be exactly 48 bytes")
    output.err.print(f"[bold yellow]{SIMULATOR_BANNER}[/]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        platform = SimulatedSnpPlatform.generate(prod)
    policy = DEFAULT_POLICY | (1 << 19 if debug else 0)
    report = platform.report(report_data=rd, measurement=meas, policy=policy)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.bin").write_bytes(report.to_bytes())
    (out / "vcek.der").write_bytes(platform.vcek_der())
    (out / "cert_chain.pem").write_bytes(platform.cert_chain_pem())
    (out / "ark.pem").write_bytes(platform.ark_pem())
    output.out.print(
        f"wrote {out}/report.bin, vcek.der, cert_chain.pem and ark.pem (the simulator root); "
        f"verify with:\n  veritee verify snp {out}/report.bin --certs {out} "
        f"--trust-root {out}/ark.pem"
    )


@snp_app.command("evidence")
def sim_snp_evidence(
    report_data: Annotated[str, typer.Option(help="REPORT_DATA (hex, up to 64 bytes).")],
    measurement: Annotated[str | None, typer.Option(help="MEASUREMENT (hex, 48 bytes).")] = None,
    debug: Annotated[bool, typer.Option(help="Set the debug-allowed policy bit.")] = False,
) -> None:
    """Print the KBS primary_evidence JSON of a simulated SNP guest (as a CoCo guest sends it)."""
    import json
    import sys

    from veritee.attester.providers import SimulatedSnpProvider
    from veritee.server.bootstrap import cache_dir
    from veritee.tee.snp.sim import cached_platform

    rd = _hex(report_data, 64, "--report-data") or b""
    meas = _hex(measurement, 48, "--measurement")
    if meas is not None and len(meas) != 48:
        raise ConfigError("--measurement must be exactly 48 bytes")
    output.err.print(f"[bold yellow]{SIMULATOR_BANNER}[/]")
    provider = SimulatedSnpProvider(
        cached_platform(cache_dir()),
        measurement=meas if meas is not None else bytes(48),
        policy=DEFAULT_POLICY | (1 << 19 if debug else 0),
    )
    sys.stdout.write(json.dumps(provider.evidence(rd)) + "\n")
