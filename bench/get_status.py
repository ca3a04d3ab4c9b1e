"""GET status of one call over real HTTPS with many finished calls retained (issue 7).

    .venv/bin/python -m bench.get_status                      100,000 calls (about 6 minutes)
    .venv/bin/python -m bench.get_status --calls 3000 --fill-rate 300 --get-rate 100 \\
        --get-seconds 10 --settle 5 --no-save                a short check

The goal: "GET status of one call: p99 <= 5 ms with 100,000 finished calls retained".
bench/retention.py measures the server-side part in one process; this measures it end to
end against the real daemon, started as `make bench` starts it (bench/steps.py): twistd on
core 0, log level warn, ``sip.proxy`` pointing at a sipp UAS playing the calling phone,
1,000 bench users, but ``calls.result_cache_time`` long enough that every call stays.

1. Fill: wrk + post.lua place ``--calls`` click-to-calls at ``--fill-rate``/s over 8
   keep-alive HTTPS connections (as `make bench`'s load); the run waits until the sipp
   UAS has completed them all, then ``--settle`` s for the SIP transactions' 32-s wait
   states to end. RSS before and after gives the memory per retained call (including
   the fill's transient peak); RSS sampled each second during the fill gives the
   marginal cost once that transient state is steady (from ``--steady-after`` s on).
2. Measure: wrk + get.lua send paced ``GET /callcontroller/bench<n % 1000>/target<n>``
   for filled keys n (1 .. ``--calls``: wrk's check of post.lua's request uses up 0)
   at ``--get-rate``/s for ``--get-seconds`` s over ``--connections`` keep-alive HTTPS
   connections from 127.0.0.1 (trusted, no auth): once spread over the retained calls
   (each GET a different call, so the status document is rendered, not cached), once on
   one single call (rendered once, then cached). Each response must be a 200 with status
   lines.

Results (table, machine, versions, command) go to
bench/results/<date>-get-status[-label].md unless --no-save.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    BENCH_DIR,
    DAEMON_CORE,
    LOAD_CORE,
    LOOPBACK,
    PROJECT_ROOT,
    SCENARIOS,
    cpu_seconds,
    memory_kib,
    sipp_stats,
    stop,
    versions,
    wait_until,
    write_bench_users,
)
from bench.steps import BENCH_USERS, Wrk, _sipp, _stats
from tests.integration.daemon import TWISTD, Daemon, write_config
from tests.integration.peers import free_port

WORK_DIR = PROJECT_ROOT / "build" / "bench" / "runs"
RESULTS_DIR = BENCH_DIR / "results"
WARMUP_CALLS = 50
GOAL_P99_MS = 5.0
STATUS_MARK = b"<status-line>"
# post.lua's first key is 1: wrk calls request() once to check it before the run
FIRST_KEY = 1


@dataclass
class GetRun:
    """One wrk + get.lua run and the daemon's CPU during it."""

    name: str
    rate: int
    summary: dict
    cpu_seconds: float

    @property
    def requests(self) -> int:
        return self.summary["requests"]

    def ms(self, key: str) -> float:
        return self.summary[key] / 1000

    @property
    def cpu_ms_per_get(self) -> float | None:
        return 1000 * self.cpu_seconds / self.requests if self.requests else None

    @property
    def valid(self) -> bool:
        """Every request answered 200 with status lines, no socket errors."""
        return bool(self.requests) and not (
            self.summary["non_2xx"] or self.summary["unmarked"]
            or self.summary["socket_errors"])


@dataclass
class Fill:
    """What the fill placed and what it cost in memory."""

    offered: int
    rate: int
    completed: int = 0
    retransmissions: int = 0
    post: dict | None = None
    rss_before_kib: int = 0
    rss_filled_kib: int = 0
    rss_settled_kib: int = 0
    rss_end_kib: int = 0
    hwm_end_kib: int = 0
    marginal_kib_per_call: float | None = None
    oldest_retained: bool = False  # the first key placed
    newest_retained: bool = False

    @property
    def failed(self) -> int:
        return self.offered - self.completed

    @property
    def kib_per_call(self) -> float | None:
        if not self.completed:
            return None
        return (self.rss_settled_kib - self.rss_before_kib) / self.completed


def _pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command]


def _listening_udp(port: int) -> bool:
    hexport = f":{port:04X} "
    return any(hexport in line for line in Path("/proc/net/udp").read_text().splitlines())


def wrk_get(url: str, rate: int, seconds: float, connections: int, calls: int,
            workdir: Path, name: str, single: int | None = None) -> dict:
    """Run wrk + get.lua to the end on core 1; its summary (counts, percentiles in µs)."""
    count = max(1, int(rate * seconds))
    duration = max(2, int(count / rate + 3))
    env = dict(os.environ, BENCH_RATE=str(rate), BENCH_COUNT=str(count),
               BENCH_CALLS=str(calls), BENCH_FIRST=str(FIRST_KEY),
               BENCH_USERS=str(BENCH_USERS), BENCH_THREADS="1",
               BENCH_MARK=STATUS_MARK.decode())
    env.pop("BENCH_SINGLE", None)
    if single is not None:
        env["BENCH_SINGLE"] = str(single)
    command = _pinned(LOAD_CORE, [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
        "-s", str(BENCH_DIR / "get.lua"), url])
    output_path = workdir / f"{name}.out"
    with open(output_path, "wb") as output:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        process.wait(duration + 30)
    except subprocess.TimeoutExpired:
        stop(process)
    text = output_path.read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[len("BENCH "):])
    raise RuntimeError(f"wrk gave no summary:\n{text}")


def _sample_fill(pid: int, uas: subprocess.Popen, workdir: Path,
                 timeout: float) -> list[tuple[float, int, int]]:
    """Until the sipp UAS exits (its last call has ended: -m) or ``timeout`` s pass,
    once a second: (seconds into the fill, the daemon's VmRSS in KiB, fill calls the UAS
    completed so far). Also written to ``workdir/fill-rss.csv``."""
    start = time.monotonic()
    samples: list[tuple[float, int, int]] = []

    def sample() -> None:
        completed = sipp_stats(workdir / "uas.csv", None).successful - WARMUP_CALLS
        samples.append((time.monotonic() - start, memory_kib(pid).get("VmRSS", 0),
                        max(0, completed)))

    next_sample = start
    while uas.poll() is None and time.monotonic() - start < timeout:
        if time.monotonic() >= next_sample:
            sample()
            next_sample += 1.0
        time.sleep(0.05)  # polling interval, not synchronisation
    sample()  # sipp writes its last statistics row when it exits
    (workdir / "fill-rss.csv").write_text(
        "seconds,rss_kib,completed\n"
        + "".join(f"{t:.1f},{rss},{done}\n" for t, rss, done in samples))
    return samples


def _marginal(samples: list[tuple[float, int, int]], steady_after: float) -> float | None:
    """KiB of RSS per call completed from ``steady_after`` s into the fill to its end.

    By then the calls' transient state (SIP transactions in their 32-s wait states, the
    connections) has reached its steady size, so what still grows is the retained calls.
    None if fewer than 100 calls completed in that window.
    """
    steady = [sample for sample in samples if sample[0] >= steady_after]
    if len(steady) < 2 or steady[-1][2] - steady[0][2] < 100:
        return None
    return (steady[-1][1] - steady[0][1]) / (steady[-1][2] - steady[0][2])


def _retained(daemon: Daemon, n: int) -> bool:
    status, body = daemon.get(f"/callcontroller/bench{n % BENCH_USERS}/target{n}",
                              timeout=10.0)
    return status == 200 and STATUS_MARK in body


def run(args: argparse.Namespace, workdir: Path) -> tuple[Fill, list[GetRun]]:
    """Fill a fresh daemon with ``args.calls`` finished calls, then time the GETs."""
    workdir.mkdir(parents=True, exist_ok=True)
    users = workdir / "validusers.xml"
    write_bench_users(users, BENCH_USERS, "sipx.test")
    uas_port = free_port()
    fill_seconds = args.calls / args.fill_rate
    uas = _sipp(["-sf", str(SCENARIOS / "calling_phone.xml")], uas_port, workdir, "uas",
                calls=WARMUP_CALLS + args.calls, timeout=int(fill_seconds + 120))
    fill = Fill(args.calls, args.fill_rate)
    gets: list[GetRun] = []
    daemon = None
    try:
        wait_until(lambda: _listening_udp(uas_port), 5)
        config = write_config(workdir, sip_proxy=f"sip:{LOOPBACK}:{uas_port};lr",
                              users_directory=str(users), daemon_log_level="warn",
                              calls_result_cache_time=args.retain,
                              calls_max_calls=max(100_000, args.calls),
                              calls_max_calls_per_agent=1000,
                              calls_max_retained=max(100_000, args.calls),
                              calls_max_retained_per_owner=max(100_000, args.calls))
        daemon = Daemon(config, twistd=_pinned(DAEMON_CORE, TWISTD))
        daemon.start()
        pid = daemon.process.pid
        url = daemon.https_url
        # warm-up calls are forgotten as soon as they end, so only the fill is retained
        Wrk(url, 50, WARMUP_CALLS, workdir, "wrk-warmup", "?resultCacheTime=0").summary()
        wait_until(lambda: _stats(workdir, "uas", uas).successful >= WARMUP_CALLS, 10, 0.2)
        time.sleep(1)  # the warm-up calls' expiry
        fill.rss_before_kib = memory_kib(pid).get("VmRSS", 0)

        print(f"fill: {args.calls} calls at {args.fill_rate}/s ...", flush=True)
        load = Wrk(url, args.fill_rate, args.calls, workdir, "wrk-fill")
        samples = _sample_fill(pid, uas, workdir, load.duration + 120)
        fill.post = load.summary()
        fill.rss_filled_kib = memory_kib(pid).get("VmRSS", 0)
        stop(uas)
        stats = _stats(workdir, "uas", uas)
        fill.completed = max(0, stats.successful - WARMUP_CALLS)
        fill.marginal_kib_per_call = _marginal(samples, args.steady_after)
        fill.retransmissions = stats.all_retransmissions
        print(f"fill: {fill.completed} completed; settling {args.settle:g} s ...", flush=True)
        time.sleep(args.settle)  # transactions in their wait states, then steady state
        fill.rss_settled_kib = memory_kib(pid).get("VmRSS", 0)
        last_key = FIRST_KEY + args.calls - 1
        fill.oldest_retained = _retained(daemon, FIRST_KEY)
        fill.newest_retained = _retained(daemon, last_key)

        # a short unmeasured GET run: first use of the GET path, fresh connections
        wrk_get(url, min(args.get_rate, 50), 2, args.connections, args.calls, workdir,
                "wrk-get-warmup", single=last_key)
        for name, single in (("spread", None), ("single", FIRST_KEY + args.calls // 2)):
            print(f"GET {name}: {args.get_rate}/s for {args.get_seconds:g} s ...", flush=True)
            cpu0 = cpu_seconds(pid)
            summary = wrk_get(url, args.get_rate, args.get_seconds, args.connections,
                              args.calls, workdir, f"wrk-get-{name}", single)
            gets.append(GetRun(name, args.get_rate, summary, cpu_seconds(pid) - cpu0))
        memory = memory_kib(pid)
        fill.rss_end_kib, fill.hwm_end_kib = memory.get("VmRSS", 0), memory.get("VmHWM", 0)
    finally:
        stop(uas)
        if daemon is not None:
            daemon.stop()
    return fill, gets


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(fill: Fill, gets: list[GetRun]) -> str:
    """The GET table as Markdown."""
    lines = [
        "| GET of | retained calls | GETs | rate /s | p50 ms | p90 ms | p99 ms | max ms "
        "| non-2xx | no status lines | socket errors | CPU-ms /GET | p99 <= 5 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for get in gets:
        what = "different calls" if get.name == "spread" else "one call"
        verdict = ("yes" if get.ms("p99_us") <= GOAL_P99_MS else "NO") if get.valid \
            else "invalid"
        lines.append(
            f"| {what} | {fill.completed} | {get.requests} | {get.rate} "
            f"| {get.ms('p50_us'):.2f} | {get.ms('p90_us'):.2f} | {get.ms('p99_us'):.2f} "
            f"| {get.ms('max_us'):.2f} | {get.summary['non_2xx']} "
            f"| {get.summary['unmarked']} | {get.summary['socket_errors']} "
            f"| {_fmt(get.cpu_ms_per_get, 2)} | {verdict} |")
    return "\n".join(lines)


def fill_lines(fill: Fill, steady_after: float) -> str:
    """The fill and memory figures as a Markdown list."""
    post = fill.post or {}
    lines = [
        f"- fill: {fill.offered} REFER click-to-calls at {fill.rate}/s: completed "
        f"{fill.completed}, failed {fill.failed}, retransmissions {fill.retransmissions}, "
        f"POST p50 {_fmt(post.get('p50_us', 0) / 1000)} ms / p99 "
        f"{_fmt(post.get('p99_us', 0) / 1000)} ms, HTTP non-2xx {post.get('non_2xx', '-')}, "
        f"socket errors {post.get('socket_errors', '-')}",
        f"- retained: first call placed (target{FIRST_KEY}) "
        f"{'yes' if fill.oldest_retained else 'NO'}, last "
        f"(target{FIRST_KEY + fill.offered - 1}) {'yes' if fill.newest_retained else 'NO'}",
        f"- RSS: {fill.rss_before_kib / 1024:.1f} MiB before the fill, "
        f"{fill.rss_filled_kib / 1024:.1f} MiB when the last call ended, "
        f"{fill.rss_settled_kib / 1024:.1f} MiB after settling, "
        f"{fill.rss_end_kib / 1024:.1f} MiB after the GETs (HWM "
        f"{fill.hwm_end_kib / 1024:.1f} MiB)",
        f"- **{_fmt(fill.kib_per_call, 2)} KiB RSS per retained call** "
        "(settled RSS - RSS before) / completed calls; this includes the peak of the "
        "calls' transient state (SIP transactions in their 32-s wait states)",
        f"- **{_fmt(fill.marginal_kib_per_call, 2)} KiB RSS per retained call, marginal**: "
        f"RSS growth per completed call from {steady_after:g} s into the fill to its end, "
        "once the transient state is steady ('-': fill too short)",
    ]
    return "\n".join(lines)


def report(fill: Fill, gets: list[GetRun], args: argparse.Namespace, command: str) -> str:
    machine = "\n".join(f"- {name}: {value}" for name, value in versions().items())
    setup = (f"- daemon: twistd sipxcc on core {DAEMON_CORE}, log level warn, "
             f"calls.result_cache_time {args.retain} s, {BENCH_USERS} bench users; "
             f"wrk and sipp on core {LOAD_CORE}\n"
             f"- GETs: wrk + get.lua, {args.connections} keep-alive HTTPS connections "
             f"from 127.0.0.1 (trusted), {args.get_rate}/s for {args.get_seconds:g} s "
             "per run; latency from wrk (request written -> response read)")
    return (f"# GET status of one call with {fill.completed} finished calls retained\n\n"
            f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n- command: `{command}`\n"
            f"{machine}\n{setup}\n\n{table(fill, gets)}\n\n{fill_lines(fill, args.steady_after)}\n")


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.get_status", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=_positive, default=100_000,
                        help="finished calls to retain (default 100000)")
    parser.add_argument("--fill-rate", type=_positive, default=500,
                        help="click-to-calls per second during the fill (default 500)")
    parser.add_argument("--get-rate", type=_positive, default=200,
                        help="GETs per second (default 200)")
    parser.add_argument("--get-seconds", type=float, default=20.0,
                        help="length of each GET run (default 20)")
    parser.add_argument("--connections", type=_positive, default=4,
                        help="keep-alive HTTPS connections for the GETs (default 4)")
    parser.add_argument("--retain", type=_positive, default=3600,
                        help="calls.result_cache_time in seconds (default 3600, max 86400)")
    parser.add_argument("--settle", type=float, default=35.0,
                        help="seconds between the last call's end and the RSS reading and "
                        "GETs (default 35: past the 32-s transaction wait states)")
    parser.add_argument("--steady-after", type=float, default=40.0,
                        help="seconds into the fill after which RSS growth counts as "
                        "retained calls only (default 40)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument("--label", default="", help="added to the results file name")
    args = parser.parse_args(argv)
    if args.retain > 86400:
        parser.error("--retain: calls.result_cache_time is at most 86400")
    fill_time = args.calls / args.fill_rate
    if args.retain < fill_time + args.settle + 2 * args.get_seconds + 60:
        parser.error(f"--retain {args.retain} s: the first calls would expire before the "
                     "GETs end")
    for tool in ("sipp", "wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is not installed (make deps)", file=sys.stderr)
            return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    command = ("python -m bench.get_status "
               + shlex.join(argv if argv is not None else sys.argv[1:]))
    fill, gets = run(args, (WORK_DIR / f"{stamp}-get-status").resolve())
    text = report(fill, gets, args, command)
    print(text)
    if not args.no_save:
        RESULTS_DIR.mkdir(exist_ok=True)
        name = f"{stamp}-get-status{'-' + args.label if args.label else ''}.md"
        (RESULTS_DIR / name).write_text(text)
        print(f"written to {RESULTS_DIR / name}")
    complete = (fill.completed == fill.offered and fill.oldest_retained
                and fill.newest_retained
                and len(gets) == 2 and all(get.valid for get in gets))
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
