"""
INVITE mode with real phones that enforce an RTP timeout, at their real settings: without
the ringback tone (``ringback.max_streams = 0``, or every stream in use) the calling
user's phone is parked (no media) while the called user rings, and must still
be there when the called user answers 40 s later. linphonec ends a call that receives no
RTP for ``nortp_timeout`` seconds (30, its default) unless the stream is inactive;
baresip is set to ``rtp_timeout`` 30. The callee is a baresip phone that answers 40 s
after it starts ringing; Kamailio with digest auth is the proxy. These two are the suite's
only long cases (about 45 s each).

A refusal by the callee reaches the linphone caller as a BYE with the SIP and Q.850
causes.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.e2e import PhoneSetup, call_state, curl, place_call, wait_for
from tests.integration.peers import free_port
from tests.integration.phones import BaresipPhone, LinphonePhone, available, linphone_available

RTP_TIMEOUT = 30
ANSWER_AFTER = 40

pytestmark = [
    pytest.mark.skipif(not linphone_available(), reason="linphonec (linphone-cli) missing"),
    pytest.mark.skipif(not available(), reason="baresip (baresip-core) missing"),
]


def late_callee(tmp_path, bench: PhoneSetup) -> BaresipPhone:
    """user2 on baresip, answering ANSWER_AFTER seconds after its phone starts ringing."""
    return BaresipPhone("user2", "pass2", tmp_path, proxy=bench.proxy_uri,
                        sip_port=free_port(41), answer_delay=ANSWER_AFTER)


def parked_then_connected(daemon, caller, callee: BaresipPhone, location: str) -> None:
    """The callee rang for ANSWER_AFTER s and answered; the call is connected, and the
    calling phone never hung up: it got the black hole, then the callee's offer in a
    re-INVITE, and answered both."""
    callee.wait_for("CALL_INCOMING", timeout=15)
    callee.wait_for("CALL_ESTABLISHED", timeout=ANSWER_AFTER + 15)
    assert wait_for(lambda: call_state(daemon, location) == "connected", timeout=15)
    first, reinvite = wait_for(lambda: caller.received("INVITE")[1:] and
                               caller.received("INVITE"), timeout=10)
    assert "a=inactive" in first and "c=IN IP4 0.0.0.0" in first
    # the callee's own media: its address and one of its RTP ports
    media = re.search(r"^m=audio (\d+) ", reinvite, re.M)
    assert "c=IN IP4 127.0.0.1" in reinvite and "a=sendrecv" in reinvite
    assert callee.sip_port < int(media.group(1)) <= callee.sip_port + 40, reinvite
    assert len(caller.sent("SIP/2.0 200")) == 2
    assert caller.sent("BYE") == []


def hang_up(daemon, location: str) -> None:
    code, _ = curl("-X", "DELETE", daemon.https_url + location)
    assert code == 200
    assert wait_for(lambda: call_state(daemon, location) in ("ended", "failed"), timeout=15)
    assert call_state(daemon, location) == "ended"


@pytest.mark.timeout(150)
def test_a_linphone_caller_with_its_30_s_rtp_timeout_survives_a_40_s_ring(tmp_path,
                                                                          kamailio_factory):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = LinphonePhone("user1", tmp_path, nortp_timeout=RTP_TIMEOUT)
    callee = late_callee(tmp_path, bench)
    with caller, callee, bench.daemon_for(caller, callee, ringback_max_streams=0) as daemon:
        location = place_call(daemon, "user1", "user2", "?sipMethod=INVITE")
        parked_then_connected(daemon, caller, callee, location)
        assert not caller.said(r"ended")
        hang_up(daemon, location)


@pytest.mark.timeout(150)
def test_a_baresip_caller_with_its_30_s_rtp_timeout_survives_a_40_s_ring(tmp_path,
                                                                         kamailio_factory):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = BaresipPhone("user1", "pass1", tmp_path, proxy=bench.proxy_uri,
                          sip_port=free_port(41), rtp_timeout=RTP_TIMEOUT, sip_trace=True)
    callee = late_callee(tmp_path, bench)
    with caller, callee, bench.daemon_for(caller, callee, ringback_max_streams=0) as daemon:
        location = place_call(daemon, "user1", "user2", "?sipMethod=INVITE")
        parked_then_connected(daemon, caller, callee, location)
        # and they hear each other (headless linphonec sends no RTP: no sound card)
        caller.wait_for("CALL_RTPESTAB", timeout=10)
        callee.wait_for("CALL_RTPESTAB", timeout=10)
        assert "CALL_CLOSED" not in caller.event_types()
        hang_up(daemon, location)


def test_a_linphone_caller_is_told_why_when_the_baresip_callee_refuses(tmp_path,
                                                                       kamailio_factory):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = LinphonePhone("user1", tmp_path)
    callee = BaresipPhone("user2", "pass2", tmp_path, proxy=bench.proxy_uri,
                          sip_port=free_port(41), auto_answer=False)
    with caller, callee, bench.daemon_for(caller, callee, ringback_max_streams=0) as daemon:
        location = place_call(daemon, "user1", "user2", "?sipMethod=INVITE")
        callee.wait_for("CALL_INCOMING", timeout=15)
        callee.hangup()  # baresip refuses a ringing call
        assert wait_for(lambda: call_state(daemon, location) == "failed", timeout=15)
        [bye] = wait_for(lambda: caller.received("BYE"), timeout=10)
        reason = re.search(r"^Reason: *(.*?)\r?$", bye, re.M | re.I).group(1)
        # baresip refuses with "486 Rejected": user busy, Q.850 cause 17
        assert reason.startswith("SIP;cause=486;") and reason.endswith(", Q.850;cause=17"), reason
