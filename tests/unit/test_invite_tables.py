"""The INVITE flow's and the leg's transition tables, walked pair by pair."""

from __future__ import annotations

import pytest

from sipxcc.calls.invite import TABLE, Event, InviteFlow, Phase
from sipxcc.calls.leg import TABLE as LEG_TABLE
from sipxcc.calls.leg import Leg, LegEvent, LegState
from sipxcc.statemachine import InvalidTransition
from tests.unit.tablewalk import IGNORE, assert_pair, pair_id, pairs

P, E = Phase, Event
LIVE = [P.CALLING_A, P.CALLING_B, P.OFFERING_A, P.CONNECTED, P.TRANSFERRING, P.SWAPPING]
TEARDOWN = (P.CLOSING, "_teardown")

#: RFC 3725 flow IV with a transfer, written out by hand: (phase, event) -> (target,
#: action) or IGNORE; a pair not listed must be refused
EXPECTED: dict[tuple[Phase, Event], tuple[Phase, str] | str] = {
    (P.CALLING_A, E.CALLER_RINGING): (P.CALLING_A, "_ringing"),
    (P.CALLING_A, E.CALLER_ANSWERED): (P.CALLING_B, "_call_callee"),
    (P.CALLING_B, E.CALLEE_ANSWERED): (P.OFFERING_A, "_offer_to_caller"),
    (P.OFFERING_A, E.REOFFER_ANSWERED): (P.CONNECTED, "_connect"),
    (P.OFFERING_A, E.REOFFER_REFUSED): TEARDOWN,
    (P.CONNECTED, E.TRANSFER): (P.TRANSFERRING, "_call_target"),
    (P.TRANSFERRING, E.TARGET_ANSWERED): (P.SWAPPING, "_swap"),
    (P.TRANSFERRING, E.TARGET_FAILED): (P.CONNECTED, "_transfer_failed"),
    (P.SWAPPING, E.REOFFER_ANSWERED): (P.CONNECTED, "_swapped"),
    (P.SWAPPING, E.REOFFER_REFUSED): TEARDOWN,
    **{(p, e): TEARDOWN for p in LIVE for e in (E.FAILED, E.HANGUP, E.LEG_GONE)},
    **{(p, E.CALLER_GONE): TEARDOWN for p in (P.CALLING_A, P.CALLING_B, P.OFFERING_A,
                                               P.CONNECTED)},
    (P.TRANSFERRING, E.CALLER_GONE): IGNORE,
    (P.SWAPPING, E.CALLER_GONE): IGNORE,
    **{(p, E.CALLER_RINGING): IGNORE for p in Phase if p is not P.CALLING_A},
    **{(p, e): IGNORE for p in (P.CONNECTED, P.TRANSFERRING, P.CLOSING, P.ENDED)
       for e in (E.REOFFER_ANSWERED, E.REOFFER_REFUSED)},
    **{(p, E.ALL_OVER): IGNORE for p in LIVE},
    **{(P.CLOSING, e): (P.CLOSING, "_check_done")
       for e in (E.FAILED, E.TARGET_FAILED, E.CALLER_GONE, E.LEG_GONE)},
    (P.CLOSING, E.HANGUP): IGNORE,
    (P.CLOSING, E.LATE_ANSWER): (P.CLOSING, "_drop_answer"),
    (P.CLOSING, E.ALL_OVER): (P.ENDED, "_finish"),
    **{(P.ENDED, e): IGNORE for e in Event if e is not E.TRANSFER},
    (P.ENDED, E.LATE_ANSWER): (P.ENDED, "_drop_answer"),
}

PAIRS = pairs(Phase, Event)


@pytest.mark.parametrize("phase,event", PAIRS, ids=map(pair_id, PAIRS))
def test_every_flow_pair_is_the_expected_transition_no_op_or_refusal(phase, event):
    assert_pair(TABLE, phase, event, EXPECTED.get((phase, event)))


def test_every_flow_action_is_a_method_and_every_phase_is_reachable():
    assert all(callable(getattr(InviteFlow, t.action)) for t in TABLE.transitions.values())
    reached, todo = {TABLE.initial}, [TABLE.initial]
    while todo:
        phase = todo.pop()
        for (source, _), transition in TABLE.transitions.items():
            if source is phase and transition.target not in reached:
                reached.add(transition.target)
                todo.append(transition.target)
    assert reached == set(Phase)


def test_a_transfer_is_refused_unless_connected():
    assert [p for p in Phase if TABLE.allows(p, E.TRANSFER)] == [P.CONNECTED]


L, V = LegState, LegEvent
RINGING = [L.NEW, L.EARLY, L.CANCELLING]
LEG_EXPECTED: dict[tuple[LegState, LegEvent], LegState | str] = {
    (L.NEW, V.PROGRESS): L.EARLY,
    (L.EARLY, V.PROGRESS): L.EARLY,
    (L.CANCELLING, V.PROGRESS): L.CANCELLING,  # the early dialog's tag is still kept
    **{(s, V.ANSWERED): L.CONFIRMED for s in RINGING},
    (L.TERMINATED, V.ANSWERED): L.CONFIRMED,  # answered after we gave up: to be BYEd
    **{(s, V.REJECTED): L.TERMINATED for s in RINGING},
    (L.NEW, V.CANCEL): L.CANCELLING,
    (L.EARLY, V.CANCEL): L.CANCELLING,
    (L.CANCELLING, V.CANCEL): IGNORE,
    (L.NEW, V.DROP): L.TERMINATED,
    (L.CONFIRMED, V.BYE_SENT): L.CLOSING,
    (L.CONFIRMED, V.GONE): L.TERMINATED,
    (L.CLOSING, V.GONE): L.TERMINATED,
    (L.CLOSING, V.BYE_DONE): L.TERMINATED,
    (L.CONFIRMED, V.PROGRESS): IGNORE,
    (L.CLOSING, V.PROGRESS): IGNORE,
    **{(L.TERMINATED, e): IGNORE for e in LegEvent if e is not V.ANSWERED},
}
LEG_PAIRS = pairs(LegState, LegEvent)


@pytest.mark.parametrize("state,event", LEG_PAIRS, ids=map(pair_id, LEG_PAIRS))
def test_every_leg_pair_is_the_expected_transition_no_op_or_refusal(state, event):
    assert_pair(LEG_TABLE, state, event, LEG_EXPECTED.get((state, event)))


def test_a_leg_steps_through_its_table_and_reports_what_it_ignored():
    leg = Leg("A", face=None)
    assert leg.step(V.PROGRESS) and leg.state is L.EARLY
    assert leg.step(V.CANCEL) and leg.cancelled
    assert not leg.step(V.CANCEL)  # a second CANCEL is not sent
    assert leg.step(V.ANSWERED) and leg.up
    with pytest.raises(InvalidTransition):
        leg.step(V.CANCEL)  # an answered leg is hung up with BYE, never CANCEL
    assert leg.step(V.BYE_SENT) and leg.step(V.BYE_DONE) and leg.over
