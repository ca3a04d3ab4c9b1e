"""bench/call_bench.py still runs whole calls against today's flows (it imports their
internals, so a refactoring can break it unnoticed)."""

from __future__ import annotations

import sys

from bench import call_bench


def test_the_call_benchmark_completes_its_calls_and_reports_a_row(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["call_bench", "--calls", "3"])
    call_bench.main()  # each call asserts that it ended
    assert capsys.readouterr().out.startswith("3 calls: best ")
