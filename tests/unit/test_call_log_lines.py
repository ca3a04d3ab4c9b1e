"""
The two log lines of each call (start: id, agent, users, mode; end: outcome, SIP status,
ring and connected times), as key=value pairs an operator greps for.
"""

from __future__ import annotations

import shlex

import pytest
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from sipxcc.calls.calllog import MAX_VALUE, CallLog, quote
from sipxcc.calls.registry import CallRegistry
from tests.unit.test_registry import FakeFlow, req


@pytest.fixture
def logged():
    events: list = []
    globalLogPublisher.addObserver(events.append)
    yield lambda: [formatEvent(e) for e in events if e.get("log_namespace") ==
                   "sipxcc.calls.calllog"]
    globalLogPublisher.removeObserver(events.append)


def fields(text: str) -> tuple[str, dict[str, str]]:
    """The leading words and the key=value pairs of a line, unquoted as a shell would."""
    words = shlex.split(text)
    head = [w for w in words if "=" not in w]
    return " ".join(head), dict(w.split("=", 1) for w in words if "=" in w)


def logged_registry():
    clock = Clock()
    clock.advance(1000)
    registry = CallRegistry(clock, {"REFER": FakeFlow, "INVITE": FakeFlow})
    CallLog(clock).follow(registry)
    return clock, registry


def record(clock, call, method, status_line):
    call.record(int(clock.seconds() * 1000), "abc@127.0.0.1", method, status_line)


def test_a_connected_call_logs_its_start_and_its_times(logged):
    clock, registry = logged_registry()
    call = registry.place(req(called="user2@sipx.test"))
    [start] = logged()
    assert fields(start) == ("call started", {
        "id": call.id, "agent": "user1@sipx.test", "calling": "user1@sipx.test",
        "called": "user2@sipx.test", "mode": "REFER"})
    record(clock, call, "INVITE", "SIP/2.0 180 Ringing")
    clock.advance(2.5)
    record(clock, call, "INVITE", "SIP/2.0 200 OK")
    clock.advance(1)
    record(clock, call, "NOTIFY", "SIP/2.0 200 OK")
    clock.advance(6)
    call.flow.end()
    [_, end] = logged()
    assert fields(end) == ("call ended", {
        "id": call.id, "outcome": "ended", "status": "200", "reason": "OK",
        "method": "NOTIFY", "ring_time": "2.50", "connected_time": "6.00"})


def test_a_refused_call_names_the_failure_not_a_later_success(logged):
    clock, registry = logged_registry()
    call = registry.place(req(method="INVITE"))
    record(clock, call, "INVITE", "SIP/2.0 407 Proxy Authentication Required")
    record(clock, call, "INVITE", "SIP/2.0 180 Ringing")
    clock.advance(4)
    record(clock, call, "INVITE", "SIP/2.0 486 Busy Here")
    record(clock, call, "BYE", "SIP/2.0 200 OK")
    call.flow.end()
    _, values = fields(logged()[-1])
    assert values["status"] == "486"
    assert values["reason"] == "Busy Here"
    assert values["method"] == "INVITE"
    assert values["ring_time"] == "4.00"  # never answered: it rang until the end
    assert values["connected_time"] == "0.00"
    assert 'reason="Busy Here"' in logged()[-1]


def test_a_call_without_any_answer_says_status_none(logged):
    clock, registry = logged_registry()
    call = registry.place(req())
    clock.advance(30)
    call.flow.end()
    _, values = fields(logged()[-1])
    assert values["status"] == "none"
    assert values["ring_time"] == "30.00"


def test_no_credentials_appear_in_the_lines(logged):
    clock, registry = logged_registry()
    call = registry.place(req())
    call.flow.end()
    text = "\n".join(logged())
    user = call.request.agent
    for secret in (user.pintoken, user.passtoken):
        if secret:
            assert secret not in text
    assert "pin" not in text.lower()


@pytest.mark.parametrize(("raw", "shown"), [
    ("user1", "user1"),
    ("Busy Here", '"Busy Here"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("a=b", '"a=b"'),
    ("", '""'),
    ("evil\r\nid=forged", '"evil\\x0d\\x0aid=forged"'),
])
def test_values_are_quoted_when_they_are_not_plain_words(raw, shown):
    assert quote(raw) == shown


def test_a_long_value_is_cut():
    assert len(quote("x" * 10_000)) == MAX_VALUE


def test_the_calls_followed_for_their_times_are_bounded():
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": FakeFlow, "INVITE": FakeFlow})
    log = CallLog(clock, max_tracked=2)
    log.follow(registry)
    calls = [registry.place(req(called=f"user{n}@sipx.test")) for n in range(4)]
    assert len(log.tracked) == 2
    for call in calls:
        call.flow.end()
    assert log.tracked == {}


def ended_status(*lines: tuple[str, str]) -> dict[str, str]:
    """The end line's status, reason and method of a call that met these status lines."""
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock, registry = logged_registry()
        call = registry.place(req(method="INVITE"))
        for method, status_line in lines:
            record(clock, call, method, status_line)
        call.flow.end()
    finally:
        globalLogPublisher.removeObserver(events.append)
    _, values = fields([formatEvent(e) for e in events
                        if e.get("log_namespace") == "sipxcc.calls.calllog"][-1])
    return {key: values[key] for key in ("status", "reason", "method") if key in values}


@pytest.mark.parametrize(("lines", "shown"), [
    # a challenge is answered by sending the request again: the answer to that decides
    ((("INVITE", "SIP/2.0 401 Unauthorized"), ("INVITE", "SIP/2.0 200 OK")),
     {"status": "200", "reason": "OK", "method": "INVITE"}),
    ((("INVITE", "SIP/2.0 407 Proxy Authentication Required"), ("INVITE", "SIP/2.0 200 OK")),
     {"status": "200", "reason": "OK", "method": "INVITE"}),
    # the last failure, from 300 up, wins over an earlier one and over any later success
    ((("INVITE", "SIP/2.0 486 Busy Here"), ("INVITE", "SIP/2.0 300 Multiple Choices"),
      ("BYE", "SIP/2.0 200 OK")),
     {"status": "300", "reason": "Multiple Choices", "method": "INVITE"}),
    ((("INVITE", "SIP/2.0 402 Payment Required"), ("BYE", "SIP/2.0 200 OK")),
     {"status": "402", "reason": "Payment Required", "method": "INVITE"}),
    ((("INVITE", "SIP/2.0 408 Request Timeout"), ("BYE", "SIP/2.0 200 OK")),
     {"status": "408", "reason": "Request Timeout", "method": "INVITE"}),
    ((("INVITE", "SIP/2.0 486"), ("BYE", "SIP/2.0 200 OK")),
     {"status": "486", "reason": "", "method": "INVITE"}),
    # a provisional answer decides nothing
    ((("INVITE", "SIP/2.0 180 Ringing"),), {"status": "none"}),
    # a NOTIFY body that is no status line is skipped, and so are the lines after it read
    ((("NOTIFY", "SIP/2.0"), ("NOTIFY", "SIP/2.0 abc x"), ("NOTIFY", "oops"),
      ("INVITE", "SIP/2.0 603 Decline")),
     {"status": "603", "reason": "Decline", "method": "INVITE"}),
])
def test_the_end_line_names_the_status_that_decided_the_call(lines, shown):
    assert ended_status(*lines) == shown


def test_times_under_a_second_are_shown_as_they_are(logged):
    clock, registry = logged_registry()
    call = registry.place(req())
    clock.advance(0.25)
    record(clock, call, "INVITE", "SIP/2.0 200 OK")
    clock.advance(0.5)
    record(clock, call, "NOTIFY", "SIP/2.0 200 OK")
    clock.advance(0.75)
    call.flow.end()
    _, values = fields(logged()[-1])
    assert (values["ring_time"], values["connected_time"]) == ("0.25", "0.75")


def test_a_call_beyond_the_followed_ones_still_gets_its_end_line(logged):
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": FakeFlow})
    CallLog(clock, max_tracked=0).follow(registry)
    call = registry.place(req())
    clock.advance(3)
    record(clock, call, "INVITE", "SIP/2.0 486 Busy Here")
    call.flow.end()
    head, values = fields(logged()[-1])
    assert head == "call ended"
    assert (values["status"], values["ring_time"], values["connected_time"]) == (
        "486", "3.00", "0.00")


@pytest.mark.parametrize(("raw", "shown"), [
    ("XRAY", "XRAY"),
    ("a X", '"a X"'),
    ("x" * MAX_VALUE, "x" * MAX_VALUE),  # at the limit: whole
])
def test_plain_words_stay_bare_and_only_quotes_and_backslashes_are_escaped(raw, shown):
    assert quote(raw) == shown
