"""
Coverage-guided fuzzing of the SIP codec (sipxcc.sip.message, sipxcc.sip.uri) with atheris.

The contract under test: whatever bytes arrive on the SIP port, the codec returns a message
or raises SIPParseError -- never another exception -- and what it parsed it can serialise
and parse again. See bench/FUZZING.md for how to install atheris and what was found.

    build/fuzz/venv/bin/python bench/fuzz_codec.py -max_total_time=300 \
        -artifact_prefix=build/fuzz/ build/fuzz/corpus bench/fuzz_crashers
    .venv/bin/python bench/fuzz_codec.py --replay bench/fuzz_crashers   # no atheris needed

The first byte of an input selects what is fuzzed (see MODES); the rest is the payload, so
a crasher file replays exactly with check_input().
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

MODES = ("datagram", "stream", "uri", "address", "address-list", "via")


def _import_codec():
    """Import the codec, instrumented for coverage when running under atheris."""
    global framing, message, uri
    try:
        import atheris
    except ImportError:
        from sipxcc.sip import framing, message, uri
        return
    with atheris.instrument_imports(include=["sipxcc.sip"]):
        from sipxcc.sip import framing, message, uri


framing = message = uri = None  # set by _import_codec()


def _exercise(parsed) -> None:
    """What the daemon reads from every message it accepts; SIPParseError is allowed."""
    for accessor in ("call_id", "cseq", "top_via", "vias", "from_address", "to_address",
                     "from_tag", "to_tag", "branch", "first_line"):
        try:
            getattr(parsed, accessor)
        except message.SIPParseError:
            pass
    wire = parsed.to_bytes()
    again = framing.parse_datagram(wire, max_size=len(wire) + 1)
    assert again.first_line == parsed.first_line, (parsed.first_line, again.first_line)
    assert again.body == parsed.body
    if parsed.is_request:
        try:
            message.response_to(parsed, 400, "Bad Request")
        except message.SIPParseError:
            pass


def _reparse(parse, text: str) -> None:
    """parse(text), then str() of the result must parse to the same string."""
    try:
        value = parse(text)
    except message.SIPParseError:
        return
    if isinstance(value, list):
        for item in value:
            _reparse(type(item).parse, str(item))
        return
    printed = str(value)
    assert str(parse(printed)) == printed, (text, printed)


def check_input(data: bytes) -> None:
    """One fuzz case. Raises only on a codec bug (AssertionError or an unexpected error)."""
    if message is None:
        _import_codec()
    if not data:
        return
    mode, payload = MODES[data[0] % len(MODES)], data[1:]
    if mode == "datagram":
        try:
            parsed = framing.parse_datagram(payload)
        except message.SIPParseError:
            return
        _exercise(parsed)
    elif mode == "stream":
        _stream(payload)
    else:
        text = payload.decode("utf-8", "replace")
        parse = {"uri": uri.URI.parse, "address": uri.Address.parse,
                 "address-list": uri.parse_address_list, "via": uri.Via.parse}[mode]
        _reparse(parse, text)


def _stream(payload: bytes) -> None:
    """Feed the payload to a StreamParser in chunks sized by its first byte."""
    if not payload:
        return
    chunk = 1 + payload[0] % 64
    payload = payload[1:]
    received = []
    parser = framing.StreamParser(received.append, on_invalid=lambda error: None,
                                  on_ping=lambda: None)
    for start in range(0, len(payload), chunk):
        try:
            parser.feed(payload[start:start + chunk])
        except message.SIPParseError:
            break
    for parsed in received:
        _exercise(parsed)


def replay(paths: list[str]) -> int:
    """Run every file (or every file in every directory) once; print and count failures."""
    failures = 0
    files = [f for p in map(Path, paths) for f in (sorted(p.iterdir()) if p.is_dir() else [p])
             if f.is_file() and not f.name.startswith(".") and f.suffix != ".md"]
    for path in files:
        try:
            check_input(path.read_bytes())
        except Exception as error:  # noqa: BLE001 - reporting any crash is the point
            failures += 1
            print(f"{path}: {type(error).__name__}: {error}")
    print(f"{len(files)} inputs replayed, {failures} failed")
    return 1 if failures else 0


def main() -> None:
    if sys.argv[1:2] == ["--replay"]:
        sys.exit(replay(sys.argv[2:]))
    import atheris

    _import_codec()
    atheris.Setup(sys.argv, check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
