"""
The daemon's SIP credentials (a user's HA1) go only to the proxy, over real sockets: the
daemon runs under twistd with a scripted fake proxy and a fake far end on UDP. A 401/407
in a foreign realm, or in our realm but not from the proxy, ends the request; a stale
flood gets one retry; in-dialog requests straight to a far end's Contact carry nothing.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.integration.daemon import Daemon, free_ports, write_config
from tests.integration.e2e import curl, status_lines, wait_for
from tests.integration.sipfake import (
    UDPPeer,
    call_state,
    carries_credentials,
    challenge,
    place_call,
    respond,
    via_address,
    wait_for_state,
)
from tests.integration.test_invite_mode import both_connected, hang_up, post

ENDED = ("failed", "ended")


@pytest.fixture
def rig(tmp_path):
    """(daemon, fake proxy, fake far end): the daemon's sip.proxy is the fake proxy."""
    proxy, far_end = UDPPeer(), UDPPeer()
    sip_port, = free_ports(1)
    path = write_config(tmp_path, sip_port=sip_port,
                        sip_proxy=f"sip:127.0.0.1:{proxy.port};lr")
    with Daemon(path) as daemon:
        yield daemon, proxy, far_end
        proxy.drain()
        far_end.drain()
    proxy.close()
    far_end.close()


def refuses(daemon, peer, invite, location, status, realm, source_peer=None):
    """Send C{invite}'s challenge from C{source_peer} (default C{peer}); the call must end
    with no request of the daemon's carrying credentials."""
    code, reason, headers = challenge(status, realm)
    (source_peer or peer).send(respond(invite, code, reason, headers), via_address(invite))
    assert wait_for_state(daemon, location, ENDED) == "failed"


def test_challenges_from_other_realms_or_not_from_the_proxy_get_no_answer(rig):
    daemon, proxy, far_end = rig
    # the far end (reached through the proxy) answers the daemon's Via straight, in our realm
    location = place_call(daemon, "user1", "user2")
    invite, _ = proxy.expect("INVITE")
    refuses(daemon, proxy, invite, location, 407, "sipx.test", source_peer=far_end)
    # the proxy's address, but a realm that is not sip.realm, for 401 and 407
    for called, status in (("user3", 401), ("user4", 407)):
        location = place_call(daemon, "user1", called)
        invite, _ = proxy.expect("INVITE")
        refuses(daemon, proxy, invite, location, status, "evil.example")
    proxy.drain()
    far_end.drain()
    assert not any(carries_credentials(m) for m in proxy.received + far_end.received)
    invites = [m for m in proxy.received if m.startswith(b"INVITE ")]
    assert len(invites) == 3  # one per call: no retry
    assert daemon.log_text().count("not answering the") == 3


def next_invite_or_end(daemon, proxy, location, timeout: float = 15.0):
    """The daemon's next INVITE, or None once the call has ended without one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return proxy.expect("INVITE", timeout=0.1)[0]
        except AssertionError:
            if call_state(daemon, location) in ENDED:
                proxy.drain()
                return None
    raise AssertionError("neither an INVITE nor the end of the call")


def call_answering_a_challenge(daemon, proxy):
    """Place a call from user1 to user2 and challenge its INVITE (407); the call's
    location and the INVITE that answers the challenge."""
    location = place_call(daemon, "user1", "user2")
    invite, _ = proxy.expect("INVITE")
    proxy.send(respond(invite, *challenge()), via_address(invite))
    answered, _ = proxy.expect("INVITE")
    return location, answered


def test_stale_challenges_get_one_retry(rig):
    daemon, proxy, _ = rig
    location, answered = call_answering_a_challenge(daemon, proxy)
    assert 'username="user1"' in answered.headers.get("Proxy-Authorization")
    request = answered
    for n in range(500):
        code, reason, headers = challenge(nonce=f"stale{n}", stale=True)
        proxy.send(respond(request, code, reason, headers), via_address(request))
        request = next_invite_or_end(daemon, proxy, location)
        if request is None:
            break
    proxy.drain()
    invites = [m for m in proxy.received if m.startswith(b"INVITE ")]
    assert len(invites) == 3  # the first, the answer, one stale retry; not 500


def test_in_dialog_requests_to_a_far_ends_contact_carry_no_credentials(rig):
    daemon, proxy, far_end = rig
    location, answered = call_answering_a_challenge(daemon, proxy)
    # the phone answers with its own Contact and no Record-Route: the dialog bypasses the proxy
    ok = respond(answered, 200, "OK", [("Contact", f"<sip:user1@127.0.0.1:{far_end.port}>"),
                                       ("Content-Type", "application/sdp")])
    ok.body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" \
              b"m=audio 4000 RTP/AVP 0\r\n"
    proxy.send(ok, via_address(answered))
    refer, _ = far_end.expect("REFER")
    assert not carries_credentials(refer.to_bytes())
    # the phone challenges the REFER in our realm: no answer, the REFER's 407 is final
    code, reason, headers = challenge(407)
    far_end.send(respond(refer, code, reason, headers, to_tag=ok.to_tag), via_address(refer))
    bye, _ = far_end.expect("BYE")  # the daemon gives up on the call, without credentials
    far_end.send(respond(bye, 200, "OK", to_tag=ok.to_tag), via_address(bye))
    wait_for_state(daemon, location, ENDED)
    far_end.drain()
    assert not any(carries_credentials(m) for m in far_end.received)
    assert [m for m in far_end.received if m.startswith(b"REFER ")] == [refer.to_bytes()]


def test_through_kamailio_the_proxys_challenges_are_still_answered_in_and_out_of_dialog(
        setup):
    # Kamailio challenges the INVITE and, in the dialog it record-routes, the REFER and BYE
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    code, body = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()
    lines = wait_for(lambda: (lambda ls: ls if ("NOTIFY", "SIP/2.0 200 OK") in ls else None)(
        status_lines(curl(s.url("/callcontroller/user1/user2"))[1])))
    assert ("INVITE", "SIP/2.0 200 OK") in lines and ("REFER", "SIP/2.0 202 Accepted") in lines
    assert "not answering the" not in s.daemon.log_text()


def test_through_kamailio_invite_mode_re_invites_still_authenticate(setup):
    # INVITE mode re-INVITEs the caller's leg inside a dialog Kamailio challenges: the
    # proxy's earlier challenge is reused, so the re-INVITE and BYEs pass unchallenged
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    location = post(s)
    wait_for(lambda: both_connected(s, location))
    assert hang_up(s, location, a, b) == "ended"
    assert "not answering the" not in s.daemon.log_text()
    verdicts = re.findall(r"\{1 \d+ (\w+) [^}]*\} <script>: (challenge|authenticated)",
                          s.proxy.log_text())
    assert verdicts.count(("INVITE", "challenge")) == 2  # each leg's first INVITE only
    assert ("BYE", "authenticated") in verdicts and ("BYE", "challenge") not in verdicts
    assert verdicts.count(("INVITE", "authenticated")) == 3  # two answers, one re-INVITE
