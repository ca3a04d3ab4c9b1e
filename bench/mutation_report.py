"""
The mutation score of sipxcc's SIP, calls and web layers, from mutmut's results (issue 17):

    python bench/mutation_report.py [--mutants mutants] [--out bench/results/mutation-DATE.md]
    python bench/mutation_report.py --changed-tests      # unit test files changed since
    python bench/mutation_report.py --unkilled [--covered-by FILE...]   # mutants to re-test
    python bench/mutation_report.py --test-hashes-to FILE   # before mutmut starts
    python bench/mutation_report.py --save-test-hashes FILE # once the re-test is done

`make mutation` (mk/mutation.mk) runs mutmut, then this script. It reads mutmut's per-file
results (mutants/<path>.meta, JSON: the exit code of the covering unit tests per mutant)
and the mutated sources (mutants/<path>.py with <path>.py.spans, the line range of each
mutant's function), and writes one Markdown report: the score per package and every mutant
that no test killed, with its diff.

A mutant counts as killed when a test failed (or the tests ran past mutmut's time limit:
the mutant loops). A surviving mutant is excused only by a line in the allow-list
(tests/mutation-equivalent.txt) naming the mutant, the fingerprint of its diff and why it
cannot change what a user sees. The fingerprint is a hash of the original and the mutated
function, so an entry goes stale (and the mutant counts as a survivor again) as soon as
the function changes. The score is killed / (all mutants - equivalent ones).

mutmut keeps a mutant's verdict until its function changes, so a new test would never get
the credit for a survivor. `make mutation` therefore remembers a hash of each unit test file
(mutants/.sipxcc-unit-tests.json); when some changed, it re-tests the unkilled mutants whose
functions those files' tests cover (mutmut's test map, mutants/mutmut-stats.json), no others.

Only the standard library: it runs under any of the project's Pythons.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("sipxcc.sip", "sipxcc.calls", "sipxcc.web")
UNIT_TESTS = Path("tests/unit")
TEST_HASHES = "mutants/.sipxcc-unit-tests.json"
ALLOW_LIST = Path("tests/mutation-equivalent.txt")
GOAL = 85.0

KILLED = "killed"
TIMEOUT = "timeout"
SURVIVED = "survived"
NO_TESTS = "no tests"
NOT_CHECKED = "not checked"
OTHER = "other"

# mutmut 3's exit codes per mutant (mutmut/stats.py): 1 and 3 are a failing test run,
# 0 a passing one, 5 and 33 no test covering the mutant, None not run yet.
_STATUS_BY_EXIT_CODE = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS,
                        None: NOT_CHECKED, 36: TIMEOUT, 24: TIMEOUT, -24: TIMEOUT,
                        152: TIMEOUT, 255: TIMEOUT}
UNKILLED = (SURVIVED, NO_TESTS, NOT_CHECKED, OTHER)

_ALLOW_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<fingerprint>[0-9a-f]{12})\s+(?P<reason>\S.*)$")


def status_of(exit_code: int | None) -> str:
    """mutmut's verdict for one mutant, in this report's words."""
    return _STATUS_BY_EXIT_CODE.get(exit_code, OTHER)


@dataclass
class Mutant:
    """One mutant: its mutmut name, verdict, diff against the original and fingerprint."""

    name: str
    status: str
    diff: str = ""
    fingerprint: str = ""
    equivalent: str = ""  # the allow-list's reason, when the entry matches

    @property
    def package(self) -> str:
        return next((p for p in PACKAGES if self.name.startswith(p + ".")), "other")

    @property
    def killed(self) -> bool:
        return self.status in (KILLED, TIMEOUT)


@dataclass
class Score:
    """The counts of one package (or of all three)."""

    total: int = 0
    killed: int = 0
    equivalent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, mutant: Mutant) -> None:
        self.total += 1
        self.by_status[mutant.status] = self.by_status.get(mutant.status, 0) + 1
        if mutant.equivalent:
            self.equivalent += 1
        elif mutant.killed:
            self.killed += 1

    @property
    def percent(self) -> float:
        judged = self.total - self.equivalent
        return 100.0 * self.killed / judged if judged else 100.0

    @property
    def unexplained(self) -> int:
        return self.total - self.killed - self.equivalent


def _function_source(lines: list[str], span: list[int], function: str) -> list[str]:
    start, end = span
    body = [line for line in lines[start - 1:end] if line.strip()]
    # every copy of a function is named after its mutant: compare the bodies only
    return [line.replace(function, "FUNCTION") for line in body]


def _mutated_function(name: str) -> tuple[str, str]:
    """'sipxcc.sip.uri.xǁURIǁparse__mutmut_3' -> ('sipxcc.sip.uri', 'xǁURIǁparse__mutmut_3')"""
    module, _, function = name.rpartition(".")
    return module, function


def _read_json(path: Path) -> dict:
    # a running mutmut rewrites its .meta files in place: read again if caught mid-write
    for _ in range(20):
        try:
            return json.loads(path.read_text("utf-8"))
        except json.JSONDecodeError:
            time.sleep(0.05)
    return json.loads(path.read_text("utf-8"))


def load_mutants(mutants_dir: Path) -> list[Mutant]:
    """Every mutant under mutants_dir with its verdict and diff, sorted by name."""
    found: list[Mutant] = []
    for meta_path in sorted(mutants_dir.rglob("*.py.meta")):
        meta = _read_json(meta_path)
        source_path = meta_path.with_suffix("")  # x.py.meta -> x.py
        spans_path = source_path.with_name(source_path.name + ".spans")
        lines = source_path.read_text("utf-8").split("\n") if source_path.exists() else []
        spans = (json.loads(spans_path.read_text("utf-8")).get("spans", {})
                 if spans_path.exists() else {})
        for name, exit_code in meta.get("exit_code_by_key", {}).items():
            mutant = Mutant(name=name, status=status_of(exit_code))
            _, function = _mutated_function(name)
            original = function.rpartition("__mutmut_")[0] + "__mutmut_orig"
            if function in spans and original in spans:
                before = _function_source(lines, spans[original], original)
                after = _function_source(lines, spans[function], function)
                mutant.diff = "\n".join(
                    line for line in difflib.unified_diff(before, after, lineterm="", n=1)
                    if not line.startswith(("---", "+++")))
                mutant.fingerprint = hashlib.sha256(
                    "\n".join(before + ["\0"] + after).encode()).hexdigest()[:12]
            found.append(mutant)
    return sorted(found, key=lambda m: m.name)


@dataclass
class AllowEntry:
    """One allow-list line: a surviving mutant that cannot change behaviour, and why."""

    name: str
    fingerprint: str
    reason: str
    line: int


def read_allow_list(path: Path) -> tuple[list[AllowEntry], list[str]]:
    """The allow-list's entries, and the line numbers of lines that are not entries."""
    entries, errors = [], []
    if not path.exists():
        return entries, errors
    for number, raw in enumerate(path.read_text("utf-8").splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        match = _ALLOW_LINE.match(text)
        if match is None:
            errors.append(f"{path}:{number}: not 'NAME FINGERPRINT REASON': {text[:80]}")
            continue
        entries.append(AllowEntry(match["name"], match["fingerprint"], match["reason"], number))
    return entries, errors


def apply_allow_list(mutants: list[Mutant], entries: list[AllowEntry]) -> list[str]:
    """Mark the surviving mutants the allow-list explains; return its stale entries."""
    by_name = {m.name: m for m in mutants}
    stale = []
    for entry in entries:
        mutant = by_name.get(entry.name)
        if mutant is None:
            stale.append(f"line {entry.line}: {entry.name}: no such mutant any more")
        elif mutant.fingerprint != entry.fingerprint:
            stale.append(f"line {entry.line}: {entry.name}: the function changed "
                         f"(fingerprint now {mutant.fingerprint})")
        elif mutant.status == TIMEOUT:
            # out of CPU time on a loaded machine: not a test telling it apart, so the
            # entry still explains it (it counts as equivalent, not killed)
            mutant.equivalent = entry.reason
        elif mutant.killed:
            stale.append(f"line {entry.line}: {entry.name}: killed now, drop the entry")
        else:
            mutant.equivalent = entry.reason
    return stale


def scores(mutants: list[Mutant]) -> dict[str, Score]:
    """A Score per package, plus 'all'."""
    table = {package: Score() for package in PACKAGES}
    table["all"] = Score()
    for mutant in mutants:
        table.setdefault(mutant.package, Score()).add(mutant)
        table["all"].add(mutant)
    return table


def _change(diff: str, width: int = 100) -> str:
    """A diff as `old` -> `new`, each line stripped and cut to C{width} characters."""
    def joined(prefix: str) -> str:
        lines = [line[1:].strip() for line in diff.splitlines()
                 if line.startswith(prefix) and not line.startswith(prefix * 3)]
        text = " / ".join(lines)
        return (text if len(text) <= width else text[:width] + "...").replace("`", "'")
    if not diff:
        return "(no diff)"
    return f"`{joined('-')}` -> `{joined('+')}`"


def render(mutants: list[Mutant], stale: list[str], errors: list[str], *, when: str,
           command: str) -> str:
    """The Markdown report."""
    table = scores(mutants)
    out = ["# Mutation score (bench/mutation_report.py)", "",
           f"- date: {when}, python {platform.python_version()}",
           f"- command: `{command}`",
           "- killed = a unit test failed or the tests ran out of time (the mutant loops); "
           "score = killed / (mutants - equivalent)", "",
           "| package | mutants | killed | equivalent | survived | no tests | "
           "not checked | score |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for package, score in table.items():
        unexplained = {status: sum(1 for m in mutants if (package == "all" or m.package == package)
                                   and m.status == status and not m.equivalent)
                       for status in UNKILLED}
        verdict = "" if package == "all" or score.percent >= GOAL else " (below goal)"
        out.append(f"| {package} | {score.total} | {score.killed} | {score.equivalent} | "
                   f"{unexplained[SURVIVED]} | {unexplained[NO_TESTS]} | "
                   f"{unexplained[NOT_CHECKED] + unexplained[OTHER]} | "
                   f"{score.percent:.1f} %{verdict} |")
    out += ["", f"Goal: at least {GOAL:.0f} % in each package; every survivor killed by a test "
            f"or listed in `{ALLOW_LIST}` with its reason."]
    if errors or stale:
        out += ["", "## Allow-list problems", ""]
        out += [f"- {problem}" for problem in errors + stale]
    survivors = [m for m in mutants if not m.killed and not m.equivalent]
    out += ["", f"## Mutants no test killed ({len(survivors)})", ""]
    if survivors:
        out += ["One a line: name, status, fingerprint (for the allow-list when it is "
                "equivalent), then the line it changes and what it becomes "
                "(`mutmut show NAME` gives the whole diff).", ""]
    for mutant in survivors:
        out.append(f"- {mutant.name} ({mutant.status}, {mutant.fingerprint or '?'}): "
                   f"{_change(mutant.diff)}")
    equivalents = [m for m in mutants if m.equivalent]
    if equivalents:
        out += [f"## Equivalent mutants ({len(equivalents)})", ""]
        out += [f"- {m.name}: {m.equivalent}" for m in equivalents]
    return "\n".join(out).rstrip() + "\n"


def test_file_hashes(directory: Path = UNIT_TESTS) -> dict[str, str]:
    """sha256 of each unit test module (helpers included), by path."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*.py"))}


def changed_test_files(saved: Path, current: dict[str, str]) -> list[str]:
    """Test files new or changed since the hashes in C{saved} (all of them if none saved)."""
    try:
        before = json.loads(saved.read_text("utf-8"))
    except (OSError, ValueError):
        before = {}
    return sorted(path for path, digest in current.items() if before.get(path) != digest)


def covered_by(mutants: list[Mutant], stats_path: Path, files: list[str]) -> list[Mutant]:
    """The mutants whose function some test in C{files} runs, per mutmut's test map."""
    tests_by_function = _read_json(stats_path).get("tests_by_mangled_function_name", {})
    if any(not Path(name).name.startswith("test_") for name in files):
        files = [""]  # a helper (fakes, conftest) changed: any test may behave differently
    prefixes = tuple(f"{name}::" if name else "" for name in files)
    return [m for m in mutants
            if any(test.startswith(prefixes)
                   for test in tests_by_function.get(m.name.partition("__mutmut_")[0], ()))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/mutation_report.py",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"),
                        help="mutmut's working directory (default: mutants)")
    parser.add_argument("--allow-list", type=Path, default=ALLOW_LIST)
    parser.add_argument("--out", type=Path, help="write the report here (default: stdout)")
    parser.add_argument("--unkilled", action="store_true",
                        help="print the names of the mutants no test killed and the allow-list "
                             "does not explain, one a line, and nothing else")
    parser.add_argument("--covered-by", nargs="*", metavar="FILE",
                        help="with --unkilled: only those some test in these files covers")
    parser.add_argument("--changed-tests", action="store_true",
                        help="print the unit test files changed since --save-test-hashes")
    parser.add_argument("--save-test-hashes", nargs="?", const="", metavar="FROM",
                        help=f"remember the unit test files' hashes in {TEST_HASHES} "
                             "(taken now, or copied from the file FROM)")
    parser.add_argument("--test-hashes-to", type=Path, metavar="FILE",
                        help="write the unit test files' hashes as they are now to FILE")
    parser.add_argument("--command", default="make mutation",
                        help="the command named in the report")
    args = parser.parse_args(argv)
    hashes_path = args.mutants / Path(TEST_HASHES).name
    if args.changed_tests:
        print(" ".join(changed_test_files(hashes_path, test_file_hashes())))
        return 0
    if args.test_hashes_to is not None:
        args.test_hashes_to.parent.mkdir(parents=True, exist_ok=True)
        args.test_hashes_to.write_text(json.dumps(test_file_hashes(), indent=1), "utf-8")
        return 0
    if args.save_test_hashes is not None:
        hashes = (json.loads(Path(args.save_test_hashes).read_text("utf-8"))
                  if args.save_test_hashes else test_file_hashes())
        hashes_path.write_text(json.dumps(hashes, indent=1), "utf-8")
        return 0
    if not args.mutants.is_dir():
        print(f"{args.mutants}: no mutmut results here; run `make mutation` first",
              file=sys.stderr)
        return 2
    mutants = load_mutants(args.mutants)
    entries, errors = read_allow_list(args.allow_list)
    stale = apply_allow_list(mutants, entries)
    if args.unkilled:
        unkilled = [m for m in mutants if not m.killed and not m.equivalent]
        if args.covered_by is not None:
            unkilled = covered_by(unkilled, args.mutants / "mutmut-stats.json", args.covered_by)
        for mutant in unkilled:
            print(mutant.name)
        return 0
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report = render(mutants, stale, errors, when=when, command=args.command)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, "utf-8")
        print(f"wrote {args.out}")
    print("\n".join(line for line in report.splitlines() if line.startswith("|")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
