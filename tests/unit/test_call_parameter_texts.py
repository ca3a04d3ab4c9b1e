"""
What a client is told when a parameter is refused (the exact 400 text it shows), and each
numeric or length bound accepted at its edge and refused one past it.
"""

from __future__ import annotations

import pytest

from sipxcc.calls import events
from tests.unit.test_web_auth import error_code
from tests.unit.webfakes import WebHarness, basic

URI = "/callcontroller/user1/user2"
REFER_ONLY = "(in REFER mode the calling user's phone calls the called user)"
LONG_XS_SHOWN = "x" * 64 + "..."  # how a long value is shown: its first 64 characters


@pytest.fixture
def web():
    return WebHarness()


def post(web, query: str = "", path: str = URI, **options) -> tuple[int, int, str]:
    options.setdefault("client", "127.0.0.1")  # a trusted peer: no credentials to check
    return error_code(web.request(b"POST", path + query, **options))


@pytest.mark.parametrize("query", ["?callerId=user1", "?callerIdName=Bob",
                                   "?callerId=user1&callerIdName=Bob"])
def test_caller_id_in_refer_mode_is_refused_naming_the_parameter_given(web, query):
    which = "callerId" if "callerId=" in query else "callerIdName"
    assert post(web, query) == (400, 400, f"Bad parameter {which}: it needs "
                                          f"sipMethod=INVITE {REFER_ONLY}")


def test_caller_id_may_be_the_agent_or_the_calling_user_only(web):
    assert post(web, "?sipMethod=INVITE&callerId=user2") == (
        400, 400, "Bad parameter callerId = user2@sipx.test: only the agent's or the calling "
                  "user's identity")
    # an agent acting for user1 may present user1 (the calling user) or itself
    acting = {"client": "192.0.2.10", "headers": basic("user3")}
    assert post(web, "?sipMethod=INVITE&agent=user3&callerId=user1", **acting)[0] == 200
    assert post(web, "?sipMethod=INVITE&agent=user3&callerId=user3", **acting)[0] == 200


def test_caller_id_name_is_at_most_64_characters(web):
    assert post(web, "?sipMethod=INVITE&callerIdName=" + "x" * 64)[0] == 200
    assert post(web, "?sipMethod=INVITE&callerIdName=" + "x" * 65) == (
        400, 400, "Bad parameter callerIdName = " + LONG_XS_SHOWN)


def test_a_time_limit_needs_invite_mode_and_may_be_one_second(web):
    assert post(web, "?timeLimit=5") == (
        400, 400, "Bad parameter timeLimit: it needs sipMethod=INVITE (in REFER mode the call "
                  "is not ours to end)")
    assert post(web, "?sipMethod=INVITE&timeLimit=1")[0] == 200
    assert post(web, "?sipMethod=INVITE&timeLimit=0") == (400, 400, "Bad parameter timeLimit = 0")


def test_a_timeout_and_a_list_limit_may_be_one(web):
    assert post(web, "?timeout=1")[0] == 200
    assert post(web, "?timeout=0") == (400, 400, "Bad parameter timeout = 0")
    assert web.request(b"GET", "/calls?limit=1", client="127.0.0.1").responseCode == 200
    assert error_code(web.request(b"GET", "/calls?limit=0", client="127.0.0.1")) == (
        400, 400, "Bad parameter limit = 0")


def test_status_callback_events_up_to_256_characters_are_read_as_names(web):
    known = ", ".join(events.NAMES)
    assert post(web, "?statusCallbackEvent=" + "x" * 256) == (
        400, 400, f"Bad parameter statusCallbackEvent = {LONG_XS_SHOWN} (known events: {known})")
    assert post(web, "?statusCallbackEvent=" + "x" * 257) == (
        400, 400, f"Bad parameter statusCallbackEvent = {LONG_XS_SHOWN}")


def test_a_callback_host_that_is_not_allowed_is_named(web):
    assert post(web, "?statusCallback=https://evil.example/x") == (
        400, 400, "Bad parameter statusCallback: host evil.example is not an allowed callback "
                  "host")


def test_a_value_that_is_not_utf8_is_named(web):
    assert post(web, "?callerIdName=%ff") == (400, 400, "Bad parameter callerIdName: not UTF-8")


@pytest.mark.parametrize(("called", "accepted"), [
    ("user2@[::1]:65535", True), ("user2@[::1]:65536", False), ("user2@[::1]:0", False),
    ("user2@bad_host", False)])
def test_a_users_host_and_port_are_checked(web, called, accepted):
    answer = post(web, path="/callcontroller/user1/" + called)
    assert answer == ((200, 200, "Success") if accepted
                      else (400, 400, f"Bad parameter calledUser = {called}"))
