"""IMA measurement lists: the real Raspberry Pi list verifies against its PCR 10 in both
forms; a changed, removed or reordered entry is caught and named; incremental
verification continues from a verified state; the allow/deny policy names violations;
keylime's process_measurement_list gives the same verdicts."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tpm_corpus import IMA_DIR
from veritee.errors import EvidenceFormatError
from veritee.tee.tpm.ima import ImaEntry, parse_ascii, parse_binary, parse_list, to_binary
from veritee.tee.tpm.ima_policy import ImaPolicy
from veritee.tee.tpm.ima_verify import (
    ImaMismatchError,
    ImaState,
    boot_aggregate,
    check_boot_aggregate,
    verify_ima,
)
from veritee.tee.tpm.structures import TpmAlg

pytestmark = pytest.mark.skipif(IMA_DIR is None, reason="corpus absent")
PCR10 = bytes.fromhex("f38695bbd9479953543813fb13bb88235440504e")


@pytest.fixture(scope="module")
def ascii_text() -> bytes:
    assert IMA_DIR is not None
    return (IMA_DIR / "ascii_runtime_measurements").read_bytes()


@pytest.fixture(scope="module")
def entries(ascii_text: bytes) -> tuple[ImaEntry, ...]:
    return parse_ascii(ascii_text)


def test_ascii_and_binary_lists_are_the_same_and_verify_against_pcr10(
    ascii_text: bytes, entries: tuple[ImaEntry, ...]
) -> None:
    assert IMA_DIR is not None
    binary = (IMA_DIR / "binary_runtime_measurements").read_bytes()
    from_binary = parse_binary(binary)
    assert len(entries) == len(from_binary) == 922
    assert entries == from_binary
    assert to_binary(from_binary) == binary
    assert "\n".join(e.ascii_line() for e in entries) + "\n" == ascii_text.decode()
    assert parse_list(binary) == parse_list(ascii_text)
    for es in (entries, from_binary):
        v = verify_ima(es, expected=PCR10)
        assert v.state.position == 922 and v.state.value == PCR10 and not v.pending
    assert entries[0].path == "boot_aggregate" and entries[0].template_name == "ima-ng"


def _lines(text: bytes) -> list[bytes]:
    return text.splitlines()


def test_changed_entry_is_named(ascii_text: bytes) -> None:
    lines = _lines(ascii_text)
    for idx in (1, 500, 921):
        for how in ("digest", "path"):
            bad = list(lines)
            parts = bad[idx].split(b" ", 4)
            if how == "digest":
                d = parts[3]
                parts[3] = d[:-1] + (b"0" if d[-1:] != b"0" else b"1")
            else:
                parts[4] = parts[4] + b".evil"
            bad[idx] = b" ".join(parts)
            with pytest.raises(ImaMismatchError, match=f"entry #{idx}") as err:
                verify_ima(parse_ascii(b"\n".join(bad)), expected=PCR10)
            assert err.value.entry is not None and err.value.entry.number == idx


def _checkpoints(entries: tuple[ImaEntry, ...]) -> dict[int, bytes]:
    """PCR 10 after every entry, as a verifier polling after each measurement saw it."""
    out = {}
    value = bytes(20)
    for e in entries:
        value = hashlib.sha1(value + e.template_hash).digest()
        out[e.number + 1] = value
    return out


def test_removed_or_reordered_entries_are_caught_and_named(
    ascii_text: bytes, entries: tuple[ImaEntry, ...]
) -> None:
    lines = _lines(ascii_text)
    known = _checkpoints(entries)
    removed = lines[:300] + lines[301:]
    with pytest.raises(ImaMismatchError, match="does not reproduce the quoted PCR 10"):
        verify_ima(parse_ascii(b"\n".join(removed)), expected=PCR10)
    with pytest.raises(ImaMismatchError) as err:
        verify_ima(parse_ascii(b"\n".join(removed)), expected=PCR10, checkpoints=known)
    assert err.value.entry is not None and err.value.entry.number == 300
    assert err.value.entry.path == entries[301].path  # the entry now at the removed slot
    swapped = list(lines)
    swapped[600], swapped[601] = swapped[601], swapped[600]
    with pytest.raises(ImaMismatchError, match="does not reproduce"):
        verify_ima(parse_ascii(b"\n".join(swapped)), expected=PCR10)
    with pytest.raises(ImaMismatchError, match="#600") as err:
        verify_ima(parse_ascii(b"\n".join(swapped)), expected=PCR10, checkpoints=known)
    assert err.value.first == 600
    # Coarser checkpoints (every 100 entries) bound the place instead.
    coarse = {k: v for k, v in known.items() if k % 100 == 0}
    with pytest.raises(ImaMismatchError) as err:
        verify_ima(parse_ascii(b"\n".join(swapped)), expected=PCR10, checkpoints=coarse)
    assert (err.value.first, err.value.last) == (600, 699)
    truncated = lines[:-1]
    with pytest.raises(ImaMismatchError):
        verify_ima(parse_ascii(b"\n".join(truncated)), expected=PCR10)


def test_incremental_verification_and_entries_after_the_quote(
    ascii_text: bytes, entries: tuple[ImaEntry, ...]
) -> None:
    lines = _lines(ascii_text)
    mid = _checkpoints(entries)[400]
    first = verify_ima(entries, expected=mid)
    assert first.state.position == 400 and len(first.pending) == 522
    # Next round: only the new lines are sent, numbered from where we stopped.
    tail = parse_ascii(b"\n".join(lines[400:]), start=400)
    second = verify_ima(tail, state=first.state, expected=PCR10)
    assert second.state.position == 922 and second.state.value == PCR10
    assert second.start == 400 and len(second.entries) == 522
    # The whole list again: the verified prefix is skipped, not re-hashed.
    again = verify_ima(entries, state=first.state, expected=PCR10)
    assert again.state == second.state
    # A gap (the attester skipped entries) is refused.
    with pytest.raises(EvidenceFormatError, match="resumes at entry #401"):
        verify_ima(parse_ascii(b"\n".join(lines[401:]), start=401), state=first.state)
    # Tampering with the already-verified prefix cannot matter to the continuation, but a
    # changed new entry is still named.
    bad = list(lines[400:])
    bad[10] = bad[10].replace(b"/usr", b"/tmp", 1)
    with pytest.raises(ImaMismatchError, match="#410"):
        verify_ima(parse_ascii(b"\n".join(bad), start=400), state=first.state, expected=PCR10)


def test_sha256_bank_aggregate(entries: tuple[ImaEntry, ...]) -> None:
    value = bytes(32)
    for e in entries:
        value = hashlib.sha256(value + hashlib.sha256(e.template_data).digest()).digest()
    v = verify_ima(entries, state=ImaState.initial(TpmAlg.SHA256), expected=value)
    assert v.state.position == 922
    with pytest.raises(ImaMismatchError):
        verify_ima(entries, state=ImaState.initial(TpmAlg.SHA256), expected=PCR10 + bytes(12))


def test_violation_entries_extend_all_ones() -> None:
    line = (b"10 " + bytes(20).hex().encode() + b" ima-ng sha256:" + bytes(32).hex().encode()
            + b" /var/log/x")
    (e,) = parse_ascii(line)
    assert e.is_violation
    want = hashlib.sha1(bytes(20) + b"\xff" * 20).digest()
    assert verify_ima([e], expected=want).state.value == want
    appraisal = ImaPolicy().evaluate([e])
    assert [v.rule for v in appraisal.violations] == ["ima-violation"]


def test_boot_aggregate_against_quoted_pcrs() -> None:
    pcrs = {i: hashlib.sha256(bytes([i])).digest() for i in range(10)}
    agg = boot_aggregate(pcrs, TpmAlg.SHA256)
    data_line = (b"10 " + bytes(20).hex().encode() + b" ima-ng sha256:" + agg.hex().encode()
                 + b" boot_aggregate")
    (e,) = parse_ascii(data_line)
    check_boot_aggregate(e, pcrs, TpmAlg.SHA256)
    with pytest.raises(ImaMismatchError, match="boot_aggregate"):
        check_boot_aggregate(e, {**pcrs, 3: bytes(32)}, TpmAlg.SHA256)
    nine = boot_aggregate(pcrs, TpmAlg.SHA256, through=9)
    (e9,) = parse_ascii(data_line.replace(agg.hex().encode(), nine.hex().encode()))
    check_boot_aggregate(e9, pcrs, TpmAlg.SHA256)


def test_policy_allow_deny_and_excludes(entries: tuple[ImaEntry, ...]) -> None:
    digests = {e.path: [e.file_digest.hex()] for e in entries[1:]}
    allow_all = ImaPolicy.from_json({"digests": digests})
    assert allow_all.evaluate(entries).allowed
    victim = entries[10]
    changed = {**digests, victim.path: ["00" * 32]}
    result = ImaPolicy.from_json({"digests": changed}).evaluate(entries)
    assert [(v.entry.number, v.rule) for v in result.violations] == [
        (10, "digest-not-allowed")] * sum(1 for e in entries if e.path == victim.path)
    missing = {k: v for k, v in digests.items() if k != victim.path}
    result = ImaPolicy.from_json({"digests": missing}).evaluate(entries)
    assert {v.rule for v in result.violations} == {"unlisted-path"}
    folder = victim.path.rsplit("/", 1)[0]
    excluded = ImaPolicy.from_json({"digests": missing, "excludes": [folder + "/.*"]})
    assert excluded.evaluate(entries).allowed
    denied = ImaPolicy.from_json({"digests": digests, "excludes": [".*"],
                                  "deny": {"digests": [victim.file_digest.hex()]}})
    r = denied.evaluate(entries)
    assert r.violations and all(v.rule == "denied-digest" for v in r.violations)
    by_path = ImaPolicy.from_json({"digests": digests, "deny": {"paths": [r"/usr/lib/modules/.*"]}})
    r = by_path.evaluate(entries)
    assert r.violations and all(v.entry.path.startswith("/usr/lib/modules/") for v in r.violations)
    from veritee.errors import ConfigError

    with pytest.raises(ConfigError):
        ImaPolicy.from_json('{"excludes": ["("]}')


def _keylime_ima() -> tuple[Any, Any]:
    try:
        logging.disable(logging.WARNING)
        from keylime.common import algorithms
        from keylime.ima import ima
    except Exception as exc:
        pytest.skip(f"keylime is not importable ({exc}); scripts/setup.d/tpm.sh installs it")
    finally:
        logging.disable(logging.NOTSET)
    return ima, algorithms


def test_verdicts_equal_keylime_process_measurement_list(ascii_text: bytes) -> None:
    ima, algorithms = _keylime_ima()
    lines = [x.decode() for x in _lines(ascii_text)]
    variants = {"valid": lines}
    changed = list(lines)
    changed[77] = changed[77].replace("sha256:", "sha256:0", 1)[:-1]
    variants["changed-digest"] = changed
    variants["removed"] = lines[:10] + lines[11:]
    swapped = list(lines)
    swapped[5], swapped[6] = swapped[6], swapped[5]
    variants["reordered"] = swapped
    variants["truncated"] = lines[:-3]
    for name, vlines in variants.items():
        logging.disable(logging.CRITICAL)
        try:
            _, failure = ima.process_measurement_list(
                None, vlines, None, pcrval=PCR10.hex(), hash_alg=algorithms.Hash.SHA1)
        finally:
            logging.disable(logging.NOTSET)
        theirs = not failure.get_event_ids()
        try:
            verify_ima(parse_ascii("\n".join(vlines)), expected=PCR10)
            ours = True
        except (ImaMismatchError, EvidenceFormatError):
            ours = False
        assert ours == theirs == (name == "valid"), name


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_only_raise_format_error(data: bytes) -> None:
    for parse in (parse_binary, parse_ascii, parse_list):
        with contextlib.suppress(EvidenceFormatError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcdef :/\n-imagsh", max_size=300))
def test_near_ascii_text_only_raises_format_error(text: str) -> None:
    try:
        entries = parse_ascii(text)
    except EvidenceFormatError:
        return
    with contextlib.suppress(ImaMismatchError, EvidenceFormatError):
        verify_ima(entries)
