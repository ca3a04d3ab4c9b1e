"""
Draw every state machine's transition table as a Mermaid picture in docs/machines/.

    python docs/machines/render.py           # write docs/machines/<name>.md
    python docs/machines/render.py --check   # exit 1 when a committed picture is stale

TABLES is the one list of the project's machines: a module that declares a Table adds a
(name, table) line here, and tests/unit/test_machine_pictures.py fails until its picture
is rendered and committed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run from anywhere: the tree's own sipxcc

from sipxcc.calls import invite, leg, refer  # noqa: E402
from sipxcc.sip import transaction  # noqa: E402
from sipxcc.statemachine import Table, mermaid  # noqa: E402

TABLES: list[tuple[str, Table[Any, Any]]] = [
    ("invite-client-transaction", transaction.INVITE_CLIENT),
    ("non-invite-client-transaction", transaction.NON_INVITE_CLIENT),
    ("invite-server-transaction", transaction.INVITE_SERVER),
    ("non-invite-server-transaction", transaction.NON_INVITE_SERVER),
    ("refer-flow", refer.TABLE),
    ("invite-flow", invite.TABLE),
    ("invite-leg", leg.TABLE),
]


def picture(table: Table[Any, Any]) -> str:
    """The Markdown page for one table: its name, how to regenerate it, the diagram."""
    return (f"# {table.name}\n\n"
            "Generated from the transition table by `python docs/machines/render.py`; "
            "do not edit.\n"
            "Events the table ignores on purpose (retransmissions absorbed, late timers) "
            "are not drawn.\n\n"
            f"```mermaid\n{mermaid(table)}```\n")


def pictures() -> dict[Path, str]:
    """Every picture's path and the text it must hold."""
    return {HERE / f"{name}.md": picture(table) for name, table in TABLES}


def main(argv: list[str]) -> int:
    stale = []
    for path, text in pictures().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        if "--check" in argv:
            stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("stale (run python docs/machines/render.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
