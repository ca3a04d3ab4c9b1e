"""Summarise a py-spy ``--format raw`` profile (collapsed stacks, one "a;b;c count" a line).

``python -m bench.profile FILE [--top N]`` prints the functions with the most samples on
top of the stack (self) and anywhere on it (inclusive), as shares of all samples.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path


def load(path: Path) -> list[tuple[list[str], int]]:
    """[(frames outermost first, samples)] of a collapsed-stack file."""
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    """"render (twisted/web/server.py:123)" -> "render (twisted/web/server.py)"."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def summarise(stacks: list[tuple[list[str], int]], top: int = 30) -> str:
    """A text report: total samples, top self and inclusive functions."""
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        names = [_short(frame) for frame in frames]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    lines = [f"{total} samples", "", f"top {top} by self samples:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
    lines += ["", f"top {top} by inclusive samples:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    if not args.file.exists():
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return 1
    sys.stdout.write(summarise(load(args.file), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
