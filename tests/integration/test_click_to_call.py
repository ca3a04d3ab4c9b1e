"""
Click-to-call end to end: the real daemon, Kamailio with digest auth as the sipX proxy,
sipp phones, and curl as the client — the seed's scenarios and their failure cases.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.e2e import curl, status_lines, wait_for


def test_seed_click_to_call_as_calling_user(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    code, body = curl("-X", "POST", "-u", "user1:123", s.url("/callcontroller/user1/user2"))
    assert code == 200, body
    assert phone.wait(20) == 0, phone.errors()
    refer = phone.received("REFER")[0]
    assert "Refer-To: <sip:user2@sipx.test>" in refer
    bye = phone.received("BYE")[0]
    assert "Reason: SIP;cause=200" in bye

    def finished():
        code, body = curl("-u", "user1:123", s.url("/callcontroller/user1/user2"))
        lines = status_lines(body)
        return lines if ("NOTIFY", "SIP/2.0 200 OK") in lines else None
    lines = wait_for(finished)
    invite_lines = [line for method, line in lines if method == "INVITE"]
    # Kamailio challenges statelessly (no 100 first, unlike sipXproxy in the seed)
    assert invite_lines[0].startswith("SIP/2.0 407 ")
    assert "SIP/2.0 180 Ringing" in invite_lines
    assert invite_lines[-1] == "SIP/2.0 200 OK"
    assert [line for method, line in lines if method == "NOTIFY"] == [
        "SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK"]


def test_seed_agent_call_and_trusted_query(setup):
    s = setup()
    phone = s.phone("user1", "refer_transferee")
    code, _ = curl("-X", "POST", "-u", "user3:123",
                   s.url("/callcontroller/user1/user2?agent=user3"))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()
    # the calling user's phone is shown whom it is about to talk to; the proxy
    # authenticated the agent
    from_ = re.search(r"^From: *(.*?)\r?$", phone.received("INVITE")[0], re.M).group(1)
    assert from_.startswith('"User Two" <sip:user2@sipx.test>;tag='), from_
    assert "authenticated user3" in s.proxy.log_text()
    # from the trusted host: no password
    lines = wait_for(lambda: status_lines(curl(
        s.url("/callcontroller/user1/user2?agent=user3"))[1]))
    assert lines[0][0] == "INVITE"
    # from anywhere, as the agent, with Digest
    code, body = curl("--digest", "-u", "user3:123", "-X", "GET",
                      s.url("/callcontroller/user1/user2?agent=user3"))
    assert code == 200 and status_lines(body)


@pytest.mark.parametrize("scenario,expected", [
    ("caller_busy", ("INVITE", "SIP/2.0 486 Busy Here")),
    ("refer_busy", ("NOTIFY", "SIP/2.0 486 Busy Here")),
    ("refer_rejected", ("REFER", "SIP/2.0 603 Declined")),
])
def test_failures_are_reported(setup, scenario, expected):
    s = setup()
    phone = s.phone("user1", scenario)
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()
    lines = wait_for(lambda: (lambda ls: ls if expected in ls else None)(
        status_lines(curl(s.url("/callcontroller/user1/user2"))[1])))
    assert expected in lines


def test_caller_no_answer_is_cancelled_at_timeout(setup):
    s = setup()
    phone = s.phone("user1", "caller_no_answer")
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2?timeout=2"))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()
    lines = wait_for(lambda: (lambda ls: ls if ("INVITE", "SIP/2.0 487 Request Terminated")
                              in ls else None)(
        status_lines(curl(s.url("/callcontroller/user1/user2"))[1])))
    assert lines[-1] == ("INVITE", "SIP/2.0 487 Request Terminated"), lines


def test_phone_hangs_up_first(setup):
    s = setup()
    phone = s.phone("user1", "caller_hangs_up")
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()


def test_over_tcp_to_the_proxy(setup):
    s = setup(transport="tcp")
    phone = s.phone("user1", "refer_transferee")
    code, _ = curl("-X", "POST", s.url("/callcontroller/user1/user2"))
    assert code == 200
    assert phone.wait(20) == 0, phone.errors()


def test_status_callback_receives_every_event_in_order(setup):
    import http.server
    import json
    import threading

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        s = setup(calls_callback_ports=server.server_address[1])
        phone = s.phone("user1", "refer_transferee")
        hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
        code, _ = curl("-X", "POST", "--data-urlencode", f"statusCallback={hook}", "-G",
                       s.url("/callcontroller/user1/user2"))
        assert code == 200
        assert phone.wait(20) == 0, phone.errors()
        wait_for(lambda: received and received[-1].get("ended"))
    finally:
        server.shutdown()
        server.server_close()
    lines = [(doc["method"], doc["status-line"]) for doc in received[:-1]]
    _, body = curl(s.url("/callcontroller/user1/user2"))
    assert lines == status_lines(body)
    assert received[-1]["state"] == "ended"
