"""
A bounded soak of the daemon: REFER click-to-calls at a steady rate for a fixed time.

Kamailio as the sipX proxy and a looping sipp phone answering as user1 (from
tests/integration/peers.py), the real daemon (tests/integration/daemon.py) with a short
result cache time so the registry reaches its steady state early; every call is a POST
/callcontroller/user1/<unique number> from the trusted loopback address. Every --every
seconds it prints the daemon's RSS (from /proc/PID/status) and the registry's size and
states (GET /calls?limit=500 as JSON), then a verdict; it stops by itself.

    .venv/bin/python bench/soak.py                       # 10 minutes at 2 calls/s
    .venv/bin/python bench/soak.py --minutes 2 --rate 5 | tee bench/results/soak-$(date +%F).txt
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from tests.integration.daemon import Daemon, free_ports, write_config  # noqa: E402
from tests.integration.peers import Kamailio, SippPhone, demo_aliases, demo_ha1s  # noqa: E402

# after the first two cache times the registry is full; RSS may not grow much beyond that
ALLOWED_GROWTH_KIB = 20_000


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


class Client:
    """HTTPS requests to the daemon from the trusted loopback address."""

    def __init__(self, daemon: Daemon):
        self.port = daemon.config.http.https
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE

    def request(self, method: str, path: str, accept: str = "*/*") -> tuple[int, bytes]:
        """(status, body); status 0 when the daemon does not answer within 5 s."""
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5,
                                                 context=self.context)
        try:
            connection.request(method, path, headers={"Accept": accept})
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            connection.close()

    def registry(self) -> collections.Counter:
        """How many calls the registry keeps, by state."""
        status, body = self.request("GET", "/calls?limit=500", "application/json")
        if status != 200:
            return collections.Counter({f"HTTP {status}": 1})
        return collections.Counter(call["state"] for call in json.loads(body)["calls"])


def soak(minutes: float, rate: float, cache_time: int, every: float, work: Path) -> int:
    sip_port, proxy_port, phone_port = free_ports(3)
    proxy = Kamailio(work / "kamailio", proxy_port, users=demo_ha1s(), aliases=demo_aliases(),
                     locations={"user1": f"sip:user1@127.0.0.1:{phone_port}"},
                     controller=f"127.0.0.1:{sip_port}")
    phone = SippPhone("refer_transferee", phone_port, work / "sipp", calls=None)
    config = write_config(work, sip_port=sip_port, sip_proxy=proxy.route_uri,
                          calls_max_calls_per_agent=1000, daemon_log_level="info")
    daemon = Daemon(config)
    with proxy, phone, daemon:
        return _run(daemon, Client(daemon), minutes, rate, cache_time, every)


def _run(daemon: Daemon, client: Client, minutes: float, rate: float, cache_time: int,
         every: float) -> int:
    pid = daemon.process.pid
    print(f"soak: {minutes:g} min at {rate:g} REFER calls/s, resultCacheTime={cache_time} s, "
          f"daemon pid {pid}, Python {sys.version.split()[0]}")
    print(f"{'t/s':>6} {'placed':>7} {'answers':<24} {'RSS/KiB':>8} {'HWM/KiB':>8} "
          f"{'kept':>5}  registry states")
    answers: collections.Counter = collections.Counter()
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    end = start + minutes * 60
    next_call, next_report, placed = start, start, 0
    while True:
        now = time.monotonic()
        if now >= next_report:
            rss, hwm = memory_kib(pid)
            states = client.registry()
            samples.append((now - start, rss))
            shown = " ".join(f"{code}:{count}" for code, count in sorted(answers.items()))
            print(f"{now - start:6.0f} {placed:7d} {shown:<24} {rss:8d} {hwm:8d} "
                  f"{sum(states.values()):5d}  "
                  + " ".join(f"{state}={count}" for state, count in sorted(states.items())),
                  flush=True)
            next_report += every
            if now >= end:
                break
        if now >= next_call and now < end:
            status, _ = client.request("POST", f"/callcontroller/user1/9{placed:07d}"
                                       f"?resultCacheTime={cache_time}")
            answers[status] += 1
            placed += 1
            next_call += 1 / rate
        time.sleep(max(0.0, min(next_call if now < end else end, next_report)
                       - time.monotonic()))
    return _verdict(daemon, answers, placed, samples, cache_time)


def _verdict(daemon: Daemon, answers, placed: int, samples, cache_time: int) -> int:
    steady = [rss for t, rss in samples if t >= 2 * cache_time] or [samples[-1][1]]
    growth = steady[-1] - steady[0]
    refused = placed - answers[200]
    alive = daemon.process.poll() is None and daemon.health() == 200
    tracebacks = daemon.log_text().count("Traceback")
    print(f"placed {placed}, answered 200: {answers[200]}, other: {refused}; "
          f"RSS after the first {2 * cache_time} s: {steady[0]} -> {steady[-1]} KiB "
          f"({growth:+d}); tracebacks in the log: {tracebacks}; daemon alive: {alive}")
    ok = alive and refused == 0 and growth < ALLOWED_GROWTH_KIB and tracebacks == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--rate", type=float, default=2.0, help="calls per second (default 2)")
    parser.add_argument("--cache-time", type=int, default=15,
                        help="resultCacheTime of every call in seconds (default 15)")
    parser.add_argument("--every", type=float, default=10.0,
                        help="seconds between reports (default 10)")
    parser.add_argument("--work", type=Path, help="directory for logs (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.cache_time < 1 or args.every <= 0:
        parser.error("--minutes, --rate, --every must be positive and --cache-time >= 1")
    if args.work:
        args.work = args.work.resolve()
        args.work.mkdir(parents=True, exist_ok=True)
        return soak(args.minutes, args.rate, args.cache_time, args.every, args.work)
    with tempfile.TemporaryDirectory(prefix="sipxcc-soak-") as work:
        return soak(args.minutes, args.rate, args.cache_time, args.every, Path(work))


if __name__ == "__main__":
    sys.exit(main())
