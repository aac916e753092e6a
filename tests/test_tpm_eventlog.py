"""TCG event logs: every real log in the corpus parses, round-trips and replays to the PCR
values its manifest states; quirks are handled as the PC Client spec says; a log that
does not match its quote is refused naming the PCR and event; claims come only from
bound events; keylime's parser (tpm2_eventlog) agrees where it is right."""

from __future__ import annotations

import base64
import hashlib
import logging
import struct
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tpm_corpus import LOG_IDS, LOGS, QUOTES, TPM, LogSample, QuoteSample
from veritee.errors import EvidenceFormatError, MismatchError
from veritee.tee.tpm.claims import BootClaims
from veritee.tee.tpm.eventlog import (
    Event,
    EventLog,
    EventType,
    LogFormat,
    UefiVariableData,
    parse_startup_locality,
)
from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.replay import ReplayMismatchError, compare, replay
from veritee.tee.tpm.structures import Attest, TpmAlg, TpmtSignature, hash_alg
from veritee.tee.tpm.verify import load_attestation_key, verify_quote


def _log(name: str) -> EventLog:
    assert TPM is not None
    return EventLog.from_bytes((TPM / name / "binary_bios_measurements").read_bytes())


@pytest.mark.parametrize("sample", LOGS, ids=LOG_IDS)
def test_corpus_log_parses_round_trips_and_replays_to_stated_pcrs(sample: LogSample) -> None:
    raw = sample.path.read_bytes()
    log = EventLog.from_bytes(raw)
    assert log.to_bytes() == raw
    r = replay(log)
    for bank, values in sample.expected.items():
        alg = hash_alg(bank)
        got = {pcr: r.value(alg, pcr).hex() for pcr in values}
        assert got == values, bank
    # The quoted form: comparing the stated PCRs passes, and names what it checked.
    quoted = PcrBanks.from_mapping({
        hash_alg(b): {p: bytes.fromhex(v) for p, v in vals.items()}
        for b, vals in sample.expected.items()
    })
    match = compare(r, quoted)
    assert {p for _, p in match.matched} == {
        p for vals in sample.expected.values() for p in vals}


@pytest.mark.parametrize("sample", LOGS, ids=LOG_IDS)
def test_trailing_zero_padding_is_tolerated_and_kept(sample: LogSample) -> None:
    raw = sample.path.read_bytes() + bytes(37)
    log = EventLog.from_bytes(raw)
    assert log.padding == 37 and log.to_bytes() == raw


@pytest.mark.skipif(TPM is None, reason="corpus absent")
def test_startup_locality_3_sets_pcr0_and_its_absence_is_diagnosed() -> None:
    for name in ("eventlog-gdc-host", "eventlog-glinux-laptop", "eventlog-lenovo-thinkpad-keylime"):
        log = _log(name)
        assert log.startup_locality == 3
        ev = next(e for e in log.events if parse_startup_locality(e.data) is not None)
        assert ev.type == EventType.EV_NO_ACTION and ev.pcr == 0
    log = _log("eventlog-gdc-host")
    sample = next(s for s in LOGS if s.name == "eventlog-gdc-host")
    good = replay(log)
    assert good.value(TpmAlg.SHA256, 0).hex() == sample.expected["sha256"][0]
    # Without the StartupLocality event PCR 0 would start at zero: it no longer matches,
    # and the error says the locality is what differs.
    stripped = replace(log, events=tuple(
        e for e in log.events if parse_startup_locality(e.data) is None))
    assert stripped.startup_locality is None
    quoted = PcrBanks.from_mapping({TpmAlg.SHA256: {0: good.value(TpmAlg.SHA256, 0)}})
    with pytest.raises(ReplayMismatchError, match="locality 3") as err:
        compare(replay(stripped), quoted)
    assert err.value.pcr == 0


@pytest.mark.skipif(TPM is None, reason="corpus absent")
def test_legacy_sha1_logs_extend_every_event_in_sha1() -> None:
    for name in ("eventlog-debian10-gce-legacy-sha1", "eventlog-ebs-event-missing-legacy",
                 "eventlog-option-rom-legacy"):
        log = _log(name)
        assert log.format is LogFormat.LEGACY_SHA1 and log.spec_id is None
        assert log.algorithms == (TpmAlg.SHA1,)
        with pytest.raises(EvidenceFormatError, match="no sha256 bank"):
            replay(log, [TpmAlg.SHA256])
    agile = _log("eventlog-rhel8-gce")
    assert agile.format is LogFormat.CRYPTO_AGILE and agile.header is not None
    assert agile.algorithms == (TpmAlg.SHA1, TpmAlg.SHA256, TpmAlg.SHA384)


@pytest.mark.skipif(TPM is None, reason="corpus absent")
def test_missing_exit_boot_services_action_and_option_roms() -> None:
    # Firmware that never measures "Exit Boot Services Invocation" (EV_EFI_ACTION): the log
    # is complete as logged; the claim says the event is absent.
    for name in ("eventlog-ebs-event-missing-legacy", "eventlog-debian10-gce-legacy-sha1"):
        claims = BootClaims.from_log(_log(name))
        assert claims.exit_boot_services is False
        assert all(a != "Exit Boot Services Invocation" for _, a in claims.efi_actions)
    assert BootClaims.from_log(_log("eventlog-rhel8-gce")).exit_boot_services is True
    # An option ROM is an EV_EFI_BOOT_SERVICES_DRIVER in PCR 2: a driver, not a boot app.
    rom = BootClaims.from_log(_log("eventlog-option-rom-legacy"))
    assert [d.pcr for d in rom.boot_drivers] == [2]
    assert all(a.pcr == 4 for a in rom.boot_applications)
    assert rom.boot_applications[0].paths == ("\\EFI\\Microsoft\\Boot\\bootmgfw.efi",)


@pytest.mark.skipif(TPM is None, reason="corpus absent")
def test_boot_claims_from_real_logs() -> None:
    snp = BootClaims.from_log(_log("eventlog-ubuntu2404-gce-sevsnp"))
    assert snp.kernel_cmdline == (
        "/vmlinuz-6.8.0-1010-gcp root=PARTUUID=8270f3c9-b4e4-4345-80ee-5a62db7ebf3f ro "
        "console=ttyS0,115200 panic=-1")
    assert snp.secure_boot is False
    assert [a.paths for a in snp.boot_applications] == [
        ("\\EFI\\ubuntu\\shimx64.efi",), ("\\EFI\\ubuntu\\grubx64.efi",)]
    rhel = BootClaims.from_log(_log("eventlog-rhel8-gce"))
    assert rhel.secure_boot is True
    db = dict(rhel.secure_boot_db)
    assert any("Microsoft Corporation UEFI CA 2011" in (e.subject or "") for e in db["db"])
    assert len(db["dbx"]) == 186
    assert all(len(e.hash or "") == 64 for e in db["dbx"] if e.type == "sha256")
    assert any((e.subject or "").startswith("CN=Canonical Ltd. Secure Boot Signing")
               for e in db["dbx"] if e.type == "x509")
    assert rhel.kernel_cmdline is not None and rhel.kernel_cmdline.startswith("(hd0,gpt2)/boot/")
    assert "set pager=1" in rhel.grub_commands  # RHEL's "grub_cmd " prefix, NUL hashed
    assert [p for p, err in rhel.separators if err] == []
    assert {p for p, _ in rhel.separators} >= set(range(8))
    deb = BootClaims.from_log(_log("eventlog-debian10-gce-legacy-sha1"))
    assert ("Shim", "CN=Debian Secure Boot CA") in {
        (n, e.subject) for n, e in deb.authorities}
    # Arch's firmware measured SecureBoot with no data at all: that is "off", not an error.
    arch = _log("eventlog-arch-linux-workstation")
    sb = [UefiVariableData.from_bytes(e.data) for e in arch.events
          if e.type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG and e.pcr == 7]
    assert [v.data for v in sb if v.name == "SecureBoot"] == [b""]
    assert BootClaims.from_log(arch).secure_boot is False
    for s in LOGS:
        claims = BootClaims.from_log(EventLog.from_bytes(s.path.read_bytes()))
        assert claims.unbound_events == (() if s.name != "eventlog-gdc-host" else (
            (3, "EV_S_CRTM_VERSION", 0),))  # the source states GDC's SCRTM event is invalid


def _flip_digest(log: EventLog, number: int, alg: int) -> EventLog:
    events = []
    for e in log.events:
        if e.number == number:
            digests = tuple((a, bytes([d[0] ^ 1]) + d[1:]) if a == alg else (a, d)
                            for a, d in e.digests)
            e = replace(e, digests=digests)
        events.append(e)
    return replace(log, events=tuple(events))


@pytest.mark.parametrize("q", [q for q in QUOTES if q.event_log], ids=[
    q.name for q in QUOTES if q.event_log])
def test_quote_and_replay_match_and_tampering_names_pcr_and_event(q: QuoteSample) -> None:
    assert q.event_log is not None
    log = EventLog.from_bytes(q.event_log)
    verified = verify_quote(Attest.from_bytes(q.attest), TpmtSignature.from_bytes(q.signature),
                            load_attestation_key(q.ak), q.pcrs, expected_nonce=b"")
    match = compare(replay(log), verified.pcrs)
    assert {0, 4, 7}.issubset(match.matched_pcrs)
    alg = hash_alg(q.bank)
    claims = BootClaims.from_log(log, match)
    assert claims.verified_pcrs is not None and claims.secure_boot is True
    # A separator digest altered: PCR and event are named (the data no longer hashes to it).
    sep = next(e for e in log.events if e.type == EventType.EV_SEPARATOR and e.pcr == 7)
    with pytest.raises(ReplayMismatchError) as err:
        compare(replay(_flip_digest(log, sep.number, alg)), verified.pcrs)
    assert (err.value.pcr, err.value.event) == (7, replace(sep, digests=err.value.event.digests))
    assert f"event #{sep.number}" in str(err.value)
    # An event the TPM never saw, appended to PCR 4: named as the first unmeasured one.
    fake = Event(len(log.events) + 1, 0, 4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION,
                 tuple((a, hashlib.new(n, b"evil").digest()) for a, n in
                       ((a, {TpmAlg.SHA1: "sha1", TpmAlg.SHA256: "sha256",
                             TpmAlg.SHA384: "sha384"}[a]) for a in log.algorithms)), b"")
    with pytest.raises(ReplayMismatchError, match="never measured") as err:
        compare(replay(replace(log, events=(*log.events, fake))), verified.pcrs)
    assert err.value.pcr == 4 and err.value.event == fake
    # An event removed from PCR 7: the PCR is named, with the events that extend it.
    auth = [e for e in log.events if e.pcr == 7]
    with pytest.raises(ReplayMismatchError) as err:
        compare(replay(replace(log, events=tuple(e for e in log.events if e is not auth[-1]))),
                verified.pcrs)
    assert err.value.pcr == 7
    # Claims: data altered but digest kept (replay still matches) is not believed.
    sb = next(e for e in log.events if e.type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG
              and UefiVariableData.from_bytes(e.data).name == "SecureBoot")
    forged_data = sb.data[:-1] + bytes([sb.data[-1] ^ 1])
    forged = replace(log, events=tuple(replace(e, data=forged_data) if e is sb else e
                                       for e in log.events))
    forged_claims = BootClaims.from_log(forged, compare(replay(forged), verified.pcrs))
    assert forged_claims.secure_boot is None
    assert (sb.number, "EV_EFI_VARIABLE_DRIVER_CONFIG", 7) in forged_claims.unbound_events
    # Events of PCRs the quote did not confirm contribute nothing.
    narrow = PcrBanks.from_mapping({alg: {4: verified.pcrs.get(alg, 4) or b""}})
    only4 = BootClaims.from_log(log, compare(replay(log), narrow))
    assert only4.secure_boot is None and only4.boot_applications


@pytest.mark.skipif(TPM is None, reason="corpus absent")
def test_wrong_bank_and_uncovered_quotes_are_refused() -> None:
    log = _log("eventlog-debian10-gce-legacy-sha1")
    with pytest.raises(MismatchError, match="share no PCR bank"):
        compare(replay(log), PcrBanks.from_mapping({TpmAlg.SHA256: {0: bytes(32)}}))
    with pytest.raises(MismatchError, match="no quoted PCR"):
        compare(replay(log), PcrBanks.from_mapping({TpmAlg.SHA1: {16: bytes(20)}}))


def _keylime_mba() -> Any:
    try:
        logging.disable(logging.WARNING)
        from keylime.mba import mba

        mba.load_imports(skip_custom_policies=True)
    except Exception as exc:
        pytest.skip(f"keylime is not importable ({exc}); scripts/setup.d/tpm.sh installs it")
    finally:
        logging.disable(logging.NOTSET)
    return mba


AGILE = [s for s in LOGS if "legacy" not in s.name]


@pytest.mark.parametrize("sample", AGILE, ids=[s.name for s in AGILE])
def test_replay_equals_keylime_except_where_tpm2_tools_is_known_wrong(sample: LogSample) -> None:
    """keylime's bootlog_parse runs Debian's tpm2_eventlog (5.4), which gets PCR 0 wrong
    for StartupLocality 3 logs (fixed upstream in 5.5); everything else must agree."""
    mba = _keylime_mba()
    raw = sample.path.read_bytes()
    log = EventLog.from_bytes(raw)
    if TpmAlg.SHA256 not in log.algorithms:
        pytest.skip("keylime is asked for the sha256 bank")
    logging.disable(logging.WARNING)
    try:
        pcrs, _, _, failure = mba.bootlog_parse(base64.b64encode(raw).decode(), "sha256")
    finally:
        logging.disable(logging.NOTSET)
    assert not failure.get_event_ids()
    ours = replay(log)
    theirs = {int(k): int(v).to_bytes(32, "big") for k, v in pcrs.items()}
    assert set(theirs) == set(ours.extended)
    for pcr, value in theirs.items():
        if pcr == 0 and log.startup_locality == 3:
            assert value != ours.value(TpmAlg.SHA256, 0)
            assert ours.value(TpmAlg.SHA256, 0).hex() == sample.expected["sha256"][0]
            continue
        assert value == ours.value(TpmAlg.SHA256, pcr), pcr


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_only_raise_format_error(data: bytes) -> None:
    try:
        log = EventLog.from_bytes(data)
    except EvidenceFormatError:
        return
    assert log.to_bytes() == data
    try:
        BootClaims.from_log(log)
        replay(log)
    except EvidenceFormatError:
        pass


@pytest.mark.skipif(not LOGS, reason="corpus absent")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_logs_only_raise_format_error(data: st.DataObject) -> None:
    sample = data.draw(st.sampled_from(LOGS))
    raw = bytearray(sample.path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    blob = bytes(raw[:cut])
    try:
        log = EventLog.from_bytes(blob)
    except EvidenceFormatError:
        return
    assert log.to_bytes() == blob
    try:
        replay(log)
        BootClaims.from_log(log)
    except EvidenceFormatError:
        pass


def test_spec_id_header_is_validated() -> None:
    header = (b"Spec ID Event03\0" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, 1)
              + struct.pack("<HH", TpmAlg.SHA256, 20) + b"\0")
    event = struct.pack("<II", 0, EventType.EV_NO_ACTION) + bytes(20) + struct.pack(
        "<I", len(header)) + header
    with pytest.raises(EvidenceFormatError, match="digest size 20 should be 32"):
        EventLog.from_bytes(event)
