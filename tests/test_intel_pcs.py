"""Intel PCS requests, and fetching DCAP collateral from a PCS-like server on 127.0.0.1.

No test contacts Intel: the server below plays PCS (or a PCCS) on loopback,
including the URL-encoded ``*-Issuer-Chain`` headers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote as urlquote

import pytest
from cryptography.hazmat.primitives import serialization

from tests.dcap_sim import ISSUE, NEXT, NOW, generate
from veritee.cli.main import main
from veritee.collateral import CollateralResponse, FetcherChain, HttpFetcher
from veritee.collateral.intel_pcs import (
    DEFAULT_PCS_URL,
    PCS_URL_ENV,
    ROOT_CA_CRL_URL,
    issuer_chain,
    pck_crl_request,
    pcs_base_from_env,
    qe_identity_request,
    root_ca_crl_request,
    tcb_info_request,
)
from veritee.errors import CollateralUnavailableError, ConfigError
from veritee.tee.dcap.gather import DcapSources, gather_collateral
from veritee.tee.dcap.quote import TeeType
from veritee.tee.dcap.sim import SimulatedDcapPlatform
from veritee.tee.dcap.verify import IntelRoots, evaluate_collateral, verify_quote_signatures
from veritee.tee.tdx.sim import SimulatedTdxPlatform
from veritee.tee.tdx.verify import tdx_tcb

FMSPC = bytes.fromhex("50806f000000")


def test_tcb_info_and_qe_identity_requests() -> None:
    req = tcb_info_request("tdx", FMSPC, base="https://pcs.example")
    assert req.url == "https://pcs.example/tdx/certification/v4/tcb?fmspc=50806F000000"
    assert req.bundle_path == "tdx/certification/v4/tcb/fmspc=50806F000000.json"
    assert req.description == "TDX TCB info for FMSPC 50806F000000"
    early = tcb_info_request("sgx", FMSPC, update="early", base="https://pcs.example/")
    assert early.url.endswith("/sgx/certification/v4/tcb?fmspc=50806F000000&update=early")
    assert early.bundle_path.endswith("fmspc=50806F000000_update=early.json")
    assert (
        qe_identity_request("tdx", base="https://p").url
        == "https://p/tdx/certification/v4/qe/identity"
    )
    assert qe_identity_request("sgx", base="https://p").description == "QE identity"
    for bad in (
        lambda: tcb_info_request("snp", FMSPC),
        lambda: tcb_info_request("tdx", b"\0"),
        lambda: pck_crl_request("other"),
        lambda: tcb_info_request("sgx", FMSPC, update="x"),
    ):  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            bad()


def test_crl_requests_and_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PCS_URL_ENV, raising=False)
    assert pcs_base_from_env() == DEFAULT_PCS_URL
    crl = pck_crl_request("processor")
    assert crl.url == f"{DEFAULT_PCS_URL}/sgx/certification/v4/pckcrl?ca=processor&encoding=der"
    assert crl.bundle_path == "sgx/certification/v4/pckcrl/ca=processor_encoding=der.der"
    assert root_ca_crl_request().url == ROOT_CA_CRL_URL
    monkeypatch.setenv(PCS_URL_ENV, "http://pccs.internal:8081/")
    assert pcs_base_from_env() == "http://pccs.internal:8081"
    assert root_ca_crl_request().url == "http://pccs.internal:8081/sgx/certification/v4/rootcacrl"
    monkeypatch.setenv(PCS_URL_ENV, "ftp://x")
    with pytest.raises(ConfigError):
        pcs_base_from_env()


def test_issuer_chain_header_is_url_decoded() -> None:
    pem = "-----BEGIN CERTIFICATE-----\nAB+/=\n-----END CERTIFICATE-----\n"
    resp = CollateralResponse(
        body=b"", headers={"TCB-Info-Issuer-Chain": urlquote(pem)}, source="x"
    )
    assert issuer_chain(resp, "TCB-Info-Issuer-Chain") == pem.encode()
    assert issuer_chain(resp, "sgx-pck-crl-issuer-chain") is None


# -- a PCS on loopback ---------------------------------------------------------------------------


class Pcs(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[str] = []

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that drops a kept-alive connection is not a test failure

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Pcs

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        status, headers, body = self.server.routes.get(self.path, (404, {}, b"not found"))
        self.send_response_only(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def pcs() -> Iterator[Pcs]:
    server = Pcs()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


def _serve(pcs: Pcs, p: SimulatedDcapPlatform) -> None:
    pem = serialization.Encoding.PEM
    signing = (p.tcb_cert.public_bytes(pem) + p.root.public_bytes(pem)).decode()
    crl_chain = (p.pck_ca.public_bytes(pem) + p.root.public_bytes(pem)).decode()
    der = serialization.Encoding.DER
    fm = p.fmspc.hex().upper()
    pcs.routes = {
        f"/tdx/certification/v4/tcb?fmspc={fm}": (
            200,
            {"TCB-Info-Issuer-Chain": urlquote(signing)},
            p.tcb_info_body(issue=ISSUE, next_update=NEXT),
        ),
        "/tdx/certification/v4/qe/identity": (
            200,
            {"SGX-Enclave-Identity-Issuer-Chain": urlquote(signing)},
            p.qe_identity_body(issue=ISSUE, next_update=NEXT),
        ),
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der": (
            200,
            {"SGX-PCK-CRL-Issuer-Chain": urlquote(crl_chain)},
            p.crl(this_update=ISSUE, next_update=NEXT).public_bytes(der),
        ),
        # A PCCS answers the Root CA CRL as hex text.
        "/sgx/certification/v4/rootcacrl": (
            200,
            {},
            p.crl(issuer="root", this_update=ISSUE, next_update=NEXT)
            .public_bytes(der)
            .hex()
            .encode(),
        ),
    }


def test_gather_fetches_every_item_with_issuer_chains(pcs: Pcs, tmp_path: Path) -> None:
    sim = SimulatedTdxPlatform(generate(TeeType.TDX))
    _serve(pcs, sim.dcap)
    quote = sim.quote()
    roots = IntelRoots.intel(()).with_root(sim.dcap.root)
    verified = verify_quote_signatures(quote.quote, roots, NOW)
    with HttpFetcher(tmp_path / "cache", max_attempts=1) as http:
        col = gather_collateral(
            verified, DcapSources(fetcher=FetcherChain(http), pcs_base=pcs.base)
        )
    assert col.missing() == []
    assert len(pcs.seen) == 4
    result = evaluate_collateral(verified, col, roots, NOW, tdx=tdx_tcb(quote.report))
    assert result.tcb.status == "UpToDate"


def test_offline_items_are_not_fetched_and_404s_are_named(pcs: Pcs, tmp_path: Path) -> None:
    sim = SimulatedTdxPlatform(generate(TeeType.TDX))
    _serve(pcs, sim.dcap)
    del pcs.routes["/tdx/certification/v4/qe/identity"]
    offline = sim.dcap.write_collateral(tmp_path / "offline", issue=ISSUE, next_update=NEXT)
    (offline / "qe_identity.json").unlink()
    quote = sim.quote()
    roots = IntelRoots.intel(()).with_root(sim.dcap.root)
    verified = verify_quote_signatures(quote.quote, roots, NOW)
    with HttpFetcher(tmp_path / "cache", max_attempts=1) as http:
        col = gather_collateral(
            verified,
            DcapSources(directories=(offline,), fetcher=FetcherChain(http), pcs_base=pcs.base),
        )
    assert pcs.seen == ["/tdx/certification/v4/qe/identity"]
    with pytest.raises(CollateralUnavailableError, match="TD QE identity") as info:
        evaluate_collateral(verified, col, roots, NOW, tdx=tdx_tcb(quote.report))
    assert "404" in str(info.value)


def test_cli_fetch_uses_the_configured_pcs(
    pcs: Pcs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = SimulatedTdxPlatform(generate(TeeType.TDX))
    _serve(pcs, sim.dcap)
    monkeypatch.setenv(PCS_URL_ENV, pcs.base)
    monkeypatch.setenv("VERITEE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "q.bin").write_bytes(sim.quote().to_bytes())
    root = tmp_path / "root.pem"
    root.write_bytes(sim.dcap.root.public_bytes(serialization.Encoding.PEM))
    argv = [
        "verify",
        "tdx",
        str(tmp_path / "q.bin"),
        "--trust-root",
        str(root),
        "--at",
        NOW.isoformat(),
    ]
    assert main(argv) == 4  # without --fetch nothing is fetched
    assert pcs.seen == []
    assert main([*argv, "--fetch"]) == 0, capsys.readouterr().err
    assert len(pcs.seen) == 4
