"""Transition tables: the one way a state machine is written in sipxcc.

A machine is a L{Table}: for each (state, event) pair it names the next state and the
action to run, and nothing else is allowed. Transaction, call-flow and leg machines all
declare one, so a reader finds every transition in one place, a unit test can walk every
pair, and L{mermaid} draws the picture committed under docs/ from the same table.

The table is a plain dict lookup: cheap enough for the SIP transaction hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)


class InvalidTransition(Exception):
    """An event that the table does not allow in the current state."""

    def __init__(self, table: str, state: Enum, event: Enum):
        super().__init__(f"{table}: {event.name} is not allowed in {state.name}")
        self.state = state
        self.event = event


@dataclass(frozen=True)
class Transition(Generic[S]):
    """Where an event leads and the name of the action run on the way (None: no action)."""

    target: S
    action: str | None = None


class Table(Generic[S, E]):
    """
    A finite state machine's transitions: C{{(state, event): Transition}}.

    C{step(state, event)} returns the L{Transition} or raises L{InvalidTransition};
    C{ignores} lists (state, event) pairs that are explicitly allowed to do nothing (a
    retransmission absorbed, an event that comes too late), so that every pair is
    either a transition, an explicit no-op, or a refusal.
    """

    def __init__(self, name: str, initial: S,
                 transitions: Mapping[tuple[S, E], Transition[S]],
                 ignores: Iterable[tuple[S, E]] = (), final: Iterable[S] = ()):
        self.name = name
        self.initial = initial
        self.transitions = dict(transitions)
        self.ignores = frozenset(ignores)
        self.final = frozenset(final)
        overlap = self.ignores & self.transitions.keys()
        if overlap:
            raise ValueError(f"{name}: both a transition and ignored: {sorted(map(str, overlap))}")

    def step(self, state: S, event: E) -> Transition[S] | None:
        """The transition for C{event} in C{state}; None when it is explicitly ignored."""
        found = self.transitions.get((state, event))
        if found is not None:
            return found
        if (state, event) in self.ignores:
            return None
        raise InvalidTransition(self.name, state, event)

    def allows(self, state: S, event: E) -> bool:
        """Whether C{event} in C{state} is a transition or an explicit no-op."""
        return (state, event) in self.transitions or (state, event) in self.ignores


Action = Callable[[Any, Any], None]
"""An action as the machine's class defines it: C{method(self, argument)}."""


def bind(table: Table[S, E], owner: type) -> dict[tuple[S, E], tuple[S, Action | None]]:
    """
    The table's transitions with each action looked up on C{owner} once, for a hot path
    that steps with one dict lookup: C{{(state, event): (target, function or None)}}.
    An action the class does not define is an error here, at import, not at run time.
    Ignored pairs and refusals are not in it: ask L{Table.step} when a lookup misses.
    """
    bound: dict[tuple[S, E], tuple[S, Action | None]] = {}
    for key, transition in table.transitions.items():
        function = None
        if transition.action is not None:
            function = getattr(owner, transition.action, None)
            if not callable(function):
                raise TypeError(f"{table.name}: {owner.__name__} has no action "
                                f"{transition.action!r}")
        bound[key] = (transition.target, function)
    return bound


def _label(value: Hashable) -> str:
    return value.name if isinstance(value, Enum) else str(value)


def mermaid(table: Table[Any, Any]) -> str:
    """The table as a Mermaid C{stateDiagram-v2}, in a stable order (for docs/)."""
    lines = ["stateDiagram-v2", f"    [*] --> {_label(table.initial)}"]
    for (state, event), transition in sorted(
            table.transitions.items(),
            key=lambda item: (_label(item[0][0]), _label(item[0][1]))):
        action = f" / {transition.action}" if transition.action else ""
        lines.append(f"    {_label(state)} --> {_label(transition.target)}: "
                     f"{_label(event)}{action}")
    for state in sorted(table.final, key=_label):
        lines.append(f"    {_label(state)} --> [*]")
    return "\n".join(lines) + "\n"
