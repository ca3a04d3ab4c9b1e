"""Code, tests and docs say the thing itself or cite an RFC, never a document that is not
in the repository (the specification and notes the project was planned with)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"\b(SPEC|ARCHITECTURE)(\.md)?\s*§|\banchor\s*§|perf-anchor|twisted-facts"
                      r"|interop-notes|peers\.md|aesthetics\.md")


def test_no_file_cites_a_document_outside_the_repository():
    files = [p for top in ("sipxcc", "tests", "docs", "bench") for p in (ROOT / top).rglob("*")
             if p.suffix in (".py", ".md") and p.is_file() and "results" not in p.parts]
    files += [ROOT / "README.md", ROOT / "SECURITY.md"]
    assert len(files) > 50
    here = Path(__file__).resolve()
    citing = [f"{p.relative_to(ROOT)}:{n}" for p in files if p.resolve() != here
              for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
              if CITATION.search(line)]
    assert citing == []
