"""
Caller ID end to end, through Kamailio with digest auth. The calling user's phone is
shown the called party, in both modes: sipp, baresip and linphonec, each as the calling
user, get From (and P-Asserted-Identity) naming the called user as the directory knows
it, and the two real phones display that name and number; a number the directory does
not know is shown as itself. callerId / callerIdName (INVITE mode): the called phone sees
the identity asked for; one outside the rule is a 400.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.e2e import PhoneSetup, call_state, curl, place_call, wait_for
from tests.integration.peers import free_port
from tests.integration.phones import BaresipPhone, LinphonePhone, available, linphone_available
from tests.integration.test_invite_mode import INVITE_MODE, dialogs, hang_up, post
from tests.integration.test_invite_mode import call_state as invite_call_state

SHOWN = '"User Two" <sip:user2@sipx.test>'
CALLING = '"User One" <sip:user1@sipx.test>'
needs_baresip = pytest.mark.skipif(not available(), reason="baresip (baresip-core) missing")
needs_linphone = pytest.mark.skipif(not linphone_available(),
                                    reason="linphonec (linphone-cli) missing")


def header(message: str, name: str) -> list[str]:
    return re.findall(rf"^{name}: *(.*?)\r?$", message, re.M | re.I)


def test_the_called_phone_is_shown_the_calling_user_asked_for(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    location = post(s, INVITE_MODE + "&agent=user3&callerId=user1&callerIdName=Sales%20desk")
    wait_for(lambda: invite_call_state(s, location) == "connected")
    assert hang_up(s, location, a, b) == "ended"
    [from_b] = header(b.received("INVITE")[0], "From")
    assert from_b.startswith('"Sales desk" <sip:user1@sipx.test>;tag='), from_b
    # the calling user's phone is shown the called user, whoever the agent is
    first = a.received("INVITE")[0]
    [from_a] = header(first, "From")
    assert from_a.startswith(SHOWN + ";tag="), from_a
    assert header(first, "P-Asserted-Identity") == [SHOWN]
    # and the proxy authenticated the agent
    assert "authenticated user3" in s.proxy.log_text()


def both_connected(s, location: str) -> list[dict[str, str]] | None:
    """The call's dialogs (by its /calls/{id} location) once both legs are confirmed."""
    if invite_call_state(s, location) != "connected":
        return None
    found = dialogs(s, location)
    return found if [d["dialog-state"] for d in found] == ["Confirmed Dialog"] * 2 else None


def test_the_called_phone_is_shown_the_calling_user_when_an_agent_places_the_call(setup):
    """An operator (user3) connects user1 to user2: user2's phone is shown user1's
    directory name and number, in From and P-Asserted-Identity, as Kamailio passed them
    on; the proxy authenticated the operator."""
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "invite_b")
    location = post(s, INVITE_MODE + "&agent=user3")
    found = wait_for(lambda: both_connected(s, location))
    assert hang_up(s, location, a, b) == "ended"
    invite = b.received("INVITE")[0]
    [from_b] = header(invite, "From")
    assert from_b.startswith(CALLING + ";tag="), from_b
    assert header(invite, "P-Asserted-Identity") == [CALLING]
    assert "authenticated user3" in s.proxy.log_text()
    assert "sip:user3@" not in invite
    # the <dialogs> document: each dialog's local party is whom that phone is shown
    assert [d["local-party"] for d in found] == ["sip:user2@sipx.test", "sip:user1@sipx.test"]


def test_a_transfer_target_is_shown_the_called_user_it_talks_to(setup):
    s = setup()
    a = s.phone("user1", "im_caller")
    b = s.phone("user2", "im_callee_reinvited")
    x = s.phone("user4", "phone_answer")
    location = post(s, INVITE_MODE + "&agent=user3")
    wait_for(lambda: both_connected(s, location))
    assert post(s, INVITE_MODE + "&agent=user3&action=transfer&target=user4") == location
    assert a.wait(20) == 0, a.errors()  # A was BYEd
    wait_for(lambda: invite_call_state(s, location) == "connected"
             and x.received("ACK"))
    invite = x.received("INVITE")[0]
    [from_x] = header(invite, "From")
    assert from_x.startswith(SHOWN + ";tag="), from_x
    assert header(invite, "P-Asserted-Identity") == [SHOWN]
    # B's phone keeps showing the calling user (its dialog's From does not change)
    assert header(b.received("INVITE")[-1], "From")[0].startswith(CALLING + ";tag=")
    assert hang_up(s, location, b, x) == "ended"


def test_a_caller_id_outside_the_rule_is_refused_before_anything_is_sent(setup):
    s = setup()
    code, body = curl("-X", "POST", s.url(INVITE_MODE + "&callerId=user4"))
    assert code == 400, body
    assert "callerId" in body


def end_call(daemon, location: str, method: str) -> None:
    """INVITE mode: DELETE the connected call; REFER mode: the transfer ends it."""
    if method == "INVITE":
        code, _ = curl("-X", "DELETE", daemon.https_url + location)
        assert code == 200
    assert wait_for(lambda: call_state(daemon, location) in ("ended", "failed"))
    assert call_state(daemon, location) == "ended"


@needs_baresip
@pytest.mark.parametrize("method", ["REFER", "INVITE"])
def test_a_baresip_calling_user_sees_the_called_users_name_and_number(tmp_path,
                                                                      kamailio_factory,
                                                                      method):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = BaresipPhone("user1", "pass1", tmp_path, proxy=bench.proxy_uri,
                          sip_port=free_port(41), sip_trace=True)
    callee = BaresipPhone("user2", "pass2", tmp_path, proxy=bench.proxy_uri,
                          sip_port=free_port(41))
    with caller, callee, bench.daemon_for(caller, callee) as daemon:
        # dialled by its alias 202: shown by the directory's name and identity
        location = place_call(daemon, "user1", "202", f"?sipMethod={method}")
        incoming = caller.wait_for("CALL_INCOMING", timeout=15)
        assert (incoming["peerdisplayname"], incoming["peeruri"]) == (
            "User Two", "sip:user2@sipx.test")
        # its console line may reach the log file after the event reached us
        assert wait_for(lambda: "Incoming call from: User Two sip:user2@sipx.test"
                        in caller.log_text(), timeout=10)
        callee.wait_for("CALL_ESTABLISHED", timeout=15)
        first = caller.received("INVITE")[0]
        assert header(first, "From")[0].startswith(SHOWN + ";tag=")
        assert header(first, "P-Asserted-Identity") == [SHOWN]
        end_call(daemon, location, method)
    assert "authenticated user1" in bench.proxy.log_text()


@needs_baresip
def test_a_number_outside_the_directory_is_shown_as_itself(tmp_path, kamailio_factory):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = BaresipPhone("user1", "pass1", tmp_path, proxy=bench.proxy_uri,
                          sip_port=free_port(41))
    with caller, bench.daemon_for(caller) as daemon:
        location = place_call(daemon, "user1", "%2B4930123", "?sipMethod=INVITE")
        incoming = caller.wait_for("CALL_INCOMING", timeout=15)
        assert (incoming.get("peerdisplayname") or "", incoming["peeruri"]) == (
            "", "sip:+4930123@sipx.test")
        # Kamailio knows no such user: 404, and the calling user's phone is hung up
        assert wait_for(lambda: call_state(daemon, location) == "failed")
        caller.wait_for("CALL_CLOSED", timeout=10)


@needs_linphone
@needs_baresip
@pytest.mark.parametrize("method", ["REFER", "INVITE"])
def test_a_linphone_calling_user_sees_the_called_users_name_and_number(tmp_path,
                                                                       kamailio_factory,
                                                                       method):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = LinphonePhone("user1", tmp_path, proxy=bench.proxy_uri)
    callee = BaresipPhone("user2", "pass2", tmp_path, proxy=bench.proxy_uri,
                          sip_port=free_port(41))
    with caller, callee, bench.daemon_for(caller, callee) as daemon:
        location = place_call(daemon, "user1", "user2", f"?sipMethod={method}")
        caller.wait_for(r'^linphonec> Receiving new incoming call from "User Two" '
                        r'<sip:user2@sipx\.test>', timeout=15)
        callee.wait_for("CALL_ESTABLISHED", timeout=15)
        first = caller.received("INVITE")[0]
        assert header(first, "From")[0].startswith(SHOWN + ";tag=")
        assert header(first, "P-Asserted-Identity") == [SHOWN]
        end_call(daemon, location, method)
