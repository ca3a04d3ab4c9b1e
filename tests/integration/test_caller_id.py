"""callerId / callerIdName end to end (INVITE mode): the called phone, behind Kamailio
with digest auth, sees the identity asked for; one outside the rule is a 400."""

from __future__ import annotations

import re

from tests.integration.e2e import curl, wait_for
from tests.integration.test_invite_mode import INVITE_MODE, call_state, hang_up, post


def test_the_called_phone_is_shown_the_calling_user_asked_for(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    location = post(s, INVITE_MODE + "&agent=user3&callerId=user1&callerIdName=Sales%20desk")
    wait_for(lambda: call_state(s, location) == "connected")
    assert hang_up(s, location, a, b) == "ended"
    from_b = re.search(r"^From: *(.*?)\r?$", b.received("INVITE")[0], re.M).group(1)
    assert from_b.startswith('"Sales desk" <sip:user1@sipx.test>;tag='), from_b
    from_a = re.search(r"^From: *(.*?)\r?$", a.received("INVITE")[0], re.M).group(1)
    assert from_a.startswith('"User Three" <sip:user3@sipx.test>;tag='), from_a


def test_a_caller_id_outside_the_rule_is_refused_before_anything_is_sent(setup):
    s = setup()
    code, body = curl("-X", "POST", s.url(INVITE_MODE + "&callerId=user4"))
    assert code == 400, body
    assert "callerId" in body
