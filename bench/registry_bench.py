"""
CPU per call of the call registry's backends: the in-memory registry against the one
shared through Redis (redis-server's CPU counted too). Each call is what a REFER
click-to-call does to the registry: place, six status lines, end. Calls are placed in
waves of C{--concurrency} at once, as a loaded daemon sees them. This is the registry's
share only; the SIP and HTTP work of a call is the same for both backends and is
measured by `make bench`.

    .venv/bin/python -m bench.registry_bench --calls 5000 [--out bench/results/x.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from twisted.internet import defer, reactor, task

from bench.harness import publish, run_on_reactor
from sipxcc.calls.call import CallRequest
from sipxcc.calls.redis_client import RedisConnection
from sipxcc.calls.redis_store import RedisCallStore
from sipxcc.calls.registry import CallRegistry
from sipxcc.calls.store import MemoryCallStore
from sipxcc.users import User
from tests.integration.redisserver import RedisServer

LINES = ("SIP/2.0 100 Trying", "SIP/2.0 180 Ringing", "SIP/2.0 200 OK",
         "SIP/2.0 202 Accepted", "SIP/2.0 100 Trying", "SIP/2.0 200 OK")
AGENT = User("bench@sipx.test", "bench", (), None, None, None)


class Flow:
    def __init__(self, call, on_end):
        self.call, self.on_end = call, on_end

    def start(self):
        self.call.set_state("ringing")

    def hangup(self, why="hangup"):
        self.call.finish("ended")
        self.on_end(self.call)


def _proc_cpu_ms(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _self_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


@defer.inlineCallbacks
def run(store, registry, calls: int, concurrency: int):
    n = 0
    while n < calls:
        wave = []
        for _ in range(min(concurrency, calls - n)):
            wave.append(store.place(CallRequest(AGENT, "bench@sipx.test",
                                                f"t{n}@sipx.test", result_cache_time=5)))
            n += 1
        placed = yield defer.gatherResults(wave)
        for call in placed:
            for i, line in enumerate(LINES):
                call.record(1_700_000_000_000 + i, "sip-call-id", "INVITE", line)
        yield task.deferLater(reactor, 0, lambda: None)
        for call in placed:
            call.flow.hangup()
        yield task.deferLater(reactor, 0, lambda: None)
    if isinstance(store, RedisCallStore):
        yield store.redis.execute("PING")  # every write answered


def registry_for(calls: int) -> CallRegistry:
    return CallRegistry(reactor, {"REFER": Flow}, max_calls=calls + 10,
                        max_calls_per_agent=calls + 10)


@defer.inlineCallbacks
def main(args) -> None:
    results = {}
    registry = registry_for(args.calls)
    yield run(MemoryCallStore(registry), registry, 200, args.concurrency)  # warm-up
    registry.clear()
    registry = registry_for(args.calls)
    before = _self_cpu_ms()
    yield run(MemoryCallStore(registry), registry, args.calls, args.concurrency)
    results["memory"] = (_self_cpu_ms() - before, 0.0)
    registry.clear()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            connection = RedisConnection(reactor, server.url)
            connection.start()
            yield connection.when_up()
            registry = registry_for(args.calls)
            store = RedisCallStore(reactor, registry, connection, "bench",
                                   max_calls=args.calls + 10,
                                   max_calls_per_agent=args.calls + 10)
            yield run(store, registry, 200, args.concurrency)  # warm-up
            sent_before = yield _redis_stat(connection, "total_net_input_bytes")
            commands_before = yield _redis_stat(connection, "total_commands_processed")
            before, redis_before = _self_cpu_ms(), _proc_cpu_ms(server.process.pid)
            started = time.monotonic()
            yield run(store, registry, args.calls, args.concurrency)
            results["redis"] = (_self_cpu_ms() - before,
                                _proc_cpu_ms(server.process.pid) - redis_before)
            elapsed = time.monotonic() - started
            sent = (yield _redis_stat(connection, "total_net_input_bytes")) - sent_before
            commands = (yield _redis_stat(connection, "total_commands_processed")
                        ) - commands_before
            info = yield connection.execute("INFO", "memory")
            used = next(line for line in info.decode().splitlines()
                        if line.startswith("used_memory:"))
            keys = yield connection.execute("DBSIZE")
            registry.clear()
            store.close()
            connection.stop()
        finally:
            server.stop()
    report(args, results, elapsed, used, keys, sent, commands)
    reactor.stop()


@defer.inlineCallbacks
def _redis_stat(connection, name: str):
    info = yield connection.execute("INFO", "stats")
    line = next(line for line in info.decode().splitlines() if line.startswith(name + ":"))
    return int(line.split(":")[1])


def report(args, results, elapsed, used, keys, sent, commands) -> None:
    memory = sum(results["memory"]) / args.calls
    redis = sum(results["redis"]) / args.calls
    text = "\n".join([
        "# Registry backends: CPU per call (place, 6 status lines, end)",
        "",
        f"- {platform.node()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{args.calls} calls, {args.concurrency} at once",
        "",
        "| backend | daemon CPU-ms/call | redis-server CPU-ms/call | total CPU-ms/call |",
        "|---|---|---|---|",
        f"| memory | {results['memory'][0] / args.calls:.4f} | - | {memory:.4f} |",
        f"| redis | {results['redis'][0] / args.calls:.4f} | "
        f"{results['redis'][1] / args.calls:.4f} | {redis:.4f} |",
        "",
        f"Redis run: {args.calls / elapsed:.0f} calls/s wall; after it "
        f"{keys} keys ({args.calls + 200} finished calls, 5 s TTL), {used} bytes. "
        f"Sent to Redis per call: {sent / args.calls:.0f} bytes, "
        f"{commands / args.calls:.1f} commands processed (INFO stats: those run inside "
        "scripts and the bench's INFO included).",
        "",
    ])
    publish(text, args.out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--out")
    run_on_reactor(main, parser.parse_args())
