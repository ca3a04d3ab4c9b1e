"""
How the Redis call registry writes status lines, states and ends: collected over a
window on the clock and sent in one pipeline, each call's lines before its end, sooner
when many wait; while Redis is away, a bounded buffer that drops status lines, never a
call's end while a line is left to drop.
"""

from __future__ import annotations

import gc

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from sipxcc.calls.call import INVITE, Call, CallRequest
from sipxcc.calls.errors import RegistryUnavailable
from sipxcc.calls.redis_store import (
    END,
    PLACE,
    RedisCallStore,
    new_record_fields,
    stored_call,
)
from sipxcc.calls.registry import CallRegistry
from sipxcc.users import User

AGENT = User("user1@sipx.test", "user1", ("201",), None, None, None)
WINDOW = 1 / 64  # (a binary fraction: quarters of it add up to it exactly)


class Flow:
    """A flow that records what the test tells it to, and ends when hung up."""

    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end

    def start(self):
        pass

    def line(self, n):
        self.call.record(n, "sip-call-id", "INVITE", f"SIP/2.0 18{n} Line {n}")

    def hangup(self, why="hangup"):
        self.call.finish("ended")
        self.on_end(self.call)


class FakeRedis:
    """Grants every limit and records each pipeline (C{sent}) and each single command
    (C{executed}); C{up} False: everything fails as Redis does when it is away."""

    def __init__(self):
        self.up = True
        self.on_state = None
        self.sent: list[list[tuple]] = []
        self.executed: list[tuple] = []

    def execute(self, *command):
        self.executed.append(command)
        if command[:2] == ("EVAL", PLACE):
            return defer.succeed([b"ok", b"", b""])
        return defer.succeed(1)

    def pipeline(self, commands):
        self.sent.append(list(commands))
        return defer.succeed([1] * len(commands))


def make(clock, redis, **kw):
    registry = CallRegistry(clock, {"REFER": Flow}, 100, 100)
    store = RedisCallStore(clock, registry, redis, "a", max_calls=100,
                           max_calls_per_agent=100, write_window=WINDOW, **kw)
    return store


def place(store, called="user2@sipx.test"):
    d = store.place(CallRequest(AGENT, "user1@sipx.test", called))
    calls = []
    d.addCallback(calls.append)
    return calls[0]


def names(pipeline):
    """Each command of a pipeline: its name, and for a script which one."""
    scripts = {END: "END"}
    return [scripts.get(c[1], c[0]) if c[0] == "EVAL" else c[0] for c in pipeline]


def test_status_lines_of_several_turns_wait_for_the_window_then_go_in_one_pipeline():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis)
    call = place(store)
    assert [c[1] for c in redis.executed] == [PLACE]  # limits and record: at once
    for n in range(3):
        call.flow.line(n)
        clock.advance(WINDOW / 4)  # a reactor turn or more apart
    assert redis.sent == []
    clock.advance(WINDOW / 4)
    assert len(redis.sent) == 1
    (push, state), = [redis.sent[0]]
    assert push == ("RPUSH", f"sipxcc:lines:{call.id}",
                    '[0, "sip-call-id", "INVITE", "SIP/2.0 180 Line 0"]',
                    '[1, "sip-call-id", "INVITE", "SIP/2.0 181 Line 1"]',
                    '[2, "sip-call-id", "INVITE", "SIP/2.0 182 Line 2"]')
    assert state[:2] == ("HSET", f"sipxcc:call:{call.id}")
    clock.advance(1.0)
    assert len(redis.sent) == 1  # nothing more to write: no empty pipeline


def test_the_window_is_cut_short_once_flush_at_writes_wait():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis, flush_at=3)
    call = place(store)
    call.flow.line(0)
    call.flow.line(1)
    clock.advance(0)
    assert redis.sent == []
    call.flow.line(2)  # the third write waiting
    clock.advance(0)  # sent at the end of this reactor turn, not of the window
    assert names(redis.sent[0]) == ["RPUSH", "HSET"]
    assert len(redis.sent[0][0]) == 2 + 3


def test_each_calls_lines_go_before_its_end_and_the_end_carries_the_last_state():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis)
    first, second = place(store), place(store, "user3@sipx.test")
    first.flow.line(0)
    second.flow.line(0)
    first.flow.line(1)
    store.registry.hangup(first)
    second.flow.line(1)
    clock.advance(WINDOW)
    sent = redis.sent[0]
    assert names(sent) == ["RPUSH", "RPUSH", "HSET", "END"]
    assert [c[1] for c in sent[:2]] == [f"sipxcc:lines:{first.id}",
                                       f"sipxcc:lines:{second.id}"]
    assert [len(c) - 2 for c in sent[:2]] == [2, 2]
    assert sent[2][1] == f"sipxcc:call:{second.id}"  # the call still in progress
    end = sent[3]
    assert end[3] == f"sipxcc:call:{first.id}"
    fields = dict(zip(end[3 + 7 + 2::2], end[3 + 7 + 3::2], strict=True))
    assert fields == {"state": "ended", "seq": 3, "ended": 1}
    assert end[3 + 7 + 1]  # its limit slot, released


def placed_while_an_end_waits(clock, redis):
    """A store whose first call ended (its end waits for the window) and a second call
    being placed meanwhile: the store, and the list that call's outcome goes to."""
    store = make(clock, redis)
    store.registry.hangup(place(store))
    outcome = []
    store.place(CallRequest(AGENT, "user1@sipx.test", "user3@sipx.test")).addBoth(
        outcome.append)
    return store, outcome


def test_a_call_placed_while_writes_wait_goes_after_them_at_the_end_of_the_window():
    clock, redis = Clock(), FakeRedis()
    store, placed = placed_while_an_end_waits(clock, redis)
    clock.advance(WINDOW * 0.75)
    assert (redis.sent, placed, len(redis.executed)) == ([], [], 1)  # both wait
    clock.advance(WINDOW * 0.25)
    # the end (and the limit it frees) was handed to Redis before the new call asked,
    # in the same reactor turn (so in the same round trip)
    assert names(redis.sent[0]) == ["END"]
    assert [c[1] for c in redis.executed[1:]] == [PLACE]
    assert placed[0].called == "user3@sipx.test"
    assert store._flush_timer is None


def test_a_call_placed_while_no_write_waits_goes_at_once():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis)
    call = place(store)  # no clock move
    assert (call.called, [c[1] for c in redis.executed], redis.sent) == (
        "user2@sipx.test", [PLACE], [])


def test_calls_placed_during_one_window_all_go_with_its_writes():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis)
    first = place(store)
    first.record(1, "sip-call-id", "INVITE", "SIP/2.0 180 Ringing")
    placed = []
    for called in ("user3@sipx.test", "user4@sipx.test"):
        store.place(CallRequest(AGENT, "user1@sipx.test", called)).addCallback(
            placed.append)
    assert placed == []
    clock.advance(WINDOW)
    assert [call.called for call in placed] == ["user3@sipx.test", "user4@sipx.test"]
    assert names(redis.sent[0]) == ["RPUSH", "HSET"]
    assert [c[1] for c in redis.executed] == [PLACE, PLACE, PLACE]


def test_writing_what_waits_on_request_lets_the_waiting_calls_be_placed_too():
    clock, redis = Clock(), FakeRedis()
    store, placed = placed_while_an_end_waits(clock, redis)
    store.flush()  # as the daemon does when it stops
    assert (names(redis.sent[0]), [call.called for call in placed]) == (
        ["END"], ["user3@sipx.test"])


def test_a_call_waiting_for_the_window_when_redis_goes_away_is_refused():
    clock, redis = Clock(), FakeRedis()
    store, failed = placed_while_an_end_waits(clock, redis)
    redis.up = False
    redis.execute = lambda *command: defer.fail(RegistryUnavailable("Redis is not connected"))
    clock.advance(WINDOW)
    assert failed[0].check(RegistryUnavailable)
    assert failed[0].getErrorMessage() == "Redis is not connected"
    assert store.registry.active_count == 0  # the first one ended; none placed


def test_a_call_waiting_for_the_window_when_the_node_stops_is_refused_and_not_placed():
    clock, redis = Clock(), FakeRedis()
    store, failed = placed_while_an_end_waits(clock, redis)
    store.close()
    assert failed[0].check(RegistryUnavailable)
    assert failed[0].getErrorMessage() == "This node is stopping"
    assert [c[1] for c in redis.executed] == [PLACE]  # the first call's only


def test_a_full_buffer_drops_status_lines_and_keeps_every_end():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis, max_buffered=4)
    calls = [place(store, f"user{n}@sipx.test") for n in range(3)]
    redis.up = False
    for n in range(3):
        for call in calls:
            call.flow.line(n)
    for call in calls:
        store.registry.hangup(call)
    clock.advance(WINDOW)
    assert store.buffered == 4 and len(store.ends) == 3
    assert store.dropped == 3 * 3 - 1  # every line but the last
    redis.up = True
    store.resume()
    assert names(redis.sent[0]) == ["RPUSH", "END", "END", "END"]
    assert [c[3] for c in redis.sent[0][1:]] == [f"sipxcc:call:{c.id}" for c in calls]
    assert store.buffered == 0


def test_ends_beyond_the_bound_drop_the_oldest_end():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis, max_buffered=2)
    calls = [place(store, f"user{n}@sipx.test") for n in range(3)]
    redis.up = False
    for call in calls:
        store.registry.hangup(call)
    assert (store.buffered, store.dropped) == (2, 1)
    redis.up = True
    store.resume()
    assert [c[3] for c in redis.sent[0]] == [f"sipxcc:call:{c.id}" for c in calls[1:]]


def test_the_record_written_before_the_call_starts_is_that_of_the_new_call():
    for method in ("REFER", INVITE):
        request = CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test", method=method)
        call = Call(request, 1234.5, "the-id")
        fields = [str(v).encode() for v in new_record_fields("the-id", request, 1234.5, "a")]
        stored = stored_call("the-id", fields, [])
        assert (stored.id, stored.owner, stored.calling, stored.called, stored.mode,
                stored.state, stored.ended, stored.created, stored.node, stored.seq,
                stored.dialogs()) == (
            call.id, call.owner, call.calling, call.called, call.mode, call.state,
            call.ended, call.created, "a", call.seq, call.dialogs())


class Unmakeable:
    """A flow that cannot be made (a fault of ours while the call starts)."""

    def __init__(self, call, on_end):
        raise RuntimeError("no flow")


def test_a_call_whose_flow_cannot_start_is_written_failed_and_ended_and_frees_its_slot():
    clock, redis = Clock(), FakeRedis()
    registry = CallRegistry(clock, {"REFER": Unmakeable}, 100, 100)
    store = RedisCallStore(clock, registry, redis, "a", max_calls=100,
                           max_calls_per_agent=100, write_window=WINDOW)
    failures = []
    store.place(CallRequest(AGENT, "user1@sipx.test", "user2@sipx.test")).addErrback(
        failures.append)
    assert failures[0].check(RuntimeError)
    (_, _, _, *keys_and_args), = redis.executed
    call_key, slot = keys_and_args[4], keys_and_args[8]  # the record and the limit slot
    clock.advance(WINDOW)
    (end,), = redis.sent
    assert end[:4] == ("EVAL", END, 7, call_key)
    assert end[-6:] == (end[-6], slot, "state", "failed", "ended", 1)


def test_a_line_after_a_window_waits_a_whole_window_of_its_own():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis)
    call = place(store)
    call.flow.line(0)  # opens the window
    clock.advance(WINDOW / 2)
    call.flow.line(1)  # within it
    clock.advance(WINDOW / 2)
    assert len(redis.sent) == 1
    call.flow.line(2)  # opens the next one
    clock.advance(WINDOW * 3 / 4)
    assert len(redis.sent) == 1
    clock.advance(WINDOW / 4)
    assert len(redis.sent) == 2 and redis.sent[1][0][2:] == (
        '[2, "sip-call-id", "INVITE", "SIP/2.0 182 Line 2"]',)


def test_with_flush_at_one_each_write_goes_at_the_end_of_its_reactor_turn():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis, flush_at=1)
    call = place(store)
    call.flow.line(0)
    assert redis.sent == []
    clock.advance(0)
    assert names(redis.sent[0]) == ["RPUSH", "HSET"]
    call.flow.line(1)
    clock.advance(0)
    assert len(redis.sent) == 2 and names(redis.sent[1]) == ["RPUSH", "HSET"]


def test_writes_lost_in_flight_as_redis_comes_back_leave_a_warning_and_no_traceback():
    clock, redis = Clock(), FakeRedis()
    store = make(clock, redis)
    call = place(store)
    redis.up = False
    call.flow.line(0)
    clock.advance(WINDOW)  # kept while Redis is away
    redis.up = True
    redis.pipeline = lambda commands: defer.fail(RegistryUnavailable("connection lost"))
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        redis.on_state(True)
        gc.collect()  # an unhandled error in a Deferred is logged when it is collected
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [e for e in logged if "log_failure" in e] == []
    assert any("Redis writes lost with the connection" in formatEvent(e) for e in logged)
    assert store.dropped == 2
