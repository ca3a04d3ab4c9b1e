"""
What idle SIP TCP connections that each hold an unfinished message head cost the daemon.

Starts the daemon (``tests/integration/daemon.py``) on loopback, opens ``--connections``
TCP connections to its SIP port from ``--sources`` addresses in 127.0.1.0/24 (so the
per-address cap does not decide it), sends ``--head`` bytes of a head that never ends on
each, and prints the RSS growth, how many connections the daemon still holds open after
``--wait`` seconds, and after the message deadline. Not a test: it asserts nothing.

    .venv/bin/python -m bench.sip_idle_connections --connections 400
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time

from tests.integration import hostile
from tests.integration.daemon import Daemon, write_config


def open_connections(port: int, count: int, sources: int, head: int) -> list[socket.socket]:
    start = hostile.sip_request("OPTIONS", port, transport="TCP").split(b"Content-Length")[0]
    unfinished = start + b"X-Pad: " + b"p" * max(0, head - len(start) - 7)
    held = []
    for n in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5,
                                            source_address=(f"127.0.1.{n % sources + 1}", 0))
        except OSError:
            continue
        sock.setblocking(False)
        try:
            sock.send(unfinished)
        except OSError:
            pass
        held.append(sock)
    return held


def still_open(held: list[socket.socket]) -> int:
    count = 0
    for sock in held:
        try:
            if sock.recv(1) == b"":
                continue
        except BlockingIOError:
            pass
        except OSError:
            continue
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--sources", type=int, default=10)
    parser.add_argument("--head", type=int, default=65000, help="bytes of unfinished head")
    parser.add_argument("--wait", type=float, default=3.0)
    parser.add_argument("--after-deadline", type=float, default=14.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            Daemon(write_config(tmp, daemon_log_level="warn")) as daemon:
        pid = daemon.process.pid
        time.sleep(1.0)  # let start-up settle before the baseline
        baseline = hostile.rss_kib(pid)
        held = open_connections(daemon.sip_port, args.connections, args.sources, args.head)
        time.sleep(args.wait)
        loaded = hostile.rss_kib(pid)
        print(f"{len(held)} connections, {args.head} bytes of unfinished head each")
        print(f"RSS baseline {baseline} KiB, after {args.wait:.0f} s {loaded} KiB "
              f"(+{loaded - baseline} KiB); open: {still_open(held)}; "
              f"HTTPS /health: {daemon.health()}")
        time.sleep(args.after_deadline)
        later = hostile.rss_kib(pid)
        print(f"after {args.wait + args.after_deadline:.0f} s: RSS {later} KiB "
              f"(+{later - baseline} KiB); open: {still_open(held)}")
        for sock in held:
            sock.close()


if __name__ == "__main__":
    main()
