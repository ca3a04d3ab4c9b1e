"""``make bench``: sipxcc against sippy's b2bua_simple, stepped rates, one table with ratios.

    .venv/bin/python -m bench.run                  full run (about 5 minutes)
    .venv/bin/python -m bench.run --smoke          harness check, about 10 s, no verdicts
    .venv/bin/python -m bench.run --profile 400    py-spy profile of the daemon at 400/s
    .venv/bin/python -m bench.run --invite         INVITE-mode (RFC 3725) click-to-calls
    .venv/bin/python -m bench.run --both-modes     REFER and INVITE at each sipxcc rate
    .venv/bin/python -m bench.run --registry memory,redis,redis:2 --get-rate 200 --no-sippy
                                  the registry in memory, on Redis, two nodes sharing Redis

Results (table, machine, versions, command) go to bench/results/ unless --no-save.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

from bench.harness import BENCH_DIR, PROJECT_ROOT, versions
from bench.profile import load, summarise
from bench.steps import SIPPY_VENV, StepResult, sippy_step, sipxcc_step

WORK_DIR = PROJECT_ROOT / "build" / "bench" / "runs"
RESULTS_DIR = BENCH_DIR / "results"
CLEAN_FAILURE_SHARE = 0.001     # issue 7: at most 0.1 % failed calls
REFERENCE_RATE = 150            # sippy's reference rate, below its knee on this machine
INVITE_REFER_GOAL = 1.5         # INVITE-mode CPU per call at most 1.5 x REFER's
MODES = ("refer", "invite")
# issue 13: CPU per call with the registry on Redis (redis-server's counted) at most 1.3 x
# the memory backend's, and two nodes sharing one Redis (both nodes and redis-server)
# at most 1.4 x one memory-backend node; GET on a node that does not own the call p99
GOALS_VS_MEMORY = {1: 1.3, 2: 1.4}
GET_P99_GOAL_MS = 5.0


def _rates(text: str) -> list[int]:
    try:
        rates = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def _setups(text: str) -> list[tuple[str, int]]:
    """"memory,redis,redis:2" -> [("memory", 1), ("redis", 1), ("redis", 2)]."""
    setups = []
    for part in (part.strip() for part in text.split(",") if part.strip()):
        backend, _, nodes = part.partition(":")
        try:
            count = int(nodes or "1")
        except ValueError:
            count = 0
        if backend not in ("memory", "redis") or count < 1 or (
                backend == "memory" and count != 1):
            raise argparse.ArgumentTypeError(
                f"not a registry setup: {part!r} (memory, redis or redis:<nodes>)")
        setups.append((backend, count))
    if not setups:
        raise argparse.ArgumentTypeError("no registry setup")
    return setups


def _count(rate: int, seconds: float) -> int:
    return max(100, int(rate * seconds))


def is_clean(row: StepResult) -> bool:
    """No retransmissions and at most 0.1 % failed calls."""
    return row.retransmissions == 0 and row.failed <= CLEAN_FAILURE_SHARE * row.offered


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[StepResult]) -> str:
    """The result table as Markdown."""
    lines = [
        "| system | rate /s | calls | completed /s | failed | retrans | CPU-ms /call "
        "| sys % | msgs /CPU-s | POST p50 ms | POST p99 ms | INVITE->200 avg ms | RSS MiB "
        "| HWM MiB | clean | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.rate} | {row.offered} | {row.completed_per_second:.0f} "
            f"| {row.failed} | {row.retransmissions} | {_fmt(row.cpu_ms_per_call, 2)} "
            f"| {_fmt(row.system_share, 0)} | {_fmt(row.messages_per_cpu_second, 0)} "
            f"| {_fmt(row.post_p50_ms)} "
            f"| {_fmt(row.post_p99_ms)} | {_fmt(row.invite_200_ms)} "
            f"| {row.rss_kib / 1024:.0f} | {row.hwm_kib / 1024:.0f} "
            f"| {'yes' if is_clean(row) else 'NO'} | {'; '.join(row.notes)} |")
    return "\n".join(lines)


def pooled(rows: list[StepResult]) -> StepResult:
    """Repeated steps of one system, mode and rate as one: their sums (CPU, calls), and
    the worst of their latencies, memory and notes. A repeat is the way to beat noise."""
    first = rows[0]
    if len(rows) == 1:
        return first
    total = StepResult(first.system, first.rate, sum(r.offered for r in rows), first.mode,
                       first.registry, first.nodes)
    for name in ("completed", "failed", "retransmissions", "cpu_seconds", "system_seconds",
                 "run_seconds"):
        setattr(total, name, sum(getattr(r, name) for r in rows))
    for name in ("post_p50_ms", "post_p99_ms", "invite_200_ms", "rss_kib", "hwm_kib"):
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        setattr(total, name, max(values) if values else None)
    total.notes = [note for r in rows for note in r.notes]
    for r in rows:
        for part, seconds in r.parts.items():
            total.parts[part] = total.parts.get(part, 0.0) + seconds
    return total


def _by_rate(rows: list[StepResult], system: str, mode: str | None = None,
             setup: tuple[str, int] = ("memory", 1)):
    groups: dict[int, list[StepResult]] = {}
    for row in rows:
        if (row.system == system and (mode is None or row.mode == mode) and row.completed
                and (system != "sipxcc" or (row.registry, row.nodes) == setup)):
            groups.setdefault(row.rate, []).append(row)
    return {rate: pooled(group) for rate, group in groups.items()}


def ratios(rows: list[StepResult]) -> str:
    """sipxcc / sippy at the reference rate (or the closest rate both ran), INVITE / REFER
    at every rate both modes ran, and capacities. The goals vs sippy are REFER's. Repeated
    steps at one rate are pooled (see L{pooled})."""
    theirs = _by_rate(rows, "sippy")
    by_mode = {mode: _by_rate(rows, "sipxcc", mode) for mode in MODES}
    ran = [mode for mode in MODES
           if any(row.system == "sipxcc" and row.mode == mode for row in rows)]
    lines = []
    for mode in ran:
        lines += _versus_sippy(by_mode[mode], theirs, _name(mode), goals=mode == "refer")
    refer, invite = by_mode["refer"], by_mode["invite"]
    for rate in sorted(set(refer) & set(invite)):
        mine, base = invite[rate].cpu_ms_per_call, refer[rate].cpu_ms_per_call
        if mine and base:
            lines.append(f"- at {rate}/s: INVITE-mode CPU-ms per call / REFER CPU-ms per call"
                         f" = {mine:.2f} / {base:.2f} = **{mine / base:.2f}** "
                         f"(goal <= {INVITE_REFER_GOAL})")
    for system, by_rate in [*((_name(mode), by_mode[mode]) for mode in ran),
                            ("sippy", theirs)]:
        clean = [rate for rate, row in by_rate.items() if is_clean(row)]
        if by_rate:
            lines.append(f"- {system}: highest clean rate in this run: "
                         f"{max(clean) if clean else 'none'}/s")
    lines += _versus_memory(rows)
    return "\n".join(lines)


def _versus_memory(rows: list[StepResult]) -> list[str]:
    """Each Redis setup against the memory backend at every rate and mode both ran:
    CPU per call (everything of the system under test counted), failures, and the GETs."""
    lines = []
    setups = sorted({(row.registry, row.nodes) for row in rows
                     if row.system == "sipxcc" and row.registry != "memory"})
    for mode in MODES:
        memory = _by_rate(rows, "sipxcc", mode)
        for setup in setups:
            shared = _by_rate(rows, "sipxcc", mode, setup)
            goal = GOALS_VS_MEMORY.get(min(setup[1], 2))
            for rate in sorted(set(memory) & set(shared)):
                mine, base = shared[rate], memory[rate]
                if mine.cpu_ms_per_call and base.cpu_ms_per_call:
                    ratio = mine.cpu_ms_per_call / base.cpu_ms_per_call
                    lines.append(
                        f"- at {rate}/s: CPU-ms per call {mine.label} / {base.label} = "
                        f"{mine.cpu_ms_per_call:.2f} / {base.cpu_ms_per_call:.2f} = "
                        f"**{ratio:.2f}** (goal <= {goal}; {_parts(mine)}); failed "
                        f"{mine.failed} of {mine.offered} "
                        f"({100 * mine.failed / mine.offered:.2f} %, goal <= 0.1 %)")
    for row in rows:
        if row.get_summary is not None:
            get = row.get_summary
            lines.append(
                f"- {row.label} at {row.rate}/s: GET of node0's calls on {row.get_target}: "
                f"p50 {get['p50_us'] / 1000:.2f} ms, p99 **{get['p99_us'] / 1000:.2f} ms** "
                f"(goal <= {GET_P99_GOAL_MS:g} ms), max {get['max_us'] / 1000:.2f} ms, "
                f"{get['requests']} GETs, non-2xx {get['non_2xx']}, without status lines "
                f"{get['unmarked']}, socket errors {get['socket_errors']}, CPU-ms per GET "
                f"{1000 * row.get_cpu_seconds / max(1, get['requests']):.2f}")
    return lines


def _parts(row: StepResult) -> str:
    """CPU-ms per call of each process: "node0 1.20 + redis 0.15"."""
    if not row.completed:
        return "-"
    return " + ".join(f"{name} {1000 * seconds / row.completed:.2f}"
                      for name, seconds in row.parts.items())


def _name(mode: str) -> str:
    return StepResult("sipxcc", 0, 0, mode).label


def _versus_sippy(ours: dict[int, StepResult], theirs: dict[int, StepResult], name: str,
                  goals: bool) -> list[str]:
    lines = []
    common = sorted(set(ours) & set(theirs), key=lambda rate: abs(rate - REFERENCE_RATE))
    if common:
        rate = common[0]
        mine, anchor = ours[rate], theirs[rate]
        if mine.cpu_ms_per_call and anchor.cpu_ms_per_call:
            lines.append(f"- at {rate}/s: CPU-ms per call {name} / sippy = "
                         f"{mine.cpu_ms_per_call:.2f} / {anchor.cpu_ms_per_call:.2f} = "
                         f"**{mine.cpu_ms_per_call / anchor.cpu_ms_per_call:.2f}**"
                         + (" (goal <= 0.5)" if goals else ""))
        if mine.messages_per_cpu_second and anchor.messages_per_cpu_second:
            ratio = mine.messages_per_cpu_second / anchor.messages_per_cpu_second
            lines.append(f"- at {rate}/s: SIP messages per CPU-second {name} / sippy = "
                         f"{mine.messages_per_cpu_second:.0f} / "
                         f"{anchor.messages_per_cpu_second:.0f} = **{ratio:.2f}**"
                         + (" (goal >= 2)" if goals else ""))
    return lines


def report(rows: list[StepResult], command: str, title: str) -> str:
    machine = "\n".join(f"- {name}: {value}" for name, value in versions().items())
    sippy_version = "sippy 2.5.0 b2bua_simple (build/bench/venv), SIPLOG_BEND=none"
    return (f"# {title}\n\n- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
            f"- command: `{command}`\n{machine}\n- anchor: {sippy_version}\n\n"
            f"{table(rows)}\n\n{ratios(rows)}\n")


def _check_tools(need_sippy: bool) -> str | None:
    for tool in ("sipp", "wrk", "taskset"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make deps)"
    if need_sippy and not (SIPPY_VENV / "bin" / "b2bua_simple").exists():
        return f"sippy is not installed in {SIPPY_VENV} (make bench installs it)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sipxcc-rates", type=_rates, default=_rates("100,150,200,300,400,500"))
    parser.add_argument("--sippy-rates", type=_rates, default=_rates("100,150,200,250"))
    parser.add_argument("--seconds", type=float, default=10.0, help="load per step")
    parser.add_argument("--invite", action="store_true", help="sipMethod=INVITE calls")
    parser.add_argument("--both-modes", action="store_true",
                        help="REFER then INVITE calls at each sipxcc rate, with their ratio")
    parser.add_argument("--no-sippy", action="store_true", help="skip the anchor")
    parser.add_argument("--registry", type=_setups, default=_setups("memory"),
                        help="where sipxcc keeps its calls, one or more of memory, redis, "
                        "redis:<nodes> (nodes sharing one redis-server), each run at every "
                        "rate, back to back (default memory)")
    parser.add_argument("--get-rate", type=int, default=0,
                        help="after each sipxcc step, GETs/s of node0's calls on the last "
                        "node, for --get-seconds (default 0: none)")
    parser.add_argument("--get-seconds", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true", help="one short low-rate step each")
    parser.add_argument("--profile", type=int, metavar="RATE",
                        help="profile the daemon with py-spy at RATE instead")
    parser.add_argument("--prelude", default="",
                        help="Python run in the daemon before twistd (experiments)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument("--label", default="", help="added to the results file name")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sipxcc_rates, args.sippy_rates, args.seconds = [20], [20], 5.0
    if args.both_modes and args.profile is not None:
        parser.error("--both-modes does not apply to --profile (use --invite or not)")
    if args.profile is not None and len(args.registry) > 1:
        parser.error("--profile takes one --registry setup")
    modes = list(MODES) if args.both_modes else ["invite" if args.invite else "refer"]
    problem = _check_tools(not args.no_sippy and args.profile is None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = WORK_DIR / stamp
    command = "python -m bench.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.profile:
        return _profile(args.profile, args.seconds, work, stamp, args.label, modes[0],
                        args.prelude, args.registry[0])
    rows: list[StepResult] = []
    sippy_rates = [] if args.no_sippy else args.sippy_rates
    # the n-th sipxcc step, then the n-th sippy step: the machine's speed drifts over
    # minutes (a shared host), and neighbours in time see the same machine
    for n in range(max(len(args.sipxcc_rates), len(sippy_rates))):
        if n < len(args.sipxcc_rates):
            rows += _sipxcc_steps(args.sipxcc_rates[n], n, modes, args, work)
        if n < len(sippy_rates):
            rate = sippy_rates[n]
            rows.append(sippy_step(rate, _count(rate, args.seconds), work / f"{n}-sippy-{rate}"))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    mode = " and ".join(mode.upper() for mode in modes)
    title = f"sipxcc ({mode} click-to-call) vs sippy b2bua_simple"
    if args.registry != [("memory", 1)]:
        title = f"sipxcc ({mode} click-to-call): the call registry " + ", ".join(
            registry + (f" x{nodes} nodes" if nodes > 1 else "")
            for registry, nodes in args.registry)
    text = report(rows, command, title)
    print(text)
    if not args.no_save and not args.smoke:
        RESULTS_DIR.mkdir(exist_ok=True)
        kind = "both" if len(modes) > 1 else modes[0]
        if args.registry != [("memory", 1)]:
            kind += "-registry"
        name = f"{stamp}-{kind}{'-' + args.label if args.label else ''}.md"
        (RESULTS_DIR / name).write_text(text)
        print(f"written to {RESULTS_DIR / name}")
    return 0 if all(row.completed for row in rows) else 1


def _sipxcc_steps(rate: int, n: int, modes: list[str], args: argparse.Namespace,
                  work: Path) -> list[StepResult]:
    """The n-th sipxcc rate: with --both-modes REFER and INVITE back to back, and so are
    the --registry setups."""
    rows = []
    for mode in modes:
        for registry, nodes in args.registry:
            name = f"sipxcc-{rate}" if mode == "refer" else f"sipxcc-{mode}-{rate}"
            if registry != "memory":
                name += f"-{registry}{nodes}"
            rows.append(sipxcc_step(
                rate, _count(rate, args.seconds), work / f"{n}-{name}", mode=mode,
                prelude=args.prelude, registry=registry, nodes=nodes,
                get_rate=args.get_rate, get_seconds=args.get_seconds))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def _profile(rate: int, seconds: float, work: Path, stamp: str, label: str,
             mode: str, prelude: str = "", setup: tuple[str, int] = ("memory", 1)) -> int:
    profile_seconds = max(3.0, seconds - 2)
    row = sipxcc_step(rate, _count(rate, seconds), work / f"profile-{rate}", mode=mode,
                      profile_seconds=profile_seconds, prelude=prelude, registry=setup[0],
                      nodes=setup[1])
    raw = work / f"profile-{rate}" / "profile.txt"
    if not raw.exists():
        print(f"error: py-spy wrote no profile (see {raw.parent})", file=sys.stderr)
        return 1
    text = (f"# py-spy profile of sipxcc at {rate}/s ({label or 'no label'})\n\n"
            f"{table([row])}\n\n```\n{summarise(load(raw), 40)}```\n")
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    base = RESULTS_DIR / f"{stamp}-profile-{rate}{'-' + label if label else ''}"
    base.with_suffix(".md").write_text(text)
    shutil.copyfile(raw, base.with_suffix(".collapsed.txt"))
    print(f"written to {base}.md and {base}.collapsed.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
