"""
What the calling user's phone is told when the called user is busy, in both modes, end
to end (the daemon, Kamailio with digest auth, sipp phones): the BYE that ends its leg
carries RFC 3326 Reason with the SIP cause and the Q.850 cause (17, user busy), which a
phone or gateway turns into a busy tone.
"""

from __future__ import annotations

import re

from tests.integration.e2e import curl, status_lines, wait_for

BUSY = 'Reason: SIP;cause=486;text="Busy Here", Q.850;cause=17'


def invite_a_busy_callee(s):
    """An INVITE-mode call from user1 (answers) to user2 (busy), both sipp scenarios run
    to their end; user1's phone."""
    a = s.phone("user1", "phone_answer")
    b = s.phone("user2", "caller_busy")
    code, body = curl("-X", "POST", s.url("/callcontroller/user1/user2?sipMethod=INVITE"))
    assert code == 200, body
    assert b.wait(20) == 0, b.errors()
    assert a.wait(20) == 0, a.errors()
    return a


def test_invite_mode_busy_callee_ends_the_callers_leg_with_q850_user_busy(setup):
    s = setup()
    a = invite_a_busy_callee(s)
    assert BUSY in a.received("BYE")[0]


def test_refer_mode_busy_sipfrag_ends_the_callers_leg_with_q850_user_busy(setup):
    s = setup()
    a = s.phone("user1", "refer_busy")
    code, body = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
    assert code == 200, body
    assert a.wait(20) == 0, a.errors()
    assert BUSY in a.received("BYE")[0]
    lines = wait_for(lambda: status_lines(curl(s.url("/callcontroller/user1/user2"))[1]))
    assert ("NOTIFY", "SIP/2.0 486 Busy Here") in lines


def test_over_tcp_the_bye_goes_on_the_transport_the_200_came_on(setup):
    # XX-10930: the final BYE went out over UDP though the call was set up over TCP
    s = setup(transport="tcp")
    a = invite_a_busy_callee(s)
    invite, bye = a.received("INVITE")[0], a.received("BYE")[0]
    # the daemon's own Via is the last one: the transport it sent the request on
    ours = [re.findall(r"^Via: *SIP/2\.0/(\w+) ", m, re.M | re.I)[-1] for m in (invite, bye)]
    assert ours == ["TCP", "TCP"]
    assert BUSY in bye


def test_time_limit_hangs_up_both_phones_with_a_reason(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    code, body = curl("-X", "POST", s.url("/callcontroller/user1/user2?sipMethod=INVITE"
                                          "&timeLimit=2"))
    assert code == 200, body
    assert a.wait(20) == 0, a.errors()
    assert b.wait(20) == 0, b.errors()
    for phone in (a, b):
        assert 'Reason: SIP;cause=200;text="Time limit reached"' in phone.received("BYE")[0]
