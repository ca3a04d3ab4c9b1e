"""
REFER-mode click-to-call end to end, beyond the seed scenarios: hanging up with DELETE,
replacing a call, result retention, the call limits, the INVITE's optional headers,
conference PINs, sloppy phones and a lossy path to the phone. The real daemon, Kamailio
with digest auth as the sipX proxy, sipp phones and curl as the client.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time

import pytest
from lxml import etree

from tests.integration.daemon import Daemon, write_config
from tests.integration.e2e import NS, Setup, curl, status_lines, wait_for
from tests.integration.test_invite_mode import call_state, over, post

CALL = "/callcontroller/user1/user2"
REDIRECT = "/sipxconfig/rest/my/redirect" + CALL



def lines_of(s: Setup, path: str = CALL) -> list[tuple[str, str]]:
    code, body = curl(s.url(path))
    assert code == 200, body
    return status_lines(body)


def call_ids(s: Setup, path: str = CALL) -> set[str]:
    root = etree.fromstring(curl(s.url(path))[1].encode())
    return {status.findtext(f"{NS}call-id") for status in root.iter(f"{NS}status")}


def header(message: str, name: str) -> str | None:
    match = re.search(rf"^{name}:[ \t]*(.*?)\r?$", message, re.M | re.I)
    return match.group(1) if match else None


# Hanging up


@pytest.mark.parametrize("how", ["compat", "redirect", "location"])
def test_delete_while_ringing_cancels(setup, how):
    s = setup()
    phone = s.phone("user1", "caller_no_answer")
    location = post(s, CALL + "?timeout=60")
    wait_for(lambda: call_state(s, location) == "ringing")
    target = {"compat": CALL, "redirect": REDIRECT, "location": location}[how]
    code, body = curl("-X", "DELETE", s.url(target))
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()  # CANCEL, 487, ACK
    assert phone.received("CANCEL")
    assert wait_for(lambda: over(s, location)) == "failed"
    assert lines_of(s)[-1] == ("INVITE", "SIP/2.0 487 Request Terminated")


@pytest.mark.parametrize("how", ["compat", "location"])
def test_delete_while_connected_hangs_up(setup, how):
    s = setup()
    phone = s.phone("user1", "refer_pending")
    location = post(s, CALL)
    wait_for(lambda: ("NOTIFY", "SIP/2.0 100 Trying") in lines_of(s))
    assert call_state(s, location) == "transferring"
    code, body = curl("-X", "DELETE", s.url(CALL if how == "compat" else location))
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()
    assert "cause=200" in header(phone.received("BYE")[0], "Reason")
    assert wait_for(lambda: over(s, location)) == "ended"


def test_delete_of_an_unknown_call_is_404(setup):
    s = setup()
    code, body = curl("-X", "DELETE", s.url(CALL))
    assert code == 404, body
    assert "<error-code>404</error-code>" in body
    code, body = curl("-X", "DELETE", s.url("/calls/nosuchcall"))
    assert code == 404, body


# Replacing a call in progress


@pytest.mark.parametrize("scenario,seen,ready,gone", [
    ("caller_no_answer", "CANCEL", "ringing", "failed"),  # 487 Request Terminated
    ("refer_pending", "BYE", "transferring", "ended")])
def test_second_post_replaces_the_call_in_progress(setup, scenario, seen, ready, gone):
    s = setup()
    phone = s.phone("user1", scenario, calls=2)
    first = post(s, CALL + "?timeout=60")
    wait_for(lambda: call_state(s, first) == ready)
    first_ids = call_ids(s)
    second = post(s, CALL + "?timeout=60")
    assert second != first
    assert wait_for(lambda: over(s, first)) == gone
    assert len(phone.received(seen)) == 1  # the old call, torn down properly
    wait_for(lambda: call_state(s, second) == ready)
    # the compat URL now shows the new call only
    assert call_ids(s) and not call_ids(s) & first_ids
    code, _ = curl("-X", "DELETE", s.url(CALL))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()
    assert len(phone.received(seen)) == 2
    assert wait_for(lambda: over(s, second))


# Retention


def test_status_is_forgotten_result_cache_time_after_the_end(setup):
    s = setup()
    phone = s.phone("user1", "caller_busy")
    location = post(s, CALL + "?resultCacheTime=2")
    assert phone.wait(20) == 0, phone.errors()
    wait_for(lambda: over(s, location))
    root = etree.fromstring(curl(s.url(CALL))[1].encode())
    [busy] = [status for status in root.iter(f"{NS}status")
              if status.findtext(f"{NS}status-line") == "SIP/2.0 486 Busy Here"]
    busy_ms = int(busy.findtext(f"{NS}timestamp"))  # the daemon's clock: the call ended after
    wait_for(lambda: lines_of(s) == [], timeout=10)
    # Seen gone now, so forgotten at or before now: never before resultCacheTime after the
    # end, however late this poll ran.
    assert time.time() * 1000 >= busy_ms + 2000
    code, body = curl(s.url(CALL))
    assert code == 200 and "<status-lines" in body and "<status>" not in body
    code, _ = curl(s.url(location))
    assert code == 404


# Limits


def test_max_calls_answers_503_with_retry_after(setup):
    s = setup(calls_max_calls=1)
    phone = s.phone("user1", "caller_no_answer", calls=2)
    first = post(s, CALL + "?timeout=60")
    code, body = curl("-X", "POST", "-D", "-", s.url("/callcontroller/user4/user2"))
    assert code == 503, body
    assert re.search(r"^retry-after: *\d+", body, re.M | re.I), body
    assert "<error-code>503</error-code>" in body
    assert len(phone.received("INVITE")) == 1
    # replacing the call in progress is not one more call
    second = post(s, CALL + "?timeout=1")
    assert phone.wait(20) == 0, phone.errors()  # both CANCELled
    assert wait_for(lambda: over(s, first) and over(s, second))


def test_max_calls_per_agent_answers_429_with_retry_after(setup):
    s = setup(calls_max_calls_per_agent=1)
    phone = s.phone("user1", "caller_no_answer")
    other = s.phone("user4", "caller_busy")
    first = post(s, CALL + "?timeout=60")
    code, body = curl("-X", "POST", "-D", "-", s.url("/callcontroller/user1/user3"))
    assert code == 429, body
    assert re.search(r"^retry-after: *\d+", body, re.M | re.I), body
    assert "<error-code>429</error-code>" in body
    # another agent may still call
    post(s, "/callcontroller/user4/user2")
    assert other.wait(20) == 0, other.errors()
    code, _ = curl("-X", "DELETE", s.url(first))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()


# What the phone sees


def test_subject_and_auto_answer_reach_the_phone(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    code, _ = curl("-X", "POST", "-G", "--data-urlencode", "subject=Sales call #42",
                   "--data-urlencode", "autoAnswer=true", s.url(CALL))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()
    invite = phone.received("INVITE")[0]
    assert header(invite, "Subject") == "Sales call #42"
    assert "answer-after=0" in header(invite, "Call-Info")
    assert "info=alert-autoanswer" in header(invite, "Alert-Info")
    assert header(invite, "Answer-Mode") == "Auto"


def test_without_options_the_invite_has_no_subject_nor_auto_answer(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    code, _ = curl("-X", "POST", s.url(CALL))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()
    invite = phone.received("INVITE")[0]
    for name in ("Subject", "Call-Info", "Alert-Info", "Answer-Mode"):
        assert header(invite, name) is None, name


@pytest.mark.parametrize("allowed", [None, "false", "true"])
def test_forwarding_flag_in_the_request_uri(tmp_path, phone_factory, allowed):
    """Kamailio rewrites the R-URI, so here the phone is the proxy and sees ours."""
    phone = phone_factory("refer_transferee")
    path = write_config(tmp_path, sip_proxy=f"sip:127.0.0.1:{phone.port};lr")
    query = "" if allowed is None else f"?isForwardingAllowed={allowed}"
    with Daemon(path) as daemon:
        code, _ = curl("-X", "POST", daemon.https_url + CALL + query)
        assert code == 200
        assert phone.wait(20) == 0, phone.errors()
    request_uri = phone.received("INVITE")[0].split("\r\n", 1)[0]
    assert request_uri.startswith("INVITE sip:user1@sipx.test;"), request_uri
    assert "sipx-noroute=Voicemail" in request_uri
    assert ("sipx-userforward=false" in request_uri) == (allowed != "true"), request_uri


def test_confpin_is_carried_in_the_refer_to(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    code, _ = curl("-X", "POST", s.url(CALL + "?confpin=1234"))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()
    assert header(phone.received("REFER")[0], "Refer-To") == \
        "<sip:user2@sipx.test?X-ConfPin=1234>"


def test_sipfrag_with_bare_line_feed_is_recorded(setup):
    s = setup()
    phone = s.phone("user1", "refer_bare_lf")
    location = post(s, CALL)
    assert phone.wait(20) == 0, phone.errors()
    assert "cause=200" in header(phone.received("BYE")[0], "Reason")
    assert wait_for(lambda: over(s, location)) == "ended"
    notifies = [line for method, line in lines_of(s) if method == "NOTIFY"]
    assert notifies == ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"]


# Loss


class FirstCopyLoss(threading.Thread):
    """
    A UDP relay in front of the phone that loses the first copy of each message its
    sender retransmits by itself (requests but ACK, and 2xx responses to INVITE), in both
    directions: each gets through only by retransmission. Responses that sipp sends once
    (1xx, the 202 to REFER) pass, as sipp would not send them again.
    """

    def __init__(self, port: int, phone_port: int):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.phone = ("127.0.0.1", phone_port)
        self.proxy = None
        self.seen: set[bytes] = set()
        self.lost: list[str] = []
        self.stopping = threading.Event()

    def _retransmitted_by_sender(self, data: bytes) -> bool:
        first_line = data.split(b"\r\n", 1)[0]
        if not first_line.startswith(b"SIP/2.0 "):
            return not first_line.startswith(b"ACK ")
        cseq = re.search(rb"^CSeq: *\d+ +(\w+)", data, re.M | re.I)
        return first_line[8:9] == b"2" and cseq is not None and cseq.group(1) == b"INVITE"

    def run(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data, source = self.sock.recvfrom(65535)
            if data not in self.seen and self._retransmitted_by_sender(data):
                self.seen.add(data)
                self.lost.append(data.split(b"\r\n", 1)[0].decode())
                continue
            if source == self.phone:
                if self.proxy is not None:
                    self.sock.sendto(data, self.proxy)
            else:
                self.proxy = source
                self.sock.sendto(data, self.phone)

    def stop(self) -> None:
        self.stopping.set()
        self.join(2)
        self.sock.close()


def test_click_to_call_survives_losing_every_first_copy(setup, phone_factory):
    s = setup()
    phone = phone_factory("refer_transferee")
    relay = FirstCopyLoss(s.ports["user1"], phone.port)  # where Kamailio finds user1
    relay.start()
    try:
        location = post(s, CALL)
        assert phone.wait(25) == 0, phone.errors()
        assert wait_for(lambda: over(s, location), timeout=10) == "ended"
    finally:
        relay.stop()
    # the INVITE, its 200 and the three NOTIFYs each needed a second copy
    assert relay.lost.count("SIP/2.0 200 OK") == 1, relay.lost
    assert sum(line.startswith("NOTIFY ") for line in relay.lost) == 3, relay.lost
    assert any(line.startswith("INVITE ") for line in relay.lost), relay.lost
    lines = lines_of(s)
    assert ("INVITE", "SIP/2.0 200 OK") in lines
    assert [line for method, line in lines if method == "NOTIFY"] == [
        "SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]

