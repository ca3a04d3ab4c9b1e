"""``make bench-smoke``: the benchmark harness end to end for a few seconds at a low rate.

wrk POSTs click-to-calls to the real daemon over HTTPS, a sipp UAS plays the calling
phone, and the step reports what it measured. No speed is asserted: the harness must
work, so that ``make bench`` can be trusted.
"""

from __future__ import annotations

import re
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


def test_bench_smoke_with_two_nodes_sharing_redis_counts_every_process_and_the_gets():
    out = subprocess.run([sys.executable, "-m", "bench.run", "--smoke", "--no-sippy",
                          "--registry", "redis:2", "--get-rate", "20", "--get-seconds", "2"],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines()
            if line.startswith("| sipxcc redis x2 | 20 |")]
    assert rows, out.stdout
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert (cells[2], cells[4]) == ("100", "0"), out.stdout
    # both nodes and redis-server are the system under test: each one's CPU is counted
    parts = dict(re.findall(r"(node0|node1|redis) (\d+\.\d+)", cells[-1]))
    assert set(parts) == {"node0", "node1", "redis"} and all(
        float(seconds) > 0 for seconds in parts.values()), cells[-1]
    [gets] = [line for line in out.stdout.splitlines() if "GET of node0's calls" in line]
    assert "on node1, not the owner" in gets and "non-2xx 0, without status lines 0" in gets
