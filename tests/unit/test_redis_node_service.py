"""
RedisNode, the daemon's Redis registry service, on a real redis-server without the
reactor (tests/unit/redislive.py): started, it connects, ends its calls of an earlier run
and beats, and only then places calls, within the limits it was given; stopped, it waits
(within its shutdown timeout) for the calls being hung up to end, writes their end and
disconnects. Both its connections go through a L{Cable} (each write answered before it
returns); what its subscription hears is not read between writes (the routing is tested
in test_redis_store_cluster.py).
"""

from __future__ import annotations

import json
import time

import pytest

from sipxcc.calls.errors import OwnerTimeout, RegistryUnavailable, TooManyCalls
from sipxcc.calls.redis_node import RedisNode
from sipxcc.calls.registry import CallRegistry
from tests.unit.redislive import Cable
from tests.unit.storeflows import FLOWS, req


def service(cluster, **options):
    registry = CallRegistry(cluster.clock, dict(FLOWS), 10, 10)
    options = {"url": "redis://127.0.0.1:6379/0", "password": None, "node_id": "n1",
               "max_calls": 1, "max_calls_per_agent": 1, **options}
    node = RedisNode(cluster.clock, registry, **options)
    node.connection._connect_to = Cable(cluster.server.socket, cluster.clock).connect
    node.subscription._connect_to = Cable(cluster.server.socket, cluster.clock).connect
    return node


def test_a_started_node_ends_its_earlier_calls_beats_then_places_within_its_limits(
        cluster):
    node = service(cluster, max_buffered_writes=7)
    assert node.store.health() == {"backend": "redis", "node": "n1", "state": "down",
                                   "buffered_writes": 0, "dropped_writes": 0}
    assert node.store.max_buffered == 7
    assert node.store.router is node.router
    assert node.subscription.channels == node.router.channels == (
        "sipxcc:cmd:n1", "sipxcc:reply:n1")
    assert node.subscription.on_message == node.router.on_message
    node.startService()
    cluster.turn()
    assert node.store.health()["state"] == "up" and node.subscription.up
    assert cluster.redis.execute_command("PUBSUB", "NUMSUB", *node.router.channels) == [
        b"sipxcc:cmd:n1", 1, b"sipxcc:reply:n1", 1]
    assert cluster.redis.execute_command("EXISTS", "sipxcc:node:n1") == 1
    call = cluster.run(node.store.place(req()))
    with pytest.raises(TooManyCalls):
        cluster.run(node.store.place(req(called="user4@sipx.test")))
    assert node.registry.get(call.id) is call
    stopped = []
    node.stopService().addBoth(stopped.append)
    cluster.clock.advance(4.99)  # the call still in progress: waiting (at most 5 s)
    assert stopped == [] and node.connection.up
    node.store.hangup(call.id)
    cluster.turn()
    assert stopped == [None] and not node.connection.up and not node.subscription.up
    assert cluster.redis.execute_command("HGET", f"sipxcc:call:{call.id}", "ended") == b"1"


def test_a_node_stops_after_its_shutdown_timeout_with_calls_still_in_progress(cluster):
    node = service(cluster, shutdown_timeout=2.0)
    node.startService()
    cluster.turn()
    call = cluster.run(node.store.place(req()))
    stopped = []
    node.stopService().addBoth(stopped.append)
    cluster.clock.advance(1.99)
    assert stopped == []
    cluster.clock.advance(0.01)
    assert stopped == [None] and not node.connection.up and not call.ended
    cluster.redis.execute_command("DEL", "sipxcc:node:n1")
    cluster.clock.advance(10)
    assert cluster.redis.execute_command("EXISTS", "sipxcc:node:n1") == 0  # no more beats


def test_a_node_places_nothing_before_its_restart_sweep(cluster):
    node = service(cluster)
    node.connection.start()  # connected, the store not started yet
    assert node.store.health()["state"] == "starting"
    with pytest.raises(RegistryUnavailable):
        cluster.run(node.store.place(req()))
    node.connection.stop()


def test_the_password_and_the_ca_file_reach_the_connections(cluster):
    node = RedisNode(cluster.clock, CallRegistry(cluster.clock, dict(FLOWS)),
                     url="rediss://:from-the-url@redis.test:6380/2", password="s3cret",
                     node_id="n2", max_calls=3, max_calls_per_agent=2,
                     ca_file="/etc/ssl/ca.pem")
    connection = node.connection
    assert (connection.host, connection.port, connection.settings.database) == (
        "redis.test", 6380, 2)
    assert (connection.password, connection.ca_file) == ("s3cret", "/etc/ssl/ca.pem")
    subscription = node.subscription
    assert (subscription.host, subscription.port, subscription.settings.database,
            subscription.settings.tls) == ("redis.test", 6380, 2, True)
    assert (subscription.password, subscription.ca_file) == ("s3cret", "/etc/ssl/ca.pem")
    assert (node.store.node_id, node.router.node_id) == ("n2", "n2")
    assert (node.store.max_calls, node.store.max_calls_per_agent) == (3, 2)
    assert node.shutdown_timeout == 5.0


def next_message(pubsub):
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message is not None:
            return message
    raise AssertionError("nothing was published")


def test_a_nodes_router_hangs_up_its_calls_and_times_out_on_its_clock(cluster):
    node = service(cluster)
    node.startService()
    cluster.turn()
    call = cluster.run(node.store.place(req()))
    asker = cluster.redis.pubsub(ignore_subscribe_messages=True)
    asker.subscribe("sipxcc:reply:n2", "sipxcc:cmd:n2")  # another node, which never answers
    try:
        command = {"id": "r1", "from": "n2", "op": "hangup", "call": call.id}
        node.router.on_message(b"sipxcc:cmd:n1", json.dumps(command).encode())
        cluster.turn()
        assert (call.ended, call.state) == (True, "ended")
        reply = next_message(asker)
        assert (reply["channel"], json.loads(reply["data"])) == (b"sipxcc:reply:n2", {"id": "r1"})
        got = []
        node.router.send("n2", "hangup", "its-call").addErrback(got.append)
        cluster.turn()
        assert got == []
        cluster.clock.advance(node.router.timeout)
        assert got[0].check(OwnerTimeout)
    finally:
        asker.close()
        node.connection.stop()
        node.subscription.stop()
