"""The SDP we write ourselves, byte for byte; the registry's watchdog and transfer refusals."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from sipxcc.calls.errors import TransferNotPossible
from sipxcc.calls.registry import WATCHDOG_GRACE, CallRegistry
from sipxcc.calls.sdp import NO_MEDIA_PORT, no_media_offer
from tests.unit.test_registry import FakeFlow, req


def test_the_refer_flows_offer_byte_for_byte():
    assert no_media_offer("192.0.2.10", 42, 3) == (
        b"v=0\r\no=sipxcc 42 3 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=audio %d RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=recvonly\r\n"
        % NO_MEDIA_PORT)
    assert b"o=sipxcc 42 3 IN IP6 2001:db8::1\r\n" in no_media_offer("2001:db8::1", 42, 3)


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
