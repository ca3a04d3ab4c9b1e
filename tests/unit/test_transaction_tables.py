"""
The four RFC 3261 §17 transaction machines, pair by pair: for every (state, event) the
table gives the transition of RFC 3261 Fig. 5–8 (with RFC 6026's Accepted), an explicit
no-op, or a refusal. The expected tables are written out here, apart from the code, so
that an edit to a table shows up as a failing pair.
"""

from __future__ import annotations

from itertools import product

import pytest

from sipxcc.sip.transaction import (
    INVITE_CLIENT,
    INVITE_SERVER,
    NON_INVITE_CLIENT,
    NON_INVITE_SERVER,
    ClientTransaction,
    Event,
    ServerTransaction,
    State,
)
from sipxcc.statemachine import InvalidTransition, Transition, bind

# state event -> target action ("-" no action); "ignore": an explicit no-op.
INVITE_CLIENT_EXPECTED = """
CALLING     TIMER_A          CALLING     retransmit
CALLING     TIMER_B          TERMINATED  time_out
CALLING     TRANSPORT_ERROR  TERMINATED  fail_transport
CALLING     PROVISIONAL      PROCEEDING  pass_up
CALLING     SUCCESS          ACCEPTED    accept
CALLING     FAILURE          COMPLETED   ack_and_complete
PROCEEDING  PROVISIONAL      PROCEEDING  pass_up
PROCEEDING  SUCCESS          ACCEPTED    accept
PROCEEDING  FAILURE          COMPLETED   ack_and_complete
PROCEEDING  TRANSPORT_ERROR  TERMINATED  fail_transport
PROCEEDING  TIMER_A          ignore
PROCEEDING  TIMER_B          ignore
COMPLETED   FAILURE          COMPLETED   resend_ack
COMPLETED   TIMER_D          TERMINATED  terminate
COMPLETED   PROVISIONAL      ignore
COMPLETED   SUCCESS          ignore
COMPLETED   TRANSPORT_ERROR  ignore
ACCEPTED    SUCCESS          ACCEPTED    pass_up
ACCEPTED    TIMER_M          TERMINATED  terminate
ACCEPTED    PROVISIONAL      ignore
ACCEPTED    FAILURE          ignore
ACCEPTED    TRANSPORT_ERROR  ignore
"""

NON_INVITE_CLIENT_EXPECTED = """
TRYING      TIMER_E          TRYING      retransmit
TRYING      TIMER_F          TERMINATED  time_out
TRYING      TRANSPORT_ERROR  TERMINATED  fail_transport
TRYING      PROVISIONAL      PROCEEDING  slow_down
TRYING      FINAL            COMPLETED   complete
PROCEEDING  TIMER_E          PROCEEDING  retransmit
PROCEEDING  TIMER_F          TERMINATED  time_out
PROCEEDING  TRANSPORT_ERROR  TERMINATED  fail_transport
PROCEEDING  PROVISIONAL      PROCEEDING  pass_up
PROCEEDING  FINAL            COMPLETED   complete
COMPLETED   TIMER_K          TERMINATED  terminate
COMPLETED   PROVISIONAL      ignore
COMPLETED   FINAL            ignore
COMPLETED   TRANSPORT_ERROR  ignore
"""

INVITE_SERVER_EXPECTED = """
PROCEEDING  REQUEST          PROCEEDING  resend_last
PROCEEDING  PROVISIONAL      PROCEEDING  send
PROCEEDING  SUCCESS          ACCEPTED    send_accepted
PROCEEDING  FAILURE          COMPLETED   send_rejection
PROCEEDING  ACK              ignore
COMPLETED   REQUEST          COMPLETED   resend_last
COMPLETED   TIMER_G          COMPLETED   retransmit_final
COMPLETED   TIMER_H          TERMINATED  terminate
COMPLETED   ACK              CONFIRMED   confirm
COMPLETED   PROVISIONAL      ignore
COMPLETED   SUCCESS          ignore
COMPLETED   FAILURE          ignore
CONFIRMED   TIMER_I          TERMINATED  terminate
CONFIRMED   PROVISIONAL      ignore
CONFIRMED   SUCCESS          ignore
CONFIRMED   FAILURE          ignore
CONFIRMED   REQUEST          ignore
CONFIRMED   ACK              ignore
ACCEPTED    REQUEST          ACCEPTED    resend_last
ACCEPTED    TIMER_L          TERMINATED  terminate
ACCEPTED    PROVISIONAL      ignore
ACCEPTED    SUCCESS          ignore
ACCEPTED    FAILURE          ignore
ACCEPTED    ACK              ignore
"""

NON_INVITE_SERVER_EXPECTED = """
TRYING      PROVISIONAL      PROCEEDING  send
TRYING      FINAL            COMPLETED   send_final
TRYING      REQUEST          ignore
PROCEEDING  PROVISIONAL      PROCEEDING  send
PROCEEDING  REQUEST          PROCEEDING  resend_last
PROCEEDING  FINAL            COMPLETED   send_final
COMPLETED   REQUEST          COMPLETED   resend_last
COMPLETED   TIMER_J          TERMINATED  terminate
COMPLETED   PROVISIONAL      ignore
COMPLETED   FINAL            ignore
"""

MACHINES = [
    pytest.param(INVITE_CLIENT, INVITE_CLIENT_EXPECTED, State.CALLING, id="invite-client"),
    pytest.param(NON_INVITE_CLIENT, NON_INVITE_CLIENT_EXPECTED, State.TRYING,
                 id="non-invite-client"),
    pytest.param(INVITE_SERVER, INVITE_SERVER_EXPECTED, State.PROCEEDING, id="invite-server"),
    pytest.param(NON_INVITE_SERVER, NON_INVITE_SERVER_EXPECTED, State.TRYING,
                 id="non-invite-server"),
]


def expected(text: str):
    transitions, ignored = {}, set()
    for line in text.strip().splitlines():
        state, event, *rest = line.split()
        key = (State[state], Event[event])
        assert key not in transitions and key not in ignored, line
        if rest == ["ignore"]:
            ignored.add(key)
        else:
            target, action = rest
            transitions[key] = Transition(State[target], None if action == "-" else action)
    # a terminated transaction absorbs whatever still reaches it
    ignored |= {(State.TERMINATED, event) for event in Event}
    return transitions, ignored


@pytest.mark.parametrize(("table", "text", "initial"), MACHINES)
def test_every_state_event_pair_is_the_expected_transition_no_op_or_refusal(table, text,
                                                                             initial):
    transitions, ignored = expected(text)
    assert table.initial is initial
    assert table.final == {State.TERMINATED}
    for state, event in product(State, Event):
        if (state, event) in transitions:
            assert table.step(state, event) == transitions[(state, event)], (state, event)
        elif (state, event) in ignored:
            assert table.step(state, event) is None, (state, event)
        else:
            with pytest.raises(InvalidTransition):
                table.step(state, event)


@pytest.mark.parametrize(("table", "owner"), [
    (INVITE_CLIENT, ClientTransaction), (NON_INVITE_CLIENT, ClientTransaction),
    (INVITE_SERVER, ServerTransaction), (NON_INVITE_SERVER, ServerTransaction)])
def test_every_action_is_a_method_of_the_transaction(table, owner):
    bound = bind(table, owner)
    assert set(bound) == set(table.transitions)
    for (state, event), (target, function) in bound.items():
        action = table.transitions[(state, event)].action
        assert target is table.transitions[(state, event)].target
        assert function is getattr(owner, action)


def test_every_state_but_terminated_can_be_left():
    for table in (INVITE_CLIENT, NON_INVITE_CLIENT, INVITE_SERVER, NON_INVITE_SERVER):
        reached = {table.initial} | {t.target for t in table.transitions.values()}
        for state in reached - table.final:
            assert any(source is state and t.target is not state
                       for (source, _), t in table.transitions.items()), (table.name, state)
