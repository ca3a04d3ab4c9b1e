"""An INVITE-mode call whose leg never ACKs the 2xx we relayed to it (RFC 3261 §13.3.1.4)."""

from __future__ import annotations

from tests.unit.sipfakes import answer
from tests.unit.test_invite_flow import SDP_TYPE, Connected, sdp


def test_a_relayed_2xx_never_acked_is_resent_until_64_t1_then_the_call_is_ended():
    c = Connected()
    hold = sdp("bob", 222, 8, "10.0.0.2", 5000, "sendonly")
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], hold))
    _, relayed = c.sent()
    held = sdp("alice", 111, 3, "10.0.0.1", 4002, "recvonly")
    c.net.deliver(answer(relayed, 200, "OK", None, [("Contact", c.a.contact), SDP_TYPE], held))
    [ok] = c.sent()
    resent, later = [], []
    while c.net.clock.seconds() < 40:
        c.net.clock.advance(0.25)
        for message in c.sent():
            (resent if getattr(message, "status", None) == 200 else later).append(
                (c.net.clock.seconds(), message))
    times = [when for when, _ in resent]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(m.to_bytes() == ok.to_bytes() for _, m in resent)
    # at the first resend due at or after 64*T1: A's 2xx is ACKed and the call ends
    assert [(when, m.method) for when, m in later][:1] == [(35.5, "ACK")]
    byes = list({m.call_id: m for _, m in reversed(later[1:])}.values())  # first of each
    assert all(m.method == "BYE" for _, m in later[1:])  # (and their retransmissions)
    assert sorted(m.call_id for m in byes) == sorted((c.invite1.call_id, c.invite2.call_id))
    assert all(m.method == "BYE" and m.headers.get("Reason").startswith("SIP;cause=408")
               for m in byes)
    for bye in byes:
        c.net.deliver(answer(bye, 200, "OK"))
    assert c.call.ended and c.call.state == "ended"
