"""What one reactor wake-up costs on this machine, before any SIP work (issue 7).

A UDP echo server pinned to core 0 answers paced 400-byte datagrams from core 1, one
datagram per wake-up. It runs twice: a bare Python epoll loop, and a Twisted reactor with
a DatagramProtocol. CPU per datagram (utime and stime from /proc) is the floor that every
message arriving at an idle daemon pays, sipxcc and sippy alike.

    .venv/bin/python -m bench.wakeup_floor [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

from bench.harness import DAEMON_CORE, LOAD_CORE, LOOPBACK, cpu_times, wait_until
from tests.integration.daemon import free_ports

RAW = """
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.setblocking(False)
poller = select.epoll()
poller.register(s.fileno(), select.EPOLLIN)
while True:
    for _ in poller.poll(-1):
        try:
            while True:
                data, peer = s.recvfrom(65536)
                s.sendto(b"ok", peer)
        except BlockingIOError:
            pass
"""

TWISTED = """
import sys
from twisted.internet import epollreactor
epollreactor.install()
from twisted.internet import protocol, reactor
class Echo(protocol.DatagramProtocol):
    def datagramReceived(self, data, peer):
        self.transport.write(b"ok", peer)
reactor.listenUDP(int(sys.argv[2]), Echo(), interface=sys.argv[1])
reactor.run()
"""


def _listening(port: int) -> bool:
    with open("/proc/net/udp") as table:
        return any(f":{port:04X} " in line for line in table)


def measure(code: str, rate: int, seconds: float) -> tuple[float, float]:
    """(user µs, system µs) per echoed datagram."""
    port, = free_ports(1)
    server = subprocess.Popen(["taskset", "-c", DAEMON_CORE, sys.executable, "-c", code,
                               LOOPBACK, str(port)])
    try:
        wait_until(lambda: _listening(port), 10)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        count = int(rate * seconds)
        before = cpu_times(server.pid)
        start = time.monotonic()
        for n in range(count):
            due = start + n / rate
            while time.monotonic() < due:  # pacing: busy-wait on the client's own core
                pass
            client.sendto(b"x" * 400, (LOOPBACK, port))
            try:
                while True:
                    client.recv(100)
            except BlockingIOError:
                pass
        time.sleep(0.2)  # the last answers
        after = cpu_times(server.pid)
        return tuple(1e6 * (b - a) / count for a, b in zip(before, after, strict=False))
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # the client; the servers run on DAEMON_CORE
    print("| server | datagrams/s | user µs/datagram | system µs/datagram |")
    print("|---|---|---|---|")
    for name, code in (("bare epoll loop", RAW), ("Twisted epollreactor", TWISTED)):
        user, system = measure(code, args.rate, args.seconds)
        print(f"| {name} | {args.rate} | {user:.0f} | {system:.0f} |")


if __name__ == "__main__":
    main()
