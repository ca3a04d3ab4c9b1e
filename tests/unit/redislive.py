"""
A real redis-server for unit tests that run without the reactor (mutmut runs tests/unit
with pytest-twisted off): the Redis call store's commands and Lua scripts run for real,
synchronously, on a L{twisted.internet.task.Clock}.

 - L{RedisProcess}: one redis-server per test session, listening only on a Unix socket in
   a temporary directory (no port to race for, so parallel test runs cannot collide),
   nothing saved;
 - L{Cable}: the connections of a L{RedisConnection} (its L{RespProtocol}s) on blocking
   Unix sockets, each write answered before it returns; it can be "unplugged"
   (connecting is refused, the next write loses the connection), to show what a node
   does while Redis is unreachable;
 - L{LiveNode}: one node as sipxcc/calls/redis_node.py assembles it (the real
   L{RedisConnection}, L{RedisCallStore} and L{CommandRouter}), its connection through a
   L{Cable}, and its command channels subscribed for real by a test-side redis-py client
   (read only when the test says: L{Cluster.run}), the messages handed to the router (the
   subscription's own code is tested in test_redis_connection_subscriber.py);
 - L{Cluster}: the nodes on one Redis and one clock, and L{Cluster.run}, which turns the
   clock and delivers published messages until a Deferred has fired.
"""

from __future__ import annotations

import gc
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from twisted.internet import defer
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
)
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from bench.harness import stop as stop_process
from sipxcc.calls.redis_client import KEEPALIVE, MAX_DELAY, RedisConnection
from sipxcc.calls.redis_commands import CommandRouter
from sipxcc.calls.redis_protocol import RespProtocol
from sipxcc.calls.redis_store import WRITE_WINDOW, RedisCallStore
from sipxcc.calls.registry import CallRegistry

#: what the connection logs as its address (the client is given, on a Unix socket)
URL = "redis://127.0.0.1:6379/0"


class RedisProcess:
    """redis-server on a Unix socket in a temporary directory; no persistence."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="sipxcc-redis-"))
        self.socket = str(self.directory / "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
        if binary is None:  # an error, not a skip: the store's unit tests need it
            raise RuntimeError("redis-server is not installed (make deps)")
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--dir", str(self.directory), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.01)

    def ping(self) -> bool:
        """redis-server answers on its socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                sock.connect(self.socket)
                sock.sendall(b"PING\r\n")
                return sock.recv(7) == b"+PONG\r\n"
        except OSError:
            return False

    def client(self) -> Any:
        """A blocking client (the test's side) whose replies are Redis' own (bytes, int,
        list, None), as sipxcc.calls.redis_client's connections get them."""
        client = redis.Redis(unix_socket_path=self.socket, socket_timeout=5)
        client.response_callbacks = {}
        return client

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


def disconnect(client: Any) -> None:
    """Close every socket of a redis-py client (close() alone keeps its pool's)."""
    client.connection_pool.disconnect()


class Cable:
    """
    Connections of a L{RedisConnection} to the test's redis-server, made by L{connect}
    (its C{connect=}): each joins a L{RespProtocol} to a blocking Unix socket, so what
    is written has been answered when the write returns (the Deferred of
    L{RespProtocol.send} has fired). Unplugged (C{plugged} False), connecting is refused
    and the next write loses its connection; C{pipelines_left} writes are still let
    through before the cable is pulled (None: no limit). C{writes} counts every write.
    """

    def __init__(self, path: str, clock: Clock):
        self.path, self.clock = path, clock
        self.plugged = True
        self.pipelines_left: int | None = None
        self.writes = 0

    def connect(self, on_lost: Any) -> defer.Deferred[RespProtocol]:
        if not self.plugged:
            return defer.fail(ConnectionRefusedError("unplugged by the test"))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)  # a reply that never comes fails the test, not hangs it
        sock.connect(self.path)
        protocol = RespProtocol(self.clock, on_lost)
        protocol.makeConnection(_Socket(self, sock, protocol))
        return defer.succeed(protocol)


class _Socket:
    """The transport of one L{Cable} connection (a blocking Unix socket)."""

    def __init__(self, cable: Cable, sock: socket.socket, protocol: RespProtocol):
        self.cable, self.sock, self.protocol = cable, sock, protocol
        self.open = True

    def write(self, data: bytes) -> None:
        if not self.open:
            return
        cable = self.cable
        cable.writes += 1
        if cable.pipelines_left is not None:
            if cable.pipelines_left == 0:
                cable.plugged, cable.pipelines_left = False, None
            else:
                cable.pipelines_left -= 1
        if not cable.plugged:
            self._lost(ConnectionLost("unplugged by the test"))
            return
        self.sock.sendall(data)
        while self.open and self.protocol.oldest is not None:
            chunk = self.sock.recv(65536)
            if not chunk:
                self._lost(ConnectionDone("redis-server closed the connection"))
                return
            self.protocol.dataReceived(chunk)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.open:
            self._lost(ConnectionDone())

    def abortConnection(self) -> None:
        if self.open:
            self._lost(ConnectionAborted())

    def _lost(self, reason: Exception) -> None:
        self.open = False
        self.sock.close()
        self.protocol.connectionLost(Failure(reason))

    def getPeer(self) -> Any:
        return None

    def getHost(self) -> Any:
        return None


class LiveNode:
    """One node: its registry, its connection (through a L{Cable}), its store and its
    command router, subscribed to the router's channels on a connection of its own."""

    def __init__(self, server: RedisProcess, clock: Clock, name: str, flows: dict[str, Any],
                 *, max_calls: int, per_agent: int, command_timeout: float,
                 routed: bool = True, **store_options: Any):
        self.name = name
        self.registry = CallRegistry(clock, dict(flows), max_calls, per_agent)
        self.cable = Cable(server.socket, clock)
        self.connection = RedisConnection(clock, URL, connect=self.cable.connect)
        self.store = RedisCallStore(clock, self.registry, self.connection, name,
                                    max_calls=max_calls, max_calls_per_agent=per_agent,
                                    **store_options)
        self.router = CommandRouter(clock, self.connection, self.registry, name,
                                    timeout=command_timeout)
        if routed:
            self.store.router = self.router
        self.subscriber = server.client()
        self.pubsub: Any = None
        #: read this node's commands but never run or answer them (a stalled owner)
        self.stalled = False
        self.unanswered: list[bytes] = []  # what a stalled node read
        self.listen()
        self.connection.start()  # connects on the spot (PING)

    def listen(self) -> None:
        """Subscribe to this node's command and reply channels (confirmed by Redis)."""
        self.pubsub = self.subscriber.pubsub()
        self.pubsub.subscribe(*self.router.channels)
        confirmed = 0
        deadline = time.monotonic() + 5
        while confirmed < len(self.router.channels):
            message = self.pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "subscribe":
                confirmed += 1
            assert time.monotonic() < deadline, "the subscription was never confirmed"

    def deaf(self) -> None:
        """Stop listening: what another node publishes for this one reaches nobody."""
        self.pubsub.close()
        self.pubsub = None

    def deliver(self, timeout: float = 0.0) -> int:
        """Hand the messages waiting on this node's channels to its router; wait up to
        C{timeout} seconds for the first."""
        if self.pubsub is None:
            return 0
        count = 0
        while True:
            message = self.pubsub.get_message(timeout=timeout if not count else 0.0)
            if message is None:
                return count
            if message["type"] == "message":
                if self.stalled:
                    self.unanswered.append(message["data"])
                else:
                    self.router.on_message(message["channel"], message["data"])
                count += 1

    def close(self) -> None:
        self.store.close()
        self.registry.clear()
        self.connection.stop()
        if self.pubsub is not None:
            self.pubsub.close()
        disconnect(self.subscriber)


class Cluster:
    """Nodes sharing one Redis and one clock. L{run} drives a Deferred to its result."""

    def __init__(self, server: RedisProcess):
        self.server = server
        self.clock = Clock()
        self.clock.advance(1_700_000_000.25)  # an epoch time, as the daemon's clock gives
        self.nodes: list[LiveNode] = []
        self.redis = server.client()  # what an operator's redis-cli sees
        self.redis.execute_command("FLUSHALL")
        self.logged: list[dict[str, Any]] = []  # every log event while the nodes run
        gc.collect()  # what earlier tests left (their unhandled errors) is logged now
        globalLogPublisher.addObserver(self.logged.append)

    def node(self, name: str, flows: dict[str, Any], *, max_calls: int = 4,
             per_agent: int = 2, command_timeout: float = 2.0, routed: bool = True,
             **store_options: Any) -> LiveNode:
        """A node; without C{routed} its store is given no command route (its router
        still answers what other nodes send it)."""
        node = LiveNode(self.server, self.clock, name, flows, max_calls=max_calls,
                        per_agent=per_agent, command_timeout=command_timeout,
                        routed=routed, **store_options)
        self.nodes.append(node)
        return node

    def warnings(self) -> list[str]:
        """The warnings logged so far, as the operator reads them."""
        return [formatEvent(event) for event in self.logged
                if event.get("log_level") == LogLevel.warn]

    def failures(self) -> list[str]:
        """Unexpected errors logged so far (a handler that raised, an unhandled error in
        a Deferred): each a traceback in the operator's log."""
        return [formatEvent(event) for event in self.logged if "log_failure" in event]

    def turn(self) -> int:
        """Run what is due on the clock now and deliver what was published; how many
        messages were delivered."""
        self.clock.advance(0)
        return sum(node.deliver() for node in self.nodes)

    def run(self, d: defer.Deferred[Any]) -> Any:
        """Turn the clock and deliver messages until C{d} fired; its result, or the
        exception it failed with raised. The clock moves only to end a node's write
        window (a call placed while writes wait goes with them). A message published to a
        listening node may reach its socket just after the publisher's reply: waited for
        (within a deadline) only when nothing else is left to do."""
        results: list[Any] = []
        d.addBoth(results.append)
        self.until(lambda: bool(results), "the Deferred never fired")
        result = results[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def until(self, done: Any, what: str) -> None:
        """Turn the clock and deliver messages until C{done()}; the clock moves only to
        the end of a node's write window."""
        deadline = time.monotonic() + 2
        while not done():
            if not self.turn() and not done() and not self.end_window():
                waited = sum(node.deliver(timeout=0.02) for node in self.nodes)
                assert waited or time.monotonic() < deadline, what

    def end_window(self) -> bool:
        """Move the clock to the end of an open write window (the first thing due
        within L{WRITE_WINDOW}, give or take the float's rounding at epoch times), if
        any."""
        now = self.clock.seconds()
        due = [call.getTime() for call in self.clock.getDelayedCalls()
               if call.getTime() - now <= WRITE_WINDOW * 1.001]
        if not due:
            return False
        self.clock.advance(max(0.0, min(due) - now))
        return True

    def settle(self, seconds: float = 1.0) -> None:
        """Let C{seconds} pass (writes batched over a short window go out) and deliver
        what was published."""
        self.clock.advance(seconds)
        while self.turn():
            pass

    def unplug(self, node: LiveNode) -> None:
        """Redis becomes unreachable for C{node}; returns once the node noticed (its
        idle connection's PING failed: at most two keep-alive periods on the clock)."""
        node.cable.plugged = False
        for _ in range(3):
            if not node.connection.up:
                return
            self.clock.advance(KEEPALIVE)
        raise AssertionError("the lost connection went unnoticed")

    def plug(self, node: LiveNode) -> None:
        """Redis is reachable again; returns once C{node} reconnected (its back-off
        delay, at most L{MAX_DELAY}, on the clock) and wrote what waited."""
        node.cable.plugged = True
        waited = 0.0
        while not node.connection.up:
            assert waited <= MAX_DELAY, "never reconnected"
            self.clock.advance(0.1)
            waited += 0.1
        while self.turn():
            pass

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        disconnect(self.redis)
        gc.collect()  # an unhandled error in a Deferred is logged when it is collected
        globalLogPublisher.removeObserver(self.logged.append)
