"""CPU per ringing second of the ringback tone (sipxcc.media.ringback), on the real reactor.

For each count N (default 0, 1, 10, 100), opens N streams of one pool on loopback UDP
ports, plays them to a socket that never reads (the kernel drops what overflows, as a
phone's socket takes it), lets them run for --seconds, and reads this process's CPU time
(user + system) over that time. Prints, per N: packets sent, CPU-ms per wall second, and
CPU-ms per stream per ringing second above the idle reactor (N = 0).

    .venv/bin/python -m bench.ringback_cpu --seconds 10 --counts 0,1,10,100
"""

from __future__ import annotations

import argparse
import socket
import time
from typing import Any

from twisted.internet import reactor

from sipxcc.media.ringback import RingbackStreams


def cpu() -> float:
    return time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--counts", default="0,1,10,100")
    parser.add_argument("--ports", default="26000-26999")
    args = parser.parse_args()
    counts = [int(n) for n in args.counts.split(",")]
    low, high = (int(p) for p in args.ports.split("-"))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink_port = sink.getsockname()[1]
    pool = RingbackStreams(reactor, reactor, "127.0.0.1", (low, high), max(counts))
    rows: list[tuple[int, int, float]] = []

    def step(index: int) -> None:
        if index == len(counts):
            reactor.stop()
            return
        n = counts[index]
        streams = [pool.open(args.seconds + 10) for _ in range(n)]
        assert all(s is not None for s in streams), "not enough free ports in --ports"
        for stream in streams:
            stream.play("127.0.0.1", sink_port, 0)
        started = (cpu(), time.monotonic())

        def done() -> None:
            used, wall = cpu() - started[0], time.monotonic() - started[1]
            sent = sum(s.sent for s in streams)
            for stream in streams:
                stream.close()
            rows.append((n, sent, used * 1000 / wall))
            reactor.callLater(0.5, step, index + 1)

        reactor.callLater(args.seconds, done)

    call: Any = reactor.callWhenRunning
    call(step, 0)
    reactor.run()
    sink.close()
    idle = next((ms for n, _, ms in rows if n == 0), 0.0)
    print(f"{'streams':>8} {'packets':>9} {'CPU-ms/s':>9} {'CPU-ms per stream-second':>25}")
    for n, sent, ms in rows:
        per = f"{(ms - idle) / n:.3f}" if n else "-"
        print(f"{n:>8} {sent:>9} {ms:>9.2f} {per:>25}")


if __name__ == "__main__":
    main()
