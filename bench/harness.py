"""Shared pieces of the benchmark: process accounting from /proc, sipp's statistics, and
the generated bench files (user directory, sippy's scenarios).

Nothing here imports the daemon: the benchmark looks at processes from the outside.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
SCENARIOS = BENCH_DIR / "scenarios"
LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# SIP messages one call carries, by mode (counted from the phone scenarios):
# - "refer": a REFER click-to-call, calling phone side (scenarios/calling_phone.xml): INVITE,
#   100, 180, 200, ACK, REFER, 202, NOTIFY, 200, NOTIFY, 200, BYE, 200;
# - "b2bua": a sippy B2BUA call, as many;
# - "invite": an INVITE-mode (RFC 3725) click-to-call, both phones (scenarios/
#   invite_phone.xml): A's INVITE, 100, 180, 200, ACK, re-INVITE, 200, ACK, BYE, 200 and
#   B's INVITE, 100, 180, 200, ACK, BYE, 200.
MESSAGES_PER_CALL = {"refer": 13, "b2bua": 13, "invite": 17}
# The phone scenario of each sipxcc mode and how many sipp calls (legs) one click-to-call is.
PHONE_SCENARIOS = {"refer": "calling_phone.xml", "invite": "invite_phone.xml"}
LEGS_PER_CALL = {"refer": 1, "invite": 2}
# What the click-to-call POST appends to its URL in each mode.
MODE_QUERIES = {"refer": "", "invite": "?sipMethod=INVITE"}
DAEMON_CORE = "0"
LOAD_CORE = "1"


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of every thread of ``pid`` so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat(5)); utime and stime are fields 14 and 15
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far, in seconds."""
    return sum(cpu_times(pid))


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def redis_info(port: int, section: str = "all") -> dict[str, str]:
    """redis-server's C{INFO} on 127.0.0.1:C{port} as name -> value (commandstats rows as
    C{cmdstat_<name>} -> "calls=...,usec=...")."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(f"INFO {section}\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            data += sock.recv(65536)
        head, _, data = data.partition(b"\r\n")
        size = int(head[1:])  # "$<length>"
        while len(data) < size:
            data += sock.recv(65536)
    return dict(line.split(":", 1) for line in data[:size].decode().splitlines()
                if ":" in line and not line.startswith("#"))


def redis_commands(info: dict[str, str]) -> dict[str, int]:
    """Commands run so far by name (from C{INFO commandstats}, without C{info} itself)."""
    counts = {}
    for name, value in info.items():
        if name.startswith("cmdstat_") and name != "cmdstat_info":
            counts[name[len("cmdstat_"):]] = int(value.split(",", 1)[0].split("=")[1])
    return counts


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)  # polling interval, not synchronisation


def stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM,
         grace: float = 5.0) -> None:
    """Signal ``process`` (if still running), then SIGKILL it after ``grace`` seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)


@dataclass
class SippStats:
    """sipp's cumulative counters at the end of a run (from -trace_stat and the screen)."""

    successful: int = 0
    failed: int = 0
    retransmissions: int = 0       # sipp's own retransmissions (our answers came late)
    received_retransmissions: int = 0   # retransmissions sipp received (from the peer)
    unexpected: int = 0
    response_time_ms: float | None = None

    @property
    def all_retransmissions(self) -> int:
        return self.retransmissions + self.received_retransmissions


# A scenario-screen row: "----> INVITE 10 0 0 0" (UAS) or "INVITE ----> 10 0 0" (UAC);
# received messages have four numbers (Messages Retrans Timeout Unexpected-Msg), sent ones
# two or three.
_MESSAGE_ROW = re.compile(r"^\s*(?:(?:-{3,}>|<-{3,})\s+\S+|\S+\s+(?:-{3,}>|<-{3,}))"
                          r"(?:\s+[A-Z]-\S+)*\s+((?:\d+\s*)+)$")


def sipp_stats(stat_csv: Path, screen_log: Path | None) -> SippStats:
    """Parse sipp's -stf CSV (last row) and, if given, its final -trace_screen log."""
    stats = SippStats()
    if stat_csv.exists():
        rows = [line.rstrip(";\n").split(";") for line in stat_csv.read_text().splitlines()
                if line.strip()]
        if len(rows) >= 2:
            last = dict(zip(rows[0], rows[-1], strict=False))
            stats.successful = int(last.get("SuccessfulCall(C)", 0))
            stats.failed = int(last.get("FailedCall(C)", 0))
            stats.retransmissions = int(last.get("Retransmissions(C)", 0))
            stats.response_time_ms = _duration_ms(last.get("ResponseTime1(C)", ""))
    if screen_log is not None and screen_log.exists():
        stats.received_retransmissions, stats.unexpected = _screen_counts(screen_log)
    return stats


def _screen_counts(screen_log: Path) -> tuple[int, int]:
    """(retransmissions received, unexpected messages) from the final scenario screen."""
    screen = screen_log.read_text(errors="replace").split("Statistics Screen", 1)[0]
    received = unexpected = 0
    for line in screen.splitlines():
        match = _MESSAGE_ROW.match(line.rstrip())
        if match:
            numbers = [int(number) for number in match.group(1).split()]
            if len(numbers) == 4:
                received += numbers[1]
                unexpected += numbers[3]
    return received, unexpected


def _duration_ms(value: str) -> float | None:
    """sipp's "HH:MM:SS:micro" -> milliseconds."""
    parts = value.split(":")
    if len(parts) != 4:
        return None
    hours, minutes, seconds, micro = (int(part) for part in parts)
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + micro / 1000


def latest(directory: Path, pattern: str) -> Path | None:
    """The newest file in ``directory`` matching ``pattern``."""
    found = sorted(directory.glob(pattern), key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None


def write_bench_users(path: Path, count: int, domain: str) -> None:
    """A validusers.xml with ``count`` users bench0..bench<count-1> (PIN 123)."""
    import hashlib

    entries = []
    for index in range(count):
        name = f"bench{index}"
        pin = hashlib.md5(f"{name}:{domain}:123".encode()).hexdigest()
        entries.append(
            f"  <user><identity>{name}@{domain}</identity><userName>{name}</userName>"
            f"<pintoken>{pin}</pintoken><passtoken>{pin}</passtoken></user>\n")
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<validusers xmlns="http://www.sipfoundry.org/sipX/schema/xml/validusers-00-00">\n'
        + "".join(entries) + "</validusers>\n")


def sippy_scenarios(directory: Path) -> tuple[Path, Path]:
    """The two sippy scenario fixes (sippy 2.5.0 needs both): returns (uas, uac) paths.

    UAS: sipp's built-in ``uas`` with a lower-case ``;transport=udp`` Contact (sippy 2.5.0
    rejects ``UDP``). UAC "tolerant": built-in ``uac`` with INVITE transaction tracking,
    so a 180 that sippy reorders after the 200 is ignored.
    """
    directory.mkdir(parents=True, exist_ok=True)
    # sipp -sd exits with 99 after printing the scenario
    uas = subprocess.run(["sipp", "-sd", "uas"], capture_output=True, text=True).stdout
    uas = uas.replace(";transport=[transport]", ";transport=udp")
    uac = subprocess.run(["sipp", "-sd", "uac"], capture_output=True, text=True).stdout
    for old, new in [
        ('<send retrans="500">\n    <![CDATA[\n\n      INVITE',
         '<send retrans="500" start_txn="invite">\n    <![CDATA[\n\n      INVITE'),
        ('<recv response="100"', '<recv response="100" response_txn="invite"'),
        ('<recv response="180" optional="true">',
         '<recv response="180" optional="true" response_txn="invite">'),
        ('<recv response="183" optional="true">',
         '<recv response="183" optional="true" response_txn="invite">'),
        ('<recv response="200" rtd="true">',
         '<recv response="200" rtd="true" response_txn="invite">'),
        ("<send>\n    <![CDATA[\n\n      ACK",
         '<send ack_txn="invite">\n    <![CDATA[\n\n      ACK'),
    ]:
        if uac.count(old) != 1:
            raise RuntimeError(f"sipp's built-in uac scenario changed: {old!r}")
        uac = uac.replace(old, new)
    uas_path, uac_path = directory / "uas_lc.xml", directory / "uac_tol.xml"
    uas_path.write_text(uas)
    uac_path.write_text(uac)
    return uas_path, uac_path


def versions() -> dict[str, str]:
    """Versions of the tools and Pythons involved, for the results file."""
    def first_line(command: list[str]) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except OSError:
            return "missing"
        return (out.stdout or out.stderr).strip().splitlines()[0] if (
            out.stdout or out.stderr).strip() else "?"
    venv_python = str(PROJECT_ROOT / ".venv" / "bin" / "python")
    return {
        "kernel": os.uname().release,
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python (daemon)": first_line([venv_python, "-c",
                                       "import sys, twisted; print(sys.version.split()[0],"
                                       " 'Twisted', twisted.__version__)"]),
        "sipp": first_line(["sipp", "-v"]).split(",")[0],
        "wrk": first_line(["wrk", "-v"]),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


def publish(text: str, out: str | None) -> None:
    """Print a bench's Markdown result, and write it to C{out} when given."""
    print(text)
    if out:
        Path(out).write_text(text)


def run_on_reactor(main, args) -> None:
    """Run C{main(args)} (returning a Deferred) on the global reactor until it stops it;
    a failure is printed and stops the reactor."""
    from twisted.internet import reactor
    reactor.callWhenRunning(lambda: main(args).addErrback(
        lambda f: (f.printTraceback(), reactor.stop())))
    reactor.run()

