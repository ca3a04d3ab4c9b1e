"""
CPU of one Redis round trip, client and redis-server together, at a steady rate: the floor
of what "the record is in Redis before the POST's 200" costs per call, apart from the
commands themselves.

The process (sipxcc's L{RedisConnection}, whichever version is on the path) and a
redis-server of its own share one core, as the daemon and redis-server do in `make bench`.
Every 1/C{--rate} s it sends one command and counts the replies; CPU of both processes is
read from /proc around C{--seconds} s of this. C{none} sends nothing (the timer alone:
subtract it), C{ping} a PING, C{eval} a two-command Lua script by its SHA.

    python -m bench.redis_roundtrip [--rate 150] [--seconds 10] [--commands none,ping,eval]

To compare two versions of the client, run it with each tree first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task

from bench.harness import DAEMON_CORE, cpu_seconds, publish, run_on_reactor
from sipxcc.calls.redis_client import RedisConnection
from tests.integration.redisserver import RedisServer

SCRIPT = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('EXPIRE', KEYS[1], 100); return 1"


def _command(kind: str, n: int) -> tuple[Any, ...] | None:
    if kind == "ping":
        return ("PING",)
    if kind == "eval":
        return ("EVAL", SCRIPT, 1, f"k{n}", "v")
    return None


@defer.inlineCallbacks
def measure(connection: RedisConnection, server_pid: int, kind: str, rate: float,
            seconds: float) -> Any:
    """CPU-ms of this process and of redis-server per round trip of C{kind}."""
    answered: list[object] = []

    def one() -> None:
        command = _command(kind, len(answered))
        if command is None:
            answered.append(None)
        else:
            connection.execute(*command).addCallback(answered.append)

    yield task.deferLater(reactor, 0.5, lambda: None)
    own, server = cpu_seconds(os.getpid()), cpu_seconds(server_pid)
    loop = task.LoopingCall(one)
    loop.start(1 / rate)
    yield task.deferLater(reactor, seconds, lambda: None)
    loop.stop()
    yield task.deferLater(reactor, 0.5, lambda: None)  # the last replies
    count = max(1, len(answered))
    return (1000 * (cpu_seconds(os.getpid()) - own) / count,
            1000 * (cpu_seconds(server_pid) - server) / count, len(answered))


@defer.inlineCallbacks
def main(args: argparse.Namespace) -> Any:
    os.sched_setaffinity(0, {int(DAEMON_CORE)})
    rows = ["| sent per tick | round trips | client CPU-ms each | redis-server CPU-ms each |",
            "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        os.sched_setaffinity(server.process.pid, {int(DAEMON_CORE)})
        connection = RedisConnection(reactor, server.url)
        connection.start()
        try:
            yield connection.when_up()
            for kind in args.commands.split(","):
                own, redis, count = yield measure(connection, server.process.pid, kind,
                                                  args.rate, args.seconds)
                rows.append(f"| {kind} | {count} | {own:.3f} | {redis:.3f} |")
                print(rows[-1], flush=True)
        finally:
            yield connection.stop()
            server.stop()
    publish(f"- {args.rate:g} ticks/s for {args.seconds:g} s, client and redis-server on "
            f"core {DAEMON_CORE}\n\n" + "\n".join(rows) + "\n", args.out)
    reactor.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=150.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--commands", default="none,ping,eval")
    parser.add_argument("--out", default=None)
    run_on_reactor(main, parser.parse_args())
