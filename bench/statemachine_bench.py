"""
The cost of one event through a transition table (L{sipxcc.statemachine}, as the SIP
transactions step it) against the same machine in Automat's C{MethodicalMachine}: the
non-INVITE client transaction of RFC 3261 Fig. 6 taken Trying -> Proceeding -> Completed
-> Terminated (1xx, 1xx, final, Timer K) per round.

    .venv/bin/python -m bench.statemachine_bench
"""

from __future__ import annotations

import timeit
from enum import StrEnum

from automat import MethodicalMachine

from sipxcc.statemachine import Table, Transition, bind


class State(StrEnum):
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class Event(StrEnum):
    PROVISIONAL = "1xx"
    FINAL = "final"
    TIMER_K = "Timer K"


S, E = State, Event
TABLE = Table("non-INVITE client", S.TRYING, {
    (S.TRYING, E.PROVISIONAL): Transition(S.PROCEEDING, "pass_up"),
    (S.PROCEEDING, E.PROVISIONAL): Transition(S.PROCEEDING, "pass_up"),
    (S.TRYING, E.FINAL): Transition(S.COMPLETED, "complete"),
    (S.PROCEEDING, E.FINAL): Transition(S.COMPLETED, "complete"),
    (S.COMPLETED, E.TIMER_K): Transition(S.TERMINATED, "terminate"),
}, final=[S.TERMINATED])
PROVISIONAL, FINAL, TIMER_K = E.PROVISIONAL, E.FINAL, E.TIMER_K


class TableMachine:
    """Steps the table the way sipxcc.sip.transaction does."""

    def __init__(self) -> None:
        self.state = S.TRYING
        self.seen = 0

    def fire(self, event: Event, message: object = None) -> None:
        step = STEPS.get((self.state, event))
        if step is None:
            TABLE.step(self.state, event)
            return
        self.state, action = step
        if action is not None:
            action(self, message)

    def pass_up(self, message: object) -> None:
        self.seen += 1

    def complete(self, message: object) -> None:
        self.seen += 1

    def terminate(self, message: object) -> None:
        self.seen += 1


STEPS = bind(TABLE, TableMachine)


class AutomatMachine:
    """The same machine in Automat."""

    _machine = MethodicalMachine()

    def __init__(self) -> None:
        self.seen = 0

    @_machine.state(initial=True)
    def trying(self) -> None: ...

    @_machine.state()
    def proceeding(self) -> None: ...

    @_machine.state()
    def completed(self) -> None: ...

    @_machine.state()
    def terminated(self) -> None: ...

    @_machine.input()
    def provisional(self, message: object) -> None: ...

    @_machine.input()
    def final(self, message: object) -> None: ...

    @_machine.input()
    def timer_k(self) -> None: ...

    @_machine.output()
    def pass_up(self, message: object) -> None:
        self.seen += 1

    @_machine.output()
    def complete(self, message: object) -> None:
        self.seen += 1

    @_machine.output()
    def terminate(self) -> None:
        self.seen += 1

    trying.upon(provisional, enter=proceeding, outputs=[pass_up])
    proceeding.upon(provisional, enter=proceeding, outputs=[pass_up])
    trying.upon(final, enter=completed, outputs=[complete])
    proceeding.upon(final, enter=completed, outputs=[complete])
    completed.upon(timer_k, enter=terminated, outputs=[terminate])


def table_round() -> None:
    machine = TableMachine()
    machine.fire(PROVISIONAL, 1)
    machine.fire(PROVISIONAL, 1)
    machine.fire(FINAL, 1)
    machine.fire(TIMER_K)


def automat_round() -> None:
    machine = AutomatMachine()
    machine.provisional(1)
    machine.provisional(1)
    machine.final(1)
    machine.timer_k()


def automat_one_event() -> None:
    AutomatMachine().final(1)


def table_one_event() -> None:
    TableMachine().fire(FINAL, 1)


def main() -> None:
    rounds = 20000
    for name, function in (("table", table_round), ("automat", automat_round),
                           ("table", table_one_event), ("automat", automat_one_event)):
        best = min(timeit.repeat(function, number=rounds, repeat=5))
        events = 4 if function in (table_round, automat_round) else 1
        print(f"{name:8} {best / rounds * 1e6:6.2f} us per machine (constructed, "
              f"{events} event{'s' if events > 1 else ''})")


if __name__ == "__main__":
    main()
