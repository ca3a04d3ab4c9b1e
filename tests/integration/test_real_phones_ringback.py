"""
INVITE mode with real phones and the ringback tone: while the called user rings, the
calling phone takes the daemon's sendonly re-INVITE and hears the tone. baresip reports
RTP arriving while the callee still rings; linphone answers the offer recvonly and is
connected when the callee answers. Kamailio with digest auth is the proxy.
"""

from __future__ import annotations

import pytest

from tests.integration.e2e import PhoneSetup, call_state, curl, place_call, wait_for
from tests.integration.peers import free_port
from tests.integration.phones import BaresipPhone, LinphonePhone, available, linphone_available

RING_FOR = 5
"""Seconds the callee rings."""

pytestmark = [
    pytest.mark.skipif(not linphone_available(), reason="linphonec (linphone-cli) missing"),
    pytest.mark.skipif(not available(), reason="baresip (baresip-core) missing"),
]


def ringback_config() -> dict[str, object]:
    """Ringback streams on ports free for this test."""
    low = free_port(10)
    return {"ringback_ports": f"{low}-{low + 9}", "ringback_max_streams": 4}


def test_a_linphone_caller_takes_the_ringback_tone_then_the_callee(tmp_path, kamailio_factory):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = LinphonePhone("user1", tmp_path, nortp_timeout=10)
    callee = BaresipPhone("user2", "pass2", tmp_path, proxy=bench.proxy_uri,
                          sip_port=free_port(41), answer_delay=RING_FOR)
    with caller, callee, bench.daemon_for(caller, callee, **ringback_config()) as daemon:
        location = place_call(daemon, "user1", "user2", "?sipMethod=INVITE")
        callee.wait_for("CALL_ESTABLISHED", timeout=RING_FOR + 15)
        assert wait_for(lambda: call_state(daemon, location) == "connected", timeout=15)
        first, ringback, offer = caller.received("INVITE")
        assert "a=inactive" in first
        assert "a=sendonly" in ringback and "c=IN IP4 127.0.0.1" in ringback
        assert "a=sendrecv" in offer
        took = caller.sent("SIP/2.0 200")
        assert len(took) == 3 and "a=recvonly" in took[1]  # it took the tone
        assert caller.sent("BYE") == []
        code, _ = curl("-X", "DELETE", daemon.https_url + location)
        assert code == 200
        assert wait_for(lambda: call_state(daemon, location) == "ended", timeout=15)


def test_a_baresip_caller_hears_the_ringback_tone_while_the_callee_rings(tmp_path,
                                                                        kamailio_factory,
                                                                        phone_factory):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    callee_port = free_port()
    caller = BaresipPhone("user1", "pass1", tmp_path, proxy=bench.proxy_uri,
                          sip_port=free_port(41))
    routes = {"user2": f"sip:user2@127.0.0.1:{callee_port}"}
    with caller, bench.daemon_for(caller, routes=routes, **ringback_config()) as daemon:
        callee = phone_factory("invite_b_rings", callee_port,
                               extra_args=("-d", str(RING_FOR * 1000)))
        location = place_call(daemon, "user1", "user2", "?sipMethod=INVITE")
        answered = caller.wait_for("CALL_ESTABLISHED", timeout=15)
        # RTP reaches the calling phone while the called phone still rings: the tone
        caller.wait_for("CALL_RTPESTAB", timeout=10, after=answered["time"])
        assert call_state(daemon, location) == "ringing" and callee.sent("SIP/2.0 200") == []
        assert wait_for(lambda: call_state(daemon, location) == "connected",
                        timeout=RING_FOR + 15)
        code, _ = curl("-X", "DELETE", daemon.https_url + location)
        assert code == 200
        assert callee.wait(20) == 0, callee.errors()
        assert wait_for(lambda: call_state(daemon, location) == "ended", timeout=15)
