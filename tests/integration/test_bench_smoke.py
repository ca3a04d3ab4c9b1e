"""``make bench-smoke``: the benchmark harness end to end for a few seconds at a low rate.

wrk POSTs click-to-calls to the real daemon over HTTPS, a sipp UAS plays the calling
phone, and the step reports what it measured. No speed is asserted: the harness must
work, so that ``make bench`` can be trusted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.integration.daemon import PROJECT_ROOT

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("sipp", "wrk", "taskset")),
    reason="sipp, wrk and taskset are needed (make deps)")


def test_bench_smoke_completes_every_call_and_reports_a_row():
    out = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--no-sippy"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| sipxcc | 20 |")]
    assert rows, out.stdout
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    # system, rate, calls, completed/s, failed, retrans, CPU-ms/call, ...
    assert cells[2] == "100"
    assert cells[4] == "0", out.stdout
    assert float(cells[6]) > 0
    assert "clean" in out.stdout
