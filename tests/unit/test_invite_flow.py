"""The INVITE-mode (RFC 3725 flow IV) call end to end against scripted phones, on a Clock."""

from __future__ import annotations

import hashlib

import pytest

from sipxcc.calls.call import CallRequest
from sipxcc.calls.context import FlowContext
from sipxcc.calls.errors import TransferNotPossible
from sipxcc.calls.invite import InviteFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.calls.sdp import SessionDescription
from sipxcc.sip.uri import URI
from sipxcc.users import User
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


AGENT = User("agent@sipx.test", "agent", (), "The Agent", md5("agent:sipx.test:1"),
             md5("agent:sipx.test:pass"))
CHALLENGE = 'Digest realm="sipx.test", nonce="n0nce", qop="auth", algorithm=MD5'
SDP_TYPE = ("Content-Type", "application/sdp")


def sdp(user: str, session: int, version: int, host: str, port: int,
        direction: str = "sendrecv") -> bytes:
    return (f"v=0\r\no={user} {session} {version} IN IP4 {host}\r\ns=-\r\n"
            f"c=IN IP4 {host}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n"
            f"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            f"a={direction}\r\n").encode()


A_ANSWER1 = sdp("alice", 111, 1, "10.0.0.1", 4000)
B_OFFER = sdp("bob", 222, 7, "10.0.0.2", 5000)
A_ANSWER2 = sdp("alice", 111, 2, "10.0.0.1", 4002)
X_ANSWER = sdp("xavier", 333, 1, "10.0.0.3", 6000)


def origin(body: bytes):
    return SessionDescription.parse(body).origin


def content(body: bytes) -> list:
    """An SDP body without its o= line: what a relay must carry unchanged."""
    return [line for line in SessionDescription.parse(body).lines if line[0] != "o"]


def setup(**kw):
    net = FakeNetwork()
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    registry = CallRegistry(net.clock, {"INVITE": lambda call, end: InviteFlow(ctx, call, end)})
    request = CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test", method="INVITE", **kw)
    return net, registry, registry.place(request)


def methods(messages) -> list:
    return [getattr(m, "method", None) or m.status for m in messages]


def lines(call) -> list:
    return [(e.call_id, e.status_line) for e in call.events]


class Connected:
    """A call driven up to "connected": the INVITEs we sent and the two scripted phones."""

    def __init__(self, **kw):
        self.net, self.registry, self.call = setup(**kw)
        net = self.net
        [self.invite1] = net.sent_messages()
        self.a = FarEnd(self.invite1, "<sip:user1@127.0.0.1:5071>")
        net.deliver(answer(self.invite1, 180, "Ringing", self.a.tag))
        net.deliver(self.a.ok(A_ANSWER1))
        self.ack1, self.invite2 = net.sent_messages()
        self.b = FarEnd(self.invite2, "<sip:user2@127.0.0.1:5072>")
        net.deliver(answer(self.invite2, 180, "Ringing", self.b.tag))
        net.deliver(self.b.ok(B_OFFER))
        [self.reinvite_a] = net.sent_messages()
        net.deliver(answer(self.reinvite_a, 200, "OK", None,
                           [("Contact", self.a.contact), SDP_TYPE], A_ANSWER2))
        self.ack_a, self.ack_b = net.sent_messages()

    def sent(self):
        return self.net.sent_messages()


def test_happy_path_message_by_message():
    net, registry, call = setup(subject="Sales")
    [invite1] = net.sent_messages()
    uri = URI.parse(invite1.uri)
    assert (uri.user, uri.host, uri.params["sipx-noroute"]) == ("user1", "sipx.test", "Voicemail")
    assert ";sipx-noroute=Voicemail" in invite1.uri  # as sipXproxy spells it
    # the calling user is shown the called party (not in the directory here: its URI)
    assert invite1.headers.get("From").startswith('<sip:user2@sipx.test>;tag=')
    assert invite1.headers.get("Subject") == "Sales"
    offer1 = SessionDescription.parse(invite1.body)
    assert offer1.connection == "IN IP4 0.0.0.0" and len(offer1.media) == 1
    assert offer1.media[0].port != 0 and offer1.origin.version == 1
    a = FarEnd(invite1)
    net.deliver(answer(invite1, 100, "Trying"))
    assert call.state == "calling"
    net.deliver(answer(invite1, 180, "Ringing", a.tag))
    assert call.state == "ringing"
    net.deliver(a.ok(A_ANSWER1))

    ack1, invite2 = net.sent_messages()
    assert ack1.method == "ACK" and ack1.body == b"" and ack1.cseq[0] == invite1.cseq[0]
    assert invite2.method == "INVITE" and invite2.body == b""
    assert "Content-Type" not in invite2.headers
    uri2 = URI.parse(invite2.uri)
    assert (uri2.user, uri2.params["sipx-userforward"]) == ("user2", "false")
    assert ";sipx-userforward=false" in invite2.uri
    assert invite2.headers.get("To") == "<sip:user2@sipx.test>"
    # the called user is shown the calling user (not in the directory here: its URI)
    assert invite2.headers.get("From").startswith("<sip:user1@sipx.test>;tag=")
    assert invite2.headers.get("P-Asserted-Identity") == "<sip:user1@sipx.test>"
    assert "Subject" not in invite2.headers
    assert call.state == "ringing"

    b = FarEnd(invite2, "<sip:user2@127.0.0.1:5072>")
    net.deliver(answer(invite2, 180, "Ringing", b.tag))
    net.deliver(b.ok(B_OFFER))
    [reinvite] = net.sent_messages()  # B's 200 is held: no ACK yet
    assert reinvite.method == "INVITE" and reinvite.call_id == invite1.call_id
    assert reinvite.uri == "sip:user1@127.0.0.1:5071"
    assert reinvite.headers.get("Content-Type") == "application/sdp"
    assert content(reinvite.body) == content(B_OFFER)
    assert origin(reinvite.body)._replace(version=1) == offer1.origin
    assert origin(reinvite.body).version == 2

    net.deliver(answer(reinvite, 200, "OK", None, [("Contact", a.contact), SDP_TYPE], A_ANSWER2))
    ack_a, ack_b = net.sent_messages()
    assert (ack_a.method, ack_a.call_id, ack_a.cseq[0], ack_a.body) == \
        ("ACK", invite1.call_id, reinvite.cseq[0], b"")
    assert (ack_b.method, ack_b.call_id, ack_b.cseq[0]) == ("ACK", invite2.call_id,
                                                            invite2.cseq[0])
    assert ack_b.headers.get("Content-Type") == "application/sdp"
    assert content(ack_b.body) == content(A_ANSWER2)
    b_origin = origin(ack_b.body)
    assert b_origin.version == 1 and b_origin.session_id != offer1.origin.session_id
    assert call.state == "connected"
    assert lines(call) == [
        (invite1.call_id, "SIP/2.0 100 Trying"),
        (invite1.call_id, "SIP/2.0 180 Ringing"),
        (invite1.call_id, "SIP/2.0 200 OK"),
        (invite2.call_id, "SIP/2.0 180 Ringing"),
        (invite2.call_id, "SIP/2.0 200 OK"),
    ]
    # a retransmitted 200 is answered with the same ACK, and nothing else goes out
    net.deliver(b.ok(B_OFFER))
    assert [m.to_bytes() for m in net.sent_messages()] == [ack_b.to_bytes()]
    net.clock.advance(600)
    assert not call.ended and registry.active_count == 1


def test_challenged_second_invite_is_answered_with_the_agents_credentials():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 407, "Proxy Authentication Required", "p1",
                       [("Proxy-Authenticate", CHALLENGE)]))
    ack, retry = net.sent_messages()
    assert ack.method == "ACK" and retry.method == "INVITE"
    assert 'username="agent"' in retry.headers.get("Proxy-Authorization")
    assert lines(call)[-1] == (invite2.call_id, "SIP/2.0 407 Proxy Authentication Required")


def test_callee_busy_hangs_up_the_caller_and_fails_the_call():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 486, "Busy Here", "b1"))
    ack, bye = net.sent_messages()
    assert ack.method == "ACK" and ack.call_id == invite2.call_id
    assert bye.method == "BYE" and bye.call_id == invite1.call_id
    assert bye.headers.get("Reason") == 'SIP;cause=486;text="Busy Here"'
    assert not call.ended
    net.deliver(answer(bye, 200, "OK"))
    assert call.ended and call.state == "failed"
    assert lines(call)[-1] == (invite2.call_id, "SIP/2.0 486 Busy Here")
    assert registry.active_count == 0


def test_caller_never_answers_is_cancelled_and_callee_never_invited():
    net, registry, call = setup(timeout=20)
    [invite1] = net.sent_messages()
    net.deliver(answer(invite1, 180, "Ringing", "t1"))
    net.clock.advance(19.9)
    assert net.sent_messages() == []
    net.clock.advance(0.1)
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL" and cancel.cseq == (invite1.cseq[0], "CANCEL")
    net.deliver(answer(cancel, 200, "OK", "t1"))
    net.deliver(answer(invite1, 487, "Request Terminated", "t1"))
    assert methods(net.sent_messages()) == ["ACK"]
    assert call.ended and call.state == "failed"
    net.clock.advance(300)
    assert all(m.method != "INVITE" for m in net.sent_messages())


def test_callee_never_answers_is_cancelled_at_its_own_timeout():
    net, registry, call = setup(timeout=30)
    [invite1] = net.sent_messages()
    net.deliver(answer(invite1, 100, "Trying"))
    net.clock.advance(25)
    net.deliver(FarEnd(invite1).ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    net.clock.advance(29)
    assert net.sent_messages() == []
    net.clock.advance(1)
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL" and cancel.call_id == invite2.call_id
    net.deliver(answer(invite2, 487, "Request Terminated", "b1"))
    ack, bye = net.sent_messages()
    assert (ack.method, bye.method, bye.call_id) == ("ACK", "BYE", invite1.call_id)
    assert bye.headers.values("Reason") == ['SIP;cause=480;text="No Answer"', "Q.850;cause=19"]


def test_bye_from_caller_is_answered_and_passed_to_callee():
    c = Connected()
    c.net.deliver(c.a.request("BYE", [("Reason", 'Q.850;cause=16;text="Normal"')]))
    ok, bye = c.sent()
    assert (ok.status, ok.cseq[1], ok.call_id) == (200, "BYE", c.invite1.call_id)
    assert (bye.method, bye.call_id) == ("BYE", c.invite2.call_id)
    assert bye.uri == "sip:user2@127.0.0.1:5072"
    assert bye.headers.get("Reason") == 'Q.850;cause=16;text="Normal"'
    assert not c.call.ended
    c.net.deliver(answer(bye, 200, "OK"))
    assert c.call.ended and c.call.state == "ended" and c.registry.active_count == 0


def test_bye_from_callee_is_passed_to_caller():
    c = Connected()
    c.net.deliver(c.b.request("BYE"))
    ok, bye = c.sent()
    assert (ok.status, bye.method, bye.call_id) == (200, "BYE", c.invite1.call_id)
    assert "Reason" not in bye.headers
    c.net.deliver(answer(bye, 200, "OK"))
    assert c.call.state == "ended"


def test_unanswered_bye_still_ends_the_call():
    c = Connected()
    c.net.deliver(c.b.request("BYE"))
    c.net.clock.advance(31)
    assert not c.call.ended
    c.net.clock.advance(2)
    assert (c.call.ended, c.call.state) == (True, "ended")


def test_hold_from_callee_refused_by_caller_is_relayed_back():
    c = Connected()
    hold = sdp("bob", 222, 8, "10.0.0.2", 5000, "sendonly")
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], hold))
    trying, relayed = c.sent()
    assert trying.status == 100
    assert (relayed.method, relayed.call_id) == ("INVITE", c.invite1.call_id)
    assert content(relayed.body) == content(hold)
    assert origin(relayed.body).session_id == origin(c.reinvite_a.body).session_id
    assert origin(relayed.body).version == 3
    c.net.deliver(answer(relayed, 488, "Not Acceptable Here", None,
                         [("Warning", '304 alice "no"')]))
    ack, refused = c.sent()
    assert ack.method == "ACK" and ack.call_id == c.invite1.call_id
    assert (refused.status, refused.cseq[1], refused.call_id) == \
        (488, "INVITE", c.invite2.call_id)
    assert refused.headers.get("Warning") == '304 alice "no"'
    assert c.call.state == "connected"


def test_hold_accepted_is_relayed_with_its_answer_and_ack():
    c = Connected()
    hold = sdp("bob", 222, 8, "10.0.0.2", 5000, "sendonly")
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], hold))
    _, relayed = c.sent()
    held = sdp("alice", 111, 3, "10.0.0.1", 4002, "recvonly")
    c.net.deliver(answer(relayed, 200, "OK", None, [("Contact", c.a.contact), SDP_TYPE], held))
    [ok] = c.sent()
    assert (ok.status, ok.call_id) == (200, c.invite2.call_id)
    assert ok.headers.get("Contact") == "<sip:callcontroller@127.0.0.1:6050>"
    assert content(ok.body) == content(held)
    assert origin(ok.body).session_id == origin(c.ack_b.body).session_id
    assert origin(ok.body).version == 2
    c.net.clock.advance(0.5)  # unACKed, our 2xx is retransmitted (§13.3.1.4)
    assert [m.status for m in c.sent()] == [200]
    ack = c.b.request("ACK")
    ack.headers.set("CSeq", f"{c.b.cseq - 1} ACK")
    c.net.deliver(ack)
    [ack_a] = c.sent()
    assert (ack_a.method, ack_a.call_id, ack_a.cseq[0]) == ("ACK", c.invite1.call_id,
                                                            relayed.cseq[0])
    c.net.clock.advance(10)
    assert c.sent() == []


def test_info_is_relayed_with_its_headers_and_answer():
    c = Connected()
    c.net.deliver(c.a.request("INFO", [("Content-Type", "application/dtmf-relay"),
                                       ("X-Private", "secret")], b"Signal=5\r\n"))
    [info] = c.sent()
    assert (info.method, info.call_id, info.body) == ("INFO", c.invite2.call_id,
                                                      b"Signal=5\r\n")
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    assert "X-Private" not in info.headers
    c.net.deliver(answer(info, 415, "Unsupported Media Type"))
    [back] = c.sent()
    assert (back.status, back.call_id) == (415, c.invite1.call_id)
    c.net.deliver(c.b.request("NOTIFY", [("event", "dialog"), ("subscription-state", "active"),
                                         ("content-type", "application/dialog-info+xml")],
                              b"<dialog-info/>"))
    [notify] = c.sent()
    assert (notify.method, notify.call_id) == ("NOTIFY", c.invite1.call_id)
    assert (notify.headers.get("Event"), notify.headers.get("Subscription-State")) == \
        ("dialog", "active")


def test_transfer_moves_callee_to_the_target():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    assert c.call.state == "transferring"
    [invite_x] = c.sent()
    assert invite_x.headers.get("To") == "<sip:user3@sipx.test>"
    assert URI.parse(invite_x.uri).params["sipx-userforward"] == "false"
    assert content(invite_x.body) == content(B_OFFER)
    assert origin(invite_x.body).version == 1
    x = FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>")
    c.net.deliver(answer(invite_x, 180, "Ringing", x.tag))
    c.net.deliver(x.ok(X_ANSWER))
    ack_x, bye_a, reinvite_b = c.sent()
    assert (ack_x.method, ack_x.call_id) == ("ACK", invite_x.call_id)
    assert (bye_a.method, bye_a.call_id) == ("BYE", c.invite1.call_id)
    assert bye_a.headers.get("Reason") == 'SIP;cause=200;text="Call transferred"'
    assert (reinvite_b.method, reinvite_b.call_id) == ("INVITE", c.invite2.call_id)
    assert content(reinvite_b.body) == content(X_ANSWER)
    b_session = origin(c.ack_b.body)
    assert origin(reinvite_b.body) == b_session._replace(version=b_session.version + 1)
    c.net.deliver(answer(bye_a, 200, "OK"))
    b_answer = sdp("bob", 222, 8, "10.0.0.2", 5000)
    c.net.deliver(answer(reinvite_b, 200, "OK", None, [("Contact", c.b.contact), SDP_TYPE],
                         b_answer))
    [ack_b] = c.sent()
    assert (ack_b.method, ack_b.cseq[0], ack_b.body) == ("ACK", reinvite_b.cseq[0], b"")
    assert c.call.state == "connected"
    assert lines(c.call)[-2:] == [(invite_x.call_id, "SIP/2.0 180 Ringing"),
                                  (invite_x.call_id, "SIP/2.0 200 OK")]
    # from now on X and B talk: X's BYE reaches B
    c.net.deliver(x.request("BYE"))
    ok, bye_b = c.sent()
    assert (ok.status, bye_b.method, bye_b.call_id) == (200, "BYE", c.invite2.call_id)
    c.net.deliver(answer(bye_b, 200, "OK"))
    assert c.call.state == "ended"


def test_failed_transfer_keeps_the_call():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    c.net.deliver(answer(invite_x, 486, "Busy Here", "x1"))
    assert methods(c.sent()) == ["ACK"]
    assert c.call.state == "connected" and not c.call.ended
    assert lines(c.call)[-1] == (invite_x.call_id, "SIP/2.0 486 Busy Here")
    c.net.deliver(c.a.request("BYE"))
    ok, bye_b = c.sent()
    assert (bye_b.method, bye_b.call_id) == ("BYE", c.invite2.call_id)


def test_transfer_target_rings_for_the_transfers_own_timeout():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test", timeout=5)
    [invite_x] = c.sent()
    c.net.deliver(answer(invite_x, 180, "Ringing", "x1"))
    c.net.clock.advance(4.9)
    assert c.sent() == []
    c.net.clock.advance(0.1)
    [cancel] = c.sent()
    assert (cancel.method, cancel.call_id) == ("CANCEL", invite_x.call_id)
    c.net.deliver(answer(invite_x, 487, "Request Terminated", "x1"))
    assert c.call.state == "connected" and not c.call.ended


def test_transfer_needs_a_connected_call():
    net, registry, call = setup()
    with pytest.raises(TransferNotPossible):
        registry.transfer(call, "user3@sipx.test")
    c = Connected()
    c.call.flow.hangup("hangup")
    with pytest.raises(TransferNotPossible):
        c.registry.transfer(c.call, "user3@sipx.test")


def test_hangup_while_caller_rings_cancels():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    net.deliver(answer(invite1, 180, "Ringing", "t1"))
    registry.hangup(call)
    [cancel] = net.sent_messages()
    assert cancel.method == "CANCEL"
    net.deliver(answer(invite1, 487, "Request Terminated", "t1"))
    assert (call.ended, call.state) == (True, "failed")


def test_hangup_while_callee_rings_cancels_it_and_hangs_up_the_caller():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    registry.hangup(call)
    bye, cancel = net.sent_messages()
    assert (cancel.method, cancel.call_id) == ("CANCEL", invite2.call_id)
    assert (bye.method, bye.call_id) == ("BYE", invite1.call_id)
    net.deliver(answer(bye, 200, "OK"))
    assert not call.ended  # B's INVITE is not over yet
    net.deliver(answer(invite2, 487, "Request Terminated", "b1"))
    assert (call.ended, call.state) == (True, "failed")


def test_hangup_while_connected_byes_both():
    c = Connected()
    c.registry.hangup(c.call)
    byes = c.sent()
    assert sorted((m.method, m.call_id) for m in byes) == \
        sorted([("BYE", c.invite1.call_id), ("BYE", c.invite2.call_id)])
    assert all(m.headers.get("Reason") == 'SIP;cause=200;text="hangup"' for m in byes)
    c.net.deliver(answer(byes[0], 200, "OK"))
    assert not c.call.ended
    c.net.deliver(answer(byes[1], 200, "OK"))
    assert c.call.ended and c.call.state == "ended"


def test_callee_answer_without_sdp_ends_both():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(FarEnd(invite2, "<sip:user2@127.0.0.1:5072>").ok())
    sent = net.sent_messages()
    assert sorted(methods(sent)) == ["ACK", "BYE", "BYE"]
    for bye in (m for m in sent if m.method == "BYE"):
        net.deliver(answer(bye, 200, "OK"))
    assert call.state == "failed"


def test_caller_refusing_the_offer_ends_both_with_a_valid_ack():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(FarEnd(invite2, "<sip:user2@127.0.0.1:5072>").ok(B_OFFER))
    [reinvite] = net.sent_messages()
    net.deliver(answer(reinvite, 488, "Not Acceptable Here"))
    sent = net.sent_messages()
    assert sorted((m.method, m.call_id) for m in sent) == sorted([
        ("ACK", invite1.call_id), ("ACK", invite2.call_id),
        ("BYE", invite1.call_id), ("BYE", invite2.call_id)])
    [ack_b] = [m for m in sent if m.method == "ACK" and m.call_id == invite2.call_id]
    refusal = SessionDescription.parse(ack_b.body)  # §13.2.2.4: a valid answer...
    assert [(m.type, m.port) for m in refusal.media] == [("audio", 0)]  # ...taking nothing
    for bye in (m for m in sent if m.method == "BYE"):
        net.deliver(answer(bye, 200, "OK"))
    assert call.state == "failed"


def test_dialogs_document():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    assert call.dialogs() == []
    a = FarEnd(invite1)
    net.deliver(answer(invite1, 180, "Ringing", a.tag))
    [early] = call.dialogs()
    assert early.state == "Early Dialog"
    assert early.dialog_id == f"{invite1.call_id}:{invite1.from_tag}:{a.tag}"
    # local party: whom that phone is shown (the called party, for the calling user)
    assert (early.local_party, early.remote_party) == ("sip:user2@sipx.test",
                                                      "sip:user1@sipx.test")
    net.deliver(a.ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    b = FarEnd(invite2)
    net.deliver(answer(invite2, 183, "Session Progress", b.tag))
    assert [(d.local_party, d.remote_party, d.state) for d in call.dialogs()] == [
        ("sip:user2@sipx.test", "sip:user1@sipx.test", "Confirmed Dialog"),
        # the called user is shown the calling user (the agent is someone else)
        ("sip:user1@sipx.test", "sip:user2@sipx.test", "Early Dialog")]
    net.deliver(b.ok(B_OFFER))
    [reinvite] = net.sent_messages()
    net.deliver(answer(reinvite, 200, "OK", None, [SDP_TYPE], A_ANSWER2))
    net.sent_messages()
    assert [d.state for d in call.dialogs()] == ["Confirmed Dialog"] * 2
    net.deliver(b.request("BYE"))
    [_, bye] = net.sent_messages()
    net.deliver(answer(bye, 200, "OK"))
    assert [d.state for d in call.dialogs()] == ["Terminated Dialog"] * 2


def test_caller_answering_as_we_cancel_is_acked_and_hung_up():
    net, registry, call = setup(timeout=20)
    [invite1] = net.sent_messages()
    a = FarEnd(invite1)
    net.deliver(answer(invite1, 180, "Ringing", a.tag))
    net.clock.advance(20)
    [cancel] = net.sent_messages()
    net.deliver(a.ok(A_ANSWER1))  # the 200 crossed our CANCEL (§15)
    ack, bye = net.sent_messages()
    assert (ack.method, bye.method) == ("ACK", "BYE")
    assert 'cause=487' in bye.headers.get("Reason")
    net.deliver(answer(bye, 200, "OK"))
    assert call.ended and call.state == "failed"
    assert all(m.method != "INVITE" for m in net.sent_messages())


def test_glare_with_a_relayed_reinvite_is_refused_with_491():
    c = Connected()
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], sdp("bob", 222, 8, "10.0.0.2", 5000,
                                                        "sendonly")))
    _, relayed = c.sent()
    c.net.deliver(c.a.request("INVITE", [SDP_TYPE], sdp("alice", 111, 3, "10.0.0.1", 4002,
                                                        "sendonly")))
    [pending] = c.sent()
    assert (pending.status, pending.call_id) == (491, c.invite1.call_id)


def test_cancelled_relayed_reinvite_is_cancelled_on_the_other_leg():
    c = Connected()
    reinvite = c.b.request("INVITE", [SDP_TYPE], sdp("bob", 222, 8, "10.0.0.2", 5000))
    c.net.deliver(reinvite)
    _, relayed = c.sent()
    c.net.deliver(answer(relayed, 100, "Trying"))
    cancel = c.b.request("CANCEL")
    cancel.headers.set("Via", reinvite.headers.get("Via"))
    cancel.headers.set("CSeq", f"{reinvite.cseq[0]} CANCEL")
    c.net.deliver(cancel)
    sent = c.sent()
    assert sorted(getattr(m, "method", None) or str(m.status) for m in sent) == \
        ["200", "487", "CANCEL"]
    [ours] = [m for m in sent if getattr(m, "method", None) == "CANCEL"]
    assert ours.call_id == c.invite1.call_id and ours.cseq[0] == relayed.cseq[0]


def test_relayed_2xx_never_acked_ends_the_call():
    c = Connected()
    c.net.deliver(c.b.request("INVITE", [SDP_TYPE], B_OFFER))
    _, relayed = c.sent()
    c.net.deliver(answer(relayed, 200, "OK", None, [SDP_TYPE], A_ANSWER2))
    c.net.clock.advance(31)
    assert {m.status for m in c.sent()} == {200}  # retransmissions of our 2xx to B
    c.net.clock.advance(2)
    sent = c.sent()
    assert ("ACK", c.invite1.call_id) in [(m.method, m.call_id) for m in sent]
    assert sorted((m.method, m.call_id) for m in sent if m.method == "BYE") == \
        sorted([("BYE", c.invite1.call_id), ("BYE", c.invite2.call_id)])


def test_caller_hanging_up_during_transfer_still_completes_it():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    c.net.deliver(c.a.request("BYE"))
    assert [m.status for m in c.sent()] == [200]
    x = FarEnd(invite_x, "<sip:user3@127.0.0.1:5073>")
    c.net.deliver(x.ok(X_ANSWER))
    ack_x, reinvite_b = c.sent()  # A is gone already: no BYE for it
    assert (ack_x.method, reinvite_b.method) == ("ACK", "INVITE")
    c.net.deliver(answer(reinvite_b, 200, "OK", None, [SDP_TYPE], B_OFFER))
    assert methods(c.sent()) == ["ACK"]
    assert c.call.state == "connected"


def test_caller_hanging_up_during_a_failed_transfer_ends_the_call():
    c = Connected()
    c.registry.transfer(c.call, "user3@sipx.test")
    [invite_x] = c.sent()
    c.net.deliver(c.a.request("BYE"))
    c.sent()
    c.net.deliver(answer(invite_x, 480, "Temporarily Unavailable", "x1"))
    ack, bye_b = c.sent()
    assert (bye_b.method, bye_b.call_id) == ("BYE", c.invite2.call_id)
    c.net.deliver(answer(bye_b, 200, "OK"))
    assert (c.call.ended, c.call.state) == (True, "ended")


def test_caller_hanging_up_while_callee_rings_cancels_the_callee():
    net, registry, call = setup()
    [invite1] = net.sent_messages()
    a = FarEnd(invite1)
    net.deliver(a.ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    net.deliver(a.request("BYE"))
    ok, cancel = net.sent_messages()
    assert (ok.status, cancel.method, cancel.call_id) == (200, "CANCEL", invite2.call_id)
    net.deliver(answer(invite2, 487, "Request Terminated", "b1"))
    assert call.ended and call.state == "failed"


def test_a_finished_call_leaves_no_reference_cycle_behind():
    """Everything an INVITE-mode call used is freed by reference counting alone."""
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        c = Connected()
        flow = weakref.ref(c.call.flow)
        c.net.deliver(c.a.request("BYE"))
        ok, bye = c.sent()
        c.net.deliver(answer(bye, 200, "OK"))
        assert (c.call.ended, c.call.state) == (True, "ended")
        c.net.clock.advance(200)
        assert not c.net.ua.transactions.clients and not c.net.ua.dialogs
        del ok, bye
        assert flow() is None
    finally:
        gc.enable()
