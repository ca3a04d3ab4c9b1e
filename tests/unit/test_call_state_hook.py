"""A call tells its on_state hook (the shared registry's writer) of each state its flow sets,
naming itself; a released call tells no one. A REFER-mode call shows "ringing" for every
provisional response but 100 (a 101 too), and never for a phone answering at once."""

from __future__ import annotations

from sipxcc.calls.call import Call, CallRequest
from tests.unit.sipfakes import FarEnd, answer
from tests.unit.test_refer_flow import USER1
from tests.unit.test_refer_flow import setup as refer_setup


def test_each_state_set_is_told_to_the_hook_with_the_call():
    call = Call(CallRequest(USER1, "user1@sipx.test", "user2@sipx.test"), 0.0)
    seen = []
    call.on_state = lambda c: seen.append((c, c.state))
    call.set_state("connected")
    assert seen == [(call, "connected")]
    call.finish("ended")
    call.release()
    call.set_state("late")
    assert seen == [(call, "connected")]


def states_of(call):
    seen = []
    call.on_state = lambda c: seen.append(c.state)
    return seen


def test_a_101_rings_like_a_180():
    net, registry, call = refer_setup()
    [invite] = net.sent_messages()
    net.deliver(answer(invite, 100, "Trying"))
    assert call.state == "calling"
    net.deliver(answer(invite, 101, "Early", "t1"))
    assert call.state == "ringing"


def test_a_phone_answering_at_once_is_never_shown_ringing():
    net, registry, call = refer_setup()
    seen = states_of(call)
    [invite] = net.sent_messages()
    net.deliver(FarEnd(invite).ok(b"v=0\r\n"))
    assert "ringing" not in seen and seen != []
