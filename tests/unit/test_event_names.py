"""
The event name each status line gets (what statusCallbackEvent filters on), line by line
as a call meets them: challenges and unknown lines keep the previous name, every failure
from 300 up is "failed", a REFER's final answer and a NOTIFY mean the transfer, BYE and
CANCEL answered mean the end.
"""

from __future__ import annotations

import pytest

from sipxcc.calls.call import StatusEvent
from sipxcc.calls.events import EventNamer


def names(*lines: tuple[str, str]) -> list[str]:
    """The names of (method, status line) events of one call, all in one dialog."""
    namer = EventNamer()
    return [namer.name(StatusEvent(1000, "cid-1", method, line), "ringing")
            for method, line in lines]


def test_a_challenge_keeps_the_previous_name_but_402_is_a_failure():
    assert names(("INVITE", "SIP/2.0 180 Ringing"), ("INVITE", "SIP/2.0 401 Unauthorized"),
                 ("INVITE", "SIP/2.0 407 Proxy Authentication Required")) == [
        "ringing", "ringing", "ringing"]
    assert names(("INVITE", "SIP/2.0 180 Ringing"),
                 ("INVITE", "SIP/2.0 402 Payment Required")) == ["ringing", "failed"]


def test_300_is_the_first_failure():
    assert names(("INVITE", "SIP/2.0 180 Ringing"),
                 ("INVITE", "SIP/2.0 300 Multiple Choices")) == ["ringing", "failed"]


@pytest.mark.parametrize("line", ["SIP/2.0 180", "sip/2.0 180 Ringing"])
def test_a_status_line_without_reason_or_in_lower_case_is_still_read(line):
    assert names(("INVITE", "SIP/2.0 100 Trying"), ("INVITE", line)) == [
        "initiated", "ringing"]


@pytest.mark.parametrize("line", ["not a status", "SIP/2.0", "SIP/2.0 abc Ringing",
                                  "HTTP/1.1 200 OK", ""])
def test_a_line_that_is_no_status_keeps_the_previous_name(line):
    assert names(("INVITE", "SIP/2.0 180 Ringing"), ("NOTIFY", line)) == [
        "ringing", "ringing"]


def test_only_a_final_answer_to_the_refer_means_transferring():
    assert names(("INVITE", "SIP/2.0 200 OK"), ("REFER", "SIP/2.0 100 Trying"),
                 ("REFER", "SIP/2.0 200 OK")) == ["answered", "answered", "transferring"]


@pytest.mark.parametrize("method", ["BYE", "CANCEL", "bye"])
def test_bye_or_cancel_answered_means_completed(method):
    assert names(("INVITE", "SIP/2.0 200 OK"), (method, "SIP/2.0 100 Trying"),
                 (method, "SIP/2.0 200 OK")) == ["answered", "answered", "completed"]


def test_other_methods_answered_keep_the_previous_name():
    assert names(("INVITE", "SIP/2.0 200 OK"), ("OPTIONS", "SIP/2.0 200 OK"),
                 ("INFO", "SIP/2.0 200 OK")) == ["answered", "answered", "answered"]
