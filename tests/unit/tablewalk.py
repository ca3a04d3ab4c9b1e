"""Walking a transition table pair by pair against the expected table a test writes out."""

from __future__ import annotations

from typing import Any

import pytest

from sipxcc.statemachine import InvalidTransition, Table, Transition

IGNORE = "ignore"
"""An expected entry for a pair the table must explicitly ignore."""


def pairs(states: Any, events: Any) -> list[tuple[Any, Any]]:
    """Every (state, event) pair, for C{pytest.mark.parametrize}."""
    return [(s, e) for s in states for e in events]


def pair_id(pair: tuple[Any, Any]) -> str:
    return f"{pair[0].name}-{pair[1].name}"


def assert_pair(table: Table[Any, Any], state: Any, event: Any, expected: Any) -> None:
    """C{expected}: None (refused), L{IGNORE}, a target state, or (target, action)."""
    if expected is None:
        with pytest.raises(InvalidTransition):
            table.step(state, event)
    elif expected == IGNORE:
        assert table.step(state, event) is None
    else:
        want = Transition(*expected) if isinstance(expected, tuple) else Transition(expected)
        assert table.step(state, event) == want
