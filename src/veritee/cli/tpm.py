"""``veritee verify tpm`` and ``veritee eventlog show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from veritee.cli import output
from veritee.cli.verify import app as verify_app
from veritee.clock import parse_instant, utcnow
from veritee.errors import ConfigError, EvidenceFormatError, MismatchError, PolicyError
from veritee.tee.base import ClaimValue
from veritee.tee.tpm.claims import BootClaims, ImaClaims, TpmClaims
from veritee.tee.tpm.ekcert import EkTrustStore, load_ek_certificate, verify_ek_certificate
from veritee.tee.tpm.eventlog import EventLog, EventType
from veritee.tee.tpm.ima import parse_list
from veritee.tee.tpm.ima_policy import ImaPolicy
from veritee.tee.tpm.ima_verify import ImaState, check_boot_aggregate, verify_ima
from veritee.tee.tpm.pcrs import PcrBanks, parse_pcr_file
from veritee.tee.tpm.replay import Replay, compare, replay
from veritee.tee.tpm.structures import Attest, TpmAlg, TpmtSignature, hash_alg, hash_name
from veritee.tee.tpm.verify import load_attestation_key, verify_quote

eventlog_app = typer.Typer(help="Read TCG measured-boot event logs.", no_args_is_help=True)
MAX_INPUT_BYTES = 64 << 20


def _read(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise EvidenceFormatError(f"{what} {path} is larger than {MAX_INPUT_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc


def _ca_blobs(paths: list[Path]) -> list[bytes]:
    out: list[bytes] = []
    for p in paths:
        if p.is_dir():
            out.extend(_read(f, "CA certificate") for f in sorted(p.iterdir()) if f.is_file())
        else:
            out.append(_read(p, "CA certificate"))
    return out


def _bank(name: str) -> int:
    try:
        return hash_alg(name)
    except ValueError:
        raise ConfigError(f"unknown PCR bank {name!r} (sha1, sha256, sha384...)") from None


@verify_app.command("tpm")
def verify_tpm(
    quote: Annotated[Path, typer.Option("--quote", help="TPMS_ATTEST (tpm2_quote -m).")],
    signature: Annotated[
        Path, typer.Option("--signature", help="TPMT_SIGNATURE (tpm2_quote -s).")
    ],
    ak: Annotated[
        Path,
        typer.Option("--ak", help="AK: TPM2B_PUBLIC (tpm2_readpublic -o), TPMT_PUBLIC or PEM."),
    ],
    pcrs: Annotated[
        Path | None,
        typer.Option(help="PCR values: tpm2_quote -o (-F serialized or values) or JSON."),
    ] = None,
    eventlog: Annotated[
        Path | None, typer.Option(help="TCG event log (binary_bios_measurements).")
    ] = None,
    ima: Annotated[
        Path | None, typer.Option(help="IMA list (ascii or binary runtime measurements).")
    ] = None,
    ima_policy: Annotated[
        Path | None, typer.Option(help="IMA allowlist/denylist (keylime runtime policy JSON).")
    ] = None,
    ima_bank: Annotated[str, typer.Option(help="PCR bank the IMA aggregate is checked in.")] = "",
    nonce: Annotated[
        str | None,
        typer.Option(help="Expected extraData (hex); without it nothing binds freshness."),
    ] = None,
    ak_cert: Annotated[
        Path | None, typer.Option(help="AK or EK certificate to chain to --tpm-ca.")
    ] = None,
    tpm_ca: Annotated[
        list[Path] | None, typer.Option(help="TPM vendor CA certificates (file or directory).")
    ] = None,
    at: Annotated[str | None, typer.Option(help="Verification time for certificates.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Verify a TPM 2.0 quote, and the event log and IMA list it covers."""
    expected = None
    if nonce is not None:
        try:
            expected = bytes.fromhex(nonce.strip().removeprefix("0x"))
        except ValueError:
            raise ConfigError(f"--nonce must be hex, got {nonce!r}") from None
    attest = Attest.from_bytes(_read(quote, "quote"))
    sig = TpmtSignature.from_bytes(_read(signature, "signature"))
    akey = load_attestation_key(_read(ak, "AK"))
    q = attest.quote
    if q is None:
        raise EvidenceFormatError("--quote is not a TPM2_Quote (TPMS_ATTEST type QUOTE)")

    log: EventLog | None = None
    replayed: Replay | None = None
    if eventlog is not None:
        log = EventLog.from_bytes(_read(eventlog, "event log"))
        replayed = replay(log)
    if pcrs is not None:
        values = parse_pcr_file(_read(pcrs, "PCR file"), q.pcr_select)
    elif replayed is not None:
        values = replayed.pcr_banks()
    else:
        raise ConfigError("--pcrs is required (or --eventlog, when it covers every quoted PCR)")

    verified = verify_quote(attest, sig, akey, values, expected_nonce=expected)
    boot = None
    if log is not None and replayed is not None:
        boot = BootClaims.from_log(log, compare(replayed, verified.pcrs))
    ima_claims = None
    if ima is not None:
        ima_claims = _verify_ima(ima, ima_policy, ima_bank, verified.pcrs)
    cert_note = None
    if ak_cert is not None:
        if not tpm_ca:
            raise ConfigError("--ak-cert needs --tpm-ca (the TPM vendor CA bundle)")
        now = parse_instant(at) if at else utcnow()
        store = EkTrustStore.from_blobs(_ca_blobs(tpm_ca))
        vc = verify_ek_certificate(
            load_ek_certificate(_read(ak_cert, "certificate")), store, now,
            tpm_public=akey.public or akey.key,
        )
        cert_note = " -> ".join(c.subject.rfc4514_string() or "(empty)" for c in vc.chain)
    claims = TpmClaims.from_verified(verified, boot=boot, ima=ima_claims)
    out = claims.to_json()
    if ima_claims is not None and ima_claims.policy_violations:
        if json_out:
            output.print_json({"tee": "tpm", "claims": out})
        raise PolicyError(
            f"IMA policy denied {len(ima_claims.policy_violations)} entr"
            f"{'y' if len(ima_claims.policy_violations) == 1 else 'ies'}: "
            + "; ".join(ima_claims.policy_violations[:5]),
            hint="update the allowlist, or investigate the files named",
        )
    if json_out:
        output.print_json({"tee": "tpm", "claims": out})
        return
    main = {k: v for k, v in out.items() if k not in ("boot", "ima", "pcrs")}
    output.out.print(output.claims_table("TPM quote claims", main))
    if boot is not None:
        output.out.print(_boot_table(boot))
    if ima_claims is not None:
        output.out.print(output.claims_table("IMA", ima_claims.to_json()))
    if not verified.nonce_checked:
        output.err.print("[bold yellow]warning:[/] no --nonce given: the quote's freshness "
                         "was not checked")
    if akey.public is None:
        output.err.print("[bold yellow]warning:[/] AK given without its TPM public area: "
                         "its attributes (restricted, fixedTPM) were not checked")
    trust = f"; AK certificate chains to {cert_note}" if cert_note else (
        "; AK trust not established (no --ak-cert): allow-list it or activate a credential"
    )
    output.out.print(
        f"[bold green]verified[/]: quote by {akey.describe()} over "
        f"{q.pcr_select.describe()} ({verified.signature.describe()}){trust}"
    )


def _verify_ima(path: Path, policy_path: Path | None, bank_name: str, pcrs: PcrBanks) -> ImaClaims:
    entries = parse_list(_read(path, "IMA list"))
    if not entries:
        raise EvidenceFormatError("the IMA list is empty")
    banks = [_bank(bank_name)] if bank_name else [
        a for a in (TpmAlg.SHA1, TpmAlg.SHA256, TpmAlg.SHA384) if pcrs.get(a, 10) is not None
    ]
    if not banks or pcrs.get(banks[0], 10) is None:
        raise ConfigError("the quote does not cover PCR 10 in the IMA bank: quote PCR 10")
    alg = banks[0]
    verified = verify_ima(entries, state=ImaState.initial(alg), expected=pcrs.get(alg, 10))
    if not verified.entries:
        raise MismatchError(
            f"the quoted PCR 10 covers none of the {len(entries)} IMA entries",
            hint="IMA always measures boot_aggregate first: the list is not from this boot",
        )
    if entries[0].path == "boot_aggregate":
        bank = pcrs.bank(alg) if hash_name(alg) == entries[0].digest_alg else {}
        if bank and all(i in bank for i in range(8)):
            check_boot_aggregate(entries[0], bank, alg)
    appraisal = None
    if policy_path is not None:
        appraisal = ImaPolicy.from_json(_read(policy_path, "IMA policy")).evaluate(verified.entries)
    return ImaClaims.of(verified, appraisal)


def _boot_table(boot: BootClaims) -> Table:
    table = Table(title="Measured boot (from PCRs the quote confirmed)")
    table.add_column("claim", style="cyan", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("secure_boot", json.dumps(boot.secure_boot))
    table.add_row("verified PCRs", ", ".join(map(str, boot.verified_pcrs or ())))
    for name, entries in boot.secure_boot_db:
        table.add_row(name, f"{len(entries)} entries" + "".join(
            f"\n  {e.subject}" for e in entries if e.subject))
    for app in boot.boot_applications:
        table.add_row(f"application (PCR {app.pcr})",
                      f"{', '.join(app.paths) or '-'}  {dict(app.digests).get('sha256', '')}")
    for drv in boot.boot_drivers:
        table.add_row(f"driver (PCR {drv.pcr})", ", ".join(drv.paths) or "(option ROM)")
    table.add_row("kernel_cmdline", boot.kernel_cmdline or "-")
    table.add_row("exit_boot_services", json.dumps(boot.exit_boot_services))
    if boot.unbound_events:
        table.add_row("unbound events", ", ".join(f"#{n} {t}" for n, t, _ in boot.unbound_events))
    return table


def _event_summary(data: bytes, etype: int) -> str:
    if etype in (EventType.EV_EFI_ACTION, EventType.EV_ACTION, EventType.EV_IPL) or (
        data and all(32 <= b < 127 for b in data.rstrip(b"\0"))
    ):
        text = data.rstrip(b"\0").decode("ascii", "replace")
        if text.isprintable():
            return text[:120]
    return data[:24].hex() + ("..." if len(data) > 24 else "")


@eventlog_app.command("show")
def eventlog_show(
    file: Annotated[Path, typer.Argument(help="binary_bios_measurements")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Print the events of a TCG event log and the PCR values it replays to, per bank."""
    log = EventLog.from_bytes(_read(file, "event log"))
    replayed = replay(log)
    claims = BootClaims.from_log(log)
    if json_out:
        events: list[ClaimValue] = [
            {
                "number": e.number,
                "pcr": e.pcr,
                "type": e.type_name,
                "digests": {hash_name(a): d.hex() for a, d in e.digests},
                "data": e.data.hex(),
            }
            for e in log.events
        ]
        output.print_json({
            "format": log.format.value,
            "banks": [hash_name(a) for a in log.algorithms],
            "startup_locality": log.startup_locality,
            "events": events,
            "pcrs": replayed.pcr_banks().to_json(),
            "claims": claims.to_json(),
        })
        return
    table = Table(title=f"{file.name}: {log.format.value} log, {len(log.events)} events")
    table.add_column("#", justify="right")
    table.add_column("PCR", justify="right")
    table.add_column("type", style="cyan")
    table.add_column("digest", no_wrap=True)
    table.add_column("data", overflow="fold")
    show = TpmAlg.SHA256 if TpmAlg.SHA256 in log.algorithms else log.algorithms[0]
    for e in log.events:
        d = e.digest(show)
        table.add_row(str(e.number), str(e.pcr), e.type_name,
                      (d.hex()[:16] + "...") if d else "-", _event_summary(e.data, e.type))
    output.out.print(table)
    pcr_table = Table(title="Replayed PCRs (unverified until compared with a quote)")
    pcr_table.add_column("PCR", justify="right")
    for alg in replayed.algs:
        pcr_table.add_column(hash_name(alg), overflow="fold")
    for pcr in sorted(replayed.extended):
        pcr_table.add_row(str(pcr), *(replayed.value(a, pcr).hex() for a in replayed.algs))
    output.out.print(pcr_table)
    if log.startup_locality:
        output.out.print(f"PCR 0 starts at locality {log.startup_locality} (StartupLocality event)")
    output.out.print(f"secure boot: {json.dumps(claims.secure_boot)}; "
                     f"kernel command line: {claims.kernel_cmdline or '-'}")
