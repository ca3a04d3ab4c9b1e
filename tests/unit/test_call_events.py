"""The registry's event interface: every call's events, in order, numbered per call."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from sipxcc.calls.call import CallRequest
from sipxcc.calls.context import FlowContext
from sipxcc.calls.hub import MAX_SUBSCRIBERS, CallEvent, TooManySubscribers
from sipxcc.calls.refer import ReferFlow
from sipxcc.calls.registry import CallRegistry
from tests.unit.sipfakes import FakeNetwork, answer
from tests.unit.test_refer_flow import USER1, connect
from tests.unit.test_registry import FakeFlow, req


def refer_registry():
    net = FakeNetwork()
    ctx = FlowContext(net.ua, net.clock, "sipx.test", "127.0.0.1")
    return net, CallRegistry(net.clock, {"REFER": lambda call, end: ReferFlow(ctx, call, end)})


def test_a_subscriber_sees_a_refer_calls_every_status_line_numbered_then_its_end():
    net, registry = refer_registry()
    seen: list[tuple[str, CallEvent]] = []
    registry.subscribe(lambda call, event: seen.append((call.id, event)))
    call = registry.place(CallRequest(USER1, "user1@sipx.test", "user2@sipx.test"))
    _, _, phone, refer = connect(net, call)
    net.deliver(answer(refer, 603, "Declined"))
    [bye] = [m for m in net.sent_messages() if getattr(m, "method", None) == "BYE"]
    net.deliver(answer(bye, 200, "OK"))
    assert call.state == "ended"
    assert [event.seq for _, event in seen] == list(range(1, len(seen) + 1))
    assert {call_id for call_id, _ in seen} == {call.id}
    assert [event.status for _, event in seen[:-1]] == call.events
    assert [e.status_line for e in call.events][-1] == "SIP/2.0 603 Declined"
    assert seen[-1][1].status is None  # the end, after the last status line


def test_numbers_are_per_call_and_a_late_subscriber_continues_the_count():
    registry = CallRegistry(Clock(), {"REFER": FakeFlow})
    first = registry.place(req(called="user2@sipx.test"))
    first.record(1, "a", "INVITE", "SIP/2.0 180 Ringing")
    seen: list[tuple[str, int]] = []
    registry.subscribe(lambda call, event: seen.append((call.id, event.seq)))
    second = registry.place(req(called="user4@sipx.test"))
    second.record(2, "b", "INVITE", "SIP/2.0 180 Ringing")
    first.record(3, "a", "INVITE", "SIP/2.0 200 OK")
    second.flow.end()
    assert seen == [(second.id, 1), (first.id, 2), (second.id, 2)]


def test_unsubscribe_stops_the_events_and_keeps_nothing():
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": FakeFlow})
    seen: list[int] = []
    unsubscribe = registry.subscribe(lambda call, event: seen.append(event.seq))
    call = registry.place(req())
    call.record(1, "a", "INVITE", "SIP/2.0 180 Ringing")
    unsubscribe()
    call.record(2, "a", "INVITE", "SIP/2.0 200 OK")
    assert seen == [1]
    assert registry.events.subscriber_count == 0


def test_subscribers_are_bounded():
    registry = CallRegistry(Clock(), {"REFER": FakeFlow})
    stops = [registry.subscribe(lambda call, event: None) for _ in range(MAX_SUBSCRIBERS)]
    with pytest.raises(TooManySubscribers, match=f"^at most {MAX_SUBSCRIBERS} event subscribers$"):
        registry.subscribe(lambda call, event: None)
    stops[0]()
    registry.subscribe(lambda call, event: None)  # room again


def test_a_failing_subscriber_neither_stops_the_others_nor_the_call(caplog_failures):
    registry = CallRegistry(Clock(), {"REFER": FakeFlow})
    seen: list[int] = []

    def broken(call, event):
        raise RuntimeError("subscriber bug")
    registry.subscribe(broken)
    registry.subscribe(lambda call, event: seen.append(event.seq))
    call = registry.place(req())
    call.record(1, "a", "INVITE", "SIP/2.0 180 Ringing")
    call.flow.end()
    assert seen == [1, 2] and call.state == "ended"
    assert caplog_failures == ["subscriber bug", "subscriber bug"]


@pytest.fixture
def caplog_failures():
    """The messages of the failures logged meanwhile (and nothing left to trial's log)."""
    from twisted.logger import globalLogPublisher
    failures: list[str] = []

    def observer(event):
        failure = event.get("log_failure")
        if failure is not None:
            failures.append(failure.getErrorMessage())
    globalLogPublisher.addObserver(observer)
    yield failures
    globalLogPublisher.removeObserver(observer)
