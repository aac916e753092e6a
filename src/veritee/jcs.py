"""RFC 8785 JSON Canonicalization Scheme (JCS).

The KBS protocol binds the nonce and the TEE public key into evidence as
``H(JCS(runtime_data))``, so these bytes must match the guest's
(``serde_json_canonicalizer``) exactly. ``json.dumps(sort_keys=True)`` agrees
only for ASCII keys, integers and plain strings; this module implements the
whole scheme: UTF-16 key order, ECMAScript number formatting, minimal escaping.

Input is a tree of ``dict`` (``str`` keys), ``list``/``tuple``, ``str``, ``int``,
``float``, ``bool`` and ``None``. Anything else, a non-finite float, an integer
that an IEEE-754 double cannot hold exactly, a lone surrogate or a reference
cycle raises ``TypeError``/``ValueError``: these are programming errors, not
evidence errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal

__all__ = ["MAX_SAFE_INTEGER", "canonicalize", "format_number"]

#: Largest integer magnitude I-JSON / ECMAScript represent exactly (2**53).
MAX_SAFE_INTEGER = 1 << 53

# RFC 8785 3.2.2.2: the two-character escapes, then \u00xx (lowercase) for the
# remaining C0 controls. Everything else, including U+007F, U+2028 and U+2029,
# is emitted literally.
_ESCAPES: dict[int, str] = {c: f"\\u{c:04x}" for c in range(0x20)}
_ESCAPES.update(
    {
        0x08: "\\b",
        0x09: "\\t",
        0x0A: "\\n",
        0x0C: "\\f",
        0x0D: "\\r",
        0x22: '\\"',
        0x5C: "\\\\",
    }
)


def canonicalize(value: object) -> bytes:
    """Return the RFC 8785 canonical UTF-8 serialization of ``value``."""
    if _simple(value, 0):
        # For ASCII keys, exact ints within 2**53, strings, booleans and null, the C
        # encoder's sorted, compact, non-ASCII-preserving output is byte for byte JCS
        # (same escapes, same order); tests compare both paths on random documents.
        try:
            return json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: the full path says so precisely
    parts: list[str] = []
    _write(value, parts, set())
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Only lone surrogates (e.g. "\ud800") cannot be encoded; RFC 8785 3.2.2.2
        # says such strings must be rejected.
        raise ValueError(f"JCS: string contains a lone surrogate at {exc.start}") from exc


def _simple(value: object, depth: int) -> bool:
    """Whether ``json.dumps`` would already produce JCS for ``value`` (no floats,
    no large or subclassed integers, only ASCII object keys, plain containers)."""
    kind = type(value)
    if kind is str or value is None or value is True or value is False:
        return True
    if kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[operator]
    if depth > 64:
        return False  # deep nesting: the full path (and its cycle check) decides
    if kind is dict:
        return all(
            type(k) is str and k.isascii() and _simple(v, depth + 1)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    if kind is list or kind is tuple:
        return all(_simple(v, depth + 1) for v in value)  # type: ignore[attr-defined]
    return False


def _write(value: object, out: list[str], active: set[int]) -> None:
    # Order matters: bool is a subclass of int.
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, Mapping):
        _enter(value, active)
        items: list[tuple[str, object]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JCS: object keys must be str, not {type(key).__name__}")
            items.append((key, item))
        # RFC 8785 3.2.3: sort by UTF-16 code units. Big-endian UTF-16 bytes compare
        # in the same order as the code-unit sequences ("surrogatepass" so a lone
        # surrogate reaches the clear error in canonicalize()).
        items.sort(key=lambda kv: kv[0].encode("utf-16-be", "surrogatepass"))
        out.append("{")
        for index, (key, item) in enumerate(items):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(item, out, active)
        out.append("}")
        active.discard(id(value))
    elif isinstance(value, list | tuple):
        _enter(value, active)
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out, active)
        out.append("]")
        active.discard(id(value))
    else:
        raise TypeError(f"JCS: cannot serialize {type(value).__name__}")


def _enter(container: object, active: set[int]) -> None:
    """Refuse reference cycles instead of recursing until RecursionError."""
    key = id(container)
    if key in active:
        raise ValueError("JCS: value contains a reference cycle")
    active.add(key)


def _string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def _integer(value: int) -> str:
    # int(value) normalizes int subclasses (IntEnum etc.) whose str() differs.
    number = int(value)
    if abs(number) <= MAX_SAFE_INTEGER:
        return str(number)
    # A JSON number is an IEEE-754 double to every JCS peer. Larger integers that a
    # double holds exactly (e.g. what json.loads returns for 1e+300) are formatted
    # as that double; any other would be silently rounded by the peer, so refuse.
    try:
        as_double = float(number)
    except OverflowError:
        as_double = float("inf")
    if as_double != number:
        raise ValueError(
            f"JCS: integer {number} is not exactly representable as an IEEE-754 "
            "double (beyond ±2**53); encode it as a string"
        )
    return format_number(as_double)


def format_number(value: float) -> str:
    """ECMAScript Number::toString for a finite double (RFC 8785 3.2.2.3)."""
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"JCS: {number!r} is not a finite number")
    if number == 0:
        return "0"  # covers -0.0
    # repr() gives the shortest digit string that round-trips (the same digits the
    # ECMAScript algorithm selects); only the layout differs.
    sign, digit_tuple, exponent = Decimal(repr(number)).as_tuple()
    assert isinstance(exponent, int)  # finite, so never 'n'/'N'/'F'
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    k = len(digits)
    n = exponent + k  # value = 0.d1d2...dk * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return ("-" if sign else "") + body
