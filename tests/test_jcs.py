"""RFC 8785 canonical JSON: the RFC's own examples, the KBS protocol vectors, properties."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import struct
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from veritee import jcs
from veritee.jcs import MAX_SAFE_INTEGER, canonicalize, format_number

# --- RFC 8785 ---------------------------------------------------------------

# RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical text.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),  # round to even
]


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    assert canonicalize(_double(bits)) == expected.encode()
    assert format_number(_double(bits)) == expected


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_rfc8785_appendix_b_nan_and_infinity_are_errors(bits: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        canonicalize(_double(bits))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e30, "1e+30"),
        (4.50, "4.5"),
        (0.002, "0.002"),
        (1e-27, "1e-27"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (333333333.33333329, "333333333.3333333"),
        (-0.0, "0"),
        (0.0, "0"),
        (123.0, "123"),
        (-1.5e-10, "-1.5e-10"),
        (0.1, "0.1"),
        (1.5e300, "1.5e+300"),
        (9007199254740992, "9007199254740992"),
        (-9007199254740992, "-9007199254740992"),
        (0, "0"),
        (-7, "-7"),
    ],
)
def test_number_serialization(value: float, expected: str) -> None:
    assert canonicalize(value) == expected.encode()


def test_rfc8785_section_3_2_2_example() -> None:
    # RFC 8785 3.2.2 input, written here as the parsed value.
    parsed = json.loads(
        r"""{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"""
    )
    expected = (
        '{"literals":[null,true,false],'
        '"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(parsed) == expected.encode("utf-8")
    # RFC 8785 3.2.4 gives the UTF-8 bytes of the same result.
    assert canonicalize(parsed).hex(" ") == (
        "7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72 "
        "75 65 2c 66 61 6c 73 65 5d 2c 22 6e 75 6d 62 65 72 73 22 3a "
        "5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31 "
        "65 2b 33 30 2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37 "
        "5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24 5c 75 30 30 "
        "30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d"
    )


def test_rfc8785_section_3_2_3_sorting() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    out = canonicalize(value).decode("utf-8")
    keys = list(json.loads(out))
    # The RFC's stated order. U+1F600 (surrogates D83D DE00) sorts before U+FB33
    # although its code point is larger: the order is by UTF-16 code units.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert out.startswith('{"\\r":"Carriage Return","1":"One","\u0080":"Control"')
    assert sorted(value) != keys  # code-point order would differ


def test_rfc8785_section_3_2_4_no_unicode_normalization() -> None:
    out = canonicalize({"Unnormalized Unicode": "A\u030a"})
    assert out.hex(" ") == (
        "7b 22 55 6e 6e 6f 72 6d 61 6c 69 7a 65 64 20 55 6e 69 63 6f 64 65 22 3a 22 41 cc 8a 22 7d"
    )


def test_cyberphone_weird_keys() -> None:
    # The reference implementation's testdata/weird.json.
    value = {
        "\u20ac": "Euro Sign",
        "1": "One",
        "\u0080": "Control\u007f",
        "\U0001f602": "Smiley",
        "\u00f6": "Latin Small Letter O With Diaeresis",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "</script>": "Browser Challenge",
    }
    expected = (
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonicalize(value) == expected.encode("utf-8")


# --- strings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\b\t\n\f\r", '"\\b\\t\\n\\f\\r"'),
        ('"\\', '"\\"\\\\"'),
        ("\x00\x01\x0b\x1f", '"\\u0000\\u0001\\u000b\\u001f"'),
        ("\x7f", '"\x7f"'),  # DEL is not escaped
        ("\u2028\u2029", '"\u2028\u2029"'),  # literal, as in JSON.stringify
        ("/", '"/"'),  # solidus is not escaped
        ("é€😀", '"é€😀"'),
        ("", '""'),
    ],
)
def test_string_escaping(text: str, expected: str) -> None:
    assert canonicalize(text) == expected.encode("utf-8")


def test_lone_surrogate_is_rejected() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        canonicalize({"a": "x\ud800"})
    with pytest.raises(ValueError, match="surrogate"):
        canonicalize({"\udfff": 1})


# --- literals, containers, errors -------------------------------------------


def test_literals_and_containers() -> None:
    assert canonicalize(None) == b"null"
    assert canonicalize(True) == b"true"
    assert canonicalize(False) == b"false"
    assert canonicalize([]) == b"[]"
    assert canonicalize({}) == b"{}"
    assert canonicalize((1, "a", None)) == b'[1,"a",null]'
    assert canonicalize({"b": [True, {"z": 1, "y": 2}], "a": []}) == (
        b'{"a":[],"b":[true,{"y":2,"z":1}]}'
    )
    # Insertion order of the input never matters.
    assert canonicalize(OrderedDict([("b", 1), ("a", 2)])) == b'{"a":2,"b":1}'


def test_int_subclasses_serialize_as_numbers() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    assert canonicalize({"level": Level.HIGH}) == b'{"level":3}'


@pytest.mark.parametrize(
    "value", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**30 + 1, 10**400]
)
def test_integers_beyond_double_precision_are_rejected(value: int) -> None:
    with pytest.raises(ValueError, match="2\\*\\*53"):
        canonicalize({"n": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MAX_SAFE_INTEGER + 2, "9007199254740994"),  # exactly a double
        (2**70, "1.1805916207174113e+21"),
        (10**21, "1e+21"),
        (-(2**64), "-18446744073709552000"),
    ],
)
def test_large_integers_held_exactly_by_a_double_format_as_that_double(
    value: int, expected: str
) -> None:
    assert canonicalize(value) == expected.encode()
    assert canonicalize(value) == canonicalize(float(value))


@pytest.mark.parametrize(
    "value",
    [{1: "a"}, {("a",): 1}, b"bytes", {1, 2}, object(), {"a": bytearray(b"x")}],
)
def test_unsupported_types_are_rejected(value: object) -> None:
    with pytest.raises(TypeError):
        canonicalize(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        canonicalize([value])


def test_reference_cycle_is_rejected() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="cycle"):
        canonicalize(loop)
    # Shared (non-cyclic) references are fine.
    shared = {"k": 1}
    assert canonicalize([shared, shared]) == b'[{"k":1},{"k":1}]'


# --- KBS protocol vectors (PROTOCOL.md 1.4) ---------------------------------

TEE_PUBKEY = {
    "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE",
    "x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
    "kty": "EC",
    "crv": "P-256",
    "alg": "ECDH-ES+A256KW",
}
NONCE = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def test_trustee_unit_test_vector() -> None:
    out = canonicalize({"b": 1, "a": "test", "c": {"d": "e"}})
    assert out == b'{"a":"test","b":1,"c":{"d":"e"}}'
    assert hashlib.sha384(out).hexdigest() == (
        "e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c"
        "4597480a186427c813ca941da78870c3"
    )


def test_device_runtime_data_vector() -> None:
    device = {"tee-pubkey": TEE_PUBKEY, "nonce": NONCE}
    out = canonicalize(device)
    assert out == (
        b'{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","tee-pubkey":'
        b'{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC",'
        b'"x":"WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",'
        b'"y":"y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"}}'
    )
    assert hashlib.sha384(out).hexdigest() == (
        "41ffe199be4ee3b264c0c0760d296f85c8a05f5ad1cdcf7e0a102cd583d75fee"
        "b34773e0dd84d3d5cc84a3dbdbf609cc"
    )


def test_primary_runtime_data_vector() -> None:
    primary = {"tee-pubkey": TEE_PUBKEY, "nonce": NONCE, "additional-evidence": ""}
    out = canonicalize(primary)
    assert out.startswith(b'{"additional-evidence":"","nonce":')
    assert hashlib.sha384(out).hexdigest() == (
        "7e3c430d1b20027dfa91ba1dd104beca19d90df8d91b7fb9511a6854d7054102"
        "1962a1b216b184b0b17813eba377f204"
    )


# --- properties -------------------------------------------------------------

_safe_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
_finite_floats = st.floats(allow_nan=False, allow_infinity=False)
_json_values = st.recursive(
    st.none() | st.booleans() | _safe_ints | _finite_floats | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


def _json_equal(a: object, b: object) -> bool:
    """Equality in the JSON data model: numbers compare by value, -0 == 0."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return a == b


def _parse_int(text: str) -> int | float:
    # A JCS peer reads every number as a double. Python's json makes ints of
    # integral text, which is exact only up to 2**53: beyond it, read a double too
    # (e.g. 3.93452128814939e16 is written "39345212881493900").
    number = int(text)
    return number if abs(number) <= MAX_SAFE_INTEGER else float(text)


def _loads(data: bytes) -> object:
    return json.loads(data, parse_int=_parse_int)


@given(_json_values)
def test_output_parses_back_to_an_equal_value(value: object) -> None:
    assert _json_equal(_loads(canonicalize(value)), value)


@given(_json_values)
def test_canonicalize_is_idempotent_over_parse(value: object) -> None:
    once = canonicalize(value)
    assert canonicalize(_loads(once)) == once
    # Plain json.loads (big integral numbers become int) gives the same bytes too
    # whenever it accepts the result.
    try:
        plain = json.loads(once)
        again = canonicalize(plain)
    except ValueError:
        return
    assert again == once


_ascii_keys = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8)
_simple_objects = st.recursive(
    st.dictionaries(_ascii_keys, st.none() | st.booleans() | _safe_ints | st.text(), max_size=6),
    lambda children: st.dictionaries(_ascii_keys, children, max_size=4),
    max_leaves=20,
)


def _full_scheme(value: object) -> bytes:
    """The character-by-character implementation, without canonicalize's fast path."""
    parts: list[str] = []
    jcs._write(value, parts, set())
    return "".join(parts).encode("utf-8")


@given(_simple_objects)
def test_matches_sorted_json_dumps_for_ascii_keys(value: dict[str, object]) -> None:
    # Why canonicalize may hand such documents to the C encoder.
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert _full_scheme(value) == expected.encode("utf-8")
    assert jcs._simple(value, 0)


@given(_json_values | _simple_objects)
def test_fast_path_gives_the_full_scheme_bytes(value: object) -> None:
    try:
        expected = _full_scheme(value)
    except (UnicodeEncodeError, ValueError, TypeError):
        return  # refused values are covered by their own tests
    assert canonicalize(value) == expected


def _utf16_units(text: str) -> list[int]:
    raw = text.encode("utf-16-be")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


@given(st.dictionaries(st.text(), st.integers(0, 9), max_size=8))
def test_keys_are_in_utf16_code_unit_order(value: dict[str, int]) -> None:
    keys = list(json.loads(canonicalize(value)))
    assert keys == sorted(value, key=_utf16_units)
