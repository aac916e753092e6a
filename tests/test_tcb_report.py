"""`veritee tcb report` on real SNP, TDX, TPM and Azure evidence, and its HTML page in
headless Chromium (skipped when Debian's chromium is not installed)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CORPUS, SNP_SAMPLES
from tests.dcap_corpus import TDX_SAMPLES
from tests.tpm_corpus import QUOTES, TPM
from veritee.appraisal.tcb import (
    Component,
    RvInfo,
    build_report,
    load_components,
)
from veritee.appraisal.tcb_html import render_html
from veritee.cli.main import main
from veritee.errors import ConfigError

AT = "2025-01-01T00:00:00Z"
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
needs_corpus = pytest.mark.skipif(CORPUS is None, reason="corpus absent")


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _verified(argv: list[str], path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, err = cli([*argv, "--json"], capsys)
    assert code == 0, err
    path.write_text(out)
    return path


@pytest.fixture(scope="module")
def snp_claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SNP_SAMPLES:
        pytest.skip("corpus absent")
    s = next(x for x in SNP_SAMPLES if x.name == "trustee-milan-vcek")
    path = tmp_path_factory.mktemp("snp") / "snp.json"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["verify", "snp", str(s.path / "report.bin"), "--vcek",
                     str(s.path / "vcek.der"), "--collateral", str(s.roots.parent),
                     "--at", s.at.isoformat(), "--json"]) == 0
    path.write_text(buf.getvalue())
    return path


def _report(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    code, out, err = cli(["tcb", "report", str(path), "--at", AT, "--json", *extra], capsys)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def _layers(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["layer"]: x for x in report["layers"]}


COMPONENTS_TOML = """
[[components]]
name = "OVMF (edk2)"
layer = "firmware"
version = "edk2-stable202402"
open_source = true
audited = false
release_date = 2024-02-23

[[components]]
name = "AMD SEV firmware"
layer = "platform-tcb"
open_source = false
audited = true
audited_by = "an external review"
release_date = "2022-05-01"

[[components]]
name = "Linux"
layer = "os-runtime"
open_source = true
"""


def test_snp_report_layers_matches_components_and_gaps(
    snp_claims: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = json.loads(snp_claims.read_text())["claims"]
    report = _report(snp_claims, capsys)
    layers = _layers(report)
    assert list(layers) == ["hardware", "platform-tcb", "firmware", "kernel", "initrd",
                            "cmdline", "guest-config", "workload", "identity"]
    assert layers["hardware"]["claims"]["chip_id"] == claims["chip_id"]
    assert layers["firmware"]["claims"] == {"measurement": claims["measurement"]}
    assert layers["firmware"]["reference"] == "missing"
    assert layers["kernel"]["measured"] == "unknown"  # no provenance says direct boot was used
    assert layers["workload"]["measured"] == "no"  # HOST_DATA is zero in this report
    gaps = [g["what"] for g in report["not_covered"]]
    assert "The hypervisor, host OS and host firmware (BIOS/UEFI)" in gaps
    assert report["simulated"] is False

    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps({
        "snp_launch_measurement": [claims["measurement"]],
        "snp_bootloader": [claims["reported_tcb_bootloader"]],
        "snp_microcode": [claims["reported_tcb_microcode"] + 1],
        "snp_snp_svn": [claims["reported_tcb_snp"]],
        "snp_tee_svn": [claims["reported_tcb_tee"]],
    }))
    comps = tmp_path / "components.toml"
    comps.write_text(COMPONENTS_TOML)
    report = _report(snp_claims, capsys, "--rv", str(rv), "--components", str(comps))
    layers = _layers(report)
    assert layers["firmware"]["reference"] == "matched"
    assert layers["platform-tcb"]["reference"] == "mismatch"
    states = {r["name"]: r["state"] for r in layers["platform-tcb"]["reference_values"]}
    assert states == {"snp_bootloader": "matched", "snp_microcode": "mismatch",
                      "snp_snp_svn": "matched", "snp_tee_svn": "matched"}
    [ovmf] = layers["firmware"]["components"]
    assert ovmf["open_source"] is True and ovmf["audited"] is False
    assert ovmf["age_days"] == (dt.date(2025, 1, 1) - dt.date(2024, 2, 23)).days
    [amd] = layers["platform-tcb"]["components"]
    assert amd["audited_by"] == "an external review" and amd["open_source"] is False
    assert [c["name"] for c in report["unplaced_components"]] == ["Linux"]
    summary = report["summary"]
    assert summary["mismatched"] == 1 and summary["not_open_source"] == 1
    assert summary["older_than_a_year"] == 1 and summary["not_audited"] == 1

    code, out, _ = cli(["tcb", "report", str(snp_claims), "--rv", str(rv), "--at", AT], capsys)
    assert code == 0
    text = " ".join(out.split())
    assert "Trusted computing base: snp" in text and "mismatch" in text
    assert "Not covered by this evidence:" in text


@needs_corpus
@pytest.mark.skipif(not any(s.name == "dcap-qvl-v4-uptodate" for s in TDX_SAMPLES),
                    reason="corpus absent")
def test_tdx_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = next(x for x in TDX_SAMPLES if x.name == "dcap-qvl-v4-uptodate")
    path = _verified(["verify", "tdx", str(s.path / "quote.dat"), "--collateral", str(s.path),
                      "--at", s.full_at.isoformat()], tmp_path / "tdx.json", capsys)
    report = s.report
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps({"mr_td": [report["mr_td"]], "rtmr_1": ["00" * 48]}))
    layers = _layers(_report(path, capsys, "--rv", str(rv)))
    assert layers["hardware"]["claims"]["tcb_status"] == "UpToDate"
    assert layers["tdx-module"]["claims"]["mr_seam"] == report["mr_seam"]
    assert layers["firmware"]["reference"] == "matched"
    assert layers["bootloader"]["reference"] == "mismatch"  # RTMR1 differs from the value given
    assert layers["cmdline"]["reference"] == "missing"
    # RTMR3 of this TD was never extended: nothing at runtime is measured.
    assert set(str(report["rtmr3"])) == {"0"}
    assert layers["os-runtime"]["measured"] == "no"


@pytest.mark.skipif(TPM is None or not QUOTES, reason="corpus absent")
def test_tpm_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert TPM is not None
    d = TPM / "gce-cos85-quote-no-nonce"
    exp = json.loads((d / "expected.json").read_text())
    pcrs = tmp_path / "pcrs.json"
    pcrs.write_text(json.dumps({"sha256": exp["quotes"]["sha256"]["pcrs"]}))
    path = _verified(["verify", "tpm", "--quote", str(d / "quote-sha256.tpms_attest"),
                      "--signature", str(d / "quote-sha256.tpmt_signature"),
                      "--ak", str(d / "ak_pub.tpmt_public"), "--pcrs", str(pcrs),
                      "--eventlog", str(d / "event_log.bin")], tmp_path / "tpm.json", capsys)
    claims = json.loads(path.read_text())["claims"]
    layers = _layers(_report(path, capsys))
    assert layers["firmware"]["claims"]["pcr00"] == exp["quotes"]["sha256"]["pcrs"]["0"]
    apps = layers["bootloader"]["claims"]["boot_applications"]
    assert any("BOOTX64.EFI" in a for a in apps)
    assert len(apps) == len(claims["boot"]["boot_applications"])
    assert layers["secure-boot"]["claims"]["secure_boot"] is True
    assert layers["os-runtime"]["measured"] == "unknown"  # no IMA list given
    gaps = [g["what"] for g in _report(path, capsys)["not_covered"]]
    assert "Freshness of this quote" in gaps  # the quote carries no checked nonce


@needs_corpus
def test_azure_report_says_the_paravisor_is_not_yours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert CORPUS is not None
    base = CORPUS / "azure-snp-vtpm" / "trustee-genoa-evidence"
    if not base.is_dir():
        pytest.skip("corpus absent")
    path = _verified(["verify", "azure-snp-vtpm", str(base / "evidence-genoa.json"),
                      "--collateral", str(CORPUS / "roots" / "amd"),
                      "--at", "2025-06-01T00:00:00Z"], tmp_path / "az.json", capsys)
    report = _report(path, capsys)
    layers = _layers(report)
    assert layers["paravisor"]["measured"] == "yes"
    assert layers["paravisor"]["warnings"]
    gaps = [g["what"] for g in report["not_covered"]]
    assert "The Azure paravisor (HCL) beyond its launch measurement" in gaps


def test_component_files(tmp_path: Path) -> None:
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"components": [
        {"name": "shim", "layer": "bootloader", "open_source": "yes", "audited": "no",
         "release_date": "2023-12-05"}]}))
    [c] = load_components(j)
    assert (c.open_source, c.audited, c.release_date) == (True, False, dt.date(2023, 12, 5))
    for bad, match in (
        ([{"name": "x", "layer": "bios"}], "layer 'bios' is not known"),
        ([{"layer": "kernel"}], "needs a name"),
        ([{"name": "x", "layer": "kernel", "release_date": "last year"}], "YYYY-MM-DD"),
        ([{"name": "x", "layer": "kernel", "audited": "maybe"}], "true/false"),
        ({"nothing": 1}, "expected a list"),
    ):
        j.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=match):
            load_components(j)
    t = tmp_path / "c.toml"
    t.write_text("[[components]\n")
    with pytest.raises(ConfigError, match="not valid toml"):
        load_components(t)


def _hostile_report() -> Any:
    claims: dict[str, object] = {
        "measurement": "<script>alert('m')</script>", "chip_id": "c" * 128, "product": "Milan",
        "signing_key": "VCEK", "reported_tcb_bootloader": 3, "reported_tcb_tee": 0,
        "reported_tcb_snp": 8, "reported_tcb_microcode": 115, "policy_debug_allowed": True,
        "policy_migrate_ma": False, "init_data": "00" * 32, "simulated": True,
    }
    comps = [Component("<img src=x onerror=alert(1)>", "firmware", open_source=True,
                       audited=True, audited_by="<b>x</b>", release_date=dt.date(2020, 1, 1))]
    return build_report([("snp", claims)], {"snp_launch_measurement": RvInfo(["other"])}, comps,
                        now=NOW)


def test_html_is_self_contained_and_escaped() -> None:
    page = render_html(_hostile_report())
    lowered = page.lower()
    for external in ("<script", "<link", "src=", "http://", "https://", "@import", "url("):
        assert external not in lowered.replace("&lt;script", "").replace("src=x", ""), external
    assert "&lt;script&gt;alert(&#x27;m&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "SIMULATED EVIDENCE" in page and "MISMATCH" in page
    assert "@media print" in page
    assert "debugging is allowed" in page


# -- rendering in headless Chromium -------------------------------------------------------


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG into rows of raw pixel bytes (filters undone)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prev[i]
            corner = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, channels, rows


def test_html_report_renders_in_headless_chromium(
    snp_claims: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/setup.d/tcb.apt)")
    comps = tmp_path / "components.toml"
    comps.write_text(COMPONENTS_TOML)
    page = tmp_path / "tcb.html"
    code, _, err = cli(["tcb", "report", str(snp_claims), "--components", str(comps),
                        "--html", str(page), "--at", AT], capsys)
    assert code == 0, err
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    shots = {}
    for name, html in (("report", page), ("blank", blank)):
        png = tmp_path / f"{name}.png"
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={tmp_path / ('profile-' + name)}",
             f"--screenshot={png}", "--window-size=1200,1600", html.resolve().as_uri()],
            check=True, capture_output=True, timeout=90,
        )
        shots[name] = _png_pixels(png.read_bytes())
    width, channels, rows = shots["report"]
    assert width == 1200 and len(rows) == 1600
    background = rows[0][:3]  # top-left corner: the page background
    differing = sum(
        1 for row in rows[::4] for x in range(0, width * channels, channels * 4)
        if row[x:x + 3] != background
    )
    sampled = (len(rows[::4])) * len(range(0, width * channels, channels * 4))
    # Text, cards and tables cover a good part of the page; a blank page covers none.
    assert differing / sampled > 0.05, differing / sampled
    _, bchannels, brows = shots["blank"]
    bg = brows[0][:3]
    assert all(row[x:x + 3] == bg for row in brows[::16]
               for x in range(0, 1200 * bchannels, bchannels * 16))
    # Colour is used for the verdicts (green/red/amber pills), not only black on white.
    colours = {row[x:x + 3] for row in rows[::4] for x in range(0, width * channels, channels * 4)}
    assert any(c[1] > c[0] + 40 and c[1] > c[2] + 20 for c in colours)  # a green
