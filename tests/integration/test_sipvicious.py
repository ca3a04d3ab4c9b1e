"""
The SIP port under a SIPVicious scan (svmap, svwar from PyPI's sipvicious), as attackers
on the Internet run it against every PBX: the daemon answers per RFC 3261 (200 to OPTIONS,
405 to REGISTER and INVITE), svwar finds no extension, HTTP keeps answering and memory
stays near its baseline. sipvicious is installed into build/sipvicious/venv on first use.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.integration import hostile
from tests.integration.daemon import PROJECT_ROOT, Daemon, write_config

VENV = PROJECT_ROOT / "build" / "sipvicious" / "venv"
TOOLS = VENV / "bin"
SCAN_TIMEOUT = 60
# The first run installs sipvicious from PyPI (up to 420 s) before it scans.
pytestmark = pytest.mark.timeout(900)


def sipvicious_tools() -> Path:
    """The venv's bin directory with sipvicious in it; installs it if missing, else skips."""
    if (TOOLS / "sipvicious_svwar").exists() and (TOOLS / "sipvicious_svmap").exists():
        return TOOLS
    try:
        if not (TOOLS / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True,
                           capture_output=True, timeout=120)
        subprocess.run([str(TOOLS / "python"), "-m", "pip", "install", "-q", "sipvicious"],
                       check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        shutil.rmtree(VENV, ignore_errors=True)
        pytest.skip(f"sipvicious cannot be installed from PyPI: {error}")
    return TOOLS


@pytest.fixture
def daemon(tmp_path):
    with Daemon(write_config(tmp_path)) as running:
        yield running


class HealthWatch:
    """Polls GET /health in a thread while a scan runs; collects every status."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.statuses: list[int | None] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(0.2):  # polling interval, not synchronisation
            self.statuses.append(self.daemon.health())

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join(5)


def run_tool(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(sipvicious_tools() / tool), *args], capture_output=True,
                          text=True, timeout=SCAN_TIMEOUT, stdin=subprocess.DEVNULL)


def test_svmap_and_svwar_find_a_sip_device_but_no_extension(daemon):
    tools = sipvicious_tools()
    assert tools.is_dir()
    port = daemon.sip_port
    pid = daemon.process.pid
    baseline = hostile.rss_kib(pid)
    target = f"udp://127.0.0.1:{port}"
    with HealthWatch(daemon) as watch:
        found = run_tool("sipvicious_svmap", "-p", str(port), "-t", "0.05", "127.0.0.1")
        scans = {method: run_tool("sipvicious_svwar", "-e100-120", "-m", method, "-t", "0.05",
                                  "--maximumtime=15", target)
                 for method in ("REGISTER", "INVITE", "OPTIONS")}
    # svmap's OPTIONS got an answer: the daemon is listed as a SIP device
    assert f"127.0.0.1:{port}" in found.stdout, found.stdout + found.stderr
    for method, scan in scans.items():
        output = scan.stdout + scan.stderr
        assert scan.returncode == 0, (method, output)
        assert "found nothing" in output, (method, output)
        assert "Extension" not in scan.stdout, (method, output)
    # REGISTER and INVITE are refused (405) outright, so svwar gives up enumerating
    for method in ("REGISTER", "INVITE"):
        assert "method not allowed" in scans[method].stderr, scans[method].stderr
    client = hostile.UDPClient(port)
    try:
        for method, status in (("OPTIONS", 200), ("REGISTER", 405), ("INVITE", 405)):
            assert hostile.status_of(client.request(hostile.sip_request(method, port))) == status
    finally:
        client.close()
    assert watch.statuses and set(watch.statuses) == {200}, watch.statuses
    assert daemon.health() == 200
    grown = hostile.rss_kib(pid) - baseline
    assert grown < 10_000, f"RSS grew by {grown} KiB"
    assert daemon.process.poll() is None
    assert "Traceback" not in daemon.log_text()
