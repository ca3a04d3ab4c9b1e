"""callerId / callerIdName (INVITE mode): what the called user is shown, limited to the
agent's own identity or the calling user's; validated before anything is sent."""

from __future__ import annotations

import pytest

from sipxcc.calls.call import CallRequest
from sipxcc.sip.uri import Address
from sipxcc.web.params import BadParameter
from tests.unit import test_invite_flow as invite_mode
from tests.unit.sipfakes import FarEnd
from tests.unit.test_web_params import parse


def from_shown_to_callee(**kw) -> Address:
    net, registry, call = invite_mode.setup(**kw)
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(invite_mode.A_ANSWER1))
    _, invite2 = net.sent_messages()
    return Address.parse(invite2.headers.get("From"))


def test_by_default_the_callee_is_shown_the_agent():
    shown = from_shown_to_callee()
    assert (shown.display, str(shown.uri)) == ("The Agent", "sip:agent@sipx.test")


def test_the_callee_is_shown_the_calling_user_when_asked():
    shown = from_shown_to_callee(caller_id="user1@sipx.test", caller_id_name="Sales: User One")
    assert (shown.display, str(shown.uri)) == ("Sales: User One", "sip:user1@sipx.test")


def test_a_name_alone_keeps_the_agents_identity():
    shown = from_shown_to_callee(caller_id_name='Desk "7"')
    assert (shown.display, str(shown.uri)) == ('Desk "7"', "sip:agent@sipx.test")


def test_the_calling_users_phone_still_sees_the_agent():
    net, registry, call = invite_mode.setup(caller_id="user1@sipx.test", caller_id_name="X")
    [invite1] = net.sent_messages()
    assert Address.parse(invite1.headers.get("From")).display == "The Agent"


def test_caller_id_is_the_agents_or_the_calling_users_only():
    wanted = parse({"sipMethod": "INVITE", "callerId": "user1"})
    assert wanted.caller_id == "user1@sipx.test"
    assert parse({"sipMethod": "INVITE", "agent": "user3", "callerId": "user3"}).caller_id == \
        "user3@sipx.test"
    for other in ("user2", "user9@sipx.test", "user1@elsewhere.test", "911"):
        with pytest.raises(BadParameter) as caught:
            parse({"sipMethod": "INVITE", "callerId": other})
        assert "only the agent's or the calling user's identity" in str(caught.value)


@pytest.mark.parametrize("bad", ["user1\r\nX-Evil: 1", "user1>", "<sip:user1@x>", "", "a b"])
def test_caller_id_is_refused_by_grammar(bad):
    with pytest.raises(BadParameter) as caught:
        parse({"sipMethod": "INVITE", "callerId": bad})
    assert str(caught.value).startswith("Bad parameter callerId")


@pytest.mark.parametrize("bad", ["Bob\r\nX-Evil: 1", "a\x00", "\t", "", "x" * 65])
def test_caller_id_name_is_printable_and_bounded(bad):
    with pytest.raises(BadParameter) as caught:
        parse({"sipMethod": "INVITE", "callerIdName": bad})
    assert str(caught.value).startswith("Bad parameter callerIdName")


def test_caller_id_needs_invite_mode():
    for name in ("callerId", "callerIdName"):
        with pytest.raises(BadParameter) as caught:
            parse({name: "user1"})
        assert "sipMethod=INVITE" in str(caught.value)


def test_the_request_carries_what_the_web_layer_validated():
    wanted = parse({"sipMethod": "INVITE", "callerId": "user1", "callerIdName": "One"})
    request = CallRequest.wanted_by(invite_mode.AGENT, wanted)
    assert (request.caller_id, request.caller_id_name) == ("user1@sipx.test", "One")
