"""
The Redis call store's contract on a real redis-server, without the reactor (a test
clock; tests/unit/redislive.py): a call placed on one node is read whole from another
(its record, its status lines in order, by id and by key), calls are listed newest
first, the limits hold across nodes at their exact values and are released when a call
ends, one call in progress per key, and a finished call's keys expire after its result
cache time. Every read of what a write left goes after the clock moved on (writes may be
batched over a short window).
"""

from __future__ import annotations

import pytest

from sipxcc.calls import redis_store
from sipxcc.calls.call import MAX_EVENTS, MAX_FINAL_EVENTS, TERMINATED
from sipxcc.calls.errors import AgentLimit, CallInProgress, TooManyCalls
from tests.unit.storeflows import BYE_OK, FLOWS, RINGING, USER3, Refused, WithDialog, req


def ids(calls):
    return [c.id for c in calls]


def place(cluster, node, request):
    return cluster.run(node.store.place(request))


def refused(cluster, node, request, kind):
    with pytest.raises(kind):
        cluster.run(node.store.place(request))


# --- a call as any node reads it --------------------------------------------------------


def test_a_call_placed_on_one_node_is_read_whole_by_id_and_key_on_another(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    found = cluster.run(b.store.get(call.id))
    assert (found.id, found.owner, found.calling, found.called, found.mode, found.node) == (
        call.id, "user1@sipx.test", "user1@sipx.test", "user2@sipx.test", "REFER", "a")
    assert (found.state, found.ended, found.reason) == ("ringing", False, "")
    assert found.created == call.created == 1_700_000_000.25
    assert found.events == [RINGING] and found.event_count == 1
    assert found.seq == call.seq == 1
    assert found.dialogs() == []
    assert cluster.run(b.store.lookup(call.key)).id == call.id
    assert b.registry.get(call.id) is None  # read from Redis, not from b's own calls
    assert cluster.run(b.store.get("no-such-call")) is None
    assert cluster.run(b.store.lookup(req(called="user9@sipx.test").key)) is None


def test_status_lines_are_read_in_order_and_the_end_with_them(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    call.record(2000, "sip-1", "INVITE", "SIP/2.0 183 Session Progress")
    call.record(3000, "sip-1", "INVITE", "SIP/2.0 200 OK")
    call.set_state("connected")
    cluster.settle()
    found = cluster.run(b.store.get(call.id))
    assert found.events == call.events and len(found.events) == 3
    assert (found.state, found.ended) == ("connected", False)
    assert cluster.run(a.store.hangup(call.id)) is True
    cluster.settle()
    found = cluster.run(b.store.get(call.id))
    assert [e.status_line for e in found.events] == [
        "SIP/2.0 180 Ringing", "SIP/2.0 183 Session Progress", "SIP/2.0 200 OK",
        "SIP/2.0 200 OK"]
    assert found.events[-1] == BYE_OK
    assert (found.state, found.ended, found.seq) == ("ended", True, call.seq)
    assert call.seq == 5  # four lines and the end


def test_a_state_set_without_a_status_line_is_read_too(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req(method="INVITE"))
    cluster.settle()
    call.set_state("connected")  # as after a re-INVITE's answer
    cluster.settle()
    assert cluster.run(b.store.get(call.id)).state == "connected"
    call.set_state("transferring")
    cluster.settle()
    assert cluster.run(b.store.get(call.id)).state == "transferring"


def test_an_invite_calls_dialogs_are_those_after_the_line_that_changed_them(cluster):
    a = cluster.node("a", {"INVITE": WithDialog})
    b = cluster.node("b", FLOWS)
    call = place(cluster, a, req(method="INVITE"))
    cluster.settle()
    found = cluster.run(b.store.get(call.id))
    assert found.state == "ringing" and found.mode == "INVITE"
    assert found.dialogs() == call.dialogs() == [WithDialog.DIALOG]
    cluster.run(a.store.hangup(call.id))
    cluster.settle()
    found = cluster.run(b.store.get(call.id))
    assert found.dialogs() == [WithDialog.DIALOG._replace(state=TERMINATED)]
    assert (found.state, found.ended) == ("ended", True)


def test_status_lines_beyond_the_bound_replace_the_last_one_as_in_memory(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    total = MAX_EVENTS + MAX_FINAL_EVENTS
    for n in range(total + 3):
        call.record(n, "sip-1", "INVITE", f"SIP/2.0 486 Busy {n}")
    cluster.settle()
    found = cluster.run(b.store.get(call.id))
    assert len(found.events) == total
    assert found.events == call.events
    assert found.events[-1].status_line == f"SIP/2.0 486 Busy {total + 2}"
    assert found.events[-2].status_line == f"SIP/2.0 486 Busy {total - 3}"


def test_no_pin_or_callback_address_is_written_to_redis(cluster):
    a = cluster.node("a", FLOWS)
    call = place(cluster, a, req(confpin="97531", status_callback="https://cb.test/s3cr3t"))
    cluster.run(a.store.hangup(call.id))
    cluster.settle()
    dump = b""
    for key in cluster.redis.execute_command("KEYS", "*"):
        kind = cluster.redis.execute_command("TYPE", key)
        if kind == b"hash":
            dump += b" ".join(cluster.redis.execute_command("HGETALL", key))
        elif kind == b"list":
            dump += b" ".join(cluster.redis.execute_command("LRANGE", key, 0, -1))
        elif kind == b"zset":
            dump += b" ".join(cluster.redis.execute_command("ZRANGE", key, 0, -1))
        elif kind == b"set":
            dump += b" ".join(cluster.redis.execute_command("SMEMBERS", key))
        else:
            dump += cluster.redis.execute_command("GET", key)
        dump += key
    assert call.id.encode() in dump and b"user1@sipx.test" in dump
    assert b"97531" not in dump and b"s3cr3t" not in dump


# --- lists of calls ---------------------------------------------------------------------


def test_calls_are_listed_newest_first_per_owner_and_within_the_limit(cluster):
    a = cluster.node("a", FLOWS, max_calls=10, per_agent=5)
    b = cluster.node("b", FLOWS, max_calls=10, per_agent=5)
    first = place(cluster, a, req(called="user2@sipx.test"))
    cluster.settle()
    other = place(cluster, b, req(agent=USER3, calling="user3@sipx.test"))
    cluster.settle()
    second = place(cluster, b, req(called="user4@sipx.test"))
    cluster.settle()
    for node in (a, b):
        assert ids(cluster.run(node.store.calls_of("user1@sipx.test", 10))) == [
            second.id, first.id]
        assert ids(cluster.run(node.store.calls_of(None, 10))) == [
            second.id, other.id, first.id]
        assert ids(cluster.run(node.store.calls_of(None, 2))) == [second.id, other.id]
        assert ids(cluster.run(node.store.calls_of(None, 1))) == [second.id]
        assert ids(cluster.run(node.store.calls_of("user3@sipx.test", 10))) == [other.id]
        assert cluster.run(node.store.calls_of(None, 0)) == []
        assert cluster.run(node.store.calls_of(None, -1)) == []
        assert cluster.run(node.store.calls_of("nobody@sipx.test", 10)) == []
    listed = cluster.run(b.store.calls_of(None, 10))[-1]
    assert (listed.node, listed.state, listed.events) == ("a", "ringing", [RINGING])


def test_a_call_whose_record_expired_leaves_the_lists(cluster):
    a = cluster.node("a", FLOWS, max_calls=10, per_agent=5)
    calls = []
    for n in range(3):
        calls.append(place(cluster, a, req(called=f"user{n}@sipx.test")))
        cluster.settle()
    for key in (f"sipxcc:call:{calls[2].id}", f"sipxcc:lines:{calls[2].id}"):
        cluster.redis.execute_command("DEL", key)  # as Redis does at the end of its TTL
    # the newest entry of each list has no record any more: not shown, and dropped ...
    assert ids(cluster.run(a.store.calls_of(None, 2))) == [calls[1].id]
    assert ids(cluster.run(a.store.calls_of("user1@sipx.test", 2))) == [calls[1].id]
    cluster.settle()
    # ... so the next look finds as many calls as asked for
    assert ids(cluster.run(a.store.calls_of(None, 2))) == [calls[1].id, calls[0].id]
    assert ids(cluster.run(a.store.calls_of("user1@sipx.test", 2))) == [
        calls[1].id, calls[0].id]


def test_the_lists_keep_at_most_their_bound_of_calls(cluster, monkeypatch):
    monkeypatch.setattr(redis_store, "MAX_RECENT", 2)
    a = cluster.node("a", FLOWS, max_calls=10, per_agent=5)
    calls = []
    for n in range(3):
        calls.append(place(cluster, a, req(called=f"user{n}@sipx.test")))
        cluster.settle()
    assert ids(cluster.run(a.store.calls_of(None, 10))) == [calls[2].id, calls[1].id]
    assert ids(cluster.run(a.store.calls_of("user1@sipx.test", 10))) == [
        calls[2].id, calls[1].id]
    assert cluster.run(a.store.get(calls[0].id)) is not None  # only left out of the lists


# --- the limits, cluster-wide -----------------------------------------------------------


def test_the_agent_limit_holds_across_nodes_at_its_exact_value_and_is_released(cluster):
    a = cluster.node("a", FLOWS, max_calls=10, per_agent=2)
    b = cluster.node("b", FLOWS, max_calls=10, per_agent=2)
    first = place(cluster, a, req(called="u1@sipx.test"))
    place(cluster, b, req(called="u2@sipx.test"))
    refused(cluster, a, req(called="u3@sipx.test"), AgentLimit)
    refused(cluster, b, req(called="u3@sipx.test"), AgentLimit)
    place(cluster, b, req(agent=USER3, calling="user3@sipx.test"))  # another agent
    cluster.run(a.store.hangup(first.id))
    cluster.settle()
    third = place(cluster, b, req(called="u3@sipx.test"))
    assert b.registry.get(third.id) is third
    refused(cluster, a, req(called="u4@sipx.test"), AgentLimit)


def test_the_total_limit_holds_across_nodes_at_its_exact_value_and_is_released(cluster):
    a = cluster.node("a", FLOWS, max_calls=3, per_agent=3)
    b = cluster.node("b", FLOWS, max_calls=3, per_agent=3)
    place(cluster, a, req(called="u1@sipx.test"))
    other = place(cluster, b, req(agent=USER3, calling="user3@sipx.test"))
    place(cluster, b, req(called="u2@sipx.test"))
    refused(cluster, a, req(called="u3@sipx.test"), TooManyCalls)
    refused(cluster, b, req(agent=USER3, calling="user3@sipx.test", called="u4@sipx.test"),
            TooManyCalls)
    cluster.run(b.store.hangup(other.id))
    cluster.settle()
    place(cluster, a, req(called="u3@sipx.test"))
    refused(cluster, b, req(called="u5@sipx.test"), TooManyCalls)


def test_a_call_that_fails_while_starting_frees_its_limits(cluster):
    a = cluster.node("a", {"REFER": Refused}, max_calls=1, per_agent=1)
    b = cluster.node("b", FLOWS, max_calls=1, per_agent=1)
    failed = place(cluster, a, req())
    cluster.settle()
    found = cluster.run(b.store.get(failed.id))
    assert (found.state, found.ended) == ("failed", True)
    assert [e.status_line for e in found.events] == ["SIP/2.0 403 Forbidden"]
    placed = place(cluster, b, req(called="user7@sipx.test"))  # both limits are free
    assert not placed.ended


def test_a_refused_call_holds_no_limit(cluster):
    a = cluster.node("a", FLOWS, max_calls=10, per_agent=1)
    first = place(cluster, a, req(called="u1@sipx.test"))
    for _ in range(3):
        refused(cluster, a, req(called="u2@sipx.test"), AgentLimit)
    cluster.run(a.store.hangup(first.id))
    cluster.settle()
    place(cluster, a, req(called="u2@sipx.test"))


# --- one call in progress per key -------------------------------------------------------


@pytest.mark.parametrize("first_mode, second_mode", [
    ("INVITE", "INVITE"), ("INVITE", "REFER"), ("REFER", "INVITE")])
def test_one_call_in_progress_per_key_when_either_is_an_invite_call(
        cluster, first_mode, second_mode):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    first = place(cluster, a, req(method=first_mode))
    refused(cluster, b, req(method=second_mode), CallInProgress)
    refused(cluster, a, req(method=second_mode), CallInProgress)
    place(cluster, b, req(method=second_mode, called="user9@sipx.test"))  # another key
    cluster.run(b.store.hangup(first.id))
    cluster.settle()
    second = place(cluster, b, req(method=second_mode))
    assert cluster.run(a.store.lookup(second.key)).id == second.id


def test_a_refer_call_replaces_the_one_in_progress_for_its_key_within_the_limits(cluster):
    a = cluster.node("a", FLOWS, max_calls=1, per_agent=1)
    first = place(cluster, a, req())
    second = place(cluster, a, req())  # the limits of 1 count the replaced call out
    cluster.settle()
    assert first.ended and not second.ended
    assert cluster.run(a.store.get(first.id)).ended
    assert cluster.run(a.store.lookup(req().key)).id == second.id
    refused(cluster, a, req(called="u2@sipx.test"), TooManyCalls)  # one call in progress


def test_a_refer_call_on_one_node_replaces_the_one_in_progress_on_the_other(cluster):
    a = cluster.node("a", FLOWS, max_calls=1, per_agent=1)
    b = cluster.node("b", FLOWS, max_calls=1, per_agent=1)
    first = place(cluster, a, req())
    cluster.settle()
    second = place(cluster, b, req())
    cluster.until(lambda: first.ended, "the replaced call on the other node was not ended")
    cluster.settle()
    assert (cluster.run(b.store.get(first.id)).state, first.state) == ("ended", "ended")
    assert cluster.run(a.store.lookup(req().key)).id == second.id
    assert not cluster.run(a.store.get(second.id)).ended
    refused(cluster, a, req(called="u2@sipx.test"), TooManyCalls)


def test_a_refer_call_replacing_an_ended_one_sends_no_command(cluster):
    a = cluster.node("a", FLOWS)
    b = cluster.node("b", FLOWS)
    first = place(cluster, a, req())
    cluster.run(a.store.hangup(first.id))
    cluster.settle()
    a.deaf()
    second = place(cluster, b, req())
    cluster.settle()
    assert b.router.pending == {} and not second.ended


# --- a finished call expires ------------------------------------------------------------


def ttl_of(cluster, call):
    """The seconds left to the call's record, its status lines and its key (-1: none)."""
    key = "sipxcc:key:" + " ".join(call.key)
    return [cluster.redis.execute_command("TTL", name) for name in (
        f"sipxcc:call:{call.id}", f"sipxcc:lines:{call.id}", key)]


def test_a_finished_call_expires_after_its_result_cache_time(cluster):
    a = cluster.node("a", FLOWS)
    call = place(cluster, a, req(result_cache_time=30))
    cluster.settle()
    assert ttl_of(cluster, call) == [-1, -1, -1]  # in progress: kept
    cluster.run(a.store.hangup(call.id))
    cluster.settle()
    assert ttl_of(cluster, call) == [30, 30, 30]


def test_the_result_cache_time_is_capped_and_at_least_a_second(cluster):
    a = cluster.node("a", FLOWS)
    a.registry.max_result_cache_time = 10
    long_kept = place(cluster, a, req(result_cache_time=3600))
    short_kept = place(cluster, a, req(called="u2@sipx.test", result_cache_time=0))
    for call in (long_kept, short_kept):
        cluster.run(a.store.hangup(call.id))
    cluster.settle()
    assert ttl_of(cluster, long_kept) == [10, 10, 10]
    assert ttl_of(cluster, short_kept) == [1, 1, 1]


# --- the keys, as documented in sipxcc/calls/redis_store.py -----------------------------


def test_the_keys_are_those_documented_and_the_limits_leave_nothing_behind(cluster):
    """Nodes of two versions share these keys during a rolling upgrade, and an operator
    reads them with redis-cli: their names and contents are part of the contract."""
    a = cluster.node("a", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    r = cluster.redis.execute_command
    key = " ".join(call.key)
    (slot,) = r("SMEMBERS", "sipxcc:active")
    assert r("SMEMBERS", "sipxcc:active:user1@sipx.test") == [slot]
    assert r("GET", f"sipxcc:busy:{key}") == slot + b" REFER"
    assert r("HKEYS", "sipxcc:slots:a") == [slot]
    assert r("GET", f"sipxcc:key:{key}") == call.id.encode()
    assert r("HGET", f"sipxcc:call:{call.id}", "owner") == b"user1@sipx.test"
    assert r("LLEN", f"sipxcc:lines:{call.id}") == 1
    for index in ("sipxcc:recent", "sipxcc:recent:user1@sipx.test"):
        assert float(r("ZSCORE", index, call.id)) == call.created
    cluster.run(a.store.hangup(call.id))
    cluster.settle()
    assert r("SCARD", "sipxcc:active") == r("SCARD", "sipxcc:active:user1@sipx.test") == 0
    assert r("EXISTS", f"sipxcc:busy:{key}") == 0
    assert r("HLEN", "sipxcc:slots:a") == 0
    assert r("GET", f"sipxcc:key:{key}") == call.id.encode()  # until it expires
