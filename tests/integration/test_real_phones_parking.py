"""
INVITE mode with real phones that enforce an RTP timeout: the calling user's phone is
parked (no media) while the called user rings, and must still be there when the called
user answers after longer than its timeout. linphonec (liblinphone's ``nortp_timeout``)
ends a call that receives no RTP for that long unless the stream is inactive; the
callee is a baresip phone answering late. Kamailio with digest auth is the proxy.

A refusal by the callee reaches the linphone caller as a BYE with the SIP and Q.850
causes. The RTP timeout is set to 10 s and the callee answers after 15 s: the same situation
as linphone's default 30 s against a 40-s ring, in less time.
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

pytestmark = [
    pytest.mark.skipif(not linphone_available(), reason="linphonec (linphone-cli) missing"),
    pytest.mark.skipif(not available(), reason="baresip (baresip-core) missing"),
]


def call_state(daemon: Daemon, location: str) -> str:
    code, body = curl("-H", "Accept: application/json", daemon.https_url + location)
    assert code == 200, body
    return json.loads(body)["state"]


def linphone_to_baresip(tmp_path, kamailio_factory, caller: LinphonePhone,
                        **callee_options) -> tuple[BaresipPhone, Daemon]:
    """user2 on baresip (C{callee_options}), Kamailio routing user1 to C{caller} and user2
    to it, and the daemon using that Kamailio: none of them started yet."""
    sip_port, proxy_port = free_ports(2)
    proxy_uri = f"sip:127.0.0.1:{proxy_port};lr"
    callee = BaresipPhone("user2", "pass2", tmp_path, proxy=proxy_uri, sip_port=free_port(41),
                          **callee_options)
    kamailio_factory({"user1": caller.contact, "user2": callee.contact},
                     f"127.0.0.1:{sip_port}", port=proxy_port)
    daemon = Daemon(write_config(tmp_path, sip_port=sip_port, sip_proxy=proxy_uri))
    return callee, daemon


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
