"""
INVITE-mode click-to-call end to end (RFC 3725 flow IV, sipMethod=INVITE): the real
daemon, Kamailio with digest auth as the sipX proxy, sipp phones, and curl as the client.

The im_*.xml phones accept a stray ACK before a re-INVITE: the test Kamailio challenges
in-dialog requests with a stateless 407 and then relays the controller's ACK of that 407
along the dialog's route to the phone, which (like a real phone) just drops it.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from lxml import etree

from tests.integration.e2e import NS, Setup, curl, wait_for

CALL = "/callcontroller/user1/user2"
INVITE_MODE = CALL + "?sipMethod=INVITE"


def sdp_of(message: str) -> str:
    """The body of a message from a sipp trace."""
    _head, _, body = message.partition("\r\n\r\n")
    return body


def origin(sdp: str) -> tuple[str, int]:
    """(session id, version) of the o= line."""
    fields = re.search(r"^o=(\S+) (\S+) (\S+) ", sdp, re.M).groups()
    return fields[1], int(fields[2])


def media_port(sdp: str) -> int:
    return int(re.search(r"^m=audio (\d+) ", sdp, re.M).group(1))


def cseq(message: str) -> int:
    return int(re.search(r"^CSeq: *(\d+)", message, re.M | re.I).group(1))


def dialogs(s: Setup, path: str = INVITE_MODE) -> list[dict[str, str]]:
    """The <dialogs> document of the call, as a list of {field: text}."""
    code, body = curl(s.url(path))
    assert code == 200, body
    root = etree.fromstring(body.encode())
    assert root.tag == f"{NS}dialogs", body
    return [{child.tag.removeprefix(NS): child.text for child in dialog}
            for dialog in root.iter(f"{NS}dialog")]


def states(s: Setup, path: str = INVITE_MODE) -> list[str]:
    return [d["dialog-state"] for d in dialogs(s, path)]


def both_connected(s: Setup, location: str) -> list[dict[str, str]] | None:
    """The dialogs once the call is connected (both ACKs sent) with both legs confirmed."""
    if call_state(s, location) != "connected":
        return None
    found = dialogs(s)
    if [d["dialog-state"] for d in found] == ["Confirmed Dialog"] * 2:
        return found
    return None


def post(s: Setup, path: str = INVITE_MODE, expect: int = 200) -> str:
    """POST with curl; returns the Location header (the call's /calls/{id} path)."""
    # the last -w wins: ours gives the Location line, then the status curl() expects
    code, body = curl("-X", "POST", "-w", "\n%header{location}\n%{http_code}", s.url(path))
    body, _, location = body.rpartition("\n")
    assert code == expect, body
    return location


def call_state(s: Setup, location: str) -> str:
    code, body = curl("-H", "Accept: application/json", s.url(location))
    assert code == 200, body
    return json.loads(body)["state"]


def next_version(later: str, earlier: str) -> bool:
    """C{later} continues C{earlier}'s SDP session: same o= id, version one up (RFC 3264 §8)."""
    (session, version), (then_session, then_version) = origin(later), origin(earlier)
    return session == then_session and version == then_version + 1


def hang_up(s: Setup, location: str, *phones) -> str:
    """DELETE the call; every phone's scenario completes; returns the call's final state."""
    code, _ = curl("-X", "DELETE", s.url(location))
    assert code == 200
    for phone in phones:
        assert phone.wait(20) == 0, phone.errors()
    return wait_for(lambda: over(s, location))


def over(s: Setup, location: str) -> str | None:
    """The final state of the call at C{location} once it has one."""
    state = call_state(s, location)
    return state if state in ("ended", "failed") else None


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_invite_mode_connects_both_phones_with_correct_sdp(setup, transport):
    s = setup(transport=transport)
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    location = post(s)
    found = wait_for(lambda: both_connected(s, location))
    # local-party: whom each phone is shown (user1 is shown user2, user2 the agent, user1)
    assert [(d["local-party"], d["remote-party"]) for d in found] == [
        ("sip:user2@sipx.test", "sip:user1@sipx.test"),
        ("sip:user1@sipx.test", "sip:user2@sipx.test")]
    code, _ = curl("-X", "DELETE", s.url(INVITE_MODE))
    assert code == 200
    assert a.wait(20) == 0, a.errors()
    assert b.wait(20) == 0, b.errors()
    first, second = a.received("INVITE")[0], a.received("INVITE")[-1]
    # A: first the black hole, then B's offer in the same session, one version up
    assert next_version(sdp_of(second), sdp_of(first))
    assert re.search(r"^c=IN IP4 0\.0\.0\.0", sdp_of(first), re.M)
    assert media_port(sdp_of(second)) == b.media_port
    # B: an INVITE without SDP, and A's answer in the ACK
    assert sdp_of(b.received("INVITE")[0]) == ""
    assert media_port(sdp_of(b.received("ACK")[-1])) == a.media_port
    # each phone sees SDP under the controller's origin, never the other phone's
    assert sdp_of(second).startswith("v=0\r\no=sipxcc ")
    assert sdp_of(b.received("ACK")[-1]).startswith("v=0\r\no=sipxcc ")
    assert wait_for(lambda: over(s, location)) == "ended"
    assert states(s) == ["Terminated Dialog"] * 2


@pytest.mark.parametrize("who", ["caller", "callee"])
def test_bye_from_either_phone_tears_down_the_other(setup, who):
    s = setup()
    if who == "caller":
        a = s.phone("user1", "im_caller_hangs_up")
        b = s.phone("user2", "invite_b")
    else:
        a = s.phone("user1", "im_caller")
        b = s.phone("user2", "im_callee_hangs_up")
    location = post(s)
    assert a.wait(20) == 0, a.errors()
    assert b.wait(20) == 0, b.errors()
    gone, other = (a, b) if who == "caller" else (b, a)
    assert gone.sent("BYE") and other.received("BYE")
    assert wait_for(lambda: over(s, location)) == "ended"
    assert states(s) == ["Terminated Dialog"] * 2


def test_transfer_moves_the_callers_side_to_a_third_phone(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "im_callee_reinvited")
    x = s.phone("user4", "phone_answer")
    location = post(s)
    wait_for(lambda: both_connected(s, location))
    assert post(s, INVITE_MODE + "&action=transfer&target=user4") == location
    assert a.wait(20) == 0, a.errors()  # A was BYEd
    wait_for(lambda: call_state(s, location) == "connected"
             and states(s).count("Confirmed Dialog") == 2)
    assert 'Reason: SIP;cause=200;text="Call transferred"' in a.received("BYE")[0]
    x_invite = x.received("INVITE")[0]
    assert "To: <sip:user4@sipx.test>" in x_invite
    assert media_port(sdp_of(x_invite)) == b.media_port
    b_ack, b_reinvite = b.received("ACK")[0], b.received("INVITE")[-1]
    assert media_port(sdp_of(b_reinvite)) == x.media_port
    # B sees one session whoever is behind it: same o= id, next version
    assert next_version(sdp_of(b_reinvite), sdp_of(b_ack))
    found = dialogs(s)
    assert [(d["remote-party"], d["dialog-state"]) for d in found] == [
        ("sip:user1@sipx.test", "Terminated Dialog"),
        ("sip:user2@sipx.test", "Confirmed Dialog"),
        ("sip:user4@sipx.test", "Confirmed Dialog")]
    assert hang_up(s, location, b, x) == "ended"


def test_busy_transfer_target_leaves_the_call_connected(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    x = s.phone("user4", "caller_busy")
    location = post(s)
    wait_for(lambda: both_connected(s, location))
    post(s, INVITE_MODE + "&action=transfer&target=user4")
    assert x.wait(20) == 0, x.errors()
    wait_for(lambda: call_state(s, location) == "connected")
    assert not a.received("BYE") and not b.received("BYE")
    assert hang_up(s, location, a, b) == "ended"


def test_transfer_of_a_call_not_connected_is_refused(setup):
    s = setup()
    s.phone("user1", "caller_no_answer")
    location = post(s, INVITE_MODE + "&timeout=3")
    code, body = curl("-X", "POST", s.url(INVITE_MODE + "&action=transfer&target=user4"))
    assert code == 409, body
    assert "<error-code>409</error-code>" in body
    assert wait_for(lambda: over(s, location)) == "failed"


def test_busy_callee_tears_down_the_caller(setup):
    s = setup()
    a = s.phone("user1", "phone_answer")
    b = s.phone("user2", "caller_busy")
    location = post(s)
    assert b.wait(20) == 0, b.errors()
    assert a.wait(20) == 0, a.errors()
    assert 'Reason: SIP;cause=486' in a.received("BYE")[0]
    assert wait_for(lambda: over(s, location)) == "failed"


def test_busy_caller_means_the_callee_is_never_called(setup):
    s = setup()
    a = s.phone("user1", "caller_busy")
    b = s.phone("user2", "invite_b")
    location = post(s)
    assert a.wait(20) == 0, a.errors()
    assert wait_for(lambda: over(s, location)) == "failed"
    assert b.received() == []
    assert dialogs(s) == []  # a 486 before any early dialog: no dialog to show


def test_caller_refusing_the_offer_tears_down_both(setup):
    s = setup()
    a = s.phone("user1", "im_caller_refuses")
    b = s.phone("user2", "invite_b")
    location = post(s)
    assert a.wait(20) == 0, a.errors()
    assert b.wait(20) == 0, b.errors()
    # B's offer was answered in the ACK with every stream rejected, then B was BYEd
    assert re.search(r"^m=audio 0 ", sdp_of(b.received("ACK")[-1]), re.M)
    assert "cause=488" in b.received("BYE")[0]
    assert wait_for(lambda: over(s, location)) == "failed"


def test_delete_while_the_callee_rings_cancels_it_and_byes_the_caller(setup):
    # A stays parked (no ringback: phone_answer takes no re-INVITE); the DELETE while A
    # hears the ringback tone is test_early_media.py's
    s = setup(ringback_max_streams=0)
    a = s.phone("user1", "phone_answer")
    b = s.phone("user2", "caller_no_answer")
    location = post(s)
    wait_for(lambda: b.received("INVITE"))
    wait_for(lambda: states(s) == ["Confirmed Dialog", "Early Dialog"])
    code, _ = curl("-X", "DELETE", s.url(location))
    assert code == 200
    assert b.wait(20) == 0, b.errors()  # CANCEL, 487, ACK
    assert a.wait(20) == 0, a.errors()
    assert b.received("CANCEL")
    assert wait_for(lambda: over(s, location)) == "failed"


def test_second_post_while_in_progress_is_refused(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    location = post(s)
    wait_for(lambda: both_connected(s, location))
    code, body = curl("-X", "POST", s.url(INVITE_MODE))
    assert code == 409, body
    assert "<error-code>409</error-code>" in body
    # nor may a REFER-mode call replace it
    code, body = curl("-X", "POST", s.url(CALL))
    assert code == 409, body
    assert call_state(s, location) == "connected"
    code, _ = curl("-X", "DELETE", s.url(location))
    assert code == 200
    assert a.wait(20) == 0, a.errors()
    assert b.wait(20) == 0, b.errors()
    assert len(a.received("INVITE")) == 2  # the first INVITE and the re-INVITE, no third


def test_hold_from_the_callee_is_relayed_to_the_caller(setup):
    s = setup()
    a = s.phone("user1", "im_caller_held")
    b = s.phone("user2", "im_callee_holds")
    location = post(s)
    # B's hold re-INVITE went to A and A's answer came back, each in its own session
    wait_for(lambda: len(a.received("INVITE")) == 3 and b.received("SIP/2.0 200"))
    hold = sdp_of(a.received("INVITE")[-1])
    assert "a=sendonly" in hold and media_port(hold) == b.media_port
    assert next_version(hold, sdp_of(a.received("INVITE")[1]))
    answer = sdp_of(b.received("SIP/2.0 200")[-1])
    assert "a=recvonly" in answer and media_port(answer) == a.media_port
    assert next_version(answer, sdp_of(b.received("ACK")[0]))
    # A has the ACK of the hold's 200 (stray ACKs of 407s have other CSeqs)
    wait_for(lambda: cseq(a.received("INVITE")[-1]) in map(cseq, a.received("ACK")))
    assert call_state(s, location) == "connected"
    assert hang_up(s, location, a, b) == "ended"


def test_callee_refusing_the_transfer_targets_sdp_ends_the_call(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "im_callee_refuses_swap")
    x = s.phone("user4", "phone_answer")
    location = post(s)
    wait_for(lambda: both_connected(s, location))
    post(s, INVITE_MODE + "&action=transfer&target=user4")
    for phone in (a, b, x):  # A left for X; B and X are BYEd when B refuses X's SDP
        assert phone.wait(20) == 0, phone.errors()
    assert "cause=488" in b.received("BYE")[0] and "cause=488" in x.received("BYE")[0]
    assert wait_for(lambda: over(s, location))
    assert states(s) == ["Terminated Dialog"] * 3


def test_unanswered_transfer_target_is_cancelled_and_the_call_stays_connected(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    x = s.phone("user4", "caller_no_answer")  # rings, never answers: CANCEL -> 200, 487
    location = post(s, INVITE_MODE)
    wait_for(lambda: both_connected(s, location))
    started = time.monotonic()
    # the transfer request's timeout is how long X may ring
    assert post(s, INVITE_MODE + "&action=transfer&target=user4&timeout=3") == location
    # while X rings, A and B stay connected
    wait_for(lambda: states(s) == ["Confirmed Dialog", "Confirmed Dialog", "Early Dialog"])
    assert call_state(s, location) == "transferring"
    assert x.wait(20) == 0, x.errors()  # INVITE, 180, CANCEL, 200, 487, ACK
    assert time.monotonic() - started >= 3  # the CANCEL came at the no-answer limit
    assert x.received("CANCEL")
    assert media_port(sdp_of(x.received("INVITE")[0])) == b.media_port
    wait_for(lambda: states(s)[-1] == "Terminated Dialog")
    found = dialogs(s)
    assert [(d["remote-party"], d["dialog-state"]) for d in found] == [
        ("sip:user1@sipx.test", "Confirmed Dialog"),
        ("sip:user2@sipx.test", "Confirmed Dialog"),
        ("sip:user4@sipx.test", "Terminated Dialog")]
    assert call_state(s, location) == "connected"
    # A and B never noticed: no BYE, no re-INVITE
    assert not a.received("BYE") and not b.received("BYE")
    assert len(a.received("INVITE")) == 2 and len(b.received("INVITE")) == 1
    assert hang_up(s, location, a, b) == "ended"


def test_info_from_one_phone_is_relayed_to_the_other(setup):
    s = setup()
    a = s.phone("user1", "im_caller_gets_info")
    b = s.phone("user2", "im_callee_sends_info")  # sends INFO once it has the ACK
    location = post(s)
    # A got B's INFO, and B got A's 200 back
    wait_for(lambda: a.received("INFO") and b.received("SIP/2.0 200"))
    sent, relayed = b.sent("INFO")[0], a.received("INFO")[0]
    assert sdp_of(relayed) == sdp_of(sent) == "Signal=5\r\nDuration=160\r\n"
    assert re.search(r"^Content-Type: *application/dtmf-relay\r$", relayed, re.M | re.I)
    answer = b.received("SIP/2.0 200")[-1]
    assert re.search(r"^CSeq: *\d+ INFO\r$", answer, re.M | re.I)
    assert cseq(answer) == cseq(sent)
    assert call_state(s, location) == "connected"
    assert hang_up(s, location, a, b) == "ended"


def test_update_from_one_phone_is_relayed_to_the_other(setup):
    s = setup()
    a = s.phone("user1", "im_caller_updated")
    b = s.phone("user2", "im_callee_updates")  # UPDATE with a=sendonly once it has the ACK
    location = post(s)
    wait_for(lambda: a.received("UPDATE") and b.received("SIP/2.0 200"))
    # B's hold went to A in A's session, A's answer came back to B in B's session
    hold = sdp_of(a.received("UPDATE")[0])
    assert "a=sendonly" in hold and media_port(hold) == b.media_port
    assert next_version(hold, sdp_of(a.received("INVITE")[1]))
    answer = b.received("SIP/2.0 200")[-1]
    assert cseq(answer) == cseq(b.sent("UPDATE")[0])
    assert "a=recvonly" in sdp_of(answer) and media_port(sdp_of(answer)) == a.media_port
    assert next_version(sdp_of(answer), sdp_of(b.received("ACK")[0]))
    # a target refresh: the 200 carries the controller's Contact, not A's (RFC 3311 §5.2)
    assert re.search(r"^Contact: *<sip:callcontroller@", answer, re.M | re.I)
    assert call_state(s, location) == "connected"
    assert hang_up(s, location, a, b) == "ended"
