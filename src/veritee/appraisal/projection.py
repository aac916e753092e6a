"""Which parts of ``input`` a Rego policy can read, from its source text.

A fleet of identical guests sends claims that differ only in fields a policy
never looks at (report data, nonce, chip id). If every reference to ``input``
in a policy is a literal path (``input.snp.measurement``,
``input["az-snp-vtpm"].tpm.pcr11``), the policy's result is a function of the
values at those paths alone, so ``project`` can cut the document down to them
and the engine can remember decisions by that projection.

The analysis is deliberately conservative and answers None (no projection,
evaluate everything) for anything it does not fully understand: a bare
``input``, a computed subscript right after ``input``, ``with``, ``import
input``, a non-deterministic builtin, a string or comment it cannot lex.

One refinement makes the common guard ``input.snp`` (a statement on its own
line in a rule body, meaning "this TEE's claims are present") cost nothing: such
a *presence* path keeps only whether the value exists and whether it is
``false``, not the value itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

# Builtins whose result is not a function of input and data: never cache those.
_NONDETERMINISTIC = re.compile(
    r"\b(?:time\.now_ns|rand\.|uuid\.|http\.send|opa\.runtime|net\.lookup|print|trace"
    r"|crypto\.x509\.parse_and_verify|io\.jwt\.decode_verify)\b"
)
_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING_KEY = re.compile(r'\["((?:[^"\\\n])*)"\]')
_CLOSERS = {")": "(", "]": "[", "}": "{"}


@dataclass(frozen=True)
class Projection:
    values: tuple[tuple[str, ...], ...]  # the whole value at these paths matters
    presence: tuple[tuple[str, ...], ...]  # only "defined and not false" matters here


@dataclass(frozen=True)
class _Token:
    kind: str  # ident | string | punct
    text: str
    start: int
    line: int


def _lex(source: str) -> list[_Token] | None:
    """Identifiers, strings and punctuation, with comments dropped; None if unlexable."""
    tokens: list[_Token] = []
    i, line, n = 0, 0, len(source)
    while i < n:
        c = source[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            while i < n and source[i] != "\n":
                i += 1
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                if source[j] == "\n":
                    return None
                j += 2 if source[j] == "\\" else 1
            if j >= n:
                return None
            tokens.append(_Token("string", source[i : j + 1], i, line))
            i = j + 1
        elif c == "`":
            j = source.find("`", i + 1)
            if j < 0:
                return None
            tokens.append(_Token("string", source[i : j + 1], i, line))
            line += source.count("\n", i, j)
            i = j + 1
        elif _IDENT_START.match(c):
            m = _IDENT.match(source, i)
            assert m is not None
            tokens.append(_Token("ident", m.group(), i, line))
            i = m.end()
        else:
            tokens.append(_Token("punct", c, i, line))
            i += 1
    return tokens


def _chain(source: str, start: int) -> tuple[tuple[str, ...], int]:
    """The literal path right after ``input`` (no spaces), and where it ends."""
    path: list[str] = []
    i = start
    while i < len(source):
        if source[i] == ".":
            m = _IDENT.match(source, i + 1)
            if m is None:
                break
            path.append(m.group())
            i = m.end()
            continue
        m = _STRING_KEY.match(source, i)
        if m is None:
            break
        path.append(m.group(1))
        i = m.end()
    return tuple(path), i


# Tokens that leave an expression unfinished (or are not a statement's start).
_CONTINUES = frozenset(
    {"if", "else", "not", "in", "some", "every", "with", "as", "contains", "default",
     "import", "package", "or", "and"}
)


def _is_statement(tokens: list[_Token], k: int, end: int, in_rule_body: bool) -> bool:
    """Is the reference ``tokens[k]`` .. ``end`` a whole line, and a statement of its own
    in a rule body (``if {`` ... ``}``), i.e. only tested for presence?"""
    if not in_rule_body or k == 0:
        return False
    line = tokens[k].line
    before = tokens[k - 1]
    j = k
    while j + 1 < len(tokens) and tokens[j + 1].start < end:
        j += 1  # the tokens of the reference itself
    if j + 1 >= len(tokens):
        return False
    after = tokens[j + 1]
    if before.line == line or after.line == line:
        return False  # something else shares the line
    before_done = before.text in ("{", ")", "]", "}") or before.kind == "string" or (
        before.kind == "ident" and before.text not in _CONTINUES
    )
    after_starts = after.text == "}" or (after.kind == "ident" and after.text not in _CONTINUES)
    return before_done and after_starts


@functools.lru_cache(maxsize=128)
def analyse(source: str) -> Projection | None:
    """The paths of ``input`` the policy reads, or None when it cannot be known."""
    if _NONDETERMINISTIC.search(source):
        return None
    tokens = _lex(source)
    if tokens is None:
        return None
    values: set[tuple[str, ...]] = set()
    presence: set[tuple[str, ...]] = set()
    stack: list[tuple[str, bool]] = []  # open brackets; for "{": follows the keyword "if"
    for k, tok in enumerate(tokens):
        prev = tokens[k - 1] if k else None
        if tok.kind == "punct":
            if tok.text in "([{":
                after_if = prev is not None and prev.kind == "ident" and prev.text == "if"
                stack.append((tok.text, tok.text == "{" and after_if))
            elif tok.text in _CLOSERS:
                if not stack or stack[-1][0] != _CLOSERS[tok.text]:
                    return None
                stack.pop()
            continue
        if tok.kind != "ident":
            continue
        if tok.text == "with":
            return None  # replaces parts of input (or data) for one expression
        if tok.text == "import" and k + 1 < len(tokens) and tokens[k + 1].text == "input":
            return None
        if tok.text != "input":
            continue
        if prev is not None and prev.kind == "punct" and prev.text == ".":
            continue  # a field named "input" of something else
        path, end = _chain(source, tok.start + len("input"))
        if not path:
            return None  # bare input or a computed subscript: anything may be read
        in_body = bool(stack) and stack[-1] == ("{", True)
        if _is_statement(tokens, k, end, in_body):
            presence.add(path)
        else:
            values.add(path)
    if stack:
        return None
    return Projection(tuple(sorted(values)), tuple(sorted(presence - values)))


_ABSENT = object()


def _get(doc: object, path: tuple[str, ...]) -> object:
    for key in path:
        if not isinstance(doc, Mapping) or key not in doc:
            return _ABSENT
        doc = doc[key]
    return doc


def project(doc: object, projection: Projection) -> dict[str, object]:
    """The part of ``doc`` the policy can tell apart: equal results are guaranteed for
    documents with equal projections."""
    out: dict[str, object] = {}
    whole: list[tuple[str, ...]] = []
    kinds = [(p, True) for p in projection.values] + [(p, False) for p in projection.presence]
    for path, is_value in sorted(kinds, key=lambda item: (len(item[0]), not item[1])):
        if any(path[: len(w)] == w for w in whole):
            continue  # inside a subtree already copied whole
        value = _get(doc, path)
        if value is _ABSENT:
            continue
        parent = out
        for key in path[:-1]:
            child = parent.get(key)
            if not isinstance(child, dict):
                child = parent[key] = {}
            parent = child
        leaf = path[-1]
        if is_value:
            parent[leaf] = value
            whole.append(path)
        elif leaf not in parent:
            # Presence only: an object stays an object (longer paths may add to it),
            # false stays false, anything else is just "true".
            parent[leaf] = {} if isinstance(value, Mapping) else value is not False
    return out
