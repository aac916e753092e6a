"""Hand a plain claims document to regopy without JSON text.

regopy parses an input term at about 150 ns a byte, and its in-memory
``Input(value)`` walks the value with abstract-class checks and a string buffer
per string; for the two policy evaluations of every attestation that was a
fifth of the broker's CPU. This builds the same in-memory input with one
foreign call per node, validating as it goes: a document that is not *plain*
(see ``policy._plain``: printable-ASCII strings without quote or backslash,
int64 integers, booleans, null, lists, str-keyed dicts) gives ``None`` and the
caller parses JSON text instead, because regopy would garble those values.

It relies on regopy 1.x's ctypes bindings (``rego_shared.rego`` and
``Input._impl``); without them ``build`` returns None, which is only slower.
"""

from __future__ import annotations

from typing import Any

from regopy import Input

try:  # regopy's ctypes library, with argtypes already declared by regopy
    from regopy import rego_shared as _shared

    _LIB: Any = _shared.rego
    _NEW = _LIB.regoNewInput
    _FREE = _LIB.regoFreeInput
    _STR = _LIB.regoInputString
    _INT = _LIB.regoInputInt
    _BOOL = _LIB.regoInputBoolean
    _NULL = _LIB.regoInputNull
    _ITEM = _LIB.regoInputObjectItem
    _OBJECT = _LIB.regoInputObject
    _ARRAY = _LIB.regoInputArray
except (ImportError, AttributeError):  # pragma: no cover - another regopy layout
    _LIB = None

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_MAX_DEPTH = 32


class _NotPlain(Exception):
    pass


def _string(handle: Any, text: str) -> None:
    if not (text.isascii() and text.isprintable()) or '"' in text or "\\" in text:
        raise _NotPlain
    if _STR(handle, text.encode()):
        raise _NotPlain


def _add(handle: Any, value: object, depth: int) -> None:
    kind = type(value)
    if kind is str:
        _string(handle, value)  # type: ignore[arg-type]
        return
    if value is None:
        code = _NULL(handle)
    elif kind is bool:
        code = _BOOL(handle, value)
    elif kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            raise _NotPlain
        code = _INT(handle, value)
    elif depth >= _MAX_DEPTH:
        raise _NotPlain
    elif kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise _NotPlain
            _string(handle, key)
            _add(handle, item, depth + 1)
            if _ITEM(handle):
                raise _NotPlain
        code = _OBJECT(handle, len(value))  # type: ignore[arg-type]
    elif kind is list or kind is tuple:
        for item in value:  # type: ignore[attr-defined]
            _add(handle, item, depth + 1)
        code = _ARRAY(handle, len(value))  # type: ignore[arg-type]
    else:
        raise _NotPlain
    if code:
        raise _NotPlain


def build(doc: object) -> Input | None:
    """regopy's in-memory input for a plain ``doc``; None when it must go as JSON text."""
    if _LIB is None:
        return None
    handle = _NEW()
    try:
        _add(handle, doc, 0)
    except _NotPlain:
        _FREE(handle)
        return None
    except BaseException:
        _FREE(handle)
        raise
    made = Input.__new__(Input)
    made._impl = handle  # freed by Input.__del__
    return made
