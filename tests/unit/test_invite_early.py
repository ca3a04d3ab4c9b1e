"""
What the calling user (A) hears while the called user (B) rings, in INVITE mode, on a
Clock against scripted phones: B's 180 gives A our ringback tone (a sendonly re-INVITE,
then RTP), B's 183 with SDP gives A B's early media (a re-INVITE with it), and B's 200
either reuses A's early answer or re-offers; failures, DELETE and A's BYE meanwhile.
"""

from __future__ import annotations

from sipxcc.calls.call import CallRequest
from sipxcc.calls.context import FlowContext
from sipxcc.calls.early import MAX_EARLY_OFFERS
from sipxcc.calls.invite import InviteFlow
from sipxcc.calls.registry import CallRegistry
from sipxcc.calls.sdp import SessionDescription
from sipxcc.media.ringback import PTIME, RingbackStreams
from tests.unit.sipfakes import FakeNetwork, FarEnd, answer
from tests.unit.test_invite_flow import A_ANSWER1, AGENT, SDP_TYPE, content, origin, sdp
from tests.unit.udpfakes import FakeUDP, Rtp

B_EARLY = sdp("bob", 222, 1, "10.0.0.2", 5000)       # the far end's announcement
B_OFFER = sdp("bob", 222, 2, "10.0.0.2", 5000)       # the same media, a later version
B_OTHER = sdp("bob", 222, 3, "10.0.0.9", 7000)       # other media: the real phone answered
A_EARLY_ANSWER = sdp("alice", 111, 2, "10.0.0.1", 4000)
A_RECVONLY = sdp("alice", 111, 2, "10.0.0.1", 4000, "recvonly")
A_ANSWER3 = sdp("alice", 111, 3, "10.0.0.1", 4000)
BUSY = ['SIP;cause=486;text="Busy Here"', "Q.850;cause=17"]


class Ringing:
    """A call up to B ringing: A answered the black hole, B's INVITE is out."""

    def __init__(self, max_streams=2, taken=None):
        self.net = net = FakeNetwork()
        self.udp = FakeUDP(taken)
        self.streams = RingbackStreams(net.clock, self.udp, "127.0.0.1", (24000, 24009),
                                       max_streams, delay=1)
        ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
        self.registry = CallRegistry(net.clock, {
            "INVITE": lambda call, end: InviteFlow(ctx, call, end, self.streams)})
        self.call = self.registry.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test",
                                                    method="INVITE"))
        [self.invite1] = net.sent_messages()
        self.a = FarEnd(self.invite1, "<sip:user1@127.0.0.1:5071>")
        net.deliver(self.a.ok(A_ANSWER1))
        _ack, self.invite2 = net.sent_messages()
        self.b = FarEnd(self.invite2, "<sip:user2@127.0.0.1:5072>")

    def sent(self):
        return self.net.sent_messages()

    def b_says(self, status, reason, body=b"", tag=None):
        headers = [("Contact", self.b.contact), SDP_TYPE] if body else []
        self.net.deliver(answer(self.invite2, status, reason, tag or self.b.tag, headers,
                                body))

    def b_answers(self, body):
        self.net.deliver(self.b.ok(body))

    def a_answers(self, reinvite, body, status=200, reason="OK"):
        headers = [("Contact", self.a.contact), SDP_TYPE] if body else []
        self.net.deliver(answer(reinvite, status, reason, None, headers, body))

    def rtp(self):
        return [(Rtp(data), addr) for bound in self.udp.ever for data, addr in bound.written]

    def advance(self, seconds):
        self.net.clock.pump([PTIME] * round(seconds / PTIME))

    def ringback_playing(self):
        """B rang (180) for the delay, and A took our ringback offer (recvonly)."""
        self.b_says(180, "Ringing")
        self.advance(1)
        [ringback] = self.sent()
        self.a_answers(ringback, A_RECVONLY)
        self.sent()  # the ACK

    def early_media_heard(self):
        """B offered early media (183), and A took it in its dialog."""
        self.b_says(183, "Session Progress", B_EARLY)
        [early] = self.sent()
        self.a_answers(early, A_EARLY_ANSWER)
        self.sent()  # the ACK


def methods(messages):
    return [getattr(m, "method", None) or m.status for m in messages]


def test_a_180_gives_the_caller_ringback_once_the_callee_has_rung_for_the_delay():
    r = Ringing()
    r.b_says(180, "Ringing")
    r.advance(0.9)
    assert r.sent() == [] and r.udp.attempts == 0
    r.advance(0.1)
    [reinvite] = r.sent()
    assert (reinvite.method, reinvite.call_id) == ("INVITE", r.invite1.call_id)
    offer = SessionDescription.parse(reinvite.body)
    assert offer.connection == "IN IP4 127.0.0.1" and offer.direction == "sendonly"
    [audio] = offer.media
    assert (audio.port, audio.formats) == (24000, ("0", "8"))
    assert origin(reinvite.body).version == 2  # A's own session, one version up
    assert r.rtp() == []  # nothing until A said where
    r.a_answers(reinvite, sdp("alice", 111, 2, "10.0.0.1", 4000, "recvonly").replace(
        b"RTP/AVP 0 101", b"RTP/AVP 8"))
    [ack] = r.sent()
    assert (ack.method, ack.cseq[0]) == ("ACK", reinvite.cseq[0])
    r.advance(1)
    heard = r.rtp()
    assert len(heard) == 51 and {addr for _, addr in heard} == {("10.0.0.1", 4000)}
    assert {p.payload_type for p, _ in heard} == {8}
    assert r.call.state == "ringing"


def test_when_the_callee_answers_the_ringback_stops_and_the_caller_gets_its_offer():
    r = Ringing()
    r.ringback_playing()
    r.advance(2)
    r.b_answers(B_OFFER)
    [reinvite] = r.sent()  # B's 200 waits un-ACKed for A's answer
    assert content(reinvite.body) == content(B_OFFER)
    assert origin(reinvite.body).version == 3
    assert r.udp.bound == {}  # the stream is closed, its port free
    count = len(r.rtp())
    r.a_answers(reinvite, A_ANSWER3)
    ack_a, ack_b = r.sent()
    assert (ack_a.call_id, ack_b.call_id) == (r.invite1.call_id, r.invite2.call_id)
    assert content(ack_b.body) == content(A_ANSWER3)
    assert r.call.state == "connected"
    r.advance(1)
    assert len(r.rtp()) == count


def test_a_callee_answering_within_the_delay_costs_no_ringback_re_invite():
    r = Ringing()
    r.b_says(180, "Ringing")
    r.advance(0.5)
    r.b_answers(B_OFFER)
    [reinvite] = r.sent()
    assert content(reinvite.body) == content(B_OFFER)
    r.a_answers(reinvite, A_ANSWER3)
    assert methods(r.sent()) == ["ACK", "ACK"]
    r.advance(2)
    assert r.sent() == [] and r.udp.attempts == 0


def test_a_183_with_sdp_re_offers_the_early_media_and_its_200_connects_with_no_second_offer():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [reinvite] = r.sent()  # at once: the far end's announcement may be short
    assert (reinvite.method, reinvite.call_id) == ("INVITE", r.invite1.call_id)
    assert content(reinvite.body) == content(B_EARLY)  # B's address, port and codecs
    assert origin(reinvite.body).version == 2
    r.a_answers(reinvite, A_EARLY_ANSWER)
    assert methods(r.sent()) == ["ACK"]
    r.b_says(183, "Session Progress", B_EARLY, tag="fork2")  # the same media, another fork
    r.advance(1)
    assert r.sent() == [] and r.udp.attempts == 0  # early media: no ringback of ours
    r.b_answers(B_OFFER)  # the same media, a later o= version
    [ack_b] = r.sent()
    assert (ack_b.method, ack_b.call_id, ack_b.cseq[0]) == ("ACK", r.invite2.call_id,
                                                           r.invite2.cseq[0])
    assert content(ack_b.body) == content(A_EARLY_ANSWER)  # A's early answer, in B's session
    assert origin(ack_b.body).session_id != origin(reinvite.body).session_id
    assert r.call.state == "connected"


def test_a_200_offering_other_media_than_the_183_is_re_offered_to_the_caller():
    r = Ringing()
    r.early_media_heard()
    r.b_answers(B_OTHER)
    [reinvite] = r.sent()
    assert content(reinvite.body) == content(B_OTHER) and origin(reinvite.body).version == 3
    r.a_answers(reinvite, A_ANSWER3)
    _ack_a, ack_b = r.sent()
    assert content(ack_b.body) == content(A_ANSWER3) and r.call.state == "connected"


def test_a_200_arriving_during_the_early_re_invite_waits_for_the_callers_answer():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [early] = r.sent()
    r.b_answers(B_OFFER)
    assert r.sent() == []  # one re-INVITE of A at a time; B's 200 is not ACKed yet
    r.a_answers(early, A_EARLY_ANSWER)
    ack_a, ack_b = r.sent()
    assert (ack_a.call_id, ack_b.call_id) == (r.invite1.call_id, r.invite2.call_id)
    assert content(ack_b.body) == content(A_EARLY_ANSWER)
    assert r.call.state == "connected"


def test_newer_early_media_during_an_early_re_invite_follows_it():
    r = Ringing()
    r.b_says(180, "Ringing")
    r.advance(1)
    [ringback] = r.sent()
    r.b_says(183, "Session Progress", B_EARLY)  # while A considers our ringback
    assert r.sent() == []
    r.a_answers(ringback, A_RECVONLY)
    ack, early = r.sent()
    assert (ack.method, early.method) == ("ACK", "INVITE")
    assert content(early.body) == content(B_EARLY)
    r.advance(0.1)
    assert r.rtp() != [] and r.udp.bound != {}  # A hears the tone until it takes B's media
    r.a_answers(early, A_EARLY_ANSWER)
    r.sent()
    assert r.udp.bound == {}


def test_a_failure_after_a_183_hangs_the_caller_up_with_the_reason():
    r = Ringing()
    r.early_media_heard()
    r.b_says(486, "Busy Here")
    ack, bye = r.sent()
    assert (ack.method, ack.call_id) == ("ACK", r.invite2.call_id)
    assert (bye.method, bye.call_id) == ("BYE", r.invite1.call_id)
    assert bye.headers.values("Reason") == BUSY
    r.net.deliver(answer(bye, 200, "OK"))
    assert (r.call.ended, r.call.state) == (True, "failed")


def test_a_failure_while_the_caller_hears_ringback_stops_it_and_gives_the_reason():
    r = Ringing()
    r.ringback_playing()
    r.b_says(486, "Busy Here")
    _ack, bye = r.sent()
    assert bye.headers.values("Reason") == BUSY
    assert r.udp.bound == {}


def test_delete_during_early_media_cancels_the_callee_and_hangs_up_the_caller():
    r = Ringing()
    r.ringback_playing()
    r.registry.hangup(r.call)
    bye, cancel = r.sent()
    assert (bye.method, bye.call_id) == ("BYE", r.invite1.call_id)
    assert bye.headers.get("Reason") == 'SIP;cause=200;text="hangup"'
    assert (cancel.method, cancel.call_id) == ("CANCEL", r.invite2.call_id)
    assert r.udp.bound == {}
    r.net.deliver(answer(bye, 200, "OK"))
    r.b_says(487, "Request Terminated")
    assert (r.call.ended, r.call.state) == (True, "failed")


def test_delete_during_the_early_re_invite_hangs_up_both():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [early] = r.sent()
    r.registry.hangup(r.call)
    assert sorted(methods(r.sent())) == ["BYE", "CANCEL"]
    r.a_answers(early, A_EARLY_ANSWER)  # A's answer crosses our BYE: ACKed, nothing else
    assert methods(r.sent()) == ["ACK"]


def test_a_caller_hanging_up_during_early_media_cancels_the_callee():
    r = Ringing()
    r.early_media_heard()
    r.net.deliver(r.a.request("BYE"))
    ok, cancel = r.sent()
    assert (ok.status, cancel.method, cancel.call_id) == (200, "CANCEL", r.invite2.call_id)
    r.b_says(487, "Request Terminated")
    assert r.call.ended and r.call.state == "failed"


def test_a_caller_refusing_the_ringback_stays_parked_and_is_not_asked_again():
    r = Ringing()
    r.b_says(180, "Ringing")
    r.advance(1)
    [ringback] = r.sent()
    r.a_answers(ringback, b"", 488, "Not Acceptable Here")
    assert methods(r.sent()) == ["ACK"]  # the ACK of the 488: no BYE, the call goes on
    assert r.udp.bound == {}
    r.b_says(183, "Session Progress", B_EARLY)
    r.advance(2)
    assert r.sent() == []
    r.b_answers(B_OFFER)
    [reinvite] = r.sent()
    assert content(reinvite.body) == content(B_OFFER)
    assert origin(reinvite.body).version == 3  # after the refused one (RFC 3264 §8)
    r.a_answers(reinvite, A_ANSWER3)
    assert methods(r.sent()) == ["ACK", "ACK"] and r.call.state == "connected"


def test_a_caller_whose_dialog_is_gone_ends_the_call():
    r = Ringing()
    r.b_says(183, "Session Progress", B_EARLY)
    [early] = r.sent()
    r.a_answers(early, b"", 481, "Call/Transaction Does Not Exist")
    sent = r.sent()
    assert methods(sent) == ["ACK", "CANCEL"]  # §12.2.1.2: no BYE into a dialog gone
    r.b_says(487, "Request Terminated")
    assert r.call.ended and r.call.state == "failed"


def test_a_callers_answer_that_takes_nothing_from_us_gets_no_rtp():
    r = Ringing()
    r.b_says(180, "Ringing")
    r.advance(1)
    [ringback] = r.sent()
    r.a_answers(ringback, sdp("alice", 111, 2, "10.0.0.1", 0, "recvonly"))  # port 0
    r.sent()
    r.advance(1)
    assert r.rtp() == [] and r.udp.bound == {}


def test_with_every_ringback_stream_in_use_the_caller_stays_parked():
    r = Ringing(max_streams=1)
    other = r.streams.open(60)  # another call's
    r.b_says(180, "Ringing")
    r.advance(2)
    assert r.sent() == [] and r.streams.refused == 1
    other.close()
    r.b_answers(B_OFFER)
    [reinvite] = r.sent()
    assert content(reinvite.body) == content(B_OFFER)


def test_without_a_ringback_pool_a_180_changes_nothing():
    net = FakeNetwork()
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    registry = CallRegistry(net.clock, {"INVITE": lambda call, end: InviteFlow(ctx, call, end)})
    registry.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test", method="INVITE"))
    [invite1] = net.sent_messages()
    net.deliver(FarEnd(invite1).ok(A_ANSWER1))
    _, invite2 = net.sent_messages()
    net.deliver(answer(invite2, 180, "Ringing", "b1"))
    net.clock.advance(30)
    assert net.sent_messages() == []


def test_the_call_freed_by_reference_counting_after_ringback():
    import gc
    import weakref

    gc.collect()
    gc.disable()
    try:
        r = Ringing()
        flow = weakref.ref(r.call.flow)
        r.b_says(180, "Ringing")
        r.advance(1)
        [ringback] = r.sent()
        r.a_answers(ringback, A_RECVONLY)
        r.sent()
        r.net.deliver(r.a.request("BYE"))
        r.b_says(487, "Request Terminated")
        r.sent()
        r.advance(200)
        assert r.call.ended and r.streams.streams == {}
        del ringback
        assert flow() is None
    finally:
        gc.enable()


def test_a_callee_changing_its_early_media_endlessly_re_invites_the_caller_boundedly():
    r = Ringing()
    reinvites = 0
    for n in range(3 * MAX_EARLY_OFFERS):  # from as many forks (a 1xx repeated is dropped)
        r.b_says(183, "Session Progress", sdp("bob", 222, n + 1, "10.0.0.2", 5000 + 2 * n),
                 tag=f"fork{n}")
        for message in r.sent():
            if getattr(message, "method", None) == "INVITE":
                reinvites += 1
                r.a_answers(message, A_EARLY_ANSWER)
                r.sent()
    assert reinvites == MAX_EARLY_OFFERS
    r.b_answers(B_OTHER)  # B's answer still reaches A
    [reinvite] = r.sent()
    assert content(reinvite.body) == content(B_OTHER)


def test_a_183_with_unusable_sdp_counts_as_ringing():
    r = Ringing()
    r.b_says(183, "Session Progress", b"v=0\r\nnot sdp\r\n")
    r.advance(1)
    [reinvite] = r.sent()
    assert SessionDescription.parse(reinvite.body).direction == "sendonly"  # our tone
