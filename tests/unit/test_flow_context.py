"""
What the flows share (sipxcc.calls.context): the SIP URIs they build from what the web
layer passed, the status lines they record with the clock's time in milliseconds, what a
NOTIFY body that is no sipfrag records, and what a request's failure stands for.
"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from sipxcc.calls.call import StatusEvent
from sipxcc.calls.context import (
    FlowContext,
    record_failure,
    record_response,
    record_sipfrag,
    sip_uri,
)
from sipxcc.calls.errors import FailedRequest, failure_status
from sipxcc.calls.registry import CallRegistry
from sipxcc.sip.headers import Headers
from sipxcc.sip.message import Response
from sipxcc.sip.useragent import RequestFailed
from tests.unit import test_invite_flow as invite_mode
from tests.unit.sipfakes import FakeNetwork
from tests.unit.test_call_events import caplog_failures  # noqa: F401  (a fixture)
from tests.unit.test_registry import FakeFlow, req


@pytest.mark.parametrize(("given", "uri"), [
    ("user1@sipx.test", "sip:user1@sipx.test"),
    ("sip:user1@sipx.test", "sip:user1@sipx.test"),
    ("sip:user1@sipx.test:5070", "sip:user1@sipx.test:5070"),
    ("sips:user1@sipx.test", "sips:user1@sipx.test"),
    ("sips:user1@sipx.test:5071", "sips:user1@sipx.test:5071"),
])
def test_an_address_with_or_without_its_scheme_gives_the_same_uri(given, uri):
    assert sip_uri(given) == uri


def placed():
    """A FlowContext on a clock at 1234.5678 s and a call placed on it."""
    net = FakeNetwork()
    net.clock.advance(1234.5678)
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    call = CallRegistry(Clock(), {"REFER": FakeFlow}).place(req())
    return ctx, call


def test_each_recorded_line_has_the_clocks_time_in_milliseconds_and_its_call_id():
    ctx, call = placed()
    response = Response(180, "Ringing", Headers([("Call-ID", "cid-1@127.0.0.1")]))
    record_response(ctx, call, response)
    record_failure(ctx, call, "cid-2@127.0.0.1", "REFER",
                   Failure(RequestFailed(408, "Request Timeout")))
    assert record_sipfrag(ctx, call, "cid-3@127.0.0.1", b"SIP/2.0 200 OK\r\n") == (200, "OK")
    assert record_sipfrag(ctx, call, "cid-4@127.0.0.1", b"  trying\r\nmore\r\n") is None
    assert call.events == [
        StatusEvent(1234567, "cid-1@127.0.0.1", "INVITE", "SIP/2.0 180 Ringing"),
        StatusEvent(1234567, "cid-2@127.0.0.1", "REFER", "SIP/2.0 408 Request Timeout"),
        StatusEvent(1234567, "cid-3@127.0.0.1", "NOTIFY", "SIP/2.0 200 OK"),
        StatusEvent(1234567, "cid-4@127.0.0.1", "NOTIFY", "trying")]


def test_a_notify_body_that_is_not_utf8_is_recorded_with_replacement_characters():
    ctx, call = placed()
    assert record_sipfrag(ctx, call, "cid-1@127.0.0.1", b"bad \xff\xfe text\r\n") is None
    assert [e.status_line for e in call.events] == ["bad \ufffd\ufffd text"]


def test_a_request_failure_stands_for_its_own_status_and_is_recorded():
    failure = Failure(RequestFailed(503, "Service Unavailable"))
    assert failure_status(failure, "INVITE") == FailedRequest(503, "Service Unavailable", False)


def test_a_fault_of_ours_stands_for_500_internal_error_is_logged_and_not_recorded(
        caplog_failures):  # noqa: F811
    ctx, call = placed()
    failure = Failure(ZeroDivisionError("ours"))
    assert failure_status(failure, "INVITE") == FailedRequest(500, "Internal Error", True)
    assert record_failure(ctx, call, "cid-1@127.0.0.1", "BYE", failure) == (
        500, "Internal Error")
    assert call.events == []
    assert caplog_failures == ["ours", "ours"]


def test_auto_answer_asks_only_the_calling_users_phone():
    net, _, _ = invite_mode.setup(auto_answer=True)
    [invite1] = net.sent_messages()
    assert invite1.headers.get("Answer-Mode") == "Auto"
    assert invite1.headers.get("Call-Info") == "<sip:sipx.test>;answer-after=0"
    assert invite1.headers.get("Alert-Info") == "<sip:sipx.test>;info=alert-autoanswer"
    net.deliver(invite_mode.FarEnd(invite1).ok(invite_mode.A_ANSWER1))
    _, invite2 = net.sent_messages()
    assert [invite2.headers.get(name) for name in ("Answer-Mode", "Call-Info", "Alert-Info")
            ] == [None, None, None]
