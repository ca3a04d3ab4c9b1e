"""INVITE mode: which SDP a transfer target is offered, when a transfer is refused and why,
and how relayed answers (3xx, 408/481, target refreshes) come back."""

from __future__ import annotations

import pytest

from sipxcc.calls.errors import TransferNotPossible
from tests.unit.sipfakes import FarEnd, answer
from tests.unit.test_invite_flow import (
    SDP_TYPE,
    X_ANSWER,
    Connected,
    content,
    origin,
    sdp,
)


def transfer_done(c, target="user3@sipx.test", b_answer=None):
    """Transfer to C{target} and complete it; returns (X's far end, X's INVITE)."""
    c.registry.transfer(c.call, target)
    [invite_x] = c.sent()
    x = FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>")
    c.net.deliver(x.ok(X_ANSWER))
    ack_x, bye_old, reinvite_b = c.sent()
    c.net.deliver(answer(bye_old, 200, "OK"))
    c.net.deliver(answer(reinvite_b, 200, "OK", None, [("Contact", c.b.contact), SDP_TYPE],
                         b_answer or sdp("bob", 222, 8, "10.0.0.2", 5000)))
    assert [m.method for m in c.sent()] == ["ACK"]
    assert c.call.state == "connected"
    return x, invite_x


def test_transfer_refusals_say_why():
    c = Connected()
    c.call.flow.hangup("bye")
    with pytest.raises(TransferNotPossible) as caught:
        c.call.flow.transfer("user3@sipx.test")
    assert str(caught.value) == "The call is not connected; nothing to transfer"


@pytest.mark.parametrize("who", ["a", "b"])
def test_no_transfer_while_a_party_renegotiates(who):
    c = Connected()
    party = getattr(c, who)
    c.net.deliver(party.request("INVITE", [SDP_TYPE], sdp("p", 9, 9, "10.0.0.9", 7000)))
    c.sent()
    with pytest.raises(TransferNotPossible) as caught:
        c.registry.transfer(c.call, "user3@sipx.test")
    assert str(caught.value) == "A session change is in progress; try again"
    assert c.sent() == [] and c.call.state == "connected"


def test_the_target_is_offered_the_callees_latest_session():
    c = Connected()
    update = sdp("bob", 222, 8, "10.0.0.2", 5010)
    c.net.deliver(c.b.request("UPDATE", [SDP_TYPE], update))
    [relayed] = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [("Contact", c.a.contact), SDP_TYPE],
                         sdp("alice", 111, 3, "10.0.0.1", 4002)))
    c.sent()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    assert content(invite_x.body) == content(update)


def test_a_second_transfer_offers_what_the_callee_answered_the_first():
    c = Connected()
    b_answer = sdp("bob", 222, 8, "10.0.0.2", 5020)
    transfer_done(c, b_answer=b_answer)
    c.registry.transfer(c.call, "user4@sipx.test")
    [invite_y] = c.sent()
    assert invite_y.headers.get("To") == "<sip:user4@sipx.test>"
    assert content(invite_y.body) == content(b_answer)


def test_an_offer_refused_with_300_is_presented_as_new_next_time():
    c = Connected()
    hold = sdp("bob", 222, 8, "10.0.0.2", 5000, "sendonly")
    c.net.deliver(c.b.request("UPDATE", [SDP_TYPE], hold))
    [first] = c.sent()
    c.net.deliver(answer(first, 300, "Multiple Choices"))
    [back] = c.sent()
    assert (back.status, back.reason) == (300, "Multiple Choices")
    assert back.headers.get("Contact") is None  # only a 2xx refreshes the target
    c.net.deliver(c.b.request("UPDATE", [SDP_TYPE], hold))
    [second] = c.sent()
    assert origin(second.body).version == origin(first.body).version + 1


def test_an_accepted_update_comes_back_with_our_contact_and_its_reason():
    c = Connected()
    c.net.deliver(c.b.request("UPDATE", [SDP_TYPE], sdp("bob", 222, 8, "10.0.0.2", 5000)))
    [relayed] = c.sent()
    c.net.deliver(answer(relayed, 200, "Fine Then", None, [("Contact", c.a.contact), SDP_TYPE],
                         sdp("alice", 111, 3, "10.0.0.1", 4002)))
    [back] = c.sent()
    assert (back.status, back.reason) == (200, "Fine Then")
    assert back.headers.get("Contact") == "<sip:callcontroller@127.0.0.1:6050>"
    c.net.clock.advance(1)
    assert c.sent() == []  # not an INVITE: nothing to retransmit, no ACK awaited


@pytest.mark.parametrize("status,gone", [(481, True), (408, True), (409, False),
                                         (482, False)])
def test_a_relayed_request_answered_481_or_408_means_the_peer_is_gone(status, gone):
    c = Connected()
    info = c.a.request("INFO", [("Content-Type", "application/dtmf-relay")], b"Signal=1\r\n")
    c.net.deliver(info)
    [relayed] = c.sent()
    c.net.deliver(answer(relayed, status, "Whatever"))
    sent = c.sent()
    assert [(m.status, m.call_id) for m in sent if m.cseq == info.cseq] == [
        (status, c.invite1.call_id)]
    byes = [m for m in sent if getattr(m, "method", None) == "BYE"]
    assert [m.call_id for m in byes] == ([c.invite1.call_id] if gone else [])


def test_the_reason_of_a_relayed_failure_is_kept():
    c = Connected()
    c.net.deliver(c.a.request("MESSAGE", [("Content-Type", "text/plain")], b"hi"))
    [relayed] = c.sent()
    c.net.deliver(answer(relayed, 415, "No Text Please"))
    [back] = c.sent()
    assert (back.status, back.reason) == (415, "No Text Please")
