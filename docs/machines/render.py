"""
Draw every state machine's picture from its transition table: C{docs/machines/<name>.md},
one Mermaid C{stateDiagram-v2} each. Run C{python -m docs.machines.render} (or
C{python docs/machines/render.py}) after changing a table; a unit test fails while a
committed picture differs from its table.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from sipxcc.calls import invite, leg, refer  # noqa: E402
from sipxcc.statemachine import Table, mermaid  # noqa: E402

#: (picture name, table): each becomes docs/machines/<name>.md
TABLES: list[tuple[str, Table[Any, Any]]] = [
    ("refer-flow", refer.TABLE),
    ("invite-flow", invite.TABLE),
    ("invite-leg", leg.TABLE),
]


def document(name: str, table: Table[Any, Any]) -> str:
    """The Markdown file for one table: a title, how it is made, and the picture."""
    return (f"# State machine: {name}\n\n"
            f"Drawn from `{table.name}` by `docs/machines/render.py`; do not edit by hand.\n"
            "Pairs not drawn are explicit no-ops or refusals (see the table).\n\n"
            f"```mermaid\n{mermaid(table)}```\n")


def main() -> None:
    for name, table in TABLES:
        (HERE / f"{name}.md").write_text(document(name, table), encoding="utf-8")


if __name__ == "__main__":
    main()
