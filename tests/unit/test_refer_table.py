"""The REFER flow's transition table, walked pair by pair against an independent listing."""

from __future__ import annotations

import pytest

from sipxcc.calls.refer import TABLE, Event, ReferFlow, State
from tests.unit.tablewalk import IGNORE, assert_pair, pair_id, pairs

S, E = State, Event

#: written out by hand from RFC 3261 §9/§15 and RFC 3515: (state, event) -> (target, action)
#: or IGNORE; a pair not listed must be refused
EXPECTED: dict[tuple[State, Event], tuple[State, str | None] | str] = {
    (S.INVITING, E.PROVISIONAL): (S.RINGING, None),
    (S.INVITING, E.ANSWERED): (S.REFERRING, "_refer"),
    (S.INVITING, E.REJECTED): (S.FAILED, "_finish"),
    (S.INVITING, E.TIMEOUT): (S.CANCELLING, "_cancel"),
    (S.INVITING, E.HANGUP): (S.CANCELLING, "_cancel"),
    (S.RINGING, E.PROVISIONAL): IGNORE,
    (S.RINGING, E.ANSWERED): (S.REFERRING, "_refer"),
    (S.RINGING, E.REJECTED): (S.FAILED, "_finish"),
    (S.RINGING, E.TIMEOUT): (S.CANCELLING, "_cancel"),
    (S.RINGING, E.HANGUP): (S.CANCELLING, "_cancel"),
    (S.CANCELLING, E.PROVISIONAL): IGNORE,
    (S.CANCELLING, E.ANSWERED): (S.HANGING_UP, "_bye_cancelled"),
    (S.CANCELLING, E.REJECTED): (S.FAILED, "_finish"),
    (S.CANCELLING, E.TIMEOUT): IGNORE,
    (S.CANCELLING, E.HANGUP): IGNORE,
    (S.REFERRING, E.TIMEOUT): IGNORE,
    (S.REFERRING, E.HANGUP): (S.HANGING_UP, "_bye"),
    (S.REFERRING, E.REFER_ACCEPTED): (S.TRANSFERRING, "_await_transfer"),
    (S.REFERRING, E.REFER_REFUSED): (S.HANGING_UP, "_bye"),
    (S.REFERRING, E.TRANSFER_OVER): (S.HANGING_UP, "_bye"),
    (S.REFERRING, E.BYE_RECEIVED): (S.ENDED, "_dialog_over"),
    (S.TRANSFERRING, E.TIMEOUT): (S.HANGING_UP, "_bye"),
    (S.TRANSFERRING, E.HANGUP): (S.HANGING_UP, "_bye"),
    (S.TRANSFERRING, E.REFER_ACCEPTED): IGNORE,
    (S.TRANSFERRING, E.REFER_REFUSED): IGNORE,
    (S.TRANSFERRING, E.TRANSFER_OVER): (S.HANGING_UP, "_bye"),
    (S.TRANSFERRING, E.BYE_RECEIVED): (S.ENDED, "_dialog_over"),
    (S.HANGING_UP, E.TIMEOUT): IGNORE,
    (S.HANGING_UP, E.HANGUP): IGNORE,
    (S.HANGING_UP, E.REFER_ACCEPTED): IGNORE,
    (S.HANGING_UP, E.REFER_REFUSED): IGNORE,
    (S.HANGING_UP, E.TRANSFER_OVER): IGNORE,
    (S.HANGING_UP, E.BYE_RECEIVED): (S.ENDED, "_dialog_over"),
    (S.HANGING_UP, E.BYE_DONE): (S.ENDED, "_dialog_over"),
    **{(s, e): IGNORE for s in (S.ENDED, S.FAILED) for e in Event},
}

PAIRS = pairs(State, Event)


@pytest.mark.parametrize("state,event", PAIRS, ids=map(pair_id, PAIRS))
def test_every_pair_is_the_expected_transition_no_op_or_refusal(state, event):
    assert_pair(TABLE, state, event, EXPECTED.get((state, event)))


def test_every_action_is_a_method_of_the_flow():
    actions = {t.action for t in TABLE.transitions.values() if t.action}
    assert actions == {"_refer", "_finish", "_cancel", "_bye_cancelled", "_await_transfer",
                       "_bye", "_dialog_over"}
    assert all(callable(getattr(ReferFlow, name)) for name in actions)


def test_every_state_is_reachable_and_the_final_ones_have_no_way_out():
    reached, todo = {TABLE.initial}, [TABLE.initial]
    while todo:
        state = todo.pop()
        for (source, _), transition in TABLE.transitions.items():
            if source is state and transition.target not in reached:
                reached.add(transition.target)
                todo.append(transition.target)
    assert reached == set(State)
    assert TABLE.final == {S.ENDED, S.FAILED}
    assert not [pair for pair in TABLE.transitions if pair[0] in TABLE.final]
