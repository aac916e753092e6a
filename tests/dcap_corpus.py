"""Real Intel TDX/SGX quotes of ../shared/corpus, with the time and collateral to verify them.

A helper for tests/test_dcap_*.py, test_tdx_*.py and test_sgx_*.py: nothing is
copied out of the corpus, and everything is empty when the corpus is absent.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import CORPUS

_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?Z")

#: Extra collateral directories that make a sample complete (manifest notes): the
#: go-tdx-guest v5 sample ships only TCB info; dcap-qvl's 2026 bundle for the same
#: FMSPC has the TD QE identity and CRLs, valid from 2026-02-18T11:00Z.
EXTRA_COLLATERAL = {"go-tdx-guest-v5": ("tdx/dcap-qvl-v5-outdated",)}
EXTRA_AT = {"go-tdx-guest-v5": "2026-02-18T11:00:00Z"}


@dataclass(frozen=True)
class DcapSample:
    name: str
    tee: str
    path: Path
    quote: bytes
    expected: dict[str, object]
    at: dt.datetime

    @property
    def checks(self) -> dict[str, object]:
        obs = self.expected["observed_by_collector"]
        assert isinstance(obs, dict)
        checks = obs["signature_checks"]
        assert isinstance(checks, dict)
        return checks

    @property
    def report(self) -> dict[str, object]:
        obs = self.expected["observed_by_collector"]
        assert isinstance(obs, dict)
        report = obs["report"]
        assert isinstance(report, dict)
        return report

    @property
    def tcb(self) -> dict[str, object] | None:
        value = self.expected.get("tcb_evaluation_by_collector")
        return value if isinstance(value, dict) else None

    @property
    def has_collateral(self) -> bool:
        return (self.path / "collateral.json").is_file() or (self.path / "tcbinfo.json").is_file()

    def collateral_dirs(self) -> tuple[Path, ...]:
        assert CORPUS is not None
        return (self.path, *(CORPUS / extra for extra in EXTRA_COLLATERAL.get(self.name, ())))

    @property
    def full_at(self) -> dt.datetime:
        """The time at which this sample and all its (extra) collateral are valid."""
        stamp = EXTRA_AT.get(self.name)
        return _parse(stamp) if stamp else self.at


def _parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _verify_time(verify_at: str, pck_not_before: str) -> dt.datetime:
    """The manifest's instant when it gives one, else 30 days into the PCK's validity."""
    match = _STAMP.search(verify_at)
    if match:
        text = match.group(0)
        return _parse(text if text.count(":") == 2 else text[:-1] + ":00Z")
    return dt.datetime.fromisoformat(pck_not_before).replace(tzinfo=dt.UTC) + dt.timedelta(days=30)


def dcap_samples(tee: str) -> list[DcapSample]:
    if CORPUS is None:
        return []
    out = []
    for d in sorted((CORPUS / tee).iterdir()):
        quote_file = d / "quote.dat"
        if not quote_file.is_file():
            quote_file = d / "td-quote.bin"
        exp_file = d / "expected.json"
        if not quote_file.is_file() or not exp_file.is_file():
            continue
        expected = json.loads(exp_file.read_text())
        checks = expected["observed_by_collector"]["signature_checks"]
        out.append(
            DcapSample(
                name=d.name,
                tee=tee,
                path=d,
                quote=quote_file.read_bytes(),
                expected=expected,
                at=_verify_time(str(expected["verify_at"]), checks["pck_valid"][0]),
            )
        )
    return out


TDX_SAMPLES = dcap_samples("tdx")
SGX_SAMPLES = dcap_samples("sgx")
ALL_SAMPLES = TDX_SAMPLES + SGX_SAMPLES
TDX_IDS = [s.name for s in TDX_SAMPLES]
SGX_IDS = [s.name for s in SGX_SAMPLES]
ALL_IDS = [s.name for s in ALL_SAMPLES]


def sample(name: str) -> DcapSample:
    for s in ALL_SAMPLES:
        if s.name == name:
            return s
    raise LookupError(name)
