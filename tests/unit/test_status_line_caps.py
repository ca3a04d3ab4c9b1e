"""A call's status lines are bounded in number and length, and always show the outcome."""

from __future__ import annotations

import pytest

from sipxcc.calls.call import (
    MAX_EVENTS,
    MAX_FINAL_EVENTS,
    MAX_LINE,
    TRUNCATED,
    Call,
    CallRequest,
    is_final,
)
from sipxcc.users import User

USER1 = User("user1@sipx.test", "user1", (), None, None, None)


def new_call() -> Call:
    return Call(CallRequest(USER1, "user1@sipx.test", "user2@sipx.test"), 0)


def ringing(call: Call, count: int) -> None:
    for n in range(count):
        call.record(n, "cid", "INVITE", "SIP/2.0 180 Ringing")


@pytest.mark.parametrize("released", [False, True])
def test_provisional_lines_stop_at_the_cap_but_the_outcome_is_recorded(released):
    call = new_call()
    ringing(call, MAX_EVENTS - 1)
    if released:
        call.release()
    ringing(call, 1)
    assert call.event_count == MAX_EVENTS  # exactly at the cap: kept
    ringing(call, 5000)
    assert call.event_count == MAX_EVENTS  # cap + 1 and beyond: dropped
    call.record(9000, "cid", "INVITE", "SIP/2.0 486 Busy Here")
    lines = [event.status_line for event in call.events]
    assert len(lines) == MAX_EVENTS + 1 and lines[-1] == "SIP/2.0 486 Busy Here"


def test_final_lines_beyond_the_cap_are_bounded_and_the_last_one_shows():
    call = new_call()
    ringing(call, MAX_EVENTS)
    for n in range(MAX_FINAL_EVENTS):
        call.record(n, "cid", "NOTIFY", f"SIP/2.0 200 OK {n}")
    assert call.event_count == MAX_EVENTS + MAX_FINAL_EVENTS
    for n in range(1000):
        call.record(n, "cid", "NOTIFY", "SIP/2.0 503 Service Unavailable")
    call.record(5, "cid", "BYE", "SIP/2.0 200 OK")
    events = call.events
    assert len(events) == MAX_EVENTS + MAX_FINAL_EVENTS
    assert (events[-1].method, events[-1].status_line) == ("BYE", "SIP/2.0 200 OK")
    assert events[-2].status_line == f"SIP/2.0 200 OK {MAX_FINAL_EVENTS - 2}"


def test_listeners_see_only_the_lines_kept():
    call = new_call()
    seen = []
    call.listen(lambda call, event: seen.append(event))
    ringing(call, MAX_EVENTS + 50)
    call.record(1, "cid", "INVITE", "SIP/2.0 200 OK")
    assert len(seen) == MAX_EVENTS + 1 and seen[-1].status_line == "SIP/2.0 200 OK"


def test_a_long_line_is_cut_with_a_marker_and_a_line_at_the_limit_is_not():
    call = new_call()
    exact = "SIP/2.0 180 " + "r" * (MAX_LINE - 12)
    call.record(1, "cid", "INVITE", exact)
    call.record(2, "cid", "INVITE", exact + "x")
    call.record(3, "cid", "INVITE", "SIP/2.0 180 " + "y" * 5_000_000)
    first, second, third = (event.status_line for event in call.events)
    assert first == exact and len(first) == MAX_LINE
    assert len(second) == MAX_LINE and second.endswith(TRUNCATED)
    assert second.startswith(exact[:MAX_LINE - len(TRUNCATED)])
    assert len(third) == MAX_LINE and third.endswith(TRUNCATED)


@pytest.mark.parametrize("line, final", [
    ("SIP/2.0 200 OK", True), ("SIP/2.0 486 Busy Here", True), ("SIP/2.0 603", True),
    ("SIP/2.0 180 Ringing", False), ("SIP/2.0 100 Trying", False),
    ("SIP/2.0 2000 OK", False), ("SIP/2.0 7xx", False), ("garbage from a sipfrag", False),
    ("SIP/2.0 2٣0 OK", False), ("", False),
    ("SIP/2.0 X00 Odd", False), ("SIP/2.0 2x0 Odd", False), ("SIP/2.0 20x Odd", False),
])
def test_what_counts_as_a_final_line(line, final):
    assert is_final(line) is final
