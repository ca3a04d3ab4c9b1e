"""
INVITE mode with real phones: what the calling user's phone gets while the called user
rings. Kamailio with digest auth is the proxy; the callee is a baresip phone (or a sipp
one) answering late.

Without a ringback tone (``ringback.max_streams = 0``, or every stream in use) the
calling phone is parked (no media) and must still be there when the called user answers
after longer than its RTP timeout: linphonec (liblinphone's ``nortp_timeout``) ends a call
that receives no RTP for that long unless the stream is inactive. The RTP timeout is set
to 10 s and the callee answers after 15 s: the same situation as linphone's default 30 s
against a 40-s ring, in less time.

With it, the calling phone takes the daemon's sendonly re-INVITE and hears the tone:
baresip reports RTP arriving while the callee still rings; linphone answers the offer
recvonly and is connected when the callee answers.

A refusal by the callee reaches the linphone caller as a BYE with the SIP and Q.850
causes.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.daemon import Daemon, free_ports, write_config
from tests.integration.e2e import curl, wait_for
from tests.integration.peers import free_port
from tests.integration.phones import BaresipPhone, LinphonePhone, available, linphone_available

NORTP_TIMEOUT = 10
ANSWER_AFTER = 15
RING_FOR = 5
"""Seconds the callee rings in the ringback tests."""

pytestmark = [
    pytest.mark.skipif(not linphone_available(), reason="linphonec (linphone-cli) missing"),
    pytest.mark.skipif(not available(), reason="baresip (baresip-core) missing"),
]


def call_state(daemon: Daemon, location: str) -> str:
    code, body = curl("-H", "Accept: application/json", daemon.https_url + location)
    assert code == 200, body
    return json.loads(body)["state"]


def linphone_to_baresip(tmp_path, kamailio_factory, caller: LinphonePhone,
                        ringback: bool = False, **callee_options) -> tuple[BaresipPhone, Daemon]:
    """user2 on baresip (C{callee_options}), Kamailio routing user1 to C{caller} and user2
    to it, and the daemon using that Kamailio (with the ringback tone or without): none
    of them started yet."""
    sip_port, proxy_port = free_ports(2)
    proxy_uri = f"sip:127.0.0.1:{proxy_port};lr"
    callee = BaresipPhone("user2", "pass2", tmp_path, proxy=proxy_uri, sip_port=free_port(41),
                          **callee_options)
    kamailio_factory({"user1": caller.contact, "user2": callee.contact},
                     f"127.0.0.1:{sip_port}", port=proxy_port)
    return callee, Daemon(daemon_config(tmp_path, sip_port, proxy_uri, ringback))


def daemon_config(tmp_path, sip_port: int, proxy_uri: str, ringback: bool):
    """The daemon's config: ringback streams on ports free for this test, or none."""
    if not ringback:
        return write_config(tmp_path, sip_port=sip_port, sip_proxy=proxy_uri,
                            ringback_max_streams=0)
    low = free_port(10)
    return write_config(tmp_path, sip_port=sip_port, sip_proxy=proxy_uri,
                        ringback_ports=f"{low}-{low + 9}", ringback_max_streams=4)


def place_invite_call(daemon: Daemon) -> str:
    """POST an INVITE-mode call from user1 to user2; its /calls/{id} location."""
    code, body = curl("-X", "POST", "-w", "\n%header{location}\n%{http_code}",
                      daemon.https_url + "/callcontroller/user1/user2?sipMethod=INVITE")
    body, _, location = body.rpartition("\n")
    assert code == 200, body
    return location


def test_a_linphone_caller_survives_a_ring_longer_than_its_rtp_timeout(tmp_path,
                                                                       kamailio_factory):
    caller = LinphonePhone("user1", tmp_path, nortp_timeout=NORTP_TIMEOUT)
    callee, daemon = linphone_to_baresip(tmp_path, kamailio_factory, caller,
                                         answer_delay=ANSWER_AFTER)
    with caller, callee, daemon:
        location = place_invite_call(daemon)
        callee.wait_for("CALL_INCOMING", timeout=15)
        callee.wait_for("CALL_ESTABLISHED", timeout=ANSWER_AFTER + 10)
        assert wait_for(lambda: call_state(daemon, location) == "connected", timeout=15)
        # linphone's parked call got past its RTP timeout: it never hung up, and took the
        # callee's offer in a re-INVITE
        assert caller.sent("BYE") == []
        first, reinvite = caller.received("INVITE")
        assert "a=inactive" in first and "c=IN IP4 0.0.0.0" in first
        assert "a=sendrecv" in reinvite
        assert len(caller.sent("SIP/2.0 200")) == 2
        code, _ = curl("-X", "DELETE", daemon.https_url + location)
        assert code == 200
        assert wait_for(lambda: call_state(daemon, location) in ("ended", "failed"),
                        timeout=15)
        assert call_state(daemon, location) == "ended"


def test_a_linphone_caller_is_told_why_when_the_baresip_callee_refuses(tmp_path,
                                                                       kamailio_factory):
    caller = LinphonePhone("user1", tmp_path)
    callee, daemon = linphone_to_baresip(tmp_path, kamailio_factory, caller,
                                         auto_answer=False)
    with caller, callee, daemon:
        location = place_invite_call(daemon)
        callee.wait_for("CALL_INCOMING", timeout=15)
        callee.hangup()  # baresip refuses a ringing call
        assert wait_for(lambda: call_state(daemon, location) == "failed", timeout=15)
        [bye] = wait_for(lambda: caller.received("BYE"), timeout=10)
        reason = re.search(r"^Reason: *(.*?)\r?$", bye, re.M | re.I).group(1)
        # baresip refuses with "486 Rejected": user busy, Q.850 cause 17
        assert reason.startswith("SIP;cause=486;") and reason.endswith(", Q.850;cause=17"), reason


def test_a_linphone_caller_takes_the_ringback_tone_then_the_callee(tmp_path, kamailio_factory):
    caller = LinphonePhone("user1", tmp_path, nortp_timeout=NORTP_TIMEOUT)
    callee, daemon = linphone_to_baresip(tmp_path, kamailio_factory, caller, ringback=True,
                                         answer_delay=RING_FOR)
    with caller, callee, daemon:
        location = place_invite_call(daemon)
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
    sip_port, proxy_port, callee_port = free_ports(3)
    proxy_uri = f"sip:127.0.0.1:{proxy_port};lr"
    caller = BaresipPhone("user1", "pass1", tmp_path, proxy=proxy_uri, sip_port=free_port(41))
    kamailio_factory({"user1": caller.contact, "user2": f"sip:user2@127.0.0.1:{callee_port}"},
                     f"127.0.0.1:{sip_port}", port=proxy_port)
    daemon = Daemon(daemon_config(tmp_path, sip_port, proxy_uri, ringback=True))
    with caller, daemon:
        callee = phone_factory("invite_b_rings", callee_port,
                               extra_args=("-d", str(RING_FOR * 1000)))
        location = place_invite_call(daemon)
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
