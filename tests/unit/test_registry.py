"""The CallRegistry: keys and ids, limits, replacement, retention and the watchdog."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from sipxcc.calls.call import CONFIRMED, CallRequest, DialogInfo, StatusEvent
from sipxcc.calls.errors import AgentLimit, CallInProgress, TooManyCalls, TransferNotPossible
from sipxcc.calls.registry import WATCHDOG_GRACE, CallRegistry
from sipxcc.timers import SLACK
from sipxcc.users import User
from sipxcc.web.errors import CALL_ERRORS

USER1 = User("user1@sipx.test", "user1", ("201",), None, None, None)
USER3 = User("user3@sipx.test", "user3", ("203",), None, None, None)


class FakeFlow:
    """A flow that ends only when told to (or when hung up, if C{ends_on_hangup})."""

    ends_on_hangup = True

    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end
        self.hangups: list[str] = []

    def start(self):
        self.call.set_state("ringing")

    def hangup(self, why):
        self.hangups.append(why)
        if self.ends_on_hangup:
            self.end()

    def transfer(self, target, timeout=None):
        self.transferred = target

    def end(self):
        self.call.finish("ended")
        self.on_end(self.call)


def make(max_calls=10, per_agent=3):
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": FakeFlow, "INVITE": FakeFlow}, max_calls,
                            per_agent)
    return clock, registry


def req(agent=USER1, calling="user1@sipx.test", called="user2@sipx.test", **kw):
    return CallRequest(agent, calling, called, **kw)


def test_calls_are_found_by_key_and_id_and_listed_newest_first():
    clock, registry = make()
    first = registry.place(req(called="user2@sipx.test"))
    clock.advance(1)
    second = registry.place(req(called="user4@sipx.test"))
    other = registry.place(req(agent=USER3))
    assert registry.lookup(("user1@sipx.test", "user1@sipx.test", "user2@sipx.test")) is first
    assert registry.get(second.id) is second
    assert registry.calls_of("user1@sipx.test", 10) == [second, first]
    assert registry.calls_of(None, 2) == [other, second]
    assert len({first.id, second.id, other.id}) == 3


def test_second_post_replaces_a_refer_call_and_tears_the_old_one_down():
    clock, registry = make()
    old = registry.place(req())
    old_flow = old.flow
    new = registry.place(req())
    assert old_flow.hangups == ["replaced"] and old.ended and old.flow is None
    assert registry.lookup(new.key) is new and registry.active_count == 1


def test_invite_call_in_progress_is_409():
    clock, registry = make()
    registry.place(req(method="INVITE"))
    with pytest.raises(CallInProgress) as e:
        registry.place(req(method="INVITE"))
    assert CALL_ERRORS[type(e.value)] == (409, None)  # how the web layer answers it


def test_limits():
    clock, registry = make(max_calls=4, per_agent=2)
    registry.place(req(called="a@sipx.test"))
    registry.place(req(called="b@sipx.test"))
    with pytest.raises(AgentLimit) as e:
        registry.place(req(called="c@sipx.test"))
    assert CALL_ERRORS[type(e.value)] == (429, 5)
    registry.place(req(agent=USER3, called="a@sipx.test"))
    registry.place(req(agent=USER3, called="b@sipx.test"))
    with pytest.raises(TooManyCalls) as e:
        registry.place(req(agent=USER3, called="c@sipx.test"))
    assert CALL_ERRORS[type(e.value)] == (503, 5)
    # replacing one's own call is not a new call
    registry.place(req(called="a@sipx.test"))


def test_finished_call_is_kept_for_result_cache_time_then_forgotten():
    clock, registry = make()
    call = registry.place(req(result_cache_time=30))
    clock.advance(100)
    call.flow.end()
    clock.advance(30)
    assert registry.get(call.id) is call
    clock.advance(SLACK)  # retention may end up to SLACK late, with others due then
    assert registry.get(call.id) is None and registry.lookup(call.key) is None
    # the cancelled watchdog's wake-up fires idle once, then nothing is left
    clock.advance(call.request.timeout + WATCHDOG_GRACE)
    assert not clock.getDelayedCalls()


def test_watchdog_ends_a_call_whose_peer_never_answers():
    clock, registry = make()
    FakeFlow.ends_on_hangup = False
    try:
        call = registry.place(req(timeout=10))
        flow = call.flow
        clock.advance(10 + WATCHDOG_GRACE)
    finally:
        FakeFlow.ends_on_hangup = True
    assert flow.hangups == ["watchdog"]
    assert call.ended and registry.active_count == 0
    clock.advance(call.request.result_cache_time + SLACK)
    assert registry.get(call.id) is None and not clock.getDelayedCalls()


def test_connected_invite_call_outlives_the_watchdog():
    clock, registry = make()
    call = registry.place(req(method="INVITE", timeout=10))
    call.set_state("connected")
    clock.advance(3600)
    assert not call.ended and call.flow.hangups == []


def test_transfer_needs_an_invite_call():
    clock, registry = make()
    call = registry.place(req())
    with pytest.raises(TransferNotPossible):
        registry.transfer(call, "user4@sipx.test")
    invite = registry.place(req(called="x@sipx.test", method="INVITE"))
    registry.transfer(invite, "user4@sipx.test")
    assert invite.flow.transferred == "user4@sipx.test"


def test_shutdown_hangs_up_every_call():
    clock, registry = make()
    flows = [registry.place(req(called=f"u{i}@sipx.test")).flow for i in range(3)]
    d = registry.shutdown(5)
    assert d.called and all(flow.hangups == ["shutdown"] for flow in flows)


def test_a_finished_call_keeps_its_events_and_dialogs_in_order():
    clock, registry = make()
    call = registry.place(req())
    call.record(1000, "c1", "INVITE", "SIP/2.0 180 Ringing")
    call.record(2000, "c1", "INVITE", "SIP/2.0 200 OK")
    call.set_dialog_source(lambda: [DialogInfo("d1", "a", "b", CONFIRMED)])
    before = call.events
    call.flow.end()
    assert call.ended and call.events == before and call.event_count == 2
    assert call.dialogs() == [DialogInfo("d1", "a", "b", CONFIRMED)]
    call.record(3000, "c1", "BYE", "SIP/2.0 200 OK")  # a late answer still counts
    assert [e.status_line for e in call.events] == [
        "SIP/2.0 180 Ringing", "SIP/2.0 200 OK", "SIP/2.0 200 OK"]
    assert call.events[0] == StatusEvent(1000, "c1", "INVITE", "SIP/2.0 180 Ringing")


def test_clear_stops_every_watchdog_and_retention_whatever_the_calls_state():
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": FakeFlow, "INVITE": FakeFlow}, 10, 5,
                            max_retained=1, max_retained_per_owner=1)
    refer = registry.place(req(called="user2@sipx.test"))  # in progress, no watchdog
    invite = registry.place(req(called="user3@sipx.test", method="INVITE"))  # watchdog runs
    for called in ("user4@sipx.test", "user5@sipx.test"):  # finished: retained, one evicted
        registry.place(req(called=called)).flow.end()
    registry.clear()
    assert registry.calls_of(USER1.identity, 10) == []
    clock.advance(86400)  # no watchdog fires for a cleared call
    assert refer.flow.hangups == invite.flow.hangups == []


def test_a_limit_of_zero_or_less_lists_no_call():
    clock, registry = make()
    registry.place(req())
    assert registry.calls_of(USER1.identity, 1) != []
    assert registry.calls_of(USER1.identity, 0) == registry.calls_of(None, 0) == []
    assert registry.calls_of(USER1.identity, -3) == []


def test_by_default_a_result_is_kept_at_most_a_day_and_1000_per_owner():
    clock = Clock()
    registry = CallRegistry(clock, {"REFER": FakeFlow})
    kept = registry.place(req(result_cache_time=10**6))
    kept.flow.end()
    clock.advance(86400 - 1)
    assert registry.get(kept.id) is not None
    clock.advance(1 + SLACK)
    assert registry.get(kept.id) is None

    registry = CallRegistry(Clock(), {"REFER": FakeFlow})
    calls = []
    for n in range(1001):
        call = registry.place(req(called=f"u{n}@sipx.test"))
        call.flow.end()
        calls.append(call)
    assert registry.get(calls[0].id) is None  # the oldest of 1001 goes
    assert registry.get(calls[1].id) is not None


def test_a_post_for_a_finished_call_still_retained_starts_a_new_call_and_leaves_it_alone():
    clock, registry = make()
    old = registry.place(req(method="INVITE"))
    old.flow.end()
    new = registry.place(req(method="INVITE"))
    assert new is not old and not new.ended and new.state == "ringing"
    assert registry.get(old.id) is old and old.state == "ended"
    assert registry.lookup(new.key) is new
