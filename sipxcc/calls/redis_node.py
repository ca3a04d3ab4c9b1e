"""
This daemon as one node of several sharing their calls through Redis (C{registry.backend
= redis}): the command connection, the L{RedisCallStore}, the L{CommandRouter} and its
subscription, started and stopped with the daemon.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer

from sipxcc.calls.redis_client import RedisConnection, RedisSubscription
from sipxcc.calls.redis_commands import CommandRouter
from sipxcc.calls.redis_store import MAX_BUFFERED_WRITES, WRITE_WINDOW, RedisCallStore
from sipxcc.calls.registry import CallRegistry
from sipxcc.logs import logger
from sipxcc.privatefile import SecretError, read_private_line

log = logger(__name__)


def read_password_file(path: str) -> str:
    """The Redis password: the first line of C{path}, which only its owner may read."""
    data = read_private_line(path, "registry.redis_password_file")
    try:
        password = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"registry.redis_password_file: {path} is not UTF-8") from None
    if not password:
        raise SecretError(f"registry.redis_password_file: {path} is empty")
    return password


class RedisNode(Service):
    """
    Connects to Redis when the daemon starts; once connected, marks this node's calls of
    an earlier run ended and starts its heartbeats (L{RedisCallStore.start}). When the
    daemon stops it waits (at most C{shutdown_timeout} s) for the calls that the call
    control hangs up to end, writes what is queued, then disconnects; the Deferred
    L{stopService} returns fires once the command connection and the subscription are
    closed (each within C{redis_client.STOP_TIMEOUT} s, aborted after it).
    """

    def __init__(self, clock: Any, registry: CallRegistry, *, url: str, password: str | None,
                 node_id: str, max_calls: int, max_calls_per_agent: int,
                 max_buffered_writes: int = MAX_BUFFERED_WRITES,
                 write_window: float = WRITE_WINDOW,
                 shutdown_timeout: float = 5.0, ca_file: str | None = None):
        self.registry = registry
        self.shutdown_timeout = shutdown_timeout
        self.connection = RedisConnection(clock, url, password, ca_file=ca_file)
        self.store = RedisCallStore(clock, registry, self.connection, node_id,
                                    max_calls=max_calls,
                                    max_calls_per_agent=max_calls_per_agent,
                                    max_buffered=max_buffered_writes,
                                    write_window=write_window)
        self.router = CommandRouter(clock, self.connection, registry, node_id)
        self.store.router = self.router
        self.subscription = RedisSubscription(clock, url, self.router.channels,
                                              self.router.on_message, password,
                                              ca_file=ca_file)
        # until the restart sweep ran, refuse to place calls (see RedisCallStore.ready)
        self.store.ready = False

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        log.info("call registry on Redis at {host}:{port} as node {node}",
                 host=self.connection.host, port=self.connection.port,
                 node=self.store.node_id)
        self.connection.start()
        self.subscription.start()
        self.connection.when_up().addCallback(self._connected)

    def _connected(self, _: object) -> None:
        if self.running:
            self.store.start()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]  # Twisted's, untyped
        d = self.registry.idle(self.shutdown_timeout)
        d.addCallback(lambda _: self.store.flush())
        d.addBoth(self._disconnect)
        return d

    def _disconnect(self, _: object) -> defer.Deferred[None]:
        self.store.close()
        stopped = defer.gatherResults([self.subscription.stop(), self.connection.stop()])
        return stopped.addCallback(lambda _: None)
