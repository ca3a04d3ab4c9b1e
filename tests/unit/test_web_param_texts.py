"""The exact error text a caller of the REST interface gets for each bad parameter, and the
boundaries of every limit (one past is refused, the limit itself is accepted)."""

from __future__ import annotations

import pytest

from sipxcc.web import params
from sipxcc.web.params import BadParameter, check_callback, decode_segment

HOOKS = ("hooks.example", "[2001:DB8::7]", "192.0.2.8")


def error_of(function, *args) -> str:
    with pytest.raises(BadParameter) as caught:
        function(*args)
    return str(caught.value)


@pytest.mark.parametrize("url", [
    "http://hooks.example/status", "https://hooks.example:8443/s?id=1",
    "HTTPS://HOOKS.Example/x", "http://[2001:db8::7]:8080/", "http://192.0.2.8/",
])
def test_allowed_callback_urls_are_accepted_unchanged(url):
    assert check_callback(url, HOOKS) == url


@pytest.mark.parametrize("url", [
    "ftp://hooks.example/x", "hooks.example/x", "http:///x", "http://user@hooks.example/",
    "http://user:pw@hooks.example/", "http://hooks.example:99999/", "http://hooks.example:x/",
    "http://hooks.example/a b", "http://hooks.example/\x07", "http://[::1/",
])
def test_malformed_callback_urls_are_named_with_their_value(url):
    shown = url.replace("\x07", "\\x07")
    assert error_of(check_callback, url, HOOKS) == f"Bad parameter statusCallback = {shown}"


def test_a_callback_host_not_allowed_is_named():
    assert error_of(check_callback, "https://evil.example/x", HOOKS) == (
        "Bad parameter statusCallback: host evil.example is not an allowed callback host")
    assert error_of(check_callback, "https://hooks.example/x", ()) == (
        "Bad parameter statusCallback: host hooks.example is not an allowed callback host")


def test_callback_url_length_limit():
    base = "https://hooks.example/"
    longest = base + "a" * (params.MAX_CALLBACK_URL - len(base))
    assert check_callback(longest, HOOKS) == longest
    error = error_of(check_callback, longest + "a", HOOKS)
    assert error == f"Bad parameter statusCallback = {longest[:64]}..."


def test_subject_and_confpin_limits_and_texts():
    assert params.check_subject("s" * params.MAX_SUBJECT) == "s" * params.MAX_SUBJECT
    assert error_of(params.check_subject, "s" * (params.MAX_SUBJECT + 1)) == (
        "Bad parameter subject = " + "s" * 64 + "...")
    assert error_of(params.check_subject, "a\tb") == "Bad parameter subject = a\\x09b"
    assert params.check_confpin("1" * params.MAX_CONFPIN) == "1" * params.MAX_CONFPIN
    assert error_of(params.check_confpin, "1" * (params.MAX_CONFPIN + 1)) == (
        "Bad parameter confpin = " + "1" * (params.MAX_CONFPIN + 1))
    assert error_of(params.check_confpin, "12a") == "Bad parameter confpin = 12a"


def test_shown_values_are_cut_at_64_characters():
    assert error_of(params.check_subject, "\x01" + "x" * 63) == (
        "Bad parameter subject = \\x01" + "x" * 63)
    assert error_of(params.check_subject, "\x01" + "x" * 64) == (
        "Bad parameter subject = \\x01" + "x" * 63 + "...")


def test_a_path_segment_must_be_utf8():
    assert decode_segment("id", "caf\u00e9".encode()) == "caf\u00e9"
    assert error_of(decode_segment, "id", b"\xff") == "Bad parameter id: not UTF-8"


@pytest.mark.parametrize("value", [
    "user1@[2001:db8::1]:5060", "user1@[2001:db8::1]", "user1@192.0.2.1:1",
    "user1@host.example:65535", "user1@host.example.", "+4930123@sipx.test",
])
def test_user_references_accepted(value):
    assert params.check_user("target", value) == value


@pytest.mark.parametrize("value", [
    "user1@[2001:db8::1]:0", "user1@[2001:db8::1]x", "user1@[2001:db8::zz]", "user1@[]",
    "user1@192.0.2.1:65536", "user1@300.0.2.1", "user1@host:5060:1", "user1@-host.example",
    "user1@" + "a" * 254, "u" * (params.MAX_USER + 1), "", "user1@host.example:",
])
def test_user_references_refused_with_their_name(value):
    error = error_of(params.check_user, "target", value)
    assert error.startswith("Bad parameter target")


def test_user_part_length_limit():
    assert params.check_user("agent", "u" * params.MAX_USER) == "u" * params.MAX_USER


def test_integer_bounds_are_inclusive():
    assert params.parse_integer("timeout", "1", 1, 5) == 1
    assert params.parse_integer("timeout", "5", 1, 5) == 5
    assert params.parse_integer("timeout", "+5", 1, 5) == 5
    assert error_of(params.parse_integer, "timeout", "6", 1, 5) == "Bad parameter timeout = 6"
    assert error_of(params.parse_integer, "timeout", "0", 1, 5) == "Bad parameter timeout = 0"
    assert error_of(params.parse_integer, "timeout", "1.0", 1, 5) == (
        "Bad parameter timeout = 1.0")


def test_the_longest_user_reference_is_accepted():
    host = ".".join(["a" * 63] * 3 + ["a" * 61])
    assert len(host) == 253
    longest = "u" * params.MAX_USER + "@" + host + ":65535"
    assert len(longest) == params.MAX_USER + 260
    assert params.check_user("target", longest) == longest
    assert params.check_user("target", "user1@host.example:1") == "user1@host.example:1"


@pytest.mark.parametrize("value", ["user1@host:0", "user1@host:65536", "a b", "",
                                   "u" * (params.MAX_USER + 1)])
def test_a_refused_user_reference_is_quoted_back(value):
    shown = value if len(value) <= 64 else value[:64] + "..."
    assert error_of(params.check_user, "target", value) == (
        f"Bad parameter target = {shown}")


def test_white_space_around_a_subject_is_dropped_and_a_blank_one_is_none():
    assert params.check_subject("  Sales call ") == "Sales call"
    assert params.check_subject("   ") is None
