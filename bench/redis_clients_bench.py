"""
CPU per call of Redis client libraries under the call registry: the same workload as
bench/registry_bench.py (a REFER click-to-call's share: place, six status lines, end;
waves of C{--concurrency} calls), the same commands, each client behind the few methods
L{sipxcc.calls.redis_store.RedisCallStore} uses (C{execute}, C{pipeline}, C{up}).
The clients run in turns, C{--rounds} times over, against one redis-server whose CPU is
counted with the process's (every thread's).

    python -m bench.redis_clients_bench --calls 3000 --rounds 3 [--clients a,b] [--out x.md]

The txredisapi clients need `pip install txredisapi` (it is not a dependency of sipxcc).
The hand-written client sipxcc used before (resp.py) was measured by this script at
commit d0627d6 (bench/results/20261203-redis-clients.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from bench.harness import publish, run_on_reactor
from bench.registry_bench import _proc_cpu_ms, _self_cpu_ms, registry_for, run
from sipxcc.calls.redis_store import RedisCallStore
from tests.integration.redisserver import RedisServer


def _all(ds: list[defer.Deferred[Any]]) -> defer.Deferred[list[Any]]:
    """One Deferred for a pipeline's replies, as the store expects (the first error wins)."""
    return defer.gatherResults(ds, consumeErrors=True).addErrback(
        lambda f: f.value.subFailure)


class TxRedisApi:
    """txredisapi's lazy connection: each command through its connection handler
    (written at once; the transport sends a turn's writes together)."""

    name = "txredisapi 1.6.0"

    def __init__(self, url: str):
        import txredisapi
        parts = urlsplit(url)
        self.handler = txredisapi.lazyConnection(parts.hostname, parts.port, dbid=0,
                                                 charset=None, convertNumbers=False)
        self.up, self.on_state = True, None

    def when_up(self) -> defer.Deferred[Any]:
        return self.handler._connected

    def execute(self, *args: Any) -> defer.Deferred[Any]:
        return self.handler.execute_command(*args)

    def pipeline(self, commands: list[tuple[Any, ...]]) -> defer.Deferred[list[Any]]:
        return _all([self.handler.execute_command(*c) for c in commands])

    def stop(self) -> None:
        self.handler.disconnect()


class TxRedisApiProtocol(TxRedisApi):
    """txredisapi's protocol object itself, past its connection handler (what an adapter
    holding the one connection would call)."""

    name = "txredisapi 1.6.0, protocol directly"

    @defer.inlineCallbacks
    def when_up(self) -> Any:
        yield self.handler._connected
        self.protocol = yield self.handler._factory.getConnection(peek=True)

    def execute(self, *args: Any) -> defer.Deferred[Any]:
        return self.protocol.execute_command(*args)

    def pipeline(self, commands: list[tuple[Any, ...]]) -> defer.Deferred[list[Any]]:
        return _all([self.protocol.execute_command(*c) for c in commands])


class RedisPy:
    """redis-py's blocking client on a twisted ThreadPool of one thread (one connection:
    the writes stay in order, as the store needs): one job per C{execute}, one pipeline
    (no MULTI) per C{pipeline}; raw replies (no response callbacks)."""

    name = "redis-py 4.3.4, thread pool"

    def __init__(self, url: str, threads: int = 1):
        import redis
        self.client = redis.Redis.from_url(url, max_connections=threads)
        self.client.response_callbacks = {}
        self.pool = ThreadPool(1, threads, "redis")
        self.pool.start()
        self.up, self.on_state = True, None

    def when_up(self) -> defer.Deferred[Any]:
        return self.execute("PING")

    def _job(self, f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return deferToThreadPool(reactor, self.pool, f, *args)

    def execute(self, *args: Any) -> defer.Deferred[Any]:
        return self._job(self.client.execute_command, *args)

    def _run_pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        p = self.client.pipeline(transaction=False)
        for c in commands:
            p.execute_command(*c)
        return p.execute(raise_on_error=False)

    def pipeline(self, commands: list[tuple[Any, ...]]) -> defer.Deferred[list[Any]]:
        ds: list[defer.Deferred[Any]] = [defer.Deferred() for _ in commands]

        def fan_out(replies: Any) -> None:
            for d, reply in zip(ds, replies, strict=True):
                if isinstance(reply, Exception):
                    d.errback(reply)
                else:
                    d.callback(reply)

        def failed(failure: Any) -> None:
            for d in ds:
                d.errback(failure)
        self._job(self._run_pipeline, commands).addCallbacks(fan_out, failed)
        return _all(ds)

    def stop(self) -> None:
        self.pool.stop()
        self.client.connection_pool.disconnect()


def _adapter(url: str) -> Any:
    from sipxcc.calls.redis_client import RedisConnection
    connection = RedisConnection(reactor, url)
    connection.name = ("sipxcc redis_client.py on the reactor (hiredis' reader, redis-py's "
                       "encoder), one write per reactor turn")
    connection.start()
    return connection


CLIENTS: dict[str, Callable[[str], Any]] = {
    "adapter": _adapter,
    "redispy": RedisPy, "txredisapi": TxRedisApi, "txredisapi-protocol": TxRedisApiProtocol,
}


@defer.inlineCallbacks
def measure(client_name: str, server: RedisServer, calls: int, concurrency: int) -> Any:
    """Daemon and redis-server CPU-ms per call for one client, after a warm-up."""
    client = CLIENTS[client_name](server.url)
    yield client.when_up()
    yield client.execute("FLUSHALL")
    registry = registry_for(calls + 200)
    store = RedisCallStore(reactor, registry, client, "bench", max_calls=calls + 210,
                           max_calls_per_agent=calls + 210)
    yield run(store, registry, 200, concurrency)  # warm-up
    before, redis_before = _self_cpu_ms(), _proc_cpu_ms(server.process.pid)
    yield run(store, registry, calls, concurrency)
    own = (_self_cpu_ms() - before) / calls
    redis = (_proc_cpu_ms(server.process.pid) - redis_before) / calls
    registry.clear()
    store.close()
    client.stop()
    return client.name, own, redis


@defer.inlineCallbacks
def main(args: argparse.Namespace) -> Any:
    names = args.clients.split(",")
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    labels: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            for _ in range(args.rounds):
                for name in names:
                    label, own, redis = yield measure(name, server, args.calls,
                                                      args.concurrency)
                    labels[name] = label
                    samples[name].append((own, redis))
                    print(f"{name}: {own:.4f} + {redis:.4f} CPU-ms/call", flush=True)
        finally:
            server.stop()
    report(args, names, labels, samples)
    reactor.stop()


def report(args: argparse.Namespace, names: list[str], labels: dict[str, str],
           samples: dict[str, list[tuple[float, float]]]) -> None:
    lines = [
        "| client | daemon CPU-ms/call | redis-server CPU-ms/call | total (median) | "
        "total (min-max) |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        own = statistics.median(s[0] for s in samples[name])
        redis = statistics.median(s[1] for s in samples[name])
        totals = [s[0] + s[1] for s in samples[name]]
        lines.append(f"| {labels[name]} | {own:.3f} | {redis:.3f} | "
                     f"{statistics.median(totals):.3f} | "
                     f"{min(totals):.3f}-{max(totals):.3f} |")
    text = "\n".join([
        f"- {platform.node()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; {args.calls} calls per run, "
        f"{args.concurrency} at once, {args.rounds} rounds (clients in turn)",
        "",
        *lines,
        "",
    ])
    publish(text, args.out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="adapter,redispy",
                        help=f"comma-separated, of: {', '.join(CLIENTS)}")
    parser.add_argument("--out")
    run_on_reactor(main, parser.parse_args())
