"""timeLimit (INVITE mode): the connected call is hung up on both legs after it, with a
Reason, and its status document says why; the parameter is validated. On a Clock."""

from __future__ import annotations

import pytest

from sipxcc.timers import SLACK
from sipxcc.web.params import MAX_TIME_LIMIT, BadParameter
from tests.unit.sipfakes import answer
from tests.unit.test_invite_flow import Connected, lines
from tests.unit.test_web_params import parse


def test_the_connected_call_is_hung_up_on_both_legs_at_its_time_limit():
    c = Connected(time_limit=60)
    assert c.call.state == "connected"
    c.net.clock.advance(60 - 0.01)
    assert c.sent() == [] and c.call.state == "connected"
    c.net.clock.advance(0.01 + SLACK)
    byes = c.sent()
    assert sorted((m.method, m.call_id) for m in byes) == sorted(
        [("BYE", c.invite1.call_id), ("BYE", c.invite2.call_id)])
    assert all(m.headers.get("Reason") == 'SIP;cause=200;text="Time limit reached"'
               for m in byes)
    assert (c.invite1.call_id, "Time limit of 60 s reached") in lines(c.call)
    for bye in byes:
        c.net.deliver(answer(bye, 200, "OK"))
    assert c.call.ended and c.call.state == "ended"


def test_without_a_time_limit_the_call_stays_up():
    c = Connected()
    c.net.clock.advance(MAX_TIME_LIMIT + 10)
    assert [m.method for m in c.sent()] == [] and c.call.state == "connected"


def test_a_call_that_ends_first_leaves_no_time_limit_behind():
    c = Connected(time_limit=60)
    c.call.flow.hangup("Deleted")
    for bye in c.sent():
        c.net.deliver(answer(bye, 200, "OK"))
    assert c.call.ended
    c.net.clock.advance(61 + SLACK)
    assert c.sent() == []
    assert not any("Time limit" in line for _, line in lines(c.call))


def test_time_limit_parameter_is_validated():
    assert parse({"sipMethod": "INVITE", "timeLimit": "90"}).time_limit == 90
    assert parse({"sipMethod": "INVITE"}).time_limit is None
    for bad in ("0", "-5", "x", "1.5", str(MAX_TIME_LIMIT + 1), "9" * 30, "90\r\nX: y"):
        with pytest.raises(BadParameter) as caught:
            parse({"sipMethod": "INVITE", "timeLimit": bad})
        assert str(caught.value).startswith("Bad parameter timeLimit")


def test_time_limit_needs_invite_mode():
    with pytest.raises(BadParameter) as caught:
        parse({"timeLimit": "90"})
    assert "sipMethod=INVITE" in str(caught.value)
