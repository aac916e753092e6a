"""A real software TPM for the tests: swtpm on loopback, driven through tpm2-tools.

Skips cleanly when swtpm or tpm2-tools is missing (scripts/setup.d/tpm.apt installs
them). Each instance listens on two ephemeral 127.0.0.1 ports (server P, control P+1, as
the swtpm TCTI expects) and is stopped at teardown.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

HAVE_SWTPM = all(shutil.which(t) for t in ("swtpm", "tpm2_quote", "tpm2_checkquote"))
needs_swtpm = pytest.mark.skipif(
    not HAVE_SWTPM, reason="swtpm / tpm2-tools not installed (scripts/setup.d/tpm.apt)"
)


def _port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return int(port)
    raise RuntimeError("no free loopback port pair")


class Swtpm:
    """One swtpm process with its own state directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state = workdir / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TPM2TOOLS_TCTI": self.tcti}

    def start(self) -> None:
        for _ in range(5):
            self.port = _port_pair()
            self.proc = subprocess.Popen(
                ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={self.state}",
                 "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
                 "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
                 "--flags", "not-need-init,startup-clear"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                    return
                except OSError:
                    time.sleep(0.02)
            self.stop()
        raise RuntimeError("swtpm did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def run(self, *args: str | Path, check: bool = True, flush: bool = True
            ) -> subprocess.CompletedProcess[bytes]:
        """Run a tpm2-tools command against this TPM (no resource manager: flush after)."""
        proc = subprocess.run([str(a) for a in args], env=self.env, cwd=self.workdir,
                              capture_output=True, timeout=60, check=False)
        if flush:
            subprocess.run(["tpm2_flushcontext", "-t"], env=self.env, cwd=self.workdir,
                           capture_output=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {proc.stderr.decode(errors='replace')}")
        return proc


def manufacture_with_ek_certs(workdir: Path) -> Path:
    """swtpm_setup with a local CA in ``workdir``: EK certificates in NV, like a real TPM.
    Returns the directory holding the CA (root + intermediate)."""
    ca = workdir / "ca"
    ca.mkdir(parents=True, exist_ok=True)
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    (workdir / "localca.conf").write_text(
        f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\n"
        f"issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n"
    )
    (workdir / "localca.options").write_text(
        "--platform-manufacturer veritee\n--platform-version 2.1\n--platform-model test\n"
    )
    (workdir / "setup.conf").write_text(
        "create_certs_tool = /usr/bin/swtpm_localca\n"
        f"create_certs_tool_config = {workdir}/localca.conf\n"
        f"create_certs_tool_options = {workdir}/localca.options\n"
        "active_pcr_banks = sha1,sha256,sha384\n"
    )
    subprocess.run(
        ["swtpm_setup", "--tpm2", "--tpmstate", str(workdir / "state"), "--create-ek-cert",
         "--config", str(workdir / "setup.conf"), "--pcr-banks", "sha1,sha256,sha384",
         "--logfile", str(workdir / "setup.log")],
        check=True, capture_output=True, timeout=120,
    )
    return ca


@pytest.fixture(scope="module", name="swtpm")
def swtpm_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swtpm]:
    if not HAVE_SWTPM:
        pytest.skip("swtpm / tpm2-tools not installed (scripts/setup.d/tpm.apt)")
    tpm = Swtpm(tmp_path_factory.mktemp("swtpm"))
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()
