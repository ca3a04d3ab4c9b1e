"""The SDP we write ourselves, byte for byte, and SessionDescription's copy helpers; the
registry's watchdog and transfer refusals."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from sipxcc.calls.errors import TransferNotPossible
from sipxcc.calls.registry import WATCHDOG_GRACE, CallRegistry
from sipxcc.calls.sdp import NO_MEDIA_PORT, SessionDescription, no_media_offer
from tests.unit.test_registry import FakeFlow, req

TWO_STREAMS = (b"v=0\r\no=x 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
               b"m=audio 4000 RTP/AVP 0\r\na=sendonly\r\na=rtpmap:0 PCMU/8000\r\n"
               b"m=video 4002 RTP/AVP 96\r\na=inactive\r\n")


def test_the_refer_flows_offer_byte_for_byte():
    assert no_media_offer("192.0.2.10", 42, 3) == (
        b"v=0\r\no=sipxcc 42 3 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=audio %d RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=recvonly\r\n"
        % NO_MEDIA_PORT)
    assert b"o=sipxcc 42 3 IN IP6 2001:db8::1\r\n" in no_media_offer("2001:db8::1", 42, 3)


def test_with_direction_sets_one_direction_per_media_section():
    sdp = SessionDescription.parse(TWO_STREAMS).with_direction("recvonly")
    assert sdp.lines == [
        ("v", "0"), ("o", "x 1 2 IN IP4 10.0.0.1"), ("s", "-"), ("c", "IN IP4 10.0.0.1"),
        ("t", "0 0"), ("m", "audio 4000 RTP/AVP 0"), ("a", "rtpmap:0 PCMU/8000"),
        ("a", "recvonly"), ("m", "video 4002 RTP/AVP 96"), ("a", "recvonly")]
    with pytest.raises(ValueError, match="unknown SDP direction 'sideways'"):
        SessionDescription.parse(TWO_STREAMS).with_direction("sideways")


def test_with_direction_of_a_session_without_media_adds_nothing():
    bare = SessionDescription.parse(b"v=0\r\no=x 1 2 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n")
    assert bare.with_direction("inactive").lines == bare.lines


def test_with_origin_replaces_only_what_is_given():
    sdp = SessionDescription.parse(TWO_STREAMS)
    assert sdp.with_origin(version=9).origin[1:3] == (1, 9)
    assert sdp.with_origin(session_id=7).origin[1:3] == (7, 2)
    moved = sdp.with_origin(address="2001:db8::2")
    assert (moved.origin.addr_type, moved.origin.address) == ("IP6", "2001:db8::2")
    assert moved.origin[1:3] == (1, 2)


def test_the_watchdog_fails_a_call_its_flow_cannot_end():
    class Stuck(FakeFlow):
        ends_on_hangup = False

    clock = Clock()
    registry = CallRegistry(clock, {"REFER": Stuck, "INVITE": Stuck})
    call = registry.place(req(timeout=10))
    clock.advance(10 + WATCHDOG_GRACE)
    assert call.state == "failed" and call.ended and registry.active_count == 0


def test_an_invite_call_being_transferred_outlives_the_watchdog():
    clock = Clock()
    registry = CallRegistry(clock, {"INVITE": FakeFlow, "REFER": FakeFlow})
    call = registry.place(req(method="INVITE", timeout=10))
    call.set_state("transferring")
    clock.advance(2 * 10 + WATCHDOG_GRACE)
    assert not call.ended and call.flow.hangups == []
    ringing = registry.place(req(method="REFER", called="user9@sipx.test", timeout=10))
    ringing.set_state("connected")  # a REFER call is not kept for being connected
    clock.advance(10 + WATCHDOG_GRACE)
    assert ringing.ended


def test_transfer_refusal_text():
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": FakeFlow})
    call = registry.place(req())
    with pytest.raises(TransferNotPossible) as caught:
        registry.transfer(call, "user4@sipx.test")
    assert str(caught.value) == "Call not in progress in INVITE mode"
