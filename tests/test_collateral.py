"""Collateral sources: offline bundle, fetcher chain, HTTP with cache and retries, KDS URLs.

The HTTP tests run a real server on 127.0.0.1 (ephemeral port) whose replies are
scripted per test; time and sleeping are injected, so nothing waits for real.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from veritee.collateral import (
    DEFAULT_KDS_URL,
    CollateralRequest,
    CollateralResponse,
    Fetcher,
    FetcherChain,
    HttpFetcher,
    OfflineBundle,
    cert_chain_request,
    crl_request,
    kds_base_from_env,
    vcek_request,
)
from veritee.errors import CollateralUnavailableError, ConfigError

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)

# Building a verifying TLS context costs ~60 ms; build it once, not per fetcher.
# (The tests speak plain HTTP on loopback; TLS verification stays on regardless.)
_TLS = ssl.create_default_context()


def http_date(when: dt.datetime) -> str:
    return format_datetime(when, usegmt=True)


# --- a scripted loopback HTTP server ------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length
    delay_s: float = 0.0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # lower-case names


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies: list[Reply] = [Reply(404)]
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def script(self, *replies: Reply) -> None:
        """Answer with these in order; the last one repeats forever."""
        with self.lock:
            self.replies = list(replies)

    def take(self, path: str, headers: dict[str, str]) -> Reply:
        with self.lock:
            self.seen.append(Seen(path, headers))
            return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedServer

    def do_GET(self) -> None:
        reply = self.server.take(self.path, {k.lower(): v for k, v in self.headers.items()})
        if reply.delay_s:
            time.sleep(reply.delay_s)
        try:
            # send_response_only: no automatic Date header, the script controls it.
            self.send_response_only(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            has_body = reply.status not in (204, 304)
            if has_body and reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            elif has_body:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if has_body and reply.chunked:
                for start in range(0, len(reply.body), 256):
                    chunk = reply.body[start : start + 256]
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            elif has_body:
                self.wfile.write(reply.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (size cap, timeout)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.01})
    thread.daemon = True
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=2)


class Clock:
    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_fetcher(
    cache_dir: Path, clock: Clock, sleeps: list[float]
) -> Iterator[Callable[..., HttpFetcher]]:
    made: list[HttpFetcher] = []

    def make(**kwargs: object) -> HttpFetcher:
        options: dict[str, object] = {
            # An explicit transport also keeps environment proxies out of the test.
            "transport": httpx.HTTPTransport(verify=_TLS),
            "sleep": sleeps.append,
            "now": clock,
            "timeout_s": 2.0,
        }
        options.update(kwargs)
        fetcher = HttpFetcher(cache_dir, **options)  # type: ignore[arg-type]
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


def item(server: ScriptedServer, path: str = "/vcek/v1/Milan/abcd", **kw: int) -> CollateralRequest:
    return CollateralRequest(
        url=server.url(path),
        bundle_path="vcek/v1/Milan/abcd.der",
        description="VCEK for Milan chip abcd",
        **kw,
    )


def cache_files(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


# --- HTTP: success and the cache ----------------------------------------------


def test_200_is_returned_with_lower_case_headers_and_cached(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], cache_dir: Path
) -> None:
    server.script(
        Reply(
            200,
            {
                "Date": http_date(T0),
                "ETag": '"v1"',
                "Cache-Control": "max-age=3600",
                "TCB-Info-Issuer-Chain": "-----BEGIN%20CERTIFICATE-----",
                "X-Unrelated": "dropped",
            },
            b"cert-bytes",
        )
    )
    request = item(server)
    response = make_fetcher().fetch(request)

    assert response.body == b"cert-bytes"
    assert response.source == f"http:{request.url}"
    assert response.headers["etag"] == '"v1"'
    assert response.headers["tcb-info-issuer-chain"] == "-----BEGIN%20CERTIFICATE-----"
    assert "x-unrelated" not in response.headers
    assert server.count == 1
    assert server.seen[0].path == "/vcek/v1/Milan/abcd"
    assert server.seen[0].headers["user-agent"].startswith("veritee")

    names = cache_files(cache_dir)
    assert len(names) == 2  # body + metadata, no temporary files left behind
    assert {Path(n).suffix for n in names} == {".body", ".json"}
    meta = json.loads(next(cache_dir.glob("*.json")).read_text())
    assert meta["url"] == request.url
    assert meta["status"] == 200
    assert meta["headers"]["etag"] == '"v1"'
    assert meta["headers"]["tcb-info-issuer-chain"] == "-----BEGIN%20CERTIFICATE-----"
    assert dt.datetime.fromisoformat(meta["fetched_at"]) == T0
    assert next(cache_dir.glob("*.body")).read_bytes() == b"cert-bytes"


def test_fresh_cache_hit_makes_no_request(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], clock: Clock
) -> None:
    server.script(
        Reply(
            200,
            {"Date": http_date(T0), "Cache-Control": "max-age=3600", "SGX-FMSPC": "00906ED50000"},
            b"v1",
        ),
        Reply(500),
    )
    request = item(server)
    make_fetcher().fetch(request)
    clock.advance(minutes=30)

    again = make_fetcher().fetch(request)  # a new instance: the cache is on disk

    assert again.body == b"v1"
    assert again.source == f"cache:{request.url}"
    assert again.headers["sgx-fmspc"] == "00906ED50000"
    assert server.count == 1


def test_stale_entry_is_revalidated_and_304_serves_cached_body(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], clock: Clock
) -> None:
    last_modified = http_date(T0 - dt.timedelta(days=3))
    server.script(
        Reply(
            200,
            {
                "Date": http_date(T0),
                "ETag": '"v1"',
                "Last-Modified": last_modified,
                "Cache-Control": "max-age=60",
            },
            b"original",
        ),
        Reply(
            304, {"Date": http_date(T0 + dt.timedelta(minutes=2)), "Cache-Control": "max-age=3600"}
        ),
        Reply(500),
    )
    fetcher = make_fetcher()
    request = item(server)
    fetcher.fetch(request)
    clock.advance(minutes=2)

    revalidated = fetcher.fetch(request)

    assert revalidated.body == b"original"
    assert revalidated.source == f"cache:{request.url}"
    assert revalidated.headers["cache-control"] == "max-age=3600"  # refreshed from the 304
    assert revalidated.headers["etag"] == '"v1"'  # kept from the 200
    assert server.count == 2
    assert server.seen[1].headers["if-none-match"] == '"v1"'
    assert server.seen[1].headers["if-modified-since"] == last_modified

    # The 304 refreshed the metadata: fresh again for an hour, no request.
    clock.advance(minutes=30)
    assert fetcher.fetch(request).body == b"original"
    assert server.count == 2


def test_expires_relative_to_date_then_if_modified_since(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], clock: Clock
) -> None:
    last_modified = http_date(T0 - dt.timedelta(days=1))
    server.script(
        Reply(
            200,
            {
                "Date": http_date(T0),
                "Expires": http_date(T0 + dt.timedelta(hours=1)),
                "Last-Modified": last_modified,
            },
            b"crl-1",
        ),
        Reply(200, {"Date": http_date(T0 + dt.timedelta(hours=2))}, b"crl-2"),
    )
    fetcher = make_fetcher()
    request = item(server)
    fetcher.fetch(request)

    clock.advance(minutes=59)
    assert fetcher.fetch(request).body == b"crl-1"
    assert server.count == 1

    clock.advance(minutes=61)
    newer = fetcher.fetch(request)
    assert newer.body == b"crl-2"
    assert newer.source == f"http:{request.url}"
    assert server.seen[1].headers["if-modified-since"] == last_modified
    assert "if-none-match" not in server.seen[1].headers


def test_age_header_counts_against_max_age(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], clock: Clock
) -> None:
    server.script(
        Reply(200, {"Date": http_date(T0), "Cache-Control": "max-age=600", "Age": "500"}, b"x")
    )
    fetcher = make_fetcher()
    request = item(server)
    fetcher.fetch(request)
    clock.advance(seconds=60)
    fetcher.fetch(request)
    assert server.count == 1  # 500 + 60 < 600
    clock.advance(seconds=60)
    fetcher.fetch(request)
    assert server.count == 2  # 500 + 120 > 600


def test_no_freshness_information_revalidates_every_time(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher]
) -> None:
    server.script(Reply(200, {"ETag": '"e"'}, b"body"), Reply(304, {"ETag": '"e"'}))
    fetcher = make_fetcher()
    request = item(server)
    fetcher.fetch(request)
    second = fetcher.fetch(request)
    third = fetcher.fetch(request)
    assert second.body == third.body == b"body"
    assert server.count == 3
    assert server.seen[1].headers["if-none-match"] == '"e"'
    assert server.seen[2].headers["if-none-match"] == '"e"'


def test_no_cache_is_stored_but_always_revalidated(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], cache_dir: Path
) -> None:
    server.script(
        Reply(
            200,
            {"Date": http_date(T0), "Cache-Control": "no-cache, max-age=3600", "ETag": '"n"'},
            b"b",
        ),
        Reply(304),
    )
    fetcher = make_fetcher()
    request = item(server)
    fetcher.fetch(request)
    assert len(cache_files(cache_dir)) == 2
    assert fetcher.fetch(request).source == f"cache:{request.url}"
    assert server.count == 2
    assert server.seen[1].headers["if-none-match"] == '"n"'


def test_no_store_is_never_cached(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], cache_dir: Path
) -> None:
    server.script(
        Reply(
            200,
            {"Date": http_date(T0), "Cache-Control": "no-store, max-age=3600", "ETag": '"s"'},
            b"b",
        )
    )
    fetcher = make_fetcher()
    request = item(server)
    assert fetcher.fetch(request).source == f"http:{request.url}"
    assert cache_files(cache_dir) == []
    assert fetcher.fetch(request).source == f"http:{request.url}"
    assert server.count == 2
    assert "if-none-match" not in server.seen[1].headers


def test_no_store_answer_drops_an_older_copy(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], cache_dir: Path
) -> None:
    server.script(
        Reply(200, {"ETag": '"1"'}, b"old"),
        Reply(200, {"Cache-Control": "no-store"}, b"new"),
    )
    fetcher = make_fetcher()
    request = item(server)
    fetcher.fetch(request)
    assert len(cache_files(cache_dir)) == 2
    assert fetcher.fetch(request).body == b"new"
    assert cache_files(cache_dir) == []


def test_corrupt_cache_entry_is_ignored(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], cache_dir: Path
) -> None:
    server.script(
        Reply(200, {"Date": http_date(T0), "Cache-Control": "max-age=3600", "ETag": '"c"'}, b"good")
    )
    fetcher = make_fetcher()
    request = item(server)
    fetcher.fetch(request)
    next(cache_dir.glob("*.body")).write_bytes(b"evil")

    response = fetcher.fetch(request)

    assert response.body == b"good"
    assert response.source == f"http:{request.url}"
    assert server.count == 2
    assert "if-none-match" not in server.seen[1].headers  # the damaged entry is not trusted


def test_stale_copy_served_on_failure_only_when_allowed(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(Reply(200, {"Cache-Control": "max-age=0", "ETag": '"z"'}, b"stale"), Reply(500))
    request = item(server)
    make_fetcher(max_attempts=2).fetch(request)

    with pytest.raises(CollateralUnavailableError, match="HTTP 500"):
        make_fetcher(max_attempts=2).fetch(request)

    lenient = make_fetcher(max_attempts=2, allow_stale_on_error=True).fetch(request)
    assert lenient.body == b"stale"
    assert lenient.source == f"cache:{request.url}"
    assert server.count == 1 + 2 + 2


# --- HTTP: retries and their budget -------------------------------------------


def test_429_with_retry_after_then_200(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(Reply(429, {"Retry-After": "1"}), Reply(200, {}, b"ok"))
    response = make_fetcher().fetch(item(server))
    assert response.body == b"ok"
    assert sleeps == [1]
    assert server.count == 2


def test_503_with_retry_after_http_date(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(
        Reply(503, {"Retry-After": http_date(T0 + dt.timedelta(seconds=2))}), Reply(200, {}, b"ok")
    )
    assert make_fetcher().fetch(item(server)).body == b"ok"
    assert sleeps == [2.0]
    assert server.count == 2


def test_retry_after_beyond_budget_gives_up_at_once(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(Reply(429, {"Retry-After": "120"}), Reply(200, {}, b"never"))
    with pytest.raises(CollateralUnavailableError) as caught:
        make_fetcher(max_total_wait_s=30).fetch(item(server))
    message = str(caught.value)
    assert "120 s" in message
    assert "Retry-After" in message
    assert "VCEK for Milan chip abcd" in message
    assert server.count == 1
    assert sleeps == []


def test_500_forever_makes_exactly_max_attempts_requests(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(Reply(500))
    request = item(server)
    with pytest.raises(CollateralUnavailableError) as caught:
        make_fetcher(max_attempts=4).fetch(request)
    assert server.count == 4
    assert sleeps == [0.5, 1.0, 2.0]  # exponential backoff, no sleep after the last try
    message = str(caught.value)
    assert "HTTP 500" in message
    assert "4 attempts" in message
    assert request.url in message
    assert caught.value.exit_code == 4


def test_total_wait_budget_caps_the_backoff(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(Reply(502))
    with pytest.raises(CollateralUnavailableError, match="budget"):
        make_fetcher(max_attempts=10, max_total_wait_s=1.0).fetch(item(server))
    assert sleeps == [0.5, 0.5]
    assert sum(sleeps) <= 1.0
    assert server.count == 3


def test_404_is_not_retried(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(Reply(404, {}, b"no such chip"))
    with pytest.raises(CollateralUnavailableError) as caught:
        make_fetcher().fetch(item(server))
    assert "404" in str(caught.value)
    assert "not found at vendor" in str(caught.value)
    assert server.count == 1
    assert sleeps == []


def test_other_4xx_is_not_retried(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(Reply(400, {}, b"bad TCB"))
    with pytest.raises(CollateralUnavailableError, match="HTTP 400"):
        make_fetcher().fetch(item(server))
    assert server.count == 1
    assert sleeps == []


def test_oversize_body_by_content_length(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], cache_dir: Path
) -> None:
    server.script(Reply(200, {"Cache-Control": "max-age=3600"}, b"x" * 2000))
    with pytest.raises(CollateralUnavailableError, match="2000 bytes, over the 1000-byte limit"):
        make_fetcher().fetch(item(server, max_bytes=1000))
    assert server.count == 1
    assert cache_files(cache_dir) == []


def test_oversize_chunked_body_is_aborted(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], cache_dir: Path
) -> None:
    server.script(Reply(200, {"Cache-Control": "max-age=3600"}, b"y" * 5000, chunked=True))
    with pytest.raises(CollateralUnavailableError, match="exceeded the 1000-byte limit"):
        make_fetcher().fetch(item(server, max_bytes=1000))
    assert server.count == 1
    assert cache_files(cache_dir) == []


def test_chunked_body_within_limit_is_accepted(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher]
) -> None:
    body = bytes(range(256)) * 3
    server.script(Reply(200, {}, body, chunked=True))
    assert make_fetcher().fetch(item(server, max_bytes=len(body))).body == body


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_connection_refused_gives_up_after_bounded_attempts(
    make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    request = CollateralRequest(
        url=f"http://127.0.0.1:{_closed_port()}/vcek/v1/Genoa/x",
        bundle_path="vcek/v1/Genoa/x.der",
        description="VCEK for Genoa chip x",
    )
    with pytest.raises(CollateralUnavailableError) as caught:
        make_fetcher(max_attempts=3).fetch(request)
    assert sleeps == [0.5, 1.0]
    assert "network error" in str(caught.value)
    assert "3 attempts" in str(caught.value)
    assert caught.value.hint is not None
    assert "--collateral" in caught.value.hint


def test_timeout_is_retried_within_the_budget(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher], sleeps: list[float]
) -> None:
    server.script(Reply(200, {}, b"late", delay_s=0.4))
    with pytest.raises(CollateralUnavailableError, match=r"within 0\.1 s"):
        make_fetcher(timeout_s=0.1, max_attempts=2).fetch(item(server))
    assert sleeps == [0.5]
    assert server.count == 2


def test_constructor_rejects_nonsense_bounds(cache_dir: Path) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        HttpFetcher(cache_dir, max_attempts=0)
    with pytest.raises(ValueError, match="timeout_s"):
        HttpFetcher(cache_dir, timeout_s=0)


# --- offline bundle -----------------------------------------------------------


def offline_item(bundle_path: str, max_bytes: int = 1 << 20) -> CollateralRequest:
    return CollateralRequest(
        url="https://kdsintf.amd.com/vcek/v1/Milan/cert_chain",
        bundle_path=bundle_path,
        description="AMD Milan VCEK certificate chain (ASK, ARK)",
        max_bytes=max_bytes,
    )


def test_offline_hit(tmp_path: Path) -> None:
    target = tmp_path / "vcek" / "v1" / "Milan" / "cert_chain.pem"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"-----BEGIN CERTIFICATE-----")
    response = OfflineBundle(tmp_path).fetch(offline_item("vcek/v1/Milan/cert_chain.pem"))
    assert response.body == b"-----BEGIN CERTIFICATE-----"
    assert response.source == f"offline:{target.resolve()}"
    assert dict(response.headers) == {}


def test_offline_miss_says_what_where_and_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(CollateralUnavailableError) as caught:
        OfflineBundle(tmp_path).fetch(offline_item("vcek/v1/Milan/cert_chain.pem"))
    error = caught.value
    assert "AMD Milan VCEK certificate chain" in error.message
    assert str(tmp_path) in error.message
    assert "vcek/v1/Milan/cert_chain.pem is missing" in error.message
    assert error.hint is not None
    assert "--collateral" in error.hint
    assert "--fetch" in error.hint
    assert "kdsintf.amd.com" in error.hint
    assert error.exit_code == 4


@pytest.mark.parametrize(
    "bad_path", ["../secret.pem", "a/../../secret.pem", "/etc/passwd", "a//b", ".", "a\\..\\b"]
)
def test_offline_refuses_paths_escaping_the_bundle(tmp_path: Path, bad_path: str) -> None:
    root = tmp_path / "bundle"
    root.mkdir()
    (tmp_path / "secret.pem").write_bytes(b"outside")
    with pytest.raises(CollateralUnavailableError, match="not a plain relative path"):
        OfflineBundle(root).fetch(offline_item(bad_path))


def test_offline_refuses_symlink_out_of_the_bundle(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    root.mkdir()
    (tmp_path / "secret.pem").write_bytes(b"outside")
    os.symlink(tmp_path / "secret.pem", root / "link.pem")
    with pytest.raises(CollateralUnavailableError, match="leads outside the bundle"):
        OfflineBundle(root).fetch(offline_item("link.pem"))


def test_offline_enforces_max_bytes(tmp_path: Path) -> None:
    (tmp_path / "big.der").write_bytes(b"z" * 101)
    (tmp_path / "ok.der").write_bytes(b"z" * 100)
    with pytest.raises(CollateralUnavailableError, match="100-byte limit"):
        OfflineBundle(tmp_path).fetch(offline_item("big.der", max_bytes=100))
    assert OfflineBundle(tmp_path).fetch(offline_item("ok.der", max_bytes=100)).body == b"z" * 100


def test_offline_refuses_a_directory_and_a_missing_root(tmp_path: Path) -> None:
    (tmp_path / "dir.der").mkdir()
    with pytest.raises(CollateralUnavailableError, match="not a regular file"):
        OfflineBundle(tmp_path).fetch(offline_item("dir.der"))
    with pytest.raises(CollateralUnavailableError, match="bundle directory does not exist"):
        OfflineBundle(tmp_path / "nope").fetch(offline_item("x.der"))


def test_offline_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.der")
    with pytest.raises(CollateralUnavailableError, match="not a regular file"):
        OfflineBundle(tmp_path).fetch(offline_item("pipe.der"))


# --- fetcher chain ------------------------------------------------------------


class Fake:
    def __init__(self, name: str, body: bytes | None = None) -> None:
        self.name = name
        self.body = body
        self.calls = 0

    def fetch(self, request: CollateralRequest) -> CollateralResponse:
        self.calls += 1
        if self.body is None:
            raise CollateralUnavailableError(
                f"{request.description}: not available from {self.name}: {self.name} said no",
                hint=f"fix {self.name}",
            )
        return CollateralResponse(body=self.body, headers={}, source=f"fake:{self.name}")


def test_sources_satisfy_the_fetcher_protocol(tmp_path: Path, cache_dir: Path) -> None:
    with HttpFetcher(cache_dir) as http:
        for source in (OfflineBundle(tmp_path), FetcherChain(), http, Fake("f")):
            assert isinstance(source, Fetcher)


def test_chain_returns_first_success_in_order() -> None:
    first, second, third = Fake("a"), Fake("b", b"B"), Fake("c", b"C")
    response = FetcherChain(first, second, third).fetch(offline_item("x"))
    assert response.body == b"B"
    assert response.source == "fake:b"
    assert (first.calls, second.calls, third.calls) == (1, 1, 0)


def test_chain_offline_before_http(
    tmp_path: Path, server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher]
) -> None:
    server.script(Reply(200, {}, b"from-http"))
    request = item(server)
    chain = FetcherChain(OfflineBundle(tmp_path), make_fetcher())
    assert chain.fetch(request).body == b"from-http"
    target = tmp_path / request.bundle_path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"from-bundle")
    assert chain.fetch(request).body == b"from-bundle"
    assert server.count == 1


def test_chain_failure_lists_every_attempt() -> None:
    with pytest.raises(CollateralUnavailableError) as caught:
        FetcherChain(Fake("bundle"), Fake("kds")).fetch(offline_item("x"))
    error = caught.value
    assert error.message.count("AMD Milan VCEK certificate chain") == 1
    assert "(1) not available from bundle: bundle said no" in error.message
    assert "(2) not available from kds: kds said no" in error.message
    assert error.hint == "fix bundle; fix kds"


def test_empty_chain_is_unavailable_with_advice() -> None:
    with pytest.raises(CollateralUnavailableError, match="no collateral source") as caught:
        FetcherChain().fetch(offline_item("x"))
    assert caught.value.hint is not None
    assert "--fetch" in caught.value.hint


def test_chain_does_not_swallow_bugs() -> None:
    class Broken:
        def fetch(self, request: CollateralRequest) -> CollateralResponse:
            raise KeyError("bug")

    fallback = Fake("later", b"x")
    with pytest.raises(KeyError):
        FetcherChain(Broken(), fallback).fetch(offline_item("x"))
    assert fallback.calls == 0


# --- data types ---------------------------------------------------------------


def test_response_headers_are_lower_case_and_read_only() -> None:
    response = CollateralResponse(
        body=b"", headers={"ETag": "x", "TCB-Info-Issuer-Chain": "y"}, source="s"
    )
    assert dict(response.headers) == {"etag": "x", "tcb-info-issuer-chain": "y"}
    with pytest.raises(TypeError):
        response.headers["etag"] = "z"  # type: ignore[index]


def test_request_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        CollateralRequest(url="https://x", bundle_path="a", description="d", max_bytes=0)
    with pytest.raises(ValueError, match="bundle_path"):
        CollateralRequest(url="https://x", bundle_path="", description="d")


# --- AMD KDS requests ---------------------------------------------------------

CHIP_ID = bytes(range(0x1A, 0x1A + 64))
CHIP_HEX = CHIP_ID.hex()


@pytest.fixture
def no_kds_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERITEE_KDS_URL", raising=False)


@pytest.mark.usefixtures("no_kds_env")
def test_vcek_milan() -> None:
    request = vcek_request("Milan", CHIP_ID, bl=3, tee=0, snp=8, ucode=115)
    assert len(CHIP_HEX) == 128
    assert request.url == (
        f"https://kdsintf.amd.com/vcek/v1/Milan/{CHIP_HEX}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
    )
    assert (
        request.bundle_path
        == f"vcek/v1/Milan/{CHIP_HEX}/blSPL=3_teeSPL=0_snpSPL=8_ucodeSPL=115.der"
    )
    assert request.max_bytes == 64 * 1024
    assert "Milan" in request.description
    assert CHIP_HEX[:16] in request.description


@pytest.mark.usefixtures("no_kds_env")
def test_vcek_genoa() -> None:
    request = vcek_request("genoa", CHIP_ID, bl=9, tee=0, snp=23, ucode=72)
    assert request.url == (
        f"https://kdsintf.amd.com/vcek/v1/Genoa/{CHIP_HEX}?blSPL=9&teeSPL=0&snpSPL=23&ucodeSPL=72"
    )
    assert (
        request.bundle_path
        == f"vcek/v1/Genoa/{CHIP_HEX}/blSPL=9_teeSPL=0_snpSPL=23_ucodeSPL=72.der"
    )


@pytest.mark.usefixtures("no_kds_env")
def test_vcek_turin_uses_8_byte_hwid_and_fmc_first() -> None:
    chip_id = bytes.fromhex("6bb1229b7692b710") + bytes(56)
    expected_url = (
        "https://kdsintf.amd.com/vcek/v1/Turin/6bb1229b7692b710"
        "?fmcSPL=1&blSPL=1&teeSPL=1&snpSPL=4&ucodeSPL=82"
    )
    for hwid in (chip_id, chip_id[:8]):
        request = vcek_request("Turin", hwid, fmc=1, bl=1, tee=1, snp=4, ucode=82)
        assert request.url == expected_url
        assert request.bundle_path == (
            "vcek/v1/Turin/6bb1229b7692b710/fmcSPL=1_blSPL=1_teeSPL=1_snpSPL=4_ucodeSPL=82.der"
        )


def test_vcek_argument_errors() -> None:
    def vcek(product: str, hwid: bytes, fmc: int | None = None) -> CollateralRequest:
        return vcek_request(product, hwid, bl=1, tee=0, snp=1, ucode=1, fmc=fmc)

    with pytest.raises(ValueError, match="unknown AMD SEV-SNP product"):
        vcek("Naples", CHIP_ID)
    with pytest.raises(ValueError, match="FMC"):
        vcek("Turin", CHIP_ID[:8])
    with pytest.raises(ValueError, match="no FMC"):
        vcek("Milan", CHIP_ID, fmc=1)
    with pytest.raises(ValueError, match="64-byte CHIP_ID"):
        vcek("Milan", CHIP_ID[:8])
    with pytest.raises(ValueError, match="zero after its first 8 bytes"):
        vcek("Turin", CHIP_ID, fmc=1)
    with pytest.raises(ValueError, match="8 bytes"):
        vcek("Turin", CHIP_ID[:9], fmc=1)
    with pytest.raises(ValueError, match=r"ucodeSPL must be 0\.\.255"):
        vcek_request("Milan", CHIP_ID, bl=1, tee=0, snp=1, ucode=256)


@pytest.mark.usefixtures("no_kds_env")
def test_cert_chain_and_crl_requests() -> None:
    chain = cert_chain_request("Milan")
    assert chain.url == "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
    assert chain.bundle_path == "vcek/v1/Milan/cert_chain.pem"
    assert chain.max_bytes == 64 * 1024
    assert (
        cert_chain_request("Genoa", "vlek").url
        == "https://kdsintf.amd.com/vlek/v1/Genoa/cert_chain"
    )
    assert "ASVK" in cert_chain_request("Genoa", "vlek").description

    crl = crl_request("Turin")
    assert crl.url == "https://kdsintf.amd.com/vcek/v1/Turin/crl"
    assert crl.bundle_path == "vcek/v1/Turin/crl.der"
    assert crl.max_bytes == 1024 * 1024
    assert crl_request("Milan", key="vlek").url == "https://kdsintf.amd.com/vlek/v1/Milan/crl"
    with pytest.raises(ValueError, match="vcek"):
        crl_request("Milan", key="ask")  # type: ignore[arg-type]


def test_kds_base_override_by_argument_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VERITEE_KDS_URL", raising=False)
    assert kds_base_from_env() == DEFAULT_KDS_URL == "https://kdsintf.amd.com"
    assert crl_request("Milan", base="http://mirror:8080/kds/").url == (
        "http://mirror:8080/kds/vcek/v1/Milan/crl"
    )
    monkeypatch.setenv("VERITEE_KDS_URL", "https://kds.example.internal/")
    assert kds_base_from_env() == "https://kds.example.internal"
    assert (
        cert_chain_request("Milan").url == "https://kds.example.internal/vcek/v1/Milan/cert_chain"
    )
    assert kds_base_from_env({"VERITEE_KDS_URL": ""}) == DEFAULT_KDS_URL
    with pytest.raises(ConfigError, match="VERITEE_KDS_URL"):
        kds_base_from_env({"VERITEE_KDS_URL": "ftp://x"})


def test_kds_request_served_by_a_local_mirror(
    server: ScriptedServer, make_fetcher: Callable[..., HttpFetcher]
) -> None:
    server.script(Reply(200, {"Content-Type": "application/octet-stream"}, b"\x30\x82vcek"))
    base = server.url("")
    request = vcek_request("Milan", CHIP_ID, bl=3, tee=0, snp=8, ucode=115, base=base)
    response = make_fetcher().fetch(request)
    assert response.body == b"\x30\x82vcek"
    assert server.seen[0].path == (
        f"/vcek/v1/Milan/{CHIP_HEX}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
    )
