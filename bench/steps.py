"""One rate step of each system under test, measured the same way.

sipxcc: wrk POSTs click-to-calls over keep-alive HTTPS from 127.0.0.1 (a trusted host);
``sip.proxy`` points straight at a sipp UAS playing the calling phone of a REFER call
(scenarios/calling_phone.xml) or both phones of an INVITE-mode call, one sipp call per
leg (scenarios/invite_phone.xml). With ``registry = "redis"`` the daemon keeps its calls
in its own redis-server, or ``nodes`` daemons share one, each node getting its share of
the POSTs from its own wrk; every daemon and redis-server is the system under test.
sippy: sipp's tolerant ``uac`` -> ``b2bua_simple`` -> sipp's ``uas``. The system under
test runs on core 0, the load tools on core 1; CPU and memory come from /proc, success
and retransmissions from sipp.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import (
    BENCH_DIR,
    DAEMON_CORE,
    LEGS_PER_CALL,
    LOAD_CORE,
    LOOPBACK,
    MESSAGES_PER_CALL,
    MODE_QUERIES,
    PHONE_SCENARIOS,
    SCENARIOS,
    SippStats,
    cpu_times,
    latest,
    memory_kib,
    redis_commands,
    redis_info,
    sipp_stats,
    stop,
    wait_until,
    write_bench_users,
)
from tests.integration.daemon import TWISTD, Daemon, write_config
from tests.integration.peers import free_port
from tests.integration.redisserver import RedisServer

BENCH_USERS = 1000
WARMUP_CALLS = 50
CONNECTIONS = 8
SIPPY_VENV = BENCH_DIR.parent / "build" / "bench" / "venv"


@dataclass
class StepResult:
    """What one step measured; ``None`` where the system has no such figure."""

    system: str
    rate: int
    offered: int
    mode: str = "refer"     # "refer" or "invite" (sipxcc), "b2bua" (sippy)
    registry: str = "memory"    # sipxcc's registry.backend: "memory" or "redis"
    nodes: int = 1              # daemons sharing the Redis registry
    completed: int = 0
    failed: int = 0
    retransmissions: int = 0
    cpu_seconds: float = 0.0
    system_seconds: float = 0.0
    run_seconds: float = 0.0
    post_p50_ms: float | None = None
    post_p99_ms: float | None = None
    invite_200_ms: float | None = None
    rss_kib: int = 0
    hwm_kib: int = 0
    notes: list[str] = field(default_factory=list)
    #: CPU seconds of each process of the system under test ("node0", "redis", ...)
    parts: dict[str, float] = field(default_factory=dict)
    #: the GETs after the load (``get_rate``): wrk's summary, where they went, their CPU
    get_summary: dict | None = None
    get_target: str = ""
    get_cpu_seconds: float = 0.0

    @property
    def setup(self) -> str:
        """Where sipxcc keeps its calls: "" (memory), "redis", "redis x2", ..."""
        if self.registry == "memory":
            return ""
        return self.registry + (f" x{self.nodes}" if self.nodes > 1 else "")

    @property
    def label(self) -> str:
        """The system as the table shows it: "sipxcc" (REFER), "sipxcc (INVITE)", "sippy",
        "sipxcc redis x2" (two nodes sharing Redis)..."""
        name = f"{self.system} {self.setup}" if self.setup else self.system
        return name if self.mode in ("refer", "b2bua") else f"{name} ({self.mode.upper()})"

    @property
    def completed_per_second(self) -> float:
        return self.completed / self.run_seconds if self.run_seconds else 0.0

    @property
    def system_share(self) -> float | None:
        """Per cent of the CPU time spent in the kernel (system calls, wake-ups)."""
        return 100 * self.system_seconds / self.cpu_seconds if self.cpu_seconds else None

    @property
    def cpu_ms_per_call(self) -> float | None:
        return 1000 * self.cpu_seconds / self.completed if self.completed else None

    @property
    def messages_per_cpu_second(self) -> float | None:
        if not self.cpu_seconds:
            return None
        return ((MESSAGES_PER_CALL[self.mode] * self.completed + self.retransmissions)
                / self.cpu_seconds)


def _pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command]


def _sipp(scenario: list[str], port: int, workdir: Path, name: str, *, calls: int,
          timeout: int, remote: str | None = None, rate: int | None = None) -> subprocess.Popen:
    """sipp on core 1 with final statistics in ``workdir/name.csv`` and its screen log."""
    command = ["sipp", *scenario, "-i", LOOPBACK, "-p", str(port), "-mi", LOOPBACK,
               "-mp", str(free_port(4)), "-nostdin", "-m", str(calls),
               "-trace_screen", "-trace_err", "-error_file", str(workdir / f"{name}.err"),
               "-trace_stat", "-stf", str(workdir / f"{name}.csv"), "-fd", "1",
               "-timeout", f"{timeout}s"]
    if rate is not None:
        command += ["-r", str(rate)]
    if remote is not None:
        command.append(remote)
    with open(workdir / f"{name}.out", "wb") as output:
        return subprocess.Popen(_pinned(LOAD_CORE, command), cwd=workdir,
                                stdin=subprocess.DEVNULL, stdout=output,
                                stderr=subprocess.STDOUT)


def _listening_udp(port: int) -> bool:
    hexport = f":{port:04X} "
    return any(hexport in line for line in Path("/proc/net/udp").read_text().splitlines())


def _stats(workdir: Path, name: str, process: subprocess.Popen) -> SippStats:
    screen = latest(workdir, f"*_{process.pid}_screen.log")
    return sipp_stats(workdir / f"{name}.csv", screen)


class Wrk:
    """The paced wrk load (bench/post.lua) running in the background on core 1."""

    def __init__(self, url: str, rate: float, count: int, workdir: Path, name: str,
                 query: str = "", prefix: str = "target"):
        self.duration = max(2, int(count / rate + 3))
        env = dict(os.environ, BENCH_RATE=str(rate), BENCH_COUNT=str(count),
                   BENCH_USERS=str(BENCH_USERS), BENCH_QUERY=query, BENCH_THREADS="1",
                   BENCH_PREFIX=prefix)
        command = _pinned(LOAD_CORE, [
            "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{self.duration}s", "--timeout", "10s",
            "-s", str(BENCH_DIR / "post.lua"), url])
        self.output_path = workdir / f"{name}.out"
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                            stdout=output, stderr=subprocess.STDOUT)

    def summary(self) -> dict:
        """Wait for wrk to end; its summary (counts, latency percentiles in µs)."""
        try:
            self.process.wait(self.duration + 30)
        except subprocess.TimeoutExpired:
            stop(self.process)
        text = self.output_path.read_text(errors="replace")
        for line in text.splitlines():
            if line.startswith("BENCH "):
                return json.loads(line[len("BENCH "):])
        raise RuntimeError(f"wrk gave no summary:\n{text}")


def _load_average() -> str:
    """The 1-minute load average (other processes on this shared machine)."""
    return Path("/proc/loadavg").read_text().split()[0]


def _prefix(node: int) -> str:
    """The keys node C{node}'s wrk places: target<n> on node 0, n1target<n> on node 1..."""
    return "target" if node == 0 else f"n{node}target"


def sipxcc_step(rate: int, count: int, workdir: Path, *, mode: str = "refer",
                profile_seconds: float = 0.0, prelude: str = "", registry: str = "memory",
                nodes: int = 1, get_rate: int = 0, get_seconds: float = 10.0) -> StepResult:
    """Offer ``count`` click-to-calls at ``rate``/s to fresh daemons pinned to core 0.

    ``mode``: "refer" (the default) or "invite" (``?sipMethod=INVITE``). An INVITE-mode call
    has two legs, both played by the one sipp UAS: it gets two sipp calls per click-to-call.
    ``prelude``: Python run in the daemon's process before twistd (for experiments such as
    garbage-collector settings, measured before they are proposed for sipxcc/tap.py).
    ``registry``: "memory", or "redis": a redis-server of the step's own, pinned to core 0
    with the daemons, its CPU counted; ``nodes`` daemons share it (node n gets rate/nodes
    POSTs from its own wrk). ``get_rate``: after the load, GETs of the calls node 0 placed
    at that rate for ``get_seconds`` s, sent to the last node (another node than the
    owner when there are two or more).
    """
    if registry == "memory" and nodes != 1:
        raise ValueError("several nodes need registry = redis")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    users = workdir / "validusers.xml"
    write_bench_users(users, BENCH_USERS, "sipx.test")
    uas_port = free_port()
    total = nodes * WARMUP_CALLS + count
    load_seconds = count / rate
    query, legs = MODE_QUERIES[mode], LEGS_PER_CALL[mode]
    uas = _sipp(["-sf", str(SCENARIOS / PHONE_SCENARIOS[mode])], uas_port, workdir, "uas",
                calls=legs * total, timeout=int(load_seconds + 90 + get_seconds))
    result = StepResult("sipxcc", rate, count, mode, registry, nodes)
    result.notes.append(f"load {_load_average()}")
    redis = None
    daemons: list[Daemon] = []
    try:
        wait_until(lambda: _listening_udp(uas_port), 5)
        if registry == "redis":
            redis = RedisServer(workdir, wrapper=("taskset", "-c", DAEMON_CORE))
            redis.start()
        for node in range(nodes):
            daemons.append(_daemon(workdir, node, nodes, uas_port, users, prelude, redis))
            daemons[-1].start()
        processes = {f"node{n}": daemon.process.pid for n, daemon in enumerate(daemons)}
        if redis is not None:
            processes["redis"] = redis.process.pid
        for node, daemon in enumerate(daemons):
            Wrk(daemon.https_url, 50, WARMUP_CALLS, workdir, f"wrk-warmup{node}", query,
                _prefix(node)).summary()
            wait_until(lambda node=node: _stats(workdir, "uas", uas).successful
                       >= legs * WARMUP_CALLS * (node + 1), 10, 0.2)
        info0 = redis_info(redis.port) if redis is not None else {}
        cpu0, start = {name: cpu_times(pid) for name, pid in processes.items()}, time.monotonic()
        pid = processes["node0"]
        profiler = _start_profiler(pid, workdir, profile_seconds) if profile_seconds else None
        shares = [count // nodes + (1 if node < count % nodes else 0) for node in range(nodes)]
        loads = [Wrk(daemon.https_url, rate * share / count, share, workdir,
                     "wrk" if nodes == 1 else f"wrk{node}", query, _prefix(node))
                 for node, (daemon, share) in enumerate(zip(daemons, shares, strict=True))]
        # the sipp UAS exits once its last call has ended (-m)
        wait_until(lambda: uas.poll() is not None,
                   max(load.duration for load in loads) + 60, 0.02)
        finished = time.monotonic()
        summaries = [load.summary() for load in loads]
        cpu1 = {name: cpu_times(pid) for name, pid in processes.items()}
        memory = memory_kib(pid)
        if profiler is not None:
            profiler.wait(profile_seconds + 30)
        stop(uas)
        stats = _stats(workdir, "uas", uas)
        result.completed = max(0, stats.successful - legs * nodes * WARMUP_CALLS) // legs
        result.failed = count - result.completed
        result.retransmissions = stats.all_retransmissions
        result.parts = {name: sum(cpu1[name]) - sum(cpu0[name]) for name in processes}
        result.cpu_seconds = sum(result.parts.values())
        result.system_seconds = sum(cpu1[name][1] - cpu0[name][1] for name in processes)
        result.run_seconds = max(finished - start, load_seconds)
        result.rss_kib, result.hwm_kib = memory.get("VmRSS", 0), memory.get("VmHWM", 0)
        _post_figures(result, summaries, stats, legs)
        if redis is not None:
            _redis_figures(result, info0, redis_info(redis.port), workdir)
        if get_rate:
            _gets(result, daemons, processes, shares[0], get_rate, get_seconds, workdir)
        result.notes.append(f"load {_load_average()} at the end")
    finally:
        stop(uas)
        for daemon in daemons:
            daemon.stop()
        if redis is not None:
            redis.stop()
    return result


def _daemon(workdir: Path, node: int, nodes: int, uas_port: int, users: Path, prelude: str,
            redis: RedisServer | None) -> Daemon:
    """Node C{node} of C{nodes}, configured as `make bench` runs the daemon, pinned to
    core 0 (not started)."""
    backend: dict[str, object] = {}
    if redis is not None:
        backend = {"registry_backend": "redis", "registry_redis_url": redis.url,
                   "registry_node_id": f"node{node}"}
    directory = workdir if nodes == 1 else workdir / f"node{node}"
    directory.mkdir(exist_ok=True)
    config = write_config(directory, sip_proxy=f"sip:{LOOPBACK}:{uas_port};lr",
                          users_directory=str(users), daemon_log_level="warn",
                          calls_max_calls=100000, calls_max_calls_per_agent=1000,
                          # one agent places every call: keep them all, as before
                          calls_max_retained_per_owner=100000, **backend)
    twistd = TWISTD
    if prelude:
        twistd = [*TWISTD[:-1], f"{prelude}\n{TWISTD[-1]}"]
    return Daemon(config, twistd=_pinned(DAEMON_CORE, twistd))


def _post_figures(result: StepResult, summaries: list[dict], stats: SippStats,
                  legs: int) -> None:
    """The POSTs' latency (the worst node's) and errors, what went wrong at the phones,
    and the CPU of each process."""
    result.post_p50_ms = max(summary["p50_us"] for summary in summaries) / 1000
    result.post_p99_ms = max(summary["p99_us"] for summary in summaries) / 1000
    non_2xx = sum(summary["non_2xx"] for summary in summaries)
    socket_errors = sum(summary["socket_errors"] for summary in summaries)
    if non_2xx or socket_errors:
        result.notes.append(f"HTTP non-2xx {non_2xx}, socket errors {socket_errors}")
    if stats.unexpected:
        result.notes.append(f"{stats.unexpected} unexpected SIP messages at the phone")
    if legs > 1 and stats.failed:
        result.notes.append(f"{stats.failed} failed legs at the phones")
    if len(result.parts) > 1:
        result.notes.append("CPU s " + ", ".join(
            f"{name} {seconds:.2f}" for name, seconds in result.parts.items()))


def _redis_figures(result: StepResult, before: dict[str, str], after: dict[str, str],
                   workdir: Path) -> None:
    """Redis commands per completed call over the load (the heartbeats included), and its
    memory per call (every call is still retained); by command in redis-commands.txt."""
    if not result.completed:
        return
    counts0, counts1 = redis_commands(before), redis_commands(after)
    per_call = {name: (count - counts0.get(name, 0)) / result.completed
                for name, count in counts1.items() if count > counts0.get(name, 0)}
    (workdir / "redis-commands.txt").write_text("".join(
        f"{name} {value:.2f}\n" for name, value in sorted(per_call.items())))
    grown = int(after["used_memory"]) - int(before["used_memory"])

    def delta(name: str) -> float:
        return (int(after[name]) - int(before[name])) / result.completed
    # a read is one batch of commands from one connection: one pipeline, mostly
    result.notes.append(f"redis {sum(per_call.values()):.1f} commands/call ("
                        + ", ".join(f"{name} {value:.1f}" for name, value in sorted(
                            per_call.items(), key=lambda item: -item[1])[:6])
                        + f"), {delta('total_reads_processed'):.1f} reads/call, "
                        f"{delta('total_net_input_bytes') / 1024:.2f} KiB in/call, "
                        f"{grown / result.completed / 1024:.2f} KiB/call")


def _gets(result: StepResult, daemons: list[Daemon], processes: dict[str, int],
          placed: int, rate: int, seconds: float, workdir: Path) -> None:
    """GETs of the C{placed} calls node 0 placed (keys target1..), sent to the last node;
    their latency, and the CPU of every process of the system under test meanwhile."""
    from bench.get_status import wrk_get  # it uses this module's pieces

    target = len(daemons) - 1
    url = daemons[target].https_url
    result.get_target = (f"node{target}, not the owner" if target else
                         "the owner" if result.registry == "redis" else "the daemon")
    wrk_get(url, min(rate, 50), 2, 4, placed, workdir, "wrk-get-warmup")
    cpu0 = {name: sum(cpu_times(pid)) for name, pid in processes.items()}
    result.get_summary = wrk_get(url, rate, seconds, 4, placed, workdir, "wrk-get")
    result.get_cpu_seconds = sum(sum(cpu_times(pid)) - cpu0[name]
                                 for name, pid in processes.items())


def _start_profiler(pid: int, workdir: Path, seconds: float) -> subprocess.Popen:
    """py-spy (from build/bench's venv) sampling the daemon for ``seconds``, on core 1."""
    command = _pinned(LOAD_CORE, [
        str(SIPPY_VENV / "bin" / "py-spy"), "record", "--pid", str(pid), "--rate", "250",
        "--duration", str(int(seconds)), "--format", "raw", "--nonblocking",
        "--output", str(workdir / "profile.txt")])
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def sippy_step(rate: int, count: int, workdir: Path) -> StepResult:
    """One sippy step: tolerant sipp UAC -> b2bua_simple -> sipp UAS."""
    from bench.harness import sippy_scenarios

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    uas_scenario, uac_scenario = sippy_scenarios(workdir)
    uas_port, b2b_port, uac_port = free_port(), free_port(), free_port()
    load_seconds = count / rate
    uas = _sipp(["-sf", str(uas_scenario)], uas_port, workdir, "uas", calls=count,
                timeout=int(load_seconds + 90))
    env = dict(os.environ, SIPLOG_BEND="none")
    with open(workdir / "b2bua.out", "wb") as output:
        b2bua = subprocess.Popen(
            _pinned(DAEMON_CORE, [str(SIPPY_VENV / "bin" / "b2bua_simple"), "-f",
                                  "-l", LOOPBACK, "-p", str(b2b_port),
                                  "-n", f"{LOOPBACK}:{uas_port}"]),
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT)
    result = StepResult("sippy", rate, count, "b2bua")
    uac = None
    try:
        wait_until(lambda: _listening_udp(uas_port) and _listening_udp(b2b_port), 10)
        time.sleep(1)  # sippy's start-up CPU is not part of a call (as in step.sh's 4 s)
        cpu0, start = cpu_times(b2bua.pid), time.monotonic()
        uac = _sipp(["-sf", str(uac_scenario)], uac_port, workdir, "uac", calls=count,
                    timeout=int(load_seconds + 60), remote=f"{LOOPBACK}:{b2b_port}",
                    rate=rate)
        uac.wait(load_seconds + 90)
        finished = time.monotonic()
        wait_until(lambda: uas.poll() is not None, 10, 0.05)
        cpu1, memory = cpu_times(b2bua.pid), memory_kib(b2bua.pid)
        stop(uas, grace=2)
        uac_stats, uas_stats = _stats(workdir, "uac", uac), _stats(workdir, "uas", uas)
        result.completed = min(uac_stats.successful, uas_stats.successful)
        result.failed = count - result.completed
        result.retransmissions = uac_stats.all_retransmissions + uas_stats.all_retransmissions
        result.cpu_seconds = sum(cpu1) - sum(cpu0)
        result.system_seconds = cpu1[1] - cpu0[1]
        result.run_seconds = max(finished - start, load_seconds)
        result.invite_200_ms = uac_stats.response_time_ms
        result.rss_kib, result.hwm_kib = memory.get("VmRSS", 0), memory.get("VmHWM", 0)
        if uac_stats.failed or uas_stats.failed:
            result.notes.append(f"failed UAC {uac_stats.failed} / UAS {uas_stats.failed}")
    finally:
        stop(uac)
        stop(uas)
        stop(b2bua)
    return result
