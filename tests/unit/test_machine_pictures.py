"""The committed pictures in docs/machines/ are those the transition tables draw today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sipxcc.statemachine import Table

RENDER = Path(__file__).resolve().parents[2] / "docs" / "machines" / "render.py"


def load_render():
    spec = importlib.util.spec_from_file_location("render_machines", RENDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_picture_is_committed_and_current():
    render = load_render()
    stale = [path.name for path, text in render.pictures().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert stale == [], "run python docs/machines/render.py and commit the pictures"


def test_the_registry_names_each_table_once_and_holds_every_machine():
    render = load_render()
    names = [name for name, _ in render.TABLES]
    assert len(names) == len(set(names))
    assert all(isinstance(table, Table) for _, table in render.TABLES)
    assert {"invite-client-transaction", "non-invite-client-transaction",
            "invite-server-transaction", "non-invite-server-transaction",
            "refer-flow", "invite-flow", "invite-leg"} <= set(names)


def test_a_changed_table_makes_its_picture_stale(tmp_path):
    render = load_render()
    _, table = render.TABLES[0]
    path = next(iter(render.pictures()))
    committed = path.read_text(encoding="utf-8")
    changed = Table(table.name, table.initial, dict(list(table.transitions.items())[1:]),
                    final=table.final)
    assert render.picture(changed) != committed


def test_check_mode_reports_a_stale_picture(tmp_path, monkeypatch, capsys):
    render = load_render()
    monkeypatch.setattr(render, "HERE", tmp_path)
    assert render.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().out
    assert render.main([]) == 0 and render.main(["--check"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{name}.md" for name, _ in render.TABLES)
