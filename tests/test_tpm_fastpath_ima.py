"""The fused IMA paths (verify_ima_ascii / verify_ima_binary / verify_ima_list) give
exactly what the reference path gives: verify_ima over parse_ascii / parse_binary /
parse_list. Same VerifiedIma on success; on failure the same exception type, message,
hint and named entry (first/last). Checked on the real list, on lists mutated at random
(hypothesis: changed bytes, removed, repeated or swapped lines, blank and CRLF lines,
other templates, violations, spaces in paths, odd PCR fields, non-UTF-8 names), in both
forms, with every kind of state, expected value, checkpoints and start position."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tpm_corpus import IMA_DIR
from veritee.tee.tpm import ima_verify
from veritee.tee.tpm.ima import (
    ImaEntry,
    parse_ascii,
    parse_ascii_line,
    parse_binary,
    parse_list,
    to_binary,
)
from veritee.tee.tpm.ima_verify import (
    ImaState,
    template_hash,
    verify_ima,
    verify_ima_ascii,
    verify_ima_binary,
    verify_ima_list,
)
from veritee.tee.tpm.structures import TpmAlg

pytestmark = pytest.mark.skipif(IMA_DIR is None, reason="corpus absent")
PCR10 = bytes.fromhex("f38695bbd9479953543813fb13bb88235440504e")
TEXT = (IMA_DIR / "ascii_runtime_measurements").read_bytes() if IMA_DIR is not None else b""
BINARY = (IMA_DIR / "binary_runtime_measurements").read_bytes() if IMA_DIR is not None else b""
LINES = TEXT.split(b"\n")[:-1]
ENTRIES = parse_ascii(TEXT) if TEXT else ()


def outcome(fn: Callable[[], object]) -> tuple[Any, ...]:
    """What a call gives: its value, or everything an error says about itself."""
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("error", type(exc), str(exc), getattr(exc, "hint", None),
                getattr(exc, "entry", None), getattr(exc, "first", None),
                getattr(exc, "last", None))


def chain(entries: tuple[ImaEntry, ...] | list[ImaEntry], alg: int = TpmAlg.SHA1,
          value: bytes | None = None) -> dict[int, bytes]:
    """PCR 10 after each entry (the checkpoints a verifier polling every entry saw)."""
    h = hashlib.sha1 if alg == TpmAlg.SHA1 else hashlib.sha256
    value = value if value is not None else bytes(h().digest_size)
    out = {}
    for e in entries:
        if e.pcr != 10:
            continue
        if not any(e.template_hash):
            ext = b"\xff" * len(value)
        elif alg == TpmAlg.SHA1:
            ext = e.template_hash
        else:
            ext = h(e.template_data).digest()
        value = h(value + ext).digest()
        out[e.number + 1] = value
    return out


def same_ascii(text: bytes | str, **kw: Any) -> tuple[Any, ...]:
    start = kw.pop("start", 0)
    max_entries = kw.pop("max_entries", None)
    pkw = {"start": start} if max_entries is None else {"start": start,
                                                        "max_entries": max_entries}
    ref = outcome(lambda: verify_ima(parse_ascii(text, **pkw), **kw))
    fast = outcome(lambda: verify_ima_ascii(text, **pkw, **kw))
    assert fast == ref
    return ref


def same_binary(data: bytes, **kw: Any) -> tuple[Any, ...]:
    ref = outcome(lambda: verify_ima(parse_binary(data), **kw))
    assert outcome(lambda: verify_ima_binary(data, **kw)) == ref
    ref_list = outcome(lambda: verify_ima(parse_list(data), **kw))
    assert outcome(lambda: verify_ima_list(data, **kw)) == ref_list
    return ref


# -- the real list ---------------------------------------------------------------------------


def test_the_real_list_takes_the_columnar_path_and_gives_the_reference_result() -> None:
    st0 = ImaState.initial()
    done = ima_verify._canonical_ascii(TEXT, 0, 1 << 20, st0, hashlib.sha1, PCR10,
                                       lambda es: pytest.fail("no fallback expected"))
    assert done is not None and done == verify_ima(ENTRIES, expected=PCR10)
    assert done.state.value == PCR10 and done.state.position == 922 and not done.pending
    ok = same_ascii(TEXT, expected=PCR10)
    assert ok[0] == "ok" and ok[1].entries == ENTRIES
    assert same_ascii(TEXT.decode(), expected=PCR10) == ok  # str input
    assert same_binary(BINARY, expected=PCR10) == ok
    assert verify_ima_list(TEXT, expected=PCR10) == ok[1]


def test_every_state_expected_value_and_checkpoint_combination_on_the_real_list() -> None:
    known = chain(ENTRIES)
    sha256_final = chain(ENTRIES, TpmAlg.SHA256)[922]
    for k in (0, 1, 400, 921, 922):
        state = None if k == 0 else ImaState(TpmAlg.SHA1, k, known[k])
        for expected in (None, PCR10, known[max(k, 1)], known[min(k + 5, 922)], bytes(20),
                         b"\x01" * 20):
            for checkpoints in (None, {}, known, {j: v for j, v in known.items() if j % 100 == 0},
                                {**known, 700: bytes(20)}):
                same_ascii(TEXT, state=state, expected=expected, checkpoints=checkpoints)
                tail = b"\n".join(LINES[k:]) + b"\n"
                same_ascii(tail, start=k, state=state, expected=expected, checkpoints=checkpoints)
            same_binary(BINARY, state=state, expected=expected)
    for expected in (None, sha256_final, PCR10 + bytes(12)):
        same_ascii(TEXT, state=ImaState.initial(TpmAlg.SHA256), expected=expected)
        same_ascii(TEXT, alg=TpmAlg.SHA256, expected=expected)
        same_binary(BINARY, alg=TpmAlg.SHA256, expected=expected)
    # Gaps, unknown banks, a limit on the number of entries.
    same_ascii(b"\n".join(LINES[401:]), start=401, state=ImaState(TpmAlg.SHA1, 400, known[400]))
    same_ascii(TEXT, alg=TpmAlg.SM3_256)
    same_ascii(TEXT, alg=0x1234)
    same_ascii(TEXT, max_entries=921, expected=PCR10)
    same_ascii(TEXT, max_entries=922, expected=PCR10)
    same_ascii(TEXT, state=ImaState(TpmAlg.SHA1, 0, PCR10), expected=PCR10)
    same_ascii(TEXT, state=ImaState(TpmAlg.SHA1, 5, known[5], pcr=11))


def test_failures_are_named_as_the_reference_names_them() -> None:
    known = chain(ENTRIES)
    for idx in (0, 1, 500, 921):
        for how in (b"digest", b"path", b"hash"):
            bad = list(LINES)
            parts = bad[idx].split(b" ", 4)
            if how == b"digest":
                parts[3] = parts[3][:-1] + (b"0" if parts[3][-1:] != b"0" else b"1")
            elif how == b"path":
                parts[4] += b".evil"
            else:
                parts[1] = parts[1][:-1] + (b"0" if parts[1][-1:] != b"0" else b"1")
            bad[idx] = b" ".join(parts)
            text = b"\n".join(bad) + b"\n"
            for kw in ({"expected": PCR10}, {}, {"checkpoints": known}, {"expected": PCR10,
                                                                        "checkpoints": known}):
                res = same_ascii(text, **kw)
                if kw or how != b"hash":
                    assert res[0] == "error", (idx, how, kw)
    removed = LINES[:300] + LINES[301:]
    swapped = list(LINES)
    swapped[600], swapped[601] = swapped[601], swapped[600]
    for lines in (removed, swapped, LINES[:-1]):
        text = b"\n".join(lines)
        assert same_ascii(text, expected=PCR10)[0] == "error"
        assert same_ascii(text, expected=PCR10, checkpoints=known)[0] == "error"


# -- mutated lists ---------------------------------------------------------------------------


def _line_of(entry_line: bytes) -> bytes:
    """``entry_line`` (any template hash) with its correct template hash."""
    e = parse_ascii_line(entry_line, 0)
    parts = entry_line.split(b" ", 2)
    return b" ".join([parts[0], template_hash(e).hex().encode(), parts[2]])


VALID_EXTRA = [
    _line_of(b"10 " + b"00" * 20 + b" ima " + b"ab" * 20 + b" /usr/bin/legacy"),
    _line_of(b"10 " + b"00" * 20 + b" ima-sig sha256:" + b"cd" * 32 + b" /usr/bin/signed "
             + b"0302" + b"ee" * 30),
    _line_of(b"10 " + b"00" * 20 + b" ima-sig sha256:" + b"cd" * 32 + b" /usr/bin/unsigned"),
    _line_of(b"10 " + b"00" * 20 + b" ima-buf sha256:" + b"12" * 32 + b" kexec-cmdline "
             + b"414243"),
    _line_of(b"10 " + b"00" * 20 + b" ima-ng sha1:" + b"34" * 20 + b" /etc/sha1 file"),
    _line_of(b"10 " + b"00" * 20 + b" ima-ng sm3:" + b"56" * 32 + b" /etc/sm3"),
    _line_of(b"10 " + b"00" * 20 + b" ima-ng sha512:" + b"78" * 64 + b" /with  two spaces"),
    _line_of(b"11 " + b"00" * 20 + b" ima-ng sha256:" + b"9a" * 32 + b" /other/pcr"),
    _line_of(b"010 " + b"00" * 20 + b" ima-ng sha256:" + b"9a" * 32 + b" /padded/pcr"),
    _line_of(b"10 " + b"00" * 20 + b" ima-ng sha256:" + b"bc" * 32 + b" /caf\xc3\xa9/\xff\xfe"),
    _line_of(b"10 " + b"00" * 20 + b" ima-ng weird_alg:" + b"de" * 7 + b" /odd/alg"),
    _line_of(b"10 " + b"00" * 20 + b" ima-ng sha256: /empty/digest"),
    b"10 " + b"00" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /violation",
    b"10 " + b"00" * 20 + b" ima-ng sha256:" + b"ab" * 32 + b" /violation/with/digest",
]
ODD_LINES = [b"", b"   ", b"\t", b"\r", b"10", b"10 abc ima-ng sha256:00 /x",
             b"1000 " + b"00" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" /x",
             b"10 " + b"00" * 20 + b" ima-ng sha256:" + b"0" * 63 + b" /odd",
             b"10 " + b"00" * 20 + b" ima-ng sha256:" + b"00" * 32,
             b"10 " + b"00" * 20 + b" ima-ng sha256:" + b"00" * 32 + b" ",
             b"10 " + b"00" * 20 + b" ima-ng :" + b"00" * 32 + b" /noalg",
             b"10 " + b"00" * 20 + b" ima-ng sh\xffa:" + b"00" * 32 + b" /nonascii",
             b"10 " + b"00" * 20 + b" ima-buf sha256:" + b"00" * 32 + b" nobuf",
             b"10 " + b"00" * 20 + b" ima-xyz sha256:" + b"00" * 32 + b" /unknown",
             b"10 " + b"00" * 20 + b" ima " + b"00" * 19 + b" /short"]
NOISE = b"0123456789abcdefABCDEF :\r\n\t\x00\xffXima-ngsh/"


@st.composite
def mutated_lines(draw: st.DrawFn) -> list[bytes]:
    size = draw(st.sampled_from([3, 12, 40, len(LINES)]))
    offset = draw(st.integers(0, len(LINES) - size))
    lines = list(LINES[offset : offset + size])
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["byte", "delete", "dup", "swap", "insert", "odd", "upper",
                                   "space", "pcr", "truncate"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines:
            lines = [draw(st.sampled_from(VALID_EXTRA))]
        elif op == "byte":
            line = bytearray(lines[i])
            if line:
                line[draw(st.integers(0, len(line) - 1))] = draw(st.sampled_from(NOISE))
            lines[i] = bytes(line)
        elif op == "delete":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, draw(st.sampled_from(VALID_EXTRA)))
        elif op == "odd":
            lines.insert(i, draw(st.sampled_from(ODD_LINES)))
        elif op == "upper":
            parts = lines[i].split(b" ", 4)
            if len(parts) == 5:
                lines[i] = b" ".join([parts[0], parts[1].upper(), parts[2], parts[3].upper(),
                                      parts[4]])
        elif op == "space":
            lines[i] = lines[i] + b" x"
        elif op == "pcr":
            parts = lines[i].split(b" ", 1)
            lines[i] = draw(st.sampled_from([b"1", b"010", b"11", b"9999", b"a"])) + b" " + (
                parts[1] if len(parts) > 1 else b"")
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    return lines


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=mutated_lines(), end=st.sampled_from([b"\n", b"", b"\r\n", b"\n\n"]),
       crlf=st.booleans(), how=st.integers(0, 9), data=st.data())
def test_mutated_ascii_lists_verify_or_fail_exactly_as_the_reference(
    lines: list[bytes], end: bytes, crlf: bool, how: int, data: st.DataObject
) -> None:
    text = (b"\r\n" if crlf else b"\n").join(lines) + end
    try:
        entries = parse_ascii(text)
    except Exception:
        entries = ()
    known = chain(entries)
    pick = data.draw(st.sampled_from(sorted(known) or [0]))
    expected = {0: None, 1: known.get(len(entries)), 2: known.get(pick), 3: PCR10,
                4: bytes(20)}.get(how % 5)
    kw: dict[str, Any] = {"expected": expected}
    if how >= 5:
        kw["checkpoints"] = known if how < 8 else {**known, pick: bytes(20)}
    if how in (6, 9) and known:
        kw["state"] = ImaState(TpmAlg.SHA1, pick, known[pick])
    if how == 7:
        kw["state"] = ImaState.initial(TpmAlg.SHA256)
        kw["expected"] = chain(entries, TpmAlg.SHA256).get(len(entries))
    same_ascii(text, **kw)
    if "state" in kw and kw["state"].position:
        k = kw["state"].position
        tail = text.split(b"\n", k)[-1] if text.count(b"\n") >= k else b""
        same_ascii(tail, start=k, **kw)
    if entries:
        same_binary(to_binary(list(entries)), **kw)
    if how == 0:
        same_ascii(text, max_entries=max(1, len(entries) - 1), expected=expected)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), size=st.sampled_from([5, 40, 922]))
def test_mutated_binary_lists_verify_or_fail_exactly_as_the_reference(
    data: st.DataObject, size: int
) -> None:
    entries = list(ENTRIES[:size])
    extra = data.draw(st.lists(st.sampled_from(VALID_EXTRA), max_size=3))
    for line in extra:
        e = parse_ascii_line(line, 0)
        entries.insert(data.draw(st.integers(0, len(entries))), e)
    blob = bytearray(to_binary(entries))
    for _ in range(data.draw(st.integers(0, 3))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    blob = blob[: data.draw(st.integers(0, len(blob)))] if data.draw(st.booleans()) else blob
    raw = bytes(blob)
    try:
        parsed = parse_binary(raw)
    except Exception:
        parsed = ()
    known = chain(parsed)
    pick = data.draw(st.sampled_from(sorted(known) or [0]))
    expected = data.draw(st.sampled_from([None, known.get(len(parsed)), known.get(pick), PCR10]))
    same_binary(raw, expected=expected)
    if known:
        same_binary(raw, state=ImaState(TpmAlg.SHA1, pick, known[pick]), expected=expected,
                    checkpoints=known)
    same_binary(raw, alg=TpmAlg.SHA256)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_the_reference_outcome(raw: bytes) -> None:
    same_ascii(raw)
    same_ascii(raw, expected=PCR10)
    same_binary(raw)


def test_learnt_digest_algorithms_stay_exact() -> None:
    """A first sight of an ima-ng algorithm teaches the fast reader its constants; a list
    that then uses the name with another digest size is still read as the reference does."""
    a = _line_of(b"10 " + b"00" * 20 + b" ima-ng newalg:" + b"11" * 24 + b" /a")
    b = _line_of(b"10 " + b"00" * 20 + b" ima-ng newalg:" + b"22" * 16 + b" /b")
    for text in (a + b"\n" + b, b + b"\n" + a, (a + b"\n") * 3, (b + b"\n") * 3):
        res = same_ascii(text)
        assert res[0] == "ok"
        same_binary(to_binary(list(parse_ascii(text))))
