"""
Overload, end to end (issue 8): beyond calls.max_calls the daemon answers 503 with
Retry-After at once, beyond calls.max_calls_per_agent 429; the calls in progress carry
on undisturbed and the listener keeps answering GETs.
"""

from __future__ import annotations

from tests.integration import hostile
from tests.integration.e2e import Setup, curl, status_lines, wait_for


def post(s: Setup, path: str) -> tuple[int, str, str]:
    """(status, Retry-After, body) of a trusted POST."""
    code, text = curl("-X", "POST", "-D", "-", s.url(path))
    head, _, body = text.partition("\n\n")  # curl() reads text: CRLF became LF
    retry = ""
    for line in head.splitlines():
        if line.lower().startswith("retry-after:"):
            retry = line.split(":", 1)[1].strip()
    return code, retry, body


def test_limits_refuse_quickly_and_calls_in_progress_carry_on(setup):
    s = setup(calls_max_calls=3, calls_max_calls_per_agent=2)
    phone = s.phone("user1", "caller_no_answer", calls=None)
    assert post(s, "/callcontroller/user1/2001?timeout=4")[0] == 200
    assert post(s, "/callcontroller/user1/2002?timeout=4")[0] == 200
    code, retry, body = post(s, "/callcontroller/user1/2003?timeout=4")
    assert code == 429 and int(retry) > 0 and "<error-code>429</error-code>" in body
    # refused at once: it did not wait for a call to end (they ring for 4 s)
    assert len(hostile.active_calls(s.daemon)) == 2
    assert post(s, "/callcontroller/user1/3001?agent=user3&timeout=4")[0] == 200
    code, retry, body = post(s, "/callcontroller/user1/3002?agent=user3&timeout=4")
    assert code == 503 and int(retry) > 0 and "<error-code>503</error-code>" in body
    assert len(hostile.active_calls(s.daemon)) == 3
    # the listener keeps answering GETs while the limit is reached
    for _ in range(20):
        assert s.daemon.health() == 200
        assert s.daemon.get("/callcontroller/user1/2001")[0] == 200
    assert len(hostile.active_calls(s.daemon)) == 3
    # the three calls ring until their own timeout and end as they should
    for path in ("/callcontroller/user1/2001", "/callcontroller/user1/2002",
                 "/callcontroller/user1/3001?agent=user3"):
        lines = wait_for(lambda path=path: (lambda ls: ls if ls and ls[-1][1].startswith(
            "SIP/2.0 487") else None)(status_lines(curl(s.url(path))[1])), timeout=20)
        assert ("INVITE", "SIP/2.0 180 Ringing") in lines
    wait_for(lambda: not hostile.active_calls(s.daemon), timeout=10)
    # and a new call is accepted again
    assert post(s, "/callcontroller/user1/2004?timeout=2")[0] == 200
    assert len(phone.received("CANCEL")) >= 3
