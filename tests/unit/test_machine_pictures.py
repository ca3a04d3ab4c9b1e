"""The committed state-machine pictures (docs/machines/*.md) are drawn from today's tables."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

RENDER = Path(__file__).resolve().parents[2] / "docs" / "machines" / "render.py"


def load_render():
    spec = importlib.util.spec_from_file_location("machines_render", RENDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_render()


@pytest.mark.parametrize("name,table", render.TABLES, ids=[n for n, _ in render.TABLES])
def test_the_committed_picture_matches_its_table(name, table):
    committed = (RENDER.parent / f"{name}.md").read_text(encoding="utf-8")
    assert committed == render.document(name, table), (
        f"docs/machines/{name}.md is stale: run python docs/machines/render.py")
