"""Opt-in HTTP fetching of vendor collateral, through an on-disk cache, with a finite retry budget.

Nothing in veritee constructs :class:`HttpFetcher` unless the operator asked for
fetching (DESIGN.md: no hidden network). It never judges the content: a stale or
revoked certificate is the verifier's business, so the cache only decides when to
ask the vendor again, following HTTP caching (RFC 9111) in a simple form:

* fresh for ``Cache-Control: max-age`` (less ``Age``), else until ``Expires``
  measured from ``Date`` (or the fetch time); otherwise stale;
* ``no-store``: never written (and an older copy is dropped);
* ``no-cache`` or stale: revalidated with ``If-None-Match``/``If-Modified-Since``;
  a ``304`` refreshes the stored metadata and serves the stored body;
* no freshness information at all: revalidated on every fetch.

Retries cover connection errors, timeouts, ``5xx`` and ``429``; at most
``max_attempts`` requests and at most ``max_total_wait_s`` seconds of sleeping in
total, honouring ``Retry-After``. Other ``4xx`` are answers, not accidents: no retry.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType

import httpx

from veritee.clock import utcnow
from veritee.collateral.base import CollateralRequest, CollateralResponse, unavailable
from veritee.errors import CollateralUnavailableError

__all__ = ["DEFAULT_USER_AGENT", "HttpFetcher"]

_log = logging.getLogger(__name__)


def _default_user_agent() -> str:
    try:
        return f"veritee/{version('veritee')}"
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "veritee"


DEFAULT_USER_AGENT = _default_user_agent()

# Response headers worth keeping: cache validators and freshness, and vendor
# metadata that travels in headers (Intel PCS sends certificate issuer chains as
# ``*-Issuer-Chain`` and PCK metadata as ``SGX-*``/``TCB-*``).
_KEPT_HEADERS = frozenset(
    {"etag", "last-modified", "cache-control", "expires", "date", "age", "content-type"}
)
_KEPT_PREFIXES = ("sgx-", "tcb-")

_CACHE_FORMAT = 1
_FIRST_BACKOFF_S = 0.5


def _kept(headers: httpx.Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in headers:  # httpx yields each name once, lower-cased
        if (
            name in _KEPT_HEADERS
            or name.endswith("-issuer-chain")
            or name.startswith(_KEPT_PREFIXES)
        ):
            out[name] = headers[name]  # repeated headers come joined with ", "
    return out


@dataclass(frozen=True)
class _CacheEntry:
    url: str
    headers: Mapping[str, str]
    fetched_at: _dt.datetime
    body: bytes


@dataclass(frozen=True)
class _Outcome:
    status: int  # 200 or 304
    headers: dict[str, str]
    body: bytes


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Fatal(Exception):
    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class _GiveUp(Exception):
    """All attempts failed; ``transient`` says a stale copy may stand in."""

    def __init__(self, error: CollateralUnavailableError, *, transient: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.transient = transient


class CacheStats:
    """Process-wide counters of the collateral cache, read by the service's metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {"hit": 0, "revalidated": 0, "miss": 0, "stale": 0}

    def add(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


CACHE_STATS = CacheStats()


class HttpFetcher:
    """Fetch collateral over HTTP(S) through an on-disk cache keyed by SHA-256 of the URL."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        timeout_s: float = 10,
        max_attempts: int = 4,
        max_total_wait_s: float = 30,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], _dt.datetime] = utcnow,
        user_agent: str = DEFAULT_USER_AGENT,
        allow_stale_on_error: bool = False,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_total_wait_s < 0:
            raise ValueError("max_total_wait_s must not be negative")
        self.cache_dir = Path(cache_dir)
        self.timeout_s = float(timeout_s)
        self.max_attempts = max_attempts
        self.max_total_wait_s = float(max_total_wait_s)
        self.allow_stale_on_error = allow_stale_on_error
        self._sleep = sleep
        self._now = now
        self._client = httpx.Client(
            transport=transport,
            timeout=self.timeout_s,
            headers={"User-Agent": user_agent, "Accept": "*/*"},
            follow_redirects=True,
            max_redirects=5,
        )

    def __repr__(self) -> str:
        return f"HttpFetcher(cache_dir={str(self.cache_dir)!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the Fetcher protocol -------------------------------------------------

    def fetch(self, request: CollateralRequest) -> CollateralResponse:
        entry = self._load(request)
        if entry is not None and _is_fresh(entry, self._now()):
            CACHE_STATS.add("hit")
            return _from_cache(entry)

        conditional: dict[str, str] = {}
        if entry is not None:
            if "etag" in entry.headers:
                conditional["If-None-Match"] = entry.headers["etag"]
            if "last-modified" in entry.headers:
                conditional["If-Modified-Since"] = entry.headers["last-modified"]

        try:
            outcome = self._fetch_with_retries(request, conditional)
        except _GiveUp as failure:
            if failure.transient and entry is not None and self.allow_stale_on_error:
                _log.warning(
                    "%s; serving the stale cached copy fetched at %s",
                    failure.error.message,
                    entry.fetched_at.isoformat(),
                )
                CACHE_STATS.add("stale")
                return _from_cache(entry)
            raise failure.error from None

        fetched_at = self._now()
        if outcome.status == 304:
            if entry is None:  # we only send validators when we hold a copy
                raise unavailable(
                    request, request.url, "the server answered 304 to an unconditional request"
                )
            refreshed = _CacheEntry(
                url=entry.url,
                headers={**entry.headers, **outcome.headers},
                fetched_at=fetched_at,
                body=entry.body,
            )
            self._store(refreshed, metadata_only=True)
            CACHE_STATS.add("revalidated")
            return _from_cache(refreshed)

        fresh = _CacheEntry(
            url=request.url, headers=outcome.headers, fetched_at=fetched_at, body=outcome.body
        )
        self._store(fresh, metadata_only=False)
        CACHE_STATS.add("miss")
        return CollateralResponse(
            body=outcome.body, headers=outcome.headers, source=f"http:{request.url}"
        )

    # -- network --------------------------------------------------------------

    def _fetch_with_retries(
        self, request: CollateralRequest, conditional: Mapping[str, str]
    ) -> _Outcome:
        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            try:
                return self._attempt(request, conditional)
            except _Fatal as fatal:
                raise _GiveUp(
                    unavailable(request, request.url, fatal.reason, hint=fatal.hint),
                    transient=False,
                ) from None
            except _Retryable as failure:
                if attempt == self.max_attempts:
                    why = f"{failure.reason} (gave up after {attempt} attempts)"
                    raise self._transient(request, why) from None
                remaining = self.max_total_wait_s - waited
                if failure.retry_after is not None:
                    if failure.retry_after > remaining:
                        why = (
                            f"{failure.reason}; the vendor asked to wait "
                            f"{failure.retry_after:g} s (Retry-After), more than the "
                            f"{remaining:g} s left of the retry budget"
                        )
                        raise self._transient(request, why) from None
                    delay = failure.retry_after
                else:
                    if remaining <= 0:
                        why = (
                            f"{failure.reason} (gave up after {attempt} attempts: "
                            f"the {self.max_total_wait_s:g} s retry budget is spent)"
                        )
                        raise self._transient(request, why) from None
                    delay = min(_FIRST_BACKOFF_S * 2 ** (attempt - 1), remaining)
                _log.info("%s: %s; retrying in %g s", request.url, failure.reason, delay)
                self._sleep(delay)
                waited += delay
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _transient(self, request: CollateralRequest, why: str) -> _GiveUp:
        hint = (
            f"check network access to {request.host} and try again later, or pass "
            f"--collateral DIR with it at {request.bundle_path}"
        )
        return _GiveUp(unavailable(request, request.url, why, hint=hint), transient=True)

    def _attempt(self, request: CollateralRequest, conditional: Mapping[str, str]) -> _Outcome:
        host = request.host
        try:
            with self._client.stream("GET", request.url, headers=dict(conditional)) as response:
                status = response.status_code
                if status == 200:
                    body = _read_capped(response, request.max_bytes)
                    return _Outcome(200, _kept(response.headers), body)
                if status == 304 and conditional:
                    return _Outcome(304, _kept(response.headers), b"")
                if status == 429 or status >= 500:
                    retry_after = None
                    if status in (429, 503):
                        retry_after = _parse_retry_after(
                            response.headers.get("retry-after"), self._now()
                        )
                    raise _Retryable(f"HTTP {status} from {host}", retry_after)
                if status == 404:
                    raise _Fatal(
                        f"not found at vendor (HTTP 404 from {host})",
                        hint="check the identifiers in the request (product, chip id, TCB), "
                        f"or pass --collateral DIR with it at {request.bundle_path}",
                    )
                raise _Fatal(
                    f"HTTP {status} {response.reason_phrase} from {host}".rstrip(),
                    hint=f"pass --collateral DIR with it at {request.bundle_path}",
                )
        except httpx.TimeoutException:
            raise _Retryable(f"no answer from {host} within {self.timeout_s:g} s") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Retryable(f"network error talking to {host}: {exc}") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise _Fatal(f"request failed: {exc}") from None

    # -- cache ----------------------------------------------------------------

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.cache_dir / f"{key}.body", self.cache_dir / f"{key}.json"

    def _load(self, request: CollateralRequest) -> _CacheEntry | None:
        """The cached copy, or None if absent, torn, corrupt or over the size bound."""
        body_path, meta_path = self._paths(request.url)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if (
                not isinstance(meta, dict)
                or meta.get("format") != _CACHE_FORMAT
                or meta.get("url") != request.url
                or not isinstance(meta.get("body_size"), int)
                or meta["body_size"] > request.max_bytes
            ):
                return None
            with body_path.open("rb") as handle:
                body = handle.read(request.max_bytes + 1)
            if len(body) != meta["body_size"] or hashlib.sha256(body).hexdigest() != meta.get(
                "body_sha256"
            ):
                return None  # body and metadata from different writes, or damaged
            headers = meta.get("headers")
            if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
            ):
                return None
            fetched_at = _dt.datetime.fromisoformat(str(meta.get("fetched_at")))
        except (OSError, ValueError):
            return None
        if fetched_at.tzinfo is None:
            return None
        return _CacheEntry(url=request.url, headers=headers, fetched_at=fetched_at, body=body)

    def _store(self, entry: _CacheEntry, *, metadata_only: bool) -> None:
        body_path, meta_path = self._paths(entry.url)
        if "no-store" in _cache_control(entry.headers):
            for path in (meta_path, body_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            return
        meta = {
            "format": _CACHE_FORMAT,
            "url": entry.url,
            "status": 200,
            "headers": dict(entry.headers),
            "fetched_at": entry.fetched_at.isoformat(),
            "body_sha256": hashlib.sha256(entry.body).hexdigest(),
            "body_size": len(entry.body),
        }
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            # Body first, metadata last: a reader matches them by the body hash, so
            # a crash or a concurrent writer leaves a miss, never a wrong body.
            if not metadata_only:
                _atomic_write(body_path, entry.body)
            _atomic_write(meta_path, json.dumps(meta, sort_keys=True).encode("utf-8"))
        except OSError as exc:
            # The fetch itself succeeded; a read-only cache must not turn it into a failure.
            _log.warning("cannot write collateral cache in %s: %s", self.cache_dir, exc)


def _from_cache(entry: _CacheEntry) -> CollateralResponse:
    return CollateralResponse(body=entry.body, headers=entry.headers, source=f"cache:{entry.url}")


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise _Fatal(
            f"the body would be {int(declared)} bytes, over the {max_bytes}-byte limit",
            hint="the vendor sent something other than the expected item; try again later",
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise _Fatal(
                f"the body exceeded the {max_bytes}-byte limit; download aborted",
                hint="the vendor sent something other than the expected item; try again later",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


# -- HTTP caching helpers (RFC 9111, simplified as documented above) ------------


def _cache_control(headers: Mapping[str, str]) -> dict[str, str]:
    directives: dict[str, str] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = value.strip().strip('"')
    return directives


def _http_date(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed


def _seconds(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _is_fresh(entry: _CacheEntry, now: _dt.datetime) -> bool:
    directives = _cache_control(entry.headers)
    if "no-cache" in directives or "no-store" in directives:
        return False
    date = _http_date(entry.headers.get("date"))
    if "max-age" in directives:
        lifetime = float(_seconds(directives["max-age"]) or 0)
    elif "expires" in entry.headers:
        expires = _http_date(entry.headers["expires"])
        if expires is None:  # e.g. "Expires: 0" means already expired
            return False
        lifetime = (expires - (date or entry.fetched_at)).total_seconds()
    else:
        return False  # no freshness information: revalidate every time
    apparent_age = max(0.0, (entry.fetched_at - date).total_seconds()) if date else 0.0
    initial_age = max(apparent_age, float(_seconds(entry.headers.get("age")) or 0))
    resident = max(0.0, (now - entry.fetched_at).total_seconds())
    return lifetime > initial_age + resident


def _parse_retry_after(value: str | None, now: _dt.datetime) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date."""
    seconds = _seconds(value)
    if seconds is not None:
        return float(seconds)
    when = _http_date(value)
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())
