"""
How a call that does not come about, or is cut off, ends for real phones (baresip and
linphonec) through Kamailio with digest auth, asserted on the SIP messages the phones
received: the BYE that ends the calling user's leg carries an RFC 3326 Reason with the
SIP cause and, where RFC 3398 maps one, the Q.850 cause.

- REFER mode, the called phone busy: the calling phone's own transfer INVITE gets the
  486 (baresip then plays its busy tone itself), its final NOTIFY's sipfrag says so, and
  the daemon BYEs it with SIP cause 486, Q.850 17; linphonec shows "ended (Busy)".
- INVITE mode, no answer within ``timeout``: the daemon CANCELs the called phone and
  BYEs the calling one with 480 "No Answer", Q.850 19 (user alerted, no answer);
  linphonec shows "ended (Temporarily unavailable)".
- INVITE mode, a called user the proxy does not know: 404, Q.850 1 (unallocated
  number); linphonec shows "ended (User not found)".
- INVITE mode, ``timeLimit``: once connected for that long, both phones get a BYE with
  ``SIP;cause=200;text="Time limit reached"``; the status document and events say why.

baresip 1.0.0 does not read a BYE's Reason (its call just closes); linphonec 5.1 does.
Ring times and limits are a few seconds (the daemon's parameters), never its defaults.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.integration.e2e import PhoneSetup, call_state, curl, place_call, wait_for
from tests.integration.peers import free_port
from tests.integration.phones import BaresipPhone, LinphonePhone, available, linphone_available

pytestmark = [
    pytest.mark.skipif(not linphone_available(), reason="linphonec (linphone-cli) missing"),
    pytest.mark.skipif(not available(), reason="baresip (baresip-core) missing"),
]

RING_TIME = 5
"""Seconds the called phone may ring (the call's C{timeout})."""
TIME_LIMIT = 3
"""Seconds a connected call may last (the call's C{timeLimit})."""
PARKED = {"ringback_max_streams": 0}
"""No ringback tone: the calling phone stays parked while the called phone rings."""


def reason(message: str) -> str:
    """The Reason header of C{message} (there must be exactly one)."""
    [value] = re.findall(r"^Reason: *(.*?)\r?$", message, re.M | re.I)
    return value


def baresip(user: str, tmp_path, bench: PhoneSetup, **kwargs) -> BaresipPhone:
    """C{user} (password passN) on baresip via the bench's proxy, tracing its SIP."""
    return BaresipPhone(user, f"pass{user[-1]}", tmp_path, proxy=bench.proxy_uri,
                        sip_port=free_port(41), sip_trace=True, **kwargs)


def status_lines(daemon, location: str) -> list[tuple[str, str]]:
    """The call's (method, status line)s from its JSON status document."""
    code, body = curl("-H", "Accept: application/json", daemon.https_url + location)
    assert code == 200, body
    return [(e["method"], e["status-line"]) for e in json.loads(body)["status-lines"]]


def event_lines(daemon, location: str) -> list[tuple[str, str]]:
    """An ended call's (method, status line)s from its event stream, which the daemon
    sends whole and then closes."""
    out = subprocess.run(["curl", "-sSkN", "--max-time", "15",
                          f"{daemon.https_url}{location}/events"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr  # the stream ended with the call's end
    lines = []
    for line in out.stdout.splitlines():
        if line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
            if "method" in data:
                lines.append((data["method"], data["status-line"]))
    return lines


@pytest.mark.parametrize("kind", ["baresip", "linphonec"])
def test_refer_mode_a_busy_called_phone_ends_the_calling_phone_with_q850_user_busy(
        tmp_path, kamailio_factory, kind):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = (baresip("user1", tmp_path, bench) if kind == "baresip" else
              LinphonePhone("user1", tmp_path, proxy=bench.proxy_uri))
    callee = baresip("user2", tmp_path, bench, auto_answer=False)
    with caller, callee, bench.daemon_for(caller, callee, **PARKED) as daemon:
        location = place_call(daemon, "user1", "user2", "?sipMethod=REFER")
        callee.wait_for("CALL_INCOMING", timeout=15)
        callee.hangup()  # baresip refuses a ringing call: 486 Rejected
        [bye] = wait_for(lambda: caller.received("BYE"), timeout=15)
        # the calling phone's own transfer INVITE got the 486 ...
        assert [m for m in caller.received("SIP/2.0 486") if "INVITE\r\n" in m]
        # ... its final NOTIFY told the daemon, which hangs it up saying why
        frags = [m for m in caller.sent("NOTIFY") if "\r\n\r\nSIP/2.0 486 " in m]
        assert frags, caller.sent("NOTIFY")
        assert reason(bye) == 'SIP;cause=486;text="Rejected", Q.850;cause=17'
        # REFER mode: the phone's dialog ended normally; the status lines say why
        assert wait_for(lambda: call_state(daemon, location) == "ended", timeout=15)
        assert ("NOTIFY", "SIP/2.0 486 Rejected") in status_lines(daemon, location)
        if kind == "baresip":
            # it closed its own call with the 486 (for which its menu plays busy.wav)
            caller.wait_for("CALL_CLOSED", timeout=10)
            closed = [e.get("param", "") for e in caller.events
                      if e.get("type") == "CALL_CLOSED"]
            assert "486 Rejected" in closed, closed
        else:  # its transfer call failed, and it read the Reason: it tells its user why
            caller.wait_for(r"^Call 2 with sip:user2@sipx\.test error\.$", timeout=10)
            caller.wait_for(r'^Call 1 with "User Two" <sip:user2@sipx\.test> ended '
                            r'\(Busy\)\.$', timeout=10)


def calling_phone(kind: str, tmp_path, bench: PhoneSetup) -> BaresipPhone | LinphonePhone:
    """user1 on a baresip or a linphonec phone, answering at once."""
    if kind == "baresip":
        return baresip("user1", tmp_path, bench)
    return LinphonePhone("user1", tmp_path)


@pytest.mark.parametrize("kind", ["baresip", "linphonec"])
def test_invite_mode_no_answer_ends_the_calling_phone_with_q850_no_answer(
        tmp_path, kamailio_factory, kind):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = calling_phone(kind, tmp_path, bench)
    callee = baresip("user2", tmp_path, bench, auto_answer=False)  # never answers
    with caller, callee, bench.daemon_for(caller, callee, **PARKED) as daemon:
        location = place_call(daemon, "user1", "user2",
                              f"?sipMethod=INVITE&timeout={RING_TIME}")
        callee.wait_for("CALL_INCOMING", timeout=15)
        [bye] = wait_for(lambda: caller.received("BYE"), timeout=RING_TIME + 15)
        assert reason(bye) == 'SIP;cause=480;text="No Answer", Q.850;cause=19'
        # the called phone stopped ringing: it was CANCELled, never answered
        callee.wait_for("CALL_CLOSED", timeout=10)
        assert callee.received("CANCEL") and callee.sent("SIP/2.0 487")
        assert "CALL_ESTABLISHED" not in callee.event_types()
        assert wait_for(lambda: call_state(daemon, location) in ("failed", "ended"),
                        timeout=15) and call_state(daemon, location) == "failed"
        if kind == "linphonec":  # it reads the Reason and tells its user why
            caller.wait_for(r'^Call 1 with "User Two" <sip:user2@sipx\.test> ended '
                            r'\(Temporarily unavailable\)\.$', timeout=10)


def test_invite_mode_a_called_user_the_proxy_does_not_know_ends_the_calling_phone(
        tmp_path, kamailio_factory):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = LinphonePhone("user1", tmp_path)
    with caller, bench.daemon_for(caller, **PARKED) as daemon:
        location = place_call(daemon, "user1", "user9", "?sipMethod=INVITE")
        [bye] = wait_for(lambda: caller.received("BYE"), timeout=15)
        assert reason(bye) == 'SIP;cause=404;text="Not Found", Q.850;cause=1'
        assert wait_for(lambda: call_state(daemon, location) == "failed", timeout=15)
        assert ("INVITE", "SIP/2.0 404 Not Found") in status_lines(daemon, location)
        # linphone reads the Reason and tells its user why
        caller.wait_for(r"^Call 1 with sip:user9@sipx\.test ended \(User not found\)\.$",
                        timeout=10)


def test_invite_mode_time_limit_ends_both_phones_with_a_reason(tmp_path, kamailio_factory):
    bench = PhoneSetup(tmp_path, kamailio_factory)
    caller = baresip("user1", tmp_path, bench)
    callee = baresip("user2", tmp_path, bench)
    with caller, callee, bench.daemon_for(caller, callee, **PARKED) as daemon:
        location = place_call(daemon, "user1", "user2",
                              f"?sipMethod=INVITE&timeLimit={TIME_LIMIT}")
        assert wait_for(lambda: call_state(daemon, location) == "connected", timeout=15)
        byes = wait_for(lambda: (caller.received("BYE") and callee.received("BYE")
                                 and (caller.received("BYE"), callee.received("BYE"))),
                        timeout=TIME_LIMIT + 15)
        for [bye] in byes:
            assert reason(bye) == 'SIP;cause=200;text="Time limit reached"'
        for phone in (caller, callee):
            phone.wait_for("CALL_CLOSED", timeout=10)
            assert phone.sent("BYE") == []  # neither phone hung up itself
        assert wait_for(lambda: call_state(daemon, location) == "ended", timeout=15)
        why = ("BYE", f"Time limit of {TIME_LIMIT} s reached")
        assert why in status_lines(daemon, location)
        assert why in event_lines(daemon, location)
