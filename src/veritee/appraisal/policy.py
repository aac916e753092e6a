"""Rego policies (regopy): compile checks, evaluation, Trustee's reference-value builtin.

Trustee's attestation service offers ``query_reference_value(name)``, returning
the stored value or null. regopy has no host-function hook, so the same function
is added in Rego, in the policy's own package, reading ``data.reference``;
a policy written for Trustee runs here unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from regopy import Bundle, Interpreter, RegoError

from veritee.appraisal import projection, rego_input
from veritee.errors import PolicyError

MAX_POLICY_BYTES = 256 * 1024
_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_DEFINES = {
    name: re.compile(rf"^\s*{name}\s*\(", re.MULTILINE)
    for name in ("query_reference_value", "get_reference_value")
}
_RV_NAMES = re.compile(
    r"(?:query_reference_value|get_reference_value)\(\s*\"([^\"]+)\"\s*\)"
    r"|data\.reference\.([A-Za-z_]\w*)"
    r"|data\.reference\[\s*\"([^\"]+)\"\s*\]"
)
_RV_ANY = re.compile(r"(?:query_reference_value|get_reference_value)\(|data\.reference\b")


@dataclass(frozen=True)
class RegoPolicy:
    policy_id: str
    body: str
    package: str
    sha384: str

    @classmethod
    def parse(cls, policy_id: str, body: str) -> RegoPolicy:
        """Check size, package and that it compiles; PolicyError with the engine's words.

        Parsed policies are memoized by (id, body): compiling costs milliseconds.
        """
        return _parse_cached(policy_id, body)

    @classmethod
    def _parse(cls, policy_id: str, body: str) -> RegoPolicy:
        if len(body.encode()) > MAX_POLICY_BYTES:
            raise PolicyError(f"policy {policy_id!r} is larger than {MAX_POLICY_BYTES} bytes")
        match = _PACKAGE.search(body)
        if match is None:
            raise PolicyError(f"policy {policy_id!r} has no package declaration")
        policy = cls(
            policy_id=policy_id,
            body=body,
            package=match.group(1),
            sha384=hashlib.sha384(body.encode()).hexdigest(),
        )
        policy._interpreter({})  # compile now, so a broken policy is refused when set
        return policy


    def reference_names(self) -> list[str]:
        """Reference values the policy consults (for explaining denials)."""
        return list(_reference_names(self.body))

    def consults_reference_dynamically(self) -> bool:
        """True when some lookup is not by a literal name (then any value may be consulted)."""
        return _consults_dynamically(self.body)

    def _helpers(self) -> str:
        lines = [f"package {self.package}", "import rego.v1"]
        for name, pattern in _DEFINES.items():
            if not pattern.search(self.body):
                lines.append(
                    f"{name}(rv_name) := rv_value if {{ rv_value := data.reference[rv_name] }}"
                    " else := null"
                )
        return "\n".join(lines) + "\n"

    def _interpreter(self, data: Mapping[str, object]) -> tuple[Interpreter, Bundle]:
        """An interpreter with the policy and data loaded, the package compiled to a bundle.

        Evaluating the bundle per request is about ten times cheaper than a
        query, and evaluating the whole package sidesteps regopy 1.5 reporting
        a rule that only has its ``default`` value as undefined.
        """
        rego = Interpreter()
        try:
            rego.add_module(f"{self.policy_id}.rego", self.body)
            rego.add_module("veritee_builtins.rego", self._helpers())
            rego.add_data_json(json.dumps(data))
            bundle = rego.build(f"data.{self.package}")
            rego.set_input_term("{}")
            out = rego.query_bundle(bundle)
        except RegoError as exc:
            raise PolicyError(
                f"policy {self.policy_id!r} does not compile: {_first_line(exc)}"
            ) from None
        if not out.ok():
            raise PolicyError(f"policy {self.policy_id!r} does not compile: {out}")
        return rego, bundle


@functools.lru_cache(maxsize=64)
def _reference_names(body: str) -> tuple[str, ...]:
    names: list[str] = []
    for groups in _RV_NAMES.findall(body):
        name = next(g for g in groups if g)
        if name not in names:
            names.append(name)
    return tuple(names)


@functools.lru_cache(maxsize=64)
def _consults_dynamically(body: str) -> bool:
    return len(_RV_ANY.findall(body)) > len(_RV_NAMES.findall(body))


@functools.lru_cache(maxsize=64)
def _parse_cached(policy_id: str, body: str) -> RegoPolicy:
    return RegoPolicy._parse(policy_id, body)


_ERRMSG = re.compile(r"\(errormsg \d+:([^)]*)\)")


def _first_line(exc: Exception) -> str:
    """The engine's own error messages, without its AST dump."""
    text = str(exc).strip()
    messages = list(dict.fromkeys(_ERRMSG.findall(text)))
    if messages:
        return "; ".join(messages)
    return text.splitlines()[0] if text else type(exc).__name__


class PolicyEngine:
    """Evaluates policies, reusing compiled interpreters per thread (regopy is not thread-safe).

    Where a policy's reads of ``input`` are all literal paths (``projection.analyse``),
    it is evaluated on just those values, and decisions are remembered by them: a
    fleet of identical guests costs one evaluation, not one per attestation. A
    policy whose projections rarely repeat stops being remembered after a while.
    """

    MEMO_SIZE = 4096
    # After this many lookups, a policy hitting less than 1 in 20 is not remembered.
    MEMO_PROBATION = 512

    def __init__(self, cache_size: int = 16, *, memoize: bool = True) -> None:
        self._local = threading.local()
        self._cache_size = cache_size
        self._memoize = memoize
        self._memo: dict[tuple[str, str, str], str] = {}
        self._memo_stats: dict[str, list[int]] = {}  # policy sha384 -> [lookups, hits]
        self._memo_lock = threading.Lock()

    def _get(self, policy: RegoPolicy, data_json: str, data_key: str) -> tuple[Interpreter, Bundle]:
        key = (policy.sha384, policy.package, data_key)
        cache: dict[tuple[str, str, str], tuple[Interpreter, Bundle]] = (
            getattr(self._local, "cache", None) or {}
        )
        self._local.cache = cache
        entry = cache.get(key)
        if entry is None:
            entry = policy._interpreter(json.loads(data_json))
            if len(cache) >= self._cache_size:
                cache.pop(next(iter(cache)))
            cache[key] = entry
        return entry

    def query(
        self, policy: RegoPolicy, rule: str, input_doc: object, data: Mapping[str, object]
    ) -> object:
        """Value of ``data.<package>.<rule>`` for ``input_doc``; None when undefined."""
        return self.evaluate(policy, input_doc, data).get(rule)

    def evaluate(
        self, policy: RegoPolicy, input_doc: object, data: Mapping[str, object]
    ) -> dict[str, object]:
        """Every rule of the policy's package for ``input_doc``."""
        data_json = json.dumps(data, sort_keys=True)
        data_key = hashlib.sha256(data_json.encode()).hexdigest()
        shape = projection.analyse(policy.body)
        if shape is None:
            return self._evaluate(policy, input_doc, data_json, data_key)
        doc = projection.project(input_doc, shape)
        if not self._remembering(policy.sha384):
            return self._evaluate(policy, doc, data_json, data_key)
        try:
            key = (policy.sha384, data_key, json.dumps(doc, sort_keys=True))
        except (TypeError, ValueError):
            return self._evaluate(policy, doc, data_json, data_key)
        known = self._memo.get(key)
        self._count(policy.sha384, hit=known is not None)
        if known is not None:
            return dict(json.loads(known))  # a fresh copy: callers may keep or change it
        result = self._evaluate(policy, doc, data_json, data_key)
        with self._memo_lock:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.pop(next(iter(self._memo)))
            self._memo[key] = json.dumps(result)
        return result

    def _remembering(self, sha: str) -> bool:
        if not self._memoize:
            return False
        lookups, hits = self._memo_stats.get(sha, (0, 0))
        return lookups < self.MEMO_PROBATION or hits * 20 >= lookups

    def _count(self, sha: str, *, hit: bool) -> None:
        with self._memo_lock:
            stats = self._memo_stats.setdefault(sha, [0, 0])
            stats[0] += 1
            stats[1] += int(hit)

    def _evaluate(
        self, policy: RegoPolicy, input_doc: object, data_json: str, data_key: str
    ) -> dict[str, object]:
        rego, bundle = self._get(policy, data_json, data_key)
        try:
            made = rego_input.build(input_doc)  # None: not plain, so JSON text
            if made is not None:
                rego.set_input(made)
            else:
                rego.set_input_term(json.dumps(input_doc))
            out = rego.query_bundle(bundle)
        except RegoError as exc:
            raise PolicyError(f"policy {policy.policy_id!r} failed: {_first_line(exc)}") from None
        text = str(out)
        if not out.ok():
            raise PolicyError(f"policy {policy.policy_id!r} failed: {text}")
        if text == "undefined":
            return {}
        doc = json.loads(text)
        exprs = doc.get("expressions") if isinstance(doc, dict) else None
        if not exprs or not isinstance(exprs[0], dict):
            return {}
        return exprs[0]
