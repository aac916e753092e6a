"""The policy engine's two ways of handing a document to regopy agree.

Claims usually go through regopy's in-memory input (``rego_input.build``,
cheaper); anything that path would misrepresent (quotes, backslashes, non-ASCII,
integers past int64, floats) goes through JSON text. A policy must see the same
document either way, which an echo policy shows.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.appraisal import rego_input
from veritee.appraisal.policy import PolicyEngine, RegoPolicy

ECHO = RegoPolicy.parse("echo", "package echo\n\nimport rego.v1\n\nseen := input\n")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.text(max_size=12)
    | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _through_json_text(
    engine: PolicyEngine, doc: object, monkeypatch: pytest.MonkeyPatch
) -> object:
    with monkeypatch.context() as m:
        m.setattr(rego_input, "build", lambda _doc: None)
        return engine.evaluate(ECHO, {"doc": doc}, {}).get("seen")


def _printable_ascii_only(value: object) -> bool:
    if isinstance(value, str):
        return value.isascii() and value.isprintable() and not set(value) & {'"', "\\"}
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -(1 << 63) <= value < (1 << 63)
    if isinstance(value, list):
        return all(_printable_ascii_only(v) for v in value)
    if isinstance(value, dict):
        return all(_printable_ascii_only(k) and _printable_ascii_only(v) for k, v in value.items())
    return False


@settings(max_examples=300, deadline=None)
@given(doc=documents)
def test_in_memory_input_equals_json_text(doc: object) -> None:
    engine = PolicyEngine()
    with pytest.MonkeyPatch.context() as mp:
        expected = _through_json_text(engine, doc, mp)
    seen = engine.evaluate(ECHO, {"doc": doc}, {}).get("seen")
    assert seen == expected
    # Documents of printable-ASCII text take the in-memory path (so this compares it).
    if _printable_ascii_only(doc):
        assert rego_input.build({"doc": doc}) is not None
    assert seen == {"doc": json.loads(json.dumps(doc))}


@pytest.mark.parametrize(
    "value",
    ['quote " inside', "back\\slash", "new\nline", "caf\u00e9", 1 << 63, -(1 << 63) - 1, 1.5],
)
def test_values_the_in_memory_path_would_garble_take_the_text_path(value: object) -> None:
    assert rego_input.build({"claim": value}) is None
    assert rego_input.build({"nested": [{"claim": value}]}) is None
    assert rego_input.build({value: 1} if isinstance(value, str) else [value]) is None
    seen = PolicyEngine().evaluate(ECHO, {"claim": value}, {}).get("seen")
    assert seen == {"claim": value}


def test_typical_claims_take_the_in_memory_path() -> None:
    claims = {"snp": {"measurement": "ab" * 48, "reported_tcb_snp": 22, "debug": False},
              "list": [1, "x", None], "tag": "a-b_c.d/e:f"}
    assert rego_input.build(claims) is not None
    assert PolicyEngine().evaluate(ECHO, claims, {}).get("seen") == claims
