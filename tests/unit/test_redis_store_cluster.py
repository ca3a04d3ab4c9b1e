"""
What the nodes sharing a Redis call store do for each other, on a real redis-server
without the reactor (tests/unit/redislive.py): a hang-up or transfer of a call owned by
another node runs on its owner and the owner's answer comes back (or OwnerTimeout on the
clock, OwnerUnavailable when nobody listens); while Redis is unreachable placing and
reading fail with RegistryUnavailable, the status lines wait in a bounded buffer and are
written in order once it is back; /health; and the sweeps that end the calls of a node
that restarted or was lost.
"""

from __future__ import annotations

import json

import pytest
from twisted.logger import formatEvent

from sipxcc.calls.call import TERMINATED
from sipxcc.calls.errors import (
    CallError,
    OwnerTimeout,
    OwnerUnavailable,
    RegistryUnavailable,
    TooManyCalls,
    TransferNotPossible,
)
from tests.unit.storeflows import FLOWS, RINGING, WithDialog, req


def place(cluster, node, request):
    return cluster.run(node.store.place(request))


def fails(cluster, d, kind):
    with pytest.raises(kind) as raised:
        cluster.run(d)
    return str(raised.value)


def health(node):
    return node.store.health()


def up(node, buffered=0, dropped=0, state="up"):
    return {"backend": "redis", "node": node.name, "state": state,
            "buffered_writes": buffered, "dropped_writes": dropped}


# --- commands for a call owned by another node ------------------------------------------


def test_delete_on_another_node_is_run_by_the_owner_and_frees_the_limits(cluster):
    a = cluster.node("a", FLOWS, max_calls=1, per_agent=1)
    b = cluster.node("b", FLOWS, max_calls=1, per_agent=1)
    call = place(cluster, a, req())
    cluster.settle()
    assert cluster.run(b.store.hangup(call.id)) is True
    assert (call.ended, call.state) == (True, "ended")  # the owner's SIP side hung up
    assert b.router.pending == {}
    cluster.settle()
    assert cluster.run(b.store.get(call.id)).ended
    place(cluster, b, req(called="user5@sipx.test"))
    assert cluster.run(b.store.hangup("no-such-call")) is False


def test_delete_of_a_call_that_ended_elsewhere_needs_no_owner(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    cluster.run(a.store.hangup(call.id))
    cluster.settle()
    a.deaf()  # a command would reach nobody now
    assert cluster.run(b.store.hangup(call.id)) is True
    assert b.router.pending == {}


def test_a_nodes_own_call_is_hung_up_and_transferred_there(cluster):
    a = cluster.node("a", FLOWS)
    a.deaf()  # a command sent instead would reach nobody
    invite = place(cluster, a, req(method="INVITE"))
    refer = place(cluster, a, req(called="user4@sipx.test"))
    assert cluster.run(a.store.transfer(invite.id, "user9@sipx.test", 20)) is True
    assert invite.flow.transferred == ("user9@sipx.test", 20)
    fails(cluster, a.store.transfer(refer.id, "user9@sipx.test"), TransferNotPossible)
    assert cluster.run(a.store.hangup(refer.id)) is True
    assert refer.ended and not invite.ended


def test_transfer_on_another_node_reaches_the_owners_flow_and_its_refusal_comes_back(
        cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    invite = place(cluster, a, req(method="INVITE"))
    cluster.settle()
    assert cluster.run(b.store.transfer(invite.id, "user4@sipx.test", 30)) is True
    assert invite.flow.transferred == ("user4@sipx.test", 30)
    assert cluster.run(b.store.transfer(invite.id, "user5@sipx.test")) is True
    assert invite.flow.transferred == ("user5@sipx.test", None)
    refer = place(cluster, a, req(called="user9@sipx.test"))
    cluster.settle()
    assert fails(cluster, b.store.transfer(refer.id, "user4@sipx.test"),
                 TransferNotPossible) == "Call not in progress in INVITE mode"
    cluster.run(a.store.hangup(invite.id))
    cluster.settle()
    fails(cluster, b.store.transfer(invite.id, "user4@sipx.test"), TransferNotPossible)
    assert cluster.run(b.store.transfer("no-such-call", "user4@sipx.test")) is False
    assert b.router.pending == {}


def test_a_call_its_owner_no_longer_runs_fails_as_owner_unavailable(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    a.registry.clear()  # the owner forgot the call, its record still says in progress
    assert fails(cluster, b.store.hangup(call.id), OwnerUnavailable) == (
        "The call is not on its owner any more")


def test_a_command_nobody_receives_fails_at_once_as_owner_unavailable(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    a.deaf()
    assert fails(cluster, b.store.hangup(call.id), OwnerUnavailable) == (
        "The node that owns the call is not running")
    fails(cluster, b.store.transfer(call.id, "user4@sipx.test"), OwnerUnavailable)
    assert b.router.pending == {} and not call.ended


def test_an_owner_that_does_not_answer_times_out_on_the_clock(cluster):
    a = cluster.node("a", FLOWS)
    b = cluster.node("b", FLOWS, command_timeout=2.0)
    call = place(cluster, a, req())
    cluster.settle()
    a.stalled = True
    got = []
    b.store.hangup(call.id).addBoth(got.append)
    cluster.until(lambda: a.unanswered or got, "the command never reached its owner")
    assert got == [] and len(a.unanswered) == 1
    cluster.clock.advance(1.99)
    assert got == [] and len(b.router.pending) == 1
    cluster.clock.advance(0.01)
    assert got[0].check(OwnerTimeout) and b.router.pending == {}
    assert str(got[0].value) == "The node that owns the call did not answer in time"
    assert not call.ended


def test_commands_waiting_for_owners_are_bounded(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    b.router.max_pending = 1
    first = place(cluster, a, req())
    second = place(cluster, a, req(called="user4@sipx.test"))
    cluster.settle()
    a.stalled = True
    got = []
    b.store.hangup(first.id).addBoth(got.append)
    cluster.until(lambda: a.unanswered or got, "the command never reached its owner")
    assert fails(cluster, b.store.hangup(second.id), OwnerTimeout) == (
        "Too many commands waiting for other nodes")
    assert len(a.unanswered) == 1  # the refused one was not sent
    cluster.clock.advance(2.0)
    assert got[0].check(OwnerTimeout) and b.router.pending == {}
    again = []  # room again: sent
    b.store.hangup(second.id).addBoth(again.append)
    cluster.until(lambda: len(a.unanswered) == 2 or again, "the command was not sent")
    assert again == []
    cluster.clock.advance(2.0)
    assert again[0].check(OwnerTimeout)


def test_a_command_redis_cannot_take_fails_at_once(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    b.cable.pipelines_left = 1  # the record is read, then Redis goes away: no PUBLISH
    fails(cluster, b.store.hangup(call.id), RegistryUnavailable)
    assert b.router.pending == {} and not call.ended


def test_an_owner_that_cannot_answer_logs_why_and_the_asker_times_out(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    a.cable.pipelines_left = 0  # the owner's next write (its answer) finds Redis gone
    got = []
    b.store.hangup(call.id).addBoth(got.append)
    cluster.until(lambda: call.ended, "the owner never ran the command")
    cluster.turn()
    assert got == []
    assert [event["log_namespace"] for event in cluster.logged
            if "unplugged by the test" in formatEvent(event)
            and event["log_namespace"].endswith("redis_commands")] == [
        "sipxcc.calls.redis_commands"]
    cluster.clock.advance(2.0)
    assert got[0].check(OwnerTimeout)


def answer_for(cluster, asker, owner, call_id, answer):
    """Have C{asker} hang up C{call_id} on the stalled C{owner}, answer it with
    C{answer} (its id added) as another version of the owner might; the result."""
    owner.stalled = True
    got = []
    asker.store.hangup(call_id).addBoth(got.append)
    cluster.until(lambda: owner.unanswered or got, "the command never reached its owner")
    request = json.loads(owner.unanswered.pop())
    cluster.redis.execute_command("PUBLISH", f"sipxcc:reply:{asker.name}",
                                  json.dumps({"id": request["id"], **answer}))
    cluster.until(lambda: got, "the answer never arrived")
    return got[0]


def test_an_answer_naming_an_error_this_node_does_not_know_is_a_call_error(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    failed = answer_for(cluster, b, a, call.id, {"error": ["NewKindOfRefusal", "no way"]})
    assert type(failed.value) is CallError and str(failed.value) == "no way"
    failed = answer_for(cluster, b, a, call.id, {"error": ["TransferNotPossible"]})
    assert type(failed.value) is TransferNotPossible and str(failed.value) == ""
    failed = answer_for(cluster, b, a, call.id, {"error": []})
    assert type(failed.value) is CallError and str(failed.value) == ""
    assert answer_for(cluster, b, a, call.id, {}) is True


def test_an_unknown_command_is_refused_by_name_and_runs_nothing(cluster):
    a = cluster.node("a", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    watcher = cluster.redis.pubsub(ignore_subscribe_messages=True)
    watcher.subscribe("sipxcc:reply:x")
    cluster.redis.execute_command("PUBLISH", "sipxcc:cmd:a", json.dumps(
        {"id": "r1", "from": "x", "op": "reboot", "call": call.id}))
    replies = []

    def answered():
        message = watcher.get_message(timeout=0.01)
        if message is not None and message["type"] == "message":
            replies.append(json.loads(message["data"]))
        return replies
    cluster.until(answered, "no answer to the unknown command")
    watcher.close()
    assert replies == [{"id": "r1", "error": ["CallError", "unknown command"]}]
    assert not call.ended


def test_without_a_command_route_another_nodes_call_cannot_be_reached(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS, routed=False)
    call = place(cluster, a, req())
    ended = place(cluster, a, req(called="user4@sipx.test"))
    cluster.run(a.store.hangup(ended.id))
    cluster.settle()
    assert b.store.router is None  # given none
    assert "no command route" in fails(cluster, b.store.hangup(call.id), RegistryUnavailable)
    fails(cluster, b.store.transfer(call.id, "user4@sipx.test"), RegistryUnavailable)
    assert cluster.run(b.store.hangup(ended.id)) is True
    assert cluster.run(b.store.hangup("no-such-call")) is False
    assert not call.ended


# --- Redis going away and coming back ---------------------------------------------------


def test_without_redis_placing_and_reading_fail_as_unavailable_and_no_call_is_placed(
        cluster):
    a = cluster.node("a", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    assert health(a) == up(a)
    a.cable.plugged = False  # not noticed yet: the first command finds out
    fails(cluster, a.store.place(req(called="user4@sipx.test")), RegistryUnavailable)
    assert health(a)["state"] == "down"
    fails(cluster, a.store.place(req(called="user5@sipx.test")), RegistryUnavailable)
    fails(cluster, a.store.get(call.id), RegistryUnavailable)
    fails(cluster, a.store.lookup(call.key), RegistryUnavailable)
    fails(cluster, a.store.calls_of(None, 10), RegistryUnavailable)
    assert a.registry.active_count == 1 and a.registry.by_id == {call.id: call}
    cluster.plug(a)
    assert health(a) == up(a)
    placed = place(cluster, a, req(called="user4@sipx.test"))
    cluster.settle()  # the flow's state goes with the next write window
    assert cluster.run(a.store.get(placed.id)).state == "ringing"


def test_status_lines_wait_for_redis_and_are_written_in_order_when_it_is_back(cluster):
    a = cluster.node("a", FLOWS, max_calls=1, per_agent=1)
    b = cluster.node("b", FLOWS, max_calls=1, per_agent=1)
    call = place(cluster, a, req(result_cache_time=60))
    cluster.settle()
    cluster.unplug(a)
    for n in range(3):
        call.record(2000 + n, "sip-1", "INVITE", f"SIP/2.0 18{n + 1} Line {n}")
    cluster.run(a.store.hangup(call.id))
    cluster.settle()
    assert health(a)["state"] == "down" and health(a)["buffered_writes"] > 0
    assert health(a)["dropped_writes"] == 0
    # the other node still reads the call as it was when Redis went away
    seen = cluster.run(b.store.get(call.id))
    assert (seen.events, seen.state, seen.ended) == ([RINGING], "ringing", False)
    cluster.plug(a)
    cluster.settle()
    assert health(a) == up(a)
    found = cluster.run(b.store.get(call.id))
    assert found.events == call.events and len(found.events) == 5
    assert (found.state, found.ended) == ("ended", True)
    assert cluster.redis.execute_command("TTL", f"sipxcc:call:{call.id}") == 60
    place(cluster, b, req(called="user4@sipx.test"))  # the limits were released


def test_beyond_the_bound_the_oldest_waiting_writes_are_dropped_and_counted(cluster):
    a = cluster.node("a", FLOWS, max_buffered=4)
    b = cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    cluster.unplug(a)
    for n in range(6):  # each line one write, and the call's state once per turn
        call.record(n, "sip-1", "INVITE", f"SIP/2.0 18{n} Line {n}")
    cluster.settle()
    assert health(a) == up(a, buffered=4, dropped=3, state="down")
    cluster.plug(a)
    cluster.settle()
    assert health(a) == up(a, dropped=3)
    found = cluster.run(b.store.get(call.id))
    assert [e.status_line for e in found.events] == [
        "SIP/2.0 180 Ringing", "SIP/2.0 183 Line 3", "SIP/2.0 184 Line 4",
        "SIP/2.0 185 Line 5"]


def test_writes_in_flight_when_the_connection_breaks_are_counted_as_dropped(cluster):
    a = cluster.node("a", FLOWS)
    call = place(cluster, a, req())
    cluster.settle()
    a.cable.plugged = False  # not noticed yet: the next write is lost with the connection
    call.record(2000, "sip-1", "INVITE", "SIP/2.0 183 Lost")
    cluster.settle()
    assert health(a) == up(a, dropped=2, state="down")  # the line and the call's state
    cluster.plug(a)
    a.cable.plugged = False
    call.record(3000, "sip-1", "INVITE", "SIP/2.0 183 Lost again")
    cluster.settle()
    assert health(a) == up(a, dropped=4, state="down")


def test_a_place_lost_with_the_connection_places_no_call(cluster):
    """The limits and the record are one command: when it is lost, neither happened."""
    a = cluster.node("a", FLOWS, max_calls=1, per_agent=1)
    b = cluster.node("b", FLOWS, max_calls=1, per_agent=1)
    a.cable.pipelines_left = 0
    fails(cluster, a.store.place(req()), RegistryUnavailable)
    assert a.registry.active_count == 0 and a.registry.by_id == {}
    cluster.plug(a)
    cluster.settle()
    place(cluster, b, req())  # no slot was taken


def test_dropped_writes_are_logged_the_first_time_then_every_thousandth(cluster):
    a = cluster.node("a", FLOWS, max_buffered=10)
    call = place(cluster, a, req())
    cluster.settle()
    cluster.unplug(a)
    for n in range(2010):  # final lines: each one written (the last replaced)
        call.record(n, "sip-1", "INVITE", "SIP/2.0 486 Busy Here")
    cluster.turn()  # 2010 writes (the state did not change), 10 kept
    assert health(a) == up(a, buffered=10, dropped=2000, state="down")
    assert [event["dropped"] for event in cluster.logged if "dropped" in event
            and event["log_namespace"] == "sipxcc.calls.redis_store"] == [1, 1000, 2000]


def test_flush_writes_what_waits_and_never_fails(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    call = place(cluster, a, req())
    call.record(2000, "sip-1", "INVITE", "SIP/2.0 183 Session Progress")
    cluster.run(a.store.flush())
    assert len(cluster.run(b.store.get(call.id)).events) == 2
    cluster.unplug(a)
    call.record(3000, "sip-1", "INVITE", "SIP/2.0 200 OK")
    assert cluster.run(a.store.flush()) is None  # at once, Redis being away
    assert health(a)["buffered_writes"] > 0


# --- health -----------------------------------------------------------------------------


def test_health_shows_a_node_starting_until_its_restart_sweep_ran(cluster):
    a = cluster.node("a", FLOWS)
    assert health(a) == up(a)
    a.store.ready = False  # as RedisNode sets it until the store started
    assert health(a) == up(a, state="starting")
    assert "starting" in fails(cluster, a.store.place(req()), RegistryUnavailable)
    assert a.registry.active_count == 0
    cluster.run(a.store.start())
    assert health(a) == up(a)
    place(cluster, a, req())


# --- node liveness ----------------------------------------------------------------------


def heartbeat(cluster, name):
    return cluster.redis.execute_command("GET", f"sipxcc:node:{name}")


def nodes(cluster):
    return set(cluster.redis.execute_command("SMEMBERS", "sipxcc:nodes"))


def test_a_started_node_beats_every_interval_and_each_heartbeat_lasts_its_ttl(cluster):
    a = cluster.node("a", FLOWS)
    start = cluster.clock.seconds()
    cluster.run(a.store.start())
    assert heartbeat(cluster, "a") == repr(start).encode()
    assert 5000 < cluster.redis.execute_command("PTTL", "sipxcc:node:a") <= 6000
    assert nodes(cluster) == {b"a"}
    cluster.redis.execute_command("DEL", "sipxcc:node:a")
    cluster.settle(1.99)
    assert heartbeat(cluster, "a") is None
    cluster.settle(0.01)
    assert heartbeat(cluster, "a") == repr(start + 2.0).encode()
    a.store.close()  # no more heartbeats
    cluster.redis.execute_command("DEL", "sipxcc:node:a")
    cluster.settle(10)
    assert heartbeat(cluster, "a") is None


def test_a_restarted_node_ends_its_earlier_calls_and_frees_their_limits(cluster):
    a = cluster.node("a", {"INVITE": WithDialog, "REFER": FLOWS["REFER"]}, per_agent=2)
    b = cluster.node("b", FLOWS)
    running = place(cluster, a, req(method="INVITE"))
    done = place(cluster, a, req(called="user4@sipx.test", result_cache_time=30))
    cluster.run(a.store.hangup(done.id))
    cluster.settle()
    a.close()  # killed: no hang-up, no more writes
    again = cluster.node("a", FLOWS, per_agent=2)
    assert health(again)["state"] == "up"
    again.store.ready = False
    cluster.run(again.store.start(interval=1.0, ttl=3.0))
    found = cluster.run(b.store.get(running.id))
    assert (found.state, found.ended, found.reason) == ("ended", True, "restart")
    assert found.dialogs() == [WithDialog.DIALOG._replace(state=TERMINATED)]
    key = "sipxcc:key:" + " ".join(running.key)
    for name in (f"sipxcc:call:{running.id}", f"sipxcc:lines:{running.id}", key):
        assert cluster.redis.execute_command("TTL", name) == 180
    earlier = cluster.run(b.store.get(done.id))  # ended before: left as it was
    assert (earlier.state, earlier.reason) == ("ended", "")
    assert cluster.redis.execute_command("TTL", f"sipxcc:call:{done.id}") == 30
    assert nodes(cluster) == {b"a"}  # a restarted node is still one of the nodes
    assert health(again) == up(again)
    place(cluster, again, req(method="INVITE"))  # the key and the agent's slots are free
    place(cluster, b, req(called="user5@sipx.test"))


def test_a_lost_nodes_calls_end_once_every_live_node_had_the_time_to_beat(cluster):
    a = cluster.node("a", FLOWS, max_calls=1, per_agent=1)
    b = cluster.node("b", FLOWS, max_calls=1, per_agent=1)
    # both connected now: no node is taken for lost before the heartbeat's lifetime
    # (6 s, the default until start) and the longest reconnect delay (5 s) passed
    start = cluster.clock.seconds()
    cluster.run(a.store.start(interval=1.0, ttl=3.0))
    cluster.run(b.store.start(interval=1.0, ttl=3.0))
    call = place(cluster, a, req())
    cluster.settle()
    assert cluster.run(b.store.sweep_lost()) == 0  # a beats: alive
    fails(cluster, b.store.place(req(called="user9@sipx.test")), TooManyCalls)
    a.close()  # killed
    cluster.redis.execute_command("DEL", "sipxcc:node:a")  # its heartbeat expired
    while cluster.clock.seconds() < start + 10:
        cluster.settle(1)
    assert not cluster.run(b.store.get(call.id)).ended
    cluster.settle(1)  # start + 11
    found = cluster.run(b.store.get(call.id))
    assert (found.state, found.ended, found.reason) == ("ended", True, "node lost")
    assert nodes(cluster) == {b"b"}
    assert cluster.run(b.store.sweep_lost()) == 0
    place(cluster, b, req(called="user9@sipx.test"))


def test_sweeping_a_lost_node_counts_the_calls_it_ended(cluster):
    a, b = cluster.node("a", FLOWS), cluster.node("b", FLOWS)
    cluster.run(a.store.start())
    cluster.run(b.store.start())
    for called in ("user2@sipx.test", "user4@sipx.test"):
        place(cluster, a, req(called=called))
    cluster.settle()
    a.close()
    cluster.redis.execute_command("DEL", "sipxcc:node:a")
    assert cluster.run(b.store.sweep_lost()) == 2
    assert cluster.run(b.store.sweep_lost()) == 0
    assert [c.reason for c in cluster.run(b.store.calls_of(None, 10))] == [
        "node lost", "node lost"]


def test_a_node_that_could_not_reach_redis_at_start_tries_again(cluster):
    a = cluster.node("a", FLOWS)
    start = cluster.clock.seconds()
    a.cable.plugged = False
    cluster.run(a.store.start(interval=2.0, ttl=3.0))  # the sweep fails: retried
    assert health(a)["state"] == "down" and not a.store.ready
    cluster.plug(a)
    assert health(a)["state"] == "starting" and heartbeat(cluster, "a") is None
    cluster.settle(start + 1.99 - cluster.clock.seconds())
    assert not a.store.ready
    cluster.settle(0.01)
    assert a.store.ready and health(a) == up(a)
    assert heartbeat(cluster, "a") == repr(start + 2.0).encode()
    assert 2000 < cluster.redis.execute_command("PTTL", "sipxcc:node:a") <= 3000
    cluster.settle(2.0)
    assert heartbeat(cluster, "a") == repr(start + 4.0).encode()


def test_a_heartbeat_redis_refuses_is_logged_and_the_node_keeps_beating(cluster):
    a = cluster.node("a", FLOWS)
    start = cluster.clock.seconds()
    cluster.run(a.store.start(interval=10.0, ttl=30.0))
    cluster.redis.execute_command("SET", "sipxcc:nodes", "not a set")  # SADD: WRONGTYPE

    def refused():
        return [w for w in cluster.warnings() if "WRONGTYPE" in w]
    cluster.unplug(a)
    cluster.plug(a)  # the heartbeat at once, on reconnecting
    assert len(refused()) == 1
    assert heartbeat(cluster, "a") == repr(cluster.clock.seconds()).encode()
    cluster.settle(start + 10 - cluster.clock.seconds())  # the next beat
    assert len(refused()) == 2
    assert heartbeat(cluster, "a") == repr(start + 10).encode()


def test_a_node_back_on_redis_beats_at_once(cluster):
    a = cluster.node("a", FLOWS)
    cluster.run(a.store.start(interval=10.0, ttl=30.0))
    cluster.unplug(a)
    cluster.redis.execute_command("DEL", "sipxcc:node:a")  # expired while Redis was away
    cluster.plug(a)
    assert heartbeat(cluster, "a") == repr(cluster.clock.seconds()).encode()
    assert 29000 < cluster.redis.execute_command("PTTL", "sipxcc:node:a") <= 30000
